-- Discontinue a random manager's last product.
local c = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
setup = c.setup
done = c.done
function init() c.seed(thread_id) end
function request() return c.discontinue_request(c.manager()) end
