-- A random manager's list, with a random status filter (or none).
local c = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
setup = c.setup
done = c.done
function init() c.seed(thread_id) end
function request() return c.list_request(c.manager()) end
