-- A 2-line order of one unit each, for a random manager.
local c = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
setup = c.setup
done = c.done
function init() c.seed(thread_id) end
function request() return c.order_request(c.manager()) end
