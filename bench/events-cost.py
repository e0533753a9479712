#!/usr/bin/env python3
"""Orders per second through a running service: the cost of the event outbox.

    bench/events-cost.py seed URL MANAGERS       # MANAGERS x 20 products, fresh database
    bench/events-cost.py run URL MANAGERS SECS THREADS

Each thread keeps one connection and sends 2-line orders (one unit each) for a
random manager among the first MANAGERS; prints orders/s and the median and
99th percentile latency. Used for docs/events.md: run the service built
before and after the change on the same machine, alternating runs.
"""
import http.client, json, random, sys, threading, time
from urllib.parse import urlparse

def conn(url):
    u = urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)

def post(c, path, body):
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    return r.status

def seed(url, managers):
    c = conn(url)
    for m in range(1, managers + 1):
        products = [{"name": f"Product {n}", "price": 2.5, "quantity": 1_000_000_000} for n in range(1, 21)]
        assert post(c, "/api/inventory/products", {"manager_id": f"mgr_{m}", "products": products}) == 201

def run(url, managers, secs, threads):
    stop = time.monotonic() + secs
    latencies, statuses, lock = [], {}, threading.Lock()
    def worker(i):
        rng, c, mine, seen = random.Random(i), conn(url), [], {}
        while time.monotonic() < stop:
            m = rng.randint(1, managers)
            a, b = rng.sample(range(1, 20), 2)
            body = {"manager_id": f"mgr_{m}", "customer": {"id": f"c{i}", "email": "c@example.com"},
                    "products": [{"product_id": f"prod_{(m - 1) * 20 + a:03d}", "quantity": 1},
                                 {"product_id": f"prod_{(m - 1) * 20 + b:03d}", "quantity": 1}]}
            t = time.monotonic()
            s = post(c, "/api/orders/process", body)
            mine.append(time.monotonic() - t)
            seen[s] = seen.get(s, 0) + 1
        with lock:
            latencies.extend(mine)
            for s, n in seen.items():
                statuses[s] = statuses.get(s, 0) + n
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    latencies.sort()
    ok = statuses.get(200, 0)
    print(json.dumps({"orders_per_sec": round(ok / secs, 1), "statuses": statuses,
                      "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
                      "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2)}))

if __name__ == "__main__":
    if sys.argv[1] == "seed":
        seed(sys.argv[2], int(sys.argv[3]))
    else:
        run(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
