-- Shared by every scenario: the seeded data's shape, random picks, request
-- bodies, and a done() hook that writes the run's figures as JSON.
--
-- Environment (set by bench/run):
--   BENCH_MANAGERS  managers seeded through the API, mgr_1 .. mgr_N
--   BENCH_PRODUCTS  products per manager; manager m owns the ids
--                   (m-1)*P+1 .. m*P, named "Product 1" .. "Product P";
--                   the last one is seeded out of stock, the rest in stock
--   BENCH_MANAGER_OFFSET  the scenario's managers are mgr_(OFFSET+1) ..
--                   mgr_(OFFSET+BENCH_MANAGERS) (default 0; --webhooks runs
--                   use a second set, the managers with endpoints)
--   BENCH_RUN_ID    unique per run (makes Idempotency-Keys unique)
--   BENCH_OUT       file the done() hook writes its JSON to

local M = {}

M.managers = tonumber(os.getenv("BENCH_MANAGERS") or "200")
M.products = tonumber(os.getenv("BENCH_PRODUCTS") or "20")
M.offset = tonumber(os.getenv("BENCH_MANAGER_OFFSET") or "0")
M.run_id = os.getenv("BENCH_RUN_ID") or tostring(os.time())

local statuses = { "", "&status=in_stock", "&status=out_of_stock", "&status=discontinued" }
local json = { ["Content-Type"] = "application/json" }

-- Called from init(): a different random sequence per thread and run.
function M.seed(thread_id)
  local n = tonumber(M.run_id:match("(%d+)$")) or 0
  math.randomseed(os.time() + (thread_id or 0) * 7919 + n * 104729)
end

function M.manager()
  return M.offset + math.random(1, M.managers)
end

-- Public id of the n-th product (1-based) of manager m.
function M.product_id(m, n)
  return string.format("prod_%03d", (m - 1) * M.products + n)
end

function M.list_request(m)
  local path = "/api/inventory/products?manager_id=mgr_" .. m .. statuses[math.random(1, #statuses)]
  return wrk.format("GET", path)
end

-- Two distinct in-stock products, one unit each.
function M.order_request(m, headers)
  local a = math.random(1, M.products - 2)
  local b = math.random(a + 1, M.products - 1)
  local c = math.random(1, 1000000)
  local body = string.format(
    '{"manager_id":"mgr_%d","customer":{"id":"cust_%d","email":"c%d@example.com"},'
      .. '"products":[{"product_id":"%s","quantity":1},{"product_id":"%s","quantity":1}]}',
    m, c, c, M.product_id(m, a), M.product_id(m, b))
  local h = { ["Content-Type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return wrk.format("POST", "/api/orders/process", h, body)
end

-- Five consecutive in-stock products updated by name: new price, stock reset.
function M.upsert_request(m)
  local first = math.random(1, M.products - 5)
  local items = {}
  for n = first, first + 4 do
    items[#items + 1] = string.format('{"name":"Product %d","price":%d.%02d,"quantity":1000000000}',
      n, math.random(1, 99), math.random(0, 99))
  end
  local body = string.format('{"manager_id":"mgr_%d","products":[%s]}', m, table.concat(items, ","))
  return wrk.format("POST", "/api/inventory/products", json, body)
end

-- The manager's last product (seeded out of stock; discontinuing again is a 204 too).
function M.discontinue_request(m)
  local body = string.format('{"manager_id":"mgr_%d","product_id":"%s"}', m, M.product_id(m, M.products))
  return wrk.format("POST", "/api/inventory/discontinue", json, body)
end

-- setup() numbers the threads so each can seed its own random sequence.
local threads = 0
function M.setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function M.done(summary, latency, requests)
  local e = summary.errors
  local out = assert(io.open(assert(os.getenv("BENCH_OUT"), "BENCH_OUT is not set"), "w"))
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
  out:close()
end

return M
