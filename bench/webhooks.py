#!/usr/bin/env python3
"""Webhook endpoints for bench/run --webhooks: a receiver on loopback, and
registering and deleting the endpoints through the API.

Standard library only. Subcommands (bench/run calls them):

  receiver PORT LOG          answers every POST with 204 and appends one line per
                             request to LOG: "PATH WEBHOOK_ID ARRIVAL TIMESTAMP"
                             (ARRIVAL in Unix seconds, TIMESTAMP the body's)
  register BASE FIRST LAST RECEIVER OUT
                             two endpoints (RECEIVER/e1 and RECEIVER/e2) for each
                             of mgr_FIRST .. mgr_LAST; "MANAGER WEBHOOK_ID" lines
                             in OUT; prints the number of requests sent
  delete BASE FILE           deletes the endpoints listed in FILE; prints the
                             number of requests sent
  tail BASE FIRST LAST SECS OUT
                             reads the feeds of mgr_FIRST .. mgr_LAST at their end,
                             in turn, as fast as answers come, for SECS seconds;
                             one line per new event in OUT: the time from its
                             occurred_at to the answer that first showed it (the
                             feed's lag, the reader's own polling included);
                             prints the number of requests sent

The receiver is one asyncio process that parses only what it records (the
request line, the webhook-id header and the body's "timestamp"), so it takes
little CPU from the service it measures.
"""

import asyncio
import http.client
import json
import re
import sys
import time
from datetime import datetime
from urllib.parse import urlparse

TIMESTAMP = re.compile(rb'"timestamp":"([^"]*)"')
ANSWER = b"HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n"


def receiver(port, log):
    out = open(log, "a", buffering=1 << 16, encoding="ascii")

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrival = time.time()
                lines = head.split(b"\r\n")
                path = lines[0].split(b" ")[1] if len(lines[0].split(b" ")) > 1 else b"?"
                length, hook_id = 0, b"-"
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        hook_id = value.strip()
                body = await reader.readexactly(length) if length else b""
                found = TIMESTAMP.search(body)
                stamp = found.group(1).decode() if found else "-"
                out.write(f"{path.decode()} {hook_id.decode()} {arrival:.6f} {stamp}\n")
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", int(port), backlog=1024)
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set_result, None)

        async def flush():
            while True:
                await asyncio.sleep(0.5)
                out.flush()

        flusher = asyncio.create_task(flush())
        async with server:
            await stop
        flusher.cancel()
        out.flush()

    asyncio.run(main())


def connection(base):
    u = urlparse(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def call(c, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, None if body is None else json.dumps(body), headers)
    r = c.getresponse()
    return r.status, r.read()


def register(base, first, last, receiver_url, out):
    c, sent = connection(base), 0
    with open(out, "w", encoding="ascii") as f:
        for m in range(int(first), int(last) + 1):
            for endpoint in ("e1", "e2"):
                status, body = call(c, "POST", "/api/webhooks", {
                    "manager_id": f"mgr_{m}", "url": f"{receiver_url}/{endpoint}",
                    "description": "bench/run receiver"})
                sent += 1
                if status != 201:
                    sys.exit(f"registering an endpoint for mgr_{m}: HTTP {status}: {body[:300]!r}")
                f.write(f"mgr_{m} {json.loads(body)['id']}\n")
    print(sent)


def delete(base, path):
    """Deletes each endpoint, trying again (up to 5 times, 0.5 s apart) after
    a 5xx; every answer other than 204 is reported on stderr."""
    c, sent = connection(base), 0
    for line in open(path, encoding="ascii"):
        manager, hook = line.split()
        for attempt in range(1, 6):
            status, body = call(c, "DELETE", f"/api/webhooks/{hook}?manager_id={manager}")
            sent += 1
            if status == 204:
                break
            print(f"    deleting {hook} of {manager} (attempt {attempt}): HTTP {status}: {body[:200]!r}",
                  file=sys.stderr)
            if status < 500 or attempt == 5:
                sys.exit(1)
            time.sleep(0.5)
    print(sent)


def parse_time(text):
    """Unix seconds of an RFC 3339 UTC time as the service prints it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def tail(base, first, last, seconds, out):
    c = connection(base)
    managers = [f"mgr_{m}" for m in range(int(first), int(last) + 1)]
    cursors, sent = {}, [0]

    def page(manager):
        sent[0] += 1
        after = cursors.get(manager)
        path = f"/api/events?manager_id={manager}&limit=1000" + (f"&after={after}" if after else "")
        status, body = call(c, "GET", path)
        if status != 200:
            sys.exit(f"reading the feed of {manager}: HTTP {status}: {body[:300]!r}")
        return time.time(), json.loads(body)["events"]

    # Start at each feed's end: what is there already is not timed.
    for manager in managers:
        while True:
            _, events = page(manager)
            if not events:
                break
            cursors[manager] = events[-1]["id"]
    end = time.time() + float(seconds)
    with open(out, "w", encoding="ascii") as f:
        while time.time() < end:
            for manager in managers:
                answered, events = page(manager)
                for event in events:
                    f.write(f"{answered - parse_time(event['occurred_at']):.6f}\n")
                if events:
                    cursors[manager] = events[-1]["id"]
    print(sent[0])


COMMANDS = {"receiver": receiver, "register": register, "delete": delete, "tail": tail}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
