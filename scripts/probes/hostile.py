#!/usr/bin/env python3
"""A hostile client against a running instance, and what it may cost.

    hostile.py BASE_URL PID DATABASE_URL ANON_LIMIT

Sends thousands of requests with made-up HTTP methods, request lines of
100 kB, headers of 64 kB, and anonymous requests (naming no manager) from
one address, then checks that the metrics body and the process's resident
memory stayed within a fixed bound of what they were, and that the audit
rows of anonymous requests stopped at the instance's anonymous limit
(ANON_LIMIT, the instance's ANON_RATE_LIMIT_MAX). Standard library only.
"""

import http.client
import socket
import subprocess
import sys
import time
import urllib.parse

METHODS = 3000
HUGE = 20
ANONYMOUS = 400
# Bounds: the metrics body may grow by what one new series per route and
# status costs, not per method; memory by allocator noise, not per request.
METRICS_GROWTH = 16 * 1024
RSS_GROWTH_KB = 32 * 1024


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for process {pid}")


def metrics(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    conn.close()
    return body


def raw(host, port, payload):
    """Sends raw bytes; returns the status the server answered, or None."""
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            pass
        answer = b""
        try:
            while not answer.endswith(b"\r\n\r\n") and len(answer) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        except OSError:
            pass
    if answer.startswith(b"HTTP/1.1 "):
        return int(answer[9:12])
    return None


def status_of(host, port, method, path, headers=None):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def main():
    base, pid, database_url, anon_limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    url = urllib.parse.urlparse(base)
    host, port = url.hostname, url.port
    failures = []

    # What the routes and statuses of the flood cost once, before measuring.
    for path in ("/api/inventory/products", "/nowhere"):
        status_of(host, port, "WARMUP", path)
    time.sleep(0.5)
    metrics(host, port)
    before_metrics = len(metrics(host, port))
    before_rss = rss_kb(pid)

    statuses = {}
    for i in range(METHODS):
        path = "/api/inventory/products" if i % 2 == 0 else "/nowhere"
        status = status_of(host, port, f"FAKE{i}", path)
        statuses[status] = statuses.get(status, 0) + 1
    for _ in range(HUGE):
        line = b"GET /api/inventory/products?pad=" + b"x" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        status = raw(host, port, line)
        if status not in (414, 431, 429, None):
            failures.append(f"a 100 kB request line got {status}")
        head = b"GET /api/inventory/products?manager_id=m HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"h" * 64_000 + b"\r\n\r\n"
        status = raw(host, port, head)
        # Too large to read, it names no manager: past the address's
        # anonymous limit it is refused as such (429).
        if status not in (431, 429, None):
            failures.append(f"64 kB of headers got {status}")
    anonymous = {}
    for _ in range(ANONYMOUS):
        status = status_of(host, port, "GET", "/api/inventory/products")
        anonymous[status] = anonymous.get(status, 0) + 1
    if anonymous.get(429, 0) == 0:
        failures.append(f"anonymous requests were never limited: {anonymous}")

    time.sleep(1.5)  # the audit queue writes what it holds
    after_metrics = len(metrics(host, port))
    after_rss = rss_kb(pid)
    if after_metrics - before_metrics > METRICS_GROWTH:
        failures.append(f"metrics grew from {before_metrics} to {after_metrics} bytes")
    if after_rss - before_rss > RSS_GROWTH_KB:
        failures.append(f"resident memory grew from {before_rss} to {after_rss} kB")
    rows = subprocess.run(
        ["psql", database_url, "-Atc", "select count(*) from audit_log where manager_id = ''"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    if int(rows) > anon_limit:
        failures.append(f"{rows} audit rows for anonymous requests, over the limit of {anon_limit}")

    print(
        f"hostile: {METHODS} made-up methods {dict(sorted(statuses.items()))}, "
        f"{2 * HUGE} oversized requests, anonymous {dict(sorted(anonymous.items()))}; "
        f"metrics {before_metrics} -> {after_metrics} bytes, RSS {before_rss} -> {after_rss} kB, "
        f"anonymous audit rows {rows} (limit {anon_limit}); "
        f"{len(failures)} failures"
    )
    for failure in failures:
        print(f"  FAIL {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
