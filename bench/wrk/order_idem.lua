-- The order scenario, each request with an Idempotency-Key of its own.
local c = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
setup = c.setup
done = c.done
local sent = 0
function init() c.seed(thread_id) end
function request()
  sent = sent + 1
  local key = string.format("bench-%s-%d-%d", c.run_id, thread_id, sent)
  return c.order_request(c.manager(), { ["Idempotency-Key"] = key })
end
