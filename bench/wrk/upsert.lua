-- Five products of a random manager updated in one request.
local c = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
setup = c.setup
done = c.done
function init() c.seed(thread_id) end
function request() return c.upsert_request(c.manager()) end
