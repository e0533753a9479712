-- 80% lists (random manager and status), 15% orders, 5% upserts.
local c = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
setup = c.setup
done = c.done
function init() c.seed(thread_id) end
function request()
  local m, r = c.manager(), math.random(1, 100)
  if r <= 80 then return c.list_request(m) end
  if r <= 95 then return c.order_request(m) end
  return c.upsert_request(m)
end
