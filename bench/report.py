#!/usr/bin/env python3
"""Figures for bench/run: turns wrk, pgbench and /metrics output into one JSON
file per run, and the runs into the report (Markdown, JSON, SVG plot).

Standard library only. Subcommands (bench/run calls them):

  context OUT key=value ...            the run's settings as JSON
  wrk OUT WRK_JSON [BEFORE AFTER]      a load run, with the service's metric deltas
  limit-params RUN_JSON                "MISS_PPM AUDIT_BATCH" measured in a service run
  pgbench OUT STDOUT LOG_PREFIX CLIENTS  a pgbench run (its per-transaction logs are deleted)
  audit OUT key=value ... PROM...      the audit-count check
  webhooks RUN_JSON EVENTS RECEIVER_LOG LOAD_END WAIT_END TIMED_OUT DRAIN_TIMEOUT ENDPOINTS
                                       a --webhooks run's deliveries: lag, delivered/expected, drain
  report WORKDIR OUTDIR LABEL          latest.md, latest.json, the sweep plot
  ab RUNSDIR OUTDIR LABEL A B          bench/ab: a-N.json and b-N.json (rounds) into one A/B report
"""

import glob
import json
import math
import os
import re
import statistics
import sys

# --------------------------------------------------------------------- parsing


def prom(path):
    """Sums of the few /metrics series the report uses."""
    out = {"api_requests": 0, "cache_hit": 0, "cache_miss": 0, "audit_records": 0, "audit_flushes": 0}
    if not path or not os.path.exists(path):
        return out
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        try:
            v = float(value)
        except ValueError:
            continue
        name = name_labels.split("{", 1)[0]
        if name == "http_requests_total" and re.search(r'route="/api[/"]', name_labels):
            out["api_requests"] += v
        elif name == "product_cache_lookups_total":
            out["cache_hit" if 'result="hit"' in name_labels else "cache_miss"] += v
        elif name == "audit_records_written_total":
            out["audit_records"] += v
        elif name == "audit_flush_duration_seconds_count":
            out["audit_flushes"] += v
    return {k: int(v) for k, v in out.items()}


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def cmd_context(out, *pairs):
    ctx = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        ctx[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    write_json(out, ctx)


def cmd_wrk(out, wrk_json, before=None, after=None):
    w = json.load(open(wrk_json, encoding="utf-8"))
    secs = w["duration_us"] / 1e6
    e = w["errors"]
    run = {
        "requests": w["requests"],
        "seconds": round(secs, 3),
        "rps": round(w["requests"] / secs, 1) if secs else 0.0,
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "max_ms": w["max_us"] / 1000,
        "non_2xx_3xx": e["status"],
        "socket_errors": e["connect"] + e["read"] + e["write"] + e["timeout"],
        "errors": e,
    }
    if before and after:
        b, a = prom(before), prom(after)
        run["service"] = {k: a[k] - b[k] for k in a}
    write_json(out, run)
    progress(out, f"{run['rps']:>10,.0f} req/s  p99 {run['p99_ms']:8.2f} ms  "
                  f"non-2xx {run['non_2xx_3xx']}  socket errors {run['socket_errors']}")


def cmd_limit_params(run_json):
    """Cache-miss rate (per million) and mean audit batch of a service run."""
    s = json.load(open(run_json, encoding="utf-8")).get("service", {})
    lookups = s.get("cache_hit", 0) + s.get("cache_miss", 0)
    miss_ppm = round(1e6 * s.get("cache_miss", 0) / lookups) if lookups else 1000000
    batch = round(s["audit_records"] / s["audit_flushes"]) if s.get("audit_flushes") else 1
    print(miss_ppm, max(1, batch))


def cmd_pgbench(out, stdout_path, log_prefix, clients):
    text = open(stdout_path, encoding="utf-8", errors="replace").read()
    tps = re.search(r"^tps = ([\d.]+)", text, re.M)
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    latencies = []
    for path in glob.glob(glob.escape(log_prefix) + ".*"):
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]))
        os.remove(path)
    latencies.sort()
    ms = lambda us: None if us is None else us / 1000  # noqa: E731
    run = {
        "clients": int(clients),
        "requests": int(done.group(1)) if done else 0,
        "rps": float(tps.group(1)) if tps else 0.0,
        "p50_ms": ms(percentile(latencies, 50)),
        "p90_ms": ms(percentile(latencies, 90)),
        "p99_ms": ms(percentile(latencies, 99)),
        "failed": int(failed.group(1)) if failed else 0,
        "aborted": "aborted" in text,
    }
    if not tps:
        run["error"] = text.strip().splitlines()[-5:]
    write_json(out, run)
    p99 = run["p99_ms"] or 0.0
    progress(out, f"{run['rps']:>10,.0f} tx/s   p99 {p99:8.2f} ms  failed {run['failed']}"
                  + ("  ABORTED" if run["aborted"] or not tps else ""))


def cmd_webhooks(run_json, events_path, receiver_log, load_end, wait_end, timed_out, drain_timeout, endpoints,
                 feed_lags_path=None):
    """Adds a "webhooks" section to a run: the run's events (id, occurred_at
    as Unix seconds, from the database) against the receiver's log (one line
    per delivery: path, webhook-id, arrival, body timestamp); and the feed's
    lag as a reader at its end saw it during the load (one lag per line)."""
    occurred = {}
    for line in open(events_path, encoding="utf-8"):
        event_id, _, at = line.strip().partition("\t")
        if at:
            occurred[int(event_id)] = float(at)
    seen, lags, duplicates, last_arrival, after_load = set(), [], 0, None, 0
    load_end, wait_end = float(load_end), float(wait_end)
    for line in open(receiver_log, encoding="utf-8", errors="replace"):
        fields = line.split()
        if len(fields) < 3 or not fields[1].startswith("evt_"):
            continue
        event_id = int(fields[1][4:])
        at = occurred.get(event_id)
        if at is None:
            continue  # another run's event
        pair = (fields[0], event_id)
        if pair in seen:
            duplicates += 1
            continue
        seen.add(pair)
        arrival = float(fields[2])
        lags.append(arrival - at)
        after_load += arrival > load_end
        last_arrival = arrival if last_arrival is None else max(last_arrival, arrival)
    # A delivery still missing when the wait ended has a lag of at least
    # the wait's end minus its event's time: those lower bounds beside the
    # delivered lags give lower bounds of the percentiles over every
    # expected delivery.
    delivered_per_event = {}
    for _, event_id in seen:
        delivered_per_event[event_id] = delivered_per_event.get(event_id, 0) + 1
    bounds = list(lags)
    for event_id, at in occurred.items():
        bounds += [wait_end - at] * (int(endpoints) - delivered_per_event.get(event_id, 0))
    bounds.sort()
    lags.sort()
    expected = len(occurred) * int(endpoints)
    first = min(occurred.values()) if occurred else None
    missing = expected - len(seen)
    # Deliveries per second once the load had stopped (the workers alone).
    drain_rate = after_load / (wait_end - load_end) if wait_end > load_end else None
    hooks = {
        "events": len(occurred),
        "expected": expected,
        "delivered": len(seen),
        "duplicates": duplicates,
        "lag_p50_s": percentile(lags, 50),
        "lag_p99_s": percentile(lags, 99),
        "lag_max_s": lags[-1] if lags else None,
        "lag_under_1s_pct": round(100 * sum(1 for x in lags if x < 1) / len(lags), 2) if lags else None,
        # From the end of the load to the last delivery of the run's events
        # (none if some were still missing when the wait ended).
        "drain_s": round(max(0.0, last_arrival - load_end), 3) if last_arrival and len(seen) == expected else None,
        "timed_out": timed_out == "1",
        "drain_timeout_s": int(drain_timeout),
        # Deliveries per second from the run's first event to its last delivery.
        "delivery_rate": round(len(seen) / (last_arrival - first), 1) if last_arrival and first
        and last_arrival > first else None,
        "drain_rate": round(drain_rate, 1) if drain_rate else None,
        "missing": missing,
        # At the rate of the wait, how long draining all would have taken.
        "projected_drain_s": round(wait_end - load_end + missing / drain_rate, 1) if missing and drain_rate
        else None,
        "lag_all_p50_s_at_least": percentile(bounds, 50) if missing else None,
        "lag_all_p99_s_at_least": percentile(bounds, 99) if missing else None,
    }
    feed = sorted(float(x) for x in open(feed_lags_path, encoding="ascii")) if feed_lags_path else []
    hooks["feed_events"] = len(feed)
    hooks["feed_lag_p50_s"] = percentile(feed, 50)
    hooks["feed_lag_p99_s"] = percentile(feed, 99)
    hooks["feed_lag_max_s"] = feed[-1] if feed else None
    run = json.load(open(run_json, encoding="utf-8"))
    run["webhooks"] = hooks
    write_json(run_json, run)
    fmt_s = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    progress(run_json, f"{hooks['delivered']:>10,} of {hooks['expected']:,} delivered  lag p50 "
                       f"{fmt_s(hooks['lag_p50_s'])} s p99 {fmt_s(hooks['lag_p99_s'])} s max "
                       f"{fmt_s(hooks['lag_max_s'])} s  drain {fmt_s(hooks['drain_s'])} s  feed lag p99 "
                       f"{fmt_s(hooks['feed_lag_p99_s'])} s max {fmt_s(hooks['feed_lag_max_s'])} s"
                       + (f"  (waited {drain_timeout} s: not drained)" if hooks["timed_out"] else ""))


def cmd_audit(out, *args):
    """key=value counts from bench/run, then the final /metrics of every instance."""
    check = {}
    proms = []
    for arg in args:
        if "=" in arg:
            key, _, value = arg.partition("=")
            check[key] = int(value)
        else:
            proms.append(arg)
    check["answered_by_service"] = sum(prom(p)["api_requests"] for p in proms)
    write_json(out, check)


def progress(out, text):
    """One line on stderr per run: phase, scenario, side, connections, figures."""
    phase, scenario, kind, conns, rep = os.path.basename(out)[:-5].split("__")
    side = "service" if kind == "service" else "pgbench"
    print(f"    {phase:<5} {scenario:<12} {side:<8} {conns:<5} {rep:<3} {text}", file=sys.stderr)


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------- report


def load_runs(workdir):
    runs = []
    for path in sorted(glob.glob(os.path.join(workdir, "runs", "*.json"))):
        phase, scenario, kind, conns, rep = os.path.basename(path)[:-5].split("__")
        run = json.load(open(path, encoding="utf-8"))
        run.update(phase=phase, scenario=scenario, kind=kind, connections=int(conns[1:]), rep=int(rep[1:]))
        runs.append(run)
    return runs


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs):
    """Medians over the repeats of each (phase, scenario, kind, connections)."""
    groups = {}
    for r in runs:
        groups.setdefault((r["phase"], r["scenario"], r["kind"], r["connections"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        s = {
            "repeats": len(rs),
            "rps": median(r["rps"] for r in rs),
            "rps_min": min(r["rps"] for r in rs),
            "rps_max": max(r["rps"] for r in rs),
            "p50_ms": median(r.get("p50_ms") for r in rs),
            "p90_ms": median(r.get("p90_ms") for r in rs),
            "p99_ms": median(r.get("p99_ms") for r in rs),
            "requests": sum(r["requests"] for r in rs),
        }
        if key[2] == "service":
            s["non_2xx_3xx"] = sum(r["non_2xx_3xx"] for r in rs)
            s["socket_errors"] = sum(r["socket_errors"] for r in rs)
            svc = [r["service"] for r in rs if "service" in r]
            hits = sum(x["cache_hit"] for x in svc)
            misses = sum(x["cache_miss"] for x in svc)
            flushes = sum(x["audit_flushes"] for x in svc)
            s["cache_miss_pct"] = round(100 * misses / (hits + misses), 2) if hits + misses else None
            s["audit_batch"] = round(sum(x["audit_records"] for x in svc) / flushes, 1) if flushes else None
            hooks = [r["webhooks"] for r in rs if "webhooks" in r]
            if hooks:
                drains = [h["drain_s"] for h in hooks]
                s["webhooks"] = {
                    "events": sum(h["events"] for h in hooks),
                    "expected": sum(h["expected"] for h in hooks),
                    "delivered": sum(h["delivered"] for h in hooks),
                    "duplicates": sum(h["duplicates"] for h in hooks),
                    "lag_p50_s": median(h["lag_p50_s"] for h in hooks),
                    "lag_p99_s": median(h["lag_p99_s"] for h in hooks),
                    "lag_max_s": max((h["lag_max_s"] for h in hooks if h["lag_max_s"] is not None), default=None),
                    "lag_p99_s_range": [min((h["lag_p99_s"] for h in hooks if h["lag_p99_s"] is not None), default=None),
                                        max((h["lag_p99_s"] for h in hooks if h["lag_p99_s"] is not None), default=None)],
                    "drain_s": median(drains) if None not in drains else None,
                    "drain_s_max": max(drains) if None not in drains else None,
                    "not_drained_runs": sum(1 for d in drains if d is None),
                    "drain_timeout_s": hooks[0]["drain_timeout_s"],
                    "delivery_rate": median(h["delivery_rate"] for h in hooks),
                    "drain_rate": median(h.get("drain_rate") for h in hooks),
                    "missing": sum(h.get("missing", 0) for h in hooks),
                    "projected_drain_s": median(h.get("projected_drain_s") for h in hooks),
                    "lag_all_p50_s_at_least": median(h.get("lag_all_p50_s_at_least") for h in hooks),
                    "lag_all_p99_s_at_least": median(h.get("lag_all_p99_s_at_least") for h in hooks),
                    "feed_events": sum(h.get("feed_events", 0) for h in hooks),
                    "feed_lag_p50_s": median(h.get("feed_lag_p50_s") for h in hooks),
                    "feed_lag_p99_s": median(h.get("feed_lag_p99_s") for h in hooks),
                    "feed_lag_max_s": max((h["feed_lag_max_s"] for h in hooks if h.get("feed_lag_max_s") is not None),
                                          default=None),
                }
        else:
            s["clients"] = rs[0].get("clients")
            s["failed"] = sum(r.get("failed", 0) for r in rs)
            s["aborted"] = any(r.get("aborted") or r.get("error") for r in rs)
        out[key] = s
    return out


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float) and v >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def scenario_rows(summary, phase):
    rows = {}
    for (ph, scenario, kind, conns), s in summary.items():
        if ph != phase:
            continue
        rows.setdefault((scenario, conns), {})[kind] = s
    floor = {conns: k["service"] for (scen, conns), k in rows.items() if scen == "floor" and "service" in k}
    table = []
    for (scenario, conns), kinds in rows.items():
        svc, lim = kinds.get("service"), kinds.get("limit")
        fl = floor.get(conns)
        table.append({
            "scenario": scenario,
            "connections": conns,
            "service": svc,
            "pg_limit": lim,
            "floor_rps": fl and fl["rps"],
            "ratio_to_floor": ratio(svc and svc["rps"], fl and fl["rps"]),
            "ratio_to_pg_limit": ratio(svc and svc["rps"], lim and lim["rps"]),
        })
    return table


ORDER = ["floor", "list_hot", "list_many", "list_cold", "order", "order_idem", "upsert", "discontinue", "mixed"]


def sort_key(row):
    name = row["scenario"]
    # beside the same scenario without the pooler, endpoints or cluster
    base = name.removesuffix("_pgbouncer").removesuffix("_webhooks").removesuffix("_patroni")
    return (ORDER.index(base) if base in ORDER else len(ORDER), name, row["connections"])


def audit_check(workdir, runs):
    path = os.path.join(workdir, "audit.json")
    if not os.path.exists(path):
        return None
    a = json.load(open(path, encoding="utf-8"))
    service_runs = [r for r in runs if r["kind"] == "service" and r["scenario"] != "floor"]
    a["wrk_requests"] = sum(r["requests"] for r in service_runs)
    a["wrk_plus_seeding"] = a["wrk_requests"] + a["seeding_requests"]
    # A request still in flight when wrk stops is answered (and audited) by
    # the service but not counted by wrk: at most one per open connection.
    a["in_flight_bound"] = sum(r["connections"] for r in service_runs)
    a["rows_minus_answered"] = a["audit_rows"] - a["answered_by_service"]
    a["rows_minus_wrk_plus_seeding"] = a["audit_rows"] - a["wrk_plus_seeding"]
    a["ok"] = 0 <= a["rows_minus_wrk_plus_seeding"] <= a["in_flight_bound"]
    return a


def load_average(workdir):
    """The machine's 1-minute load average sampled every 15 s during the runs."""
    path = os.path.join(workdir, "loadavg.txt")
    if not os.path.exists(path):
        return None
    values = [float(line.split()[1]) for line in open(path, encoding="utf-8") if len(line.split()) == 2]
    if not values:
        return None
    return {"samples": len(values), "mean": round(statistics.mean(values), 2), "max": max(values),
            "last": values[-1]}


def webhook_rows(table):
    rows = []
    for row in sorted(table, key=sort_key):
        s = row["service"] or {}
        if "webhooks" not in s:
            continue
        base = next((r for r in table if r["scenario"] == row["scenario"].removesuffix("_webhooks")
                     and r["connections"] == row["connections"]), None)
        rows.append((row, s, ratio(s.get("rps"), base and base["service"] and base["service"]["rps"])))
    return rows


def patroni_rows(table):
    rows = []
    for row in sorted(table, key=sort_key):
        if not row["scenario"].endswith("_patroni"):
            continue
        base = next((r for r in table if r["scenario"] == row["scenario"].removesuffix("_patroni")
                     and r["connections"] == row["connections"]), None)
        svc, lim = row["service"] or {}, row["pg_limit"] or {}
        bsvc, blim = (base or {}).get("service") or {}, (base or {}).get("pg_limit") or {}
        rows.append({"scenario": row["scenario"], "rps": svc.get("rps"), "direct_rps": bsvc.get("rps"),
                     "ratio": ratio(svc.get("rps"), bsvc.get("rps")),
                     "p99_ms": svc.get("p99_ms"), "direct_p99_ms": bsvc.get("p99_ms"),
                     "pg_tps": lim.get("rps"), "direct_pg_tps": blim.get("rps"),
                     "pg_ratio": ratio(lim.get("rps"), blim.get("rps"))})
    return rows


def markdown(ctx, table, sweep_table, audit, label, loadavg=None):
    lines = [f"# Benchmark results: {label}", ""]
    lines.append(
        f"{ctx.get('date', '')}, commit `{ctx.get('commit', '?')}`, {ctx.get('cpus', '?')} CPUs "
        f"({ctx.get('cpu_model', '?')}), {ctx.get('postgres', '')}, {ctx.get('wrk', '')}. "
        f"Load: wrk, {ctx.get('threads')} threads, {ctx.get('connections')} connections, "
        f"{ctx.get('duration')} s per run, {ctx.get('repeat')} repeats, medians shown. "
        f"Data: {ctx.get('managers')} managers × {ctx.get('products')} products seeded through the API"
        + (f", plus {ctx.get('scale_products'):,} products and {ctx.get('scale_audit_rows'):,} audit rows "
           "written with SQL (--scale)" if ctx.get("scale") else "")
        + ". The PostgreSQL limit is pgbench running the scenario's own SQL "
        f"(-M prepared, {ctx.get('pg_clients')} clients, -j 2), right after each service run. "
        f"Everything shares the same {ctx.get('cpus', '?')} cores: load generator, service, Redis and PostgreSQL."
        + (f" Service binary: `{ctx['service_binary']}`." if ctx.get("service_binary") else "")
        + (f" pgbench scripts: `{ctx['pgbench_scripts']}`." if ctx.get("pgbench_scripts") else "")
        + (f" Load average (1 min): {ctx.get('loadavg_before', '?').split()[0]} before the runs, "
           f"{loadavg['mean']} on average during them (max {loadavg['max']}, {loadavg['samples']} samples "
           f"15 s apart), {loadavg['last']} at the end." if loadavg else "")
    )
    lines += ["", "| scenario | req/s (min–max) | p50 ms | p90 ms | p99 ms | non-2xx / socket errors "
              "| vs floor | PG limit tx/s | vs PG | PG p99 ms | cache miss % | audit batch |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(table, key=sort_key):
        s, lim = row["service"] or {}, row["pg_limit"] or {}
        lines.append(
            f"| {row['scenario']} | {fmt(s.get('rps'))} ({fmt(s.get('rps_min'))}–{fmt(s.get('rps_max'))}) "
            f"| {fmt(s.get('p50_ms'))} | {fmt(s.get('p90_ms'))} | {fmt(s.get('p99_ms'))} "
            f"| {fmt(s.get('non_2xx_3xx'))} / {fmt(s.get('socket_errors'))} "
            f"| {fmt(row['ratio_to_floor'])} | {fmt(lim.get('rps'))}{' (aborted)' if lim.get('aborted') else ''} "
            f"| {fmt(row['ratio_to_pg_limit'])} | {fmt(lim.get('p99_ms'))} "
            f"| {fmt(s.get('cache_miss_pct'))} | {fmt(s.get('audit_batch'), 1)} |"
        )
    lines += ["", "vs floor: the service's req/s over the fixed-body axum server's (`floor`). "
              "vs PG: over pgbench's transactions/s for the same SQL. Errors are summed over the repeats."]
    hooks = webhook_rows(table)
    if hooks:
        lines += ["", "## Webhooks", "",
                  "Each `*_webhooks` run is its scenario for a second set of managers, each with two endpoints "
                  "(registered just before the run, deleted after it) on a receiver on loopback that answers 204. "
                  "Lag: the receiver's arrival time minus the event's `occurred_at` (written just before its "
                  "transaction commits), for every (event, endpoint) delivered. Drain: from the end of the load to "
                  "the last delivery of the run's events. Expected: the run's events × 2 endpoints. "
                  f"A run waits at most {hooks[0][1]['webhooks']['drain_timeout_s']} s for its deliveries; the "
                  "endpoints are then deleted, which drops what is still queued.",
                  "", "| scenario | req/s | vs without endpoints | events | delivered / expected | duplicates "
                  "| lag p50 s | lag p99 s (min–max of runs) | lag max s | drain s (max) | deliveries/s "
                  "(after the load) | feed lag p50 / p99 / max s (events read) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row, s, vs in hooks:
            h = s["webhooks"]
            drain = (f"{fmt(h['drain_s'])} ({fmt(h['drain_s_max'])})" if h["drain_s"] is not None
                     else f"not drained in {h['not_drained_runs']} of {s['repeats']} runs (projected "
                          f"{fmt(h['projected_drain_s'], 0)})")
            lo, hi = h["lag_p99_s_range"]
            lines.append(
                f"| {row['scenario']} | {fmt(s.get('rps'), 0)} | {fmt(vs)} | {h['events']:,} "
                f"| {h['delivered']:,} / {h['expected']:,} | {h['duplicates']:,} | {fmt(h['lag_p50_s'], 3)} "
                f"| {fmt(h['lag_p99_s'], 3)} ({fmt(lo, 3)}–{fmt(hi, 3)}) | {fmt(h['lag_max_s'], 3)} | {drain} "
                f"| {fmt(h['delivery_rate'], 0)} ({fmt(h['drain_rate'], 0)}) "
                f"| {fmt(h.get('feed_lag_p50_s'), 3)} / {fmt(h.get('feed_lag_p99_s'), 3)} / "
                f"{fmt(h.get('feed_lag_max_s'), 3)} ({h.get('feed_events', 0):,}) |")
        lines += ["", "Events, delivered and expected are summed over the repeats; lags and drain are medians "
                  "of the runs' figures, max the largest of any run. The lags are those of the deliveries that "
                  "arrived; deliveries/s from the run's first event to its last delivery, and (in brackets) once "
                  "the load had stopped. A run not drained: projected = the wait plus what was missing at the "
                  "rate after the load. Feed lag: during the load, one reader follows the feeds of four of the "
                  "managers at their end (`GET /api/events?after=`, in turn, as fast as answers come); for each "
                  "new event, the answer's time minus the event's `occurred_at` (its own polling included)."]
        missing = [(row["scenario"], s["webhooks"]) for row, s, _ in hooks if s["webhooks"]["missing"]]
        for scenario, h in missing:
            lines.append(f"- {scenario}: {h['missing']:,} deliveries missing at the end of the waits; counting "
                         f"each as arrived when its wait ended (a lower bound), every expected delivery's lag is "
                         f"at least p50 {fmt(h['lag_all_p50_s_at_least'], 1)} s, p99 "
                         f"{fmt(h['lag_all_p99_s_at_least'], 1)} s (medians of the runs).")
    pat = patroni_rows(table)
    if pat:
        lines += ["", "## Synchronous replication (Patroni)", "",
                  "`*_patroni`: the scenario on an instance whose database is a Patroni cluster started by the run "
                  f"({ctx.get('cluster', 'deploy/cluster')}): three PostgreSQL 15 nodes on this machine, "
                  "`synchronous_mode: true` and strict, one synchronous standby, reached through HAProxy's leader "
                  "port; the plain scenario's instance uses the single PostgreSQL on port 5432. Both on the same "
                  "disk and cores (the standbys replay the WAL on the same two cores). The PG limit of a "
                  "`*_patroni` row is pgbench through HAProxy to the leader.", "",
                  "| scenario | req/s | straight to one PostgreSQL | ratio | p99 ms (straight) "
                  "| pgbench tx/s | straight | pgbench ratio |", "|---|---|---|---|---|---|---|---|"]
        for r in pat:
            lines.append(f"| {r['scenario']} | {fmt(r['rps'], 0)} | {fmt(r['direct_rps'], 0)} | {fmt(r['ratio'])} "
                         f"| {fmt(r['p99_ms'])} ({fmt(r['direct_p99_ms'])}) | {fmt(r['pg_tps'], 0)} "
                         f"| {fmt(r['direct_pg_tps'], 0)} | {fmt(r['pg_ratio'])} |")
    if sweep_table:
        lines += ["", "## Sweep over connections", "", f"![throughput and p99 against connections]({label}-sweep.svg)",
                  "", "| scenario | connections | req/s | p99 ms | non-2xx / socket | vs floor "
                  "| PG limit tx/s (clients) | vs PG |", "|---|---|---|---|---|---|---|---|"]
        for row in sorted(sweep_table, key=sort_key):
            s, lim = row["service"] or {}, row["pg_limit"] or {}
            lines.append(
                f"| {row['scenario']} | {row['connections']} | {fmt(s.get('rps'))} | {fmt(s.get('p99_ms'))} "
                f"| {fmt(s.get('non_2xx_3xx'))} / {fmt(s.get('socket_errors'))} | {fmt(row['ratio_to_floor'])} "
                f"| {fmt(lim.get('rps'))} ({fmt(lim.get('clients'))}) | {fmt(row['ratio_to_pg_limit'])} |")
    if audit:
        lines += ["", "## Audit check", "",
                  f"- audit rows written by the service: {audit['audit_rows']:,} "
                  f"(pgbench's {audit['pgbench_rows']:,} and --scale's {audit['scale_rows']:,} not counted)",
                  f"- requests wrk counted {audit['wrk_requests']:,} + seeding {audit['seeding_requests']:,} "
                  f"= {audit['wrk_plus_seeding']:,} → rows {audit['rows_minus_wrk_plus_seeding']:+,}: the requests "
                  f"still in flight when each wrk run stopped, answered and audited but not counted by wrk "
                  f"(0 to one per connection per run, at most {audit['in_flight_bound']:,})",
                  f"- **{'pass' if audit['ok'] else 'FAIL'}**: no request without its audit row, no row "
                  "without a request",
                  f"- for information, the service's own counter `http_requests_total` (`/api/` routes) says "
                  f"{audit['answered_by_service']:,} (rows {audit['rows_minus_answered']:+,}): it counts "
                  "responses the service finished, so requests whose client left mid-request are missing "
                  "from it; writes among them were committed, with their audit row"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ plot


def log_ticks(lo, hi):
    ticks, e = [], math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo / 1.0001 <= v <= hi * 1.0001:
                ticks.append(v)
        e += 1
    return ticks


def svg_plot(series, path, title):
    """Two log-log panels (req/s and p99 against connections), one line per series."""
    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
    w, h, ml, mr, mt, mb, gap = 920, 400, 70, 20, 40, 95, 80
    pw = (w - ml - mr - gap) / 2
    ph = h - mt - mb
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="15">{title}</text>']
    conns = sorted({c for s in series for c, _, _ in s["points"]})
    if not conns:
        return
    xlo, xhi = min(conns), max(conns)

    def xpos(x0, c):
        return x0 + (pw * (math.log(c / xlo) / math.log(xhi / xlo)) if xhi > xlo else pw / 2)

    for panel, (field, label) in enumerate([(1, "requests/s"), (2, "p99 latency, ms")]):
        x0 = ml + panel * (pw + gap)
        values = [p[field] for s in series for p in s["points"] if p[field]]
        if not values:
            continue
        lo, hi = min(values), max(values)
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))

        def ypos(v):
            return mt + ph - ph * math.log(v / lo) / math.log(hi / lo)

        out.append(f'<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        for t in log_ticks(lo, hi):
            y = ypos(t)
            out.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
        for c in conns:
            x = xpos(x0, c)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" stroke="#eee"/>')
            out.append(f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle">{c}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{mt + ph + 34}" text-anchor="middle">connections (clients)</text>')
        out.append(f'<text x="{x0 - 52}" y="{mt + ph / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {x0 - 52} {mt + ph / 2})">{label}</text>')
        for s in series:
            pts = [(xpos(x0, p[0]), ypos(p[field])) for p in s["points"] if p[field]]
            colour = colours[s["colour"] % len(colours)]
            dash = ' stroke-dasharray="5,4"' if s.get("dashed") else ""
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in pts]
    for i, s in enumerate(series):
        x, y = ml + (i % 4) * 210, h - 32 + (i // 4) * 16
        colour = colours[s["colour"] % len(colours)]
        dash = ' stroke-dasharray="5,4"' if s.get("dashed") else ""
        out.append(f'<line x1="{x}" x2="{x + 24}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x + 30}" y="{y}">{s["name"]}</text>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def sweep_series(sweep_table):
    by = {}
    for row in sweep_table:
        for kind, key, suffix, dashed in (("service", "service", "", False), ("limit", "pg_limit", " PG limit", True)):
            s = row[key]
            if s:
                name = row["scenario"] + ("" if row["scenario"] == "floor" else suffix)
                by.setdefault(name, {"name": name, "dashed": dashed, "points": []})["points"].append(
                    (row["connections"], s["rps"], s["p99_ms"]))
    series = sorted(by.values(), key=lambda s: (s["name"] != "floor", s["name"]))
    scenarios = []
    for s in series:
        s["points"].sort()
        scenario = s["name"].split()[0]  # a scenario and its PG limit share a colour
        scenarios += [] if scenario in scenarios else [scenario]
        s["colour"] = scenarios.index(scenario)
    return series


def cmd_report(workdir, outdir, label):
    ctx = json.load(open(os.path.join(workdir, "context.json"), encoding="utf-8"))
    runs = load_runs(workdir)
    summary = summarise(runs)
    table = scenario_rows(summary, "main")
    sweep_table = scenario_rows(summary, "sweep")
    audit = audit_check(workdir, runs)
    os.makedirs(outdir, exist_ok=True)
    if sweep_table:
        svg_plot(sweep_series(sweep_table), os.path.join(outdir, f"{label}-sweep.svg"),
                 f"Service vs. its limits on {ctx.get('cpus', '?')} shared cores (medians of {ctx.get('repeat')})")
    loadavg = load_average(workdir)
    md = markdown(ctx, table, sweep_table, audit, label, loadavg)
    with open(os.path.join(outdir, f"{label}.md"), "w", encoding="utf-8") as f:
        f.write(md)
    write_json(os.path.join(outdir, f"{label}.json"), {
        "context": ctx,
        "load_average": loadavg,
        "patroni": patroni_rows(table),
        "scenarios": sorted(table, key=sort_key),
        "sweep": sorted(sweep_table, key=sort_key),
        "audit_check": audit,
        "runs": runs,
    })
    sys.stdout.write(md)
    if audit and not audit["ok"]:
        sys.exit(3)


def cmd_ab(runsdir, outdir, label, binary_a, binary_b):
    """Medians over the rounds of each side (each round's own median over its
    repeats), and B/A for the service, for the pgbench limit (the same SQL on
    both sides: how far the machine moved) and for the service's share of it."""
    sides = {}
    for side in ("a", "b"):
        for path in sorted(glob.glob(os.path.join(runsdir, f"{side}-*.json"))):
            result = json.load(open(path, encoding="utf-8"))
            sides.setdefault(side, []).append(result)
    rounds = min(len(sides.get("a", [])), len(sides.get("b", [])))
    scenarios = [r["scenario"] for r in sides["a"][0]["scenarios"] if r["scenario"] != "floor"]

    def figures(result, scenario):
        row = next((r for r in result["scenarios"] if r["scenario"] == scenario), None)
        svc, lim = (row or {}).get("service") or {}, (row or {}).get("pg_limit") or {}
        return svc.get("rps"), lim.get("rps"), svc.get("p99_ms")

    table = []
    for scenario in scenarios:
        per = {side: [figures(r, scenario) for r in sides[side][:rounds]] for side in ("a", "b")}
        row = {"scenario": scenario, "rounds": rounds}
        for side in ("a", "b"):
            rps = [f[0] for f in per[side]]
            row[side] = {"rps": median(rps), "rps_runs": rps, "pg_tps": median(f[1] for f in per[side]),
                         "pg_tps_runs": [f[1] for f in per[side]], "p99_ms": median(f[2] for f in per[side]),
                         "vs_pg": median(ratio(f[0], f[1]) for f in per[side])}
        row["b_over_a"] = ratio(row["b"]["rps"], row["a"]["rps"])
        # Each round's B against the A run just before it.
        row["b_over_a_rounds"] = [ratio(b[0], a[0]) for a, b in zip(per["a"], per["b"])]
        row["pg_b_over_a"] = ratio(row["b"]["pg_tps"], row["a"]["pg_tps"])
        row["vs_pg_b_over_a"] = ratio(row["b"]["vs_pg"], row["a"]["vs_pg"])
        table.append(row)
    ctx = sides["a"][0]["context"]
    loads = [r.get("load_average") for side in ("a", "b") for r in sides[side][:rounds] if r.get("load_average")]
    lines = [f"# A/B: {label}", "",
             f"{ctx.get('date', '')}, {ctx.get('cpus', '?')} CPUs ({ctx.get('cpu_model', '?')}), "
             f"{ctx.get('postgres', '')}. `bench/ab`: `bench/run` with binary A, then with binary B, alternating, "
             f"{rounds} rounds; each run a fresh database seeded the same way ({ctx.get('managers')} managers × "
             f"{ctx.get('products')} products), {ctx.get('connections')} connections, {ctx.get('duration')} s per "
             f"run, {ctx.get('repeat')} repeat(s) per round. Medians over the rounds.", "",
             f"- A: `{binary_a}`", f"- B: `{binary_b}`"]
    if loads:
        lines.append(f"- load average (1 min) during the runs: mean of the runs' means "
                     f"{statistics.mean(x['mean'] for x in loads):.2f}, highest sample {max(x['max'] for x in loads)}")
    lines += ["", "| scenario | A req/s | B req/s | B/A | B/A per round | A p99 ms | B p99 ms "
              "| pgbench tx/s A | B | B/A | vs PG A | B | B/A |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        a, b = r["a"], r["b"]
        lines.append(
            f"| {r['scenario']} | {fmt(a['rps'])} | {fmt(b['rps'])} | **{fmt(r['b_over_a'])}** "
            f"| {', '.join(fmt(x) for x in r['b_over_a_rounds'])} | {fmt(a['p99_ms'])} | {fmt(b['p99_ms'])} "
            f"| {fmt(a['pg_tps'])} | {fmt(b['pg_tps'])} | {fmt(r['pg_b_over_a'])} "
            f"| {fmt(a['vs_pg'])} | {fmt(b['vs_pg'])} | {fmt(r['vs_pg_b_over_a'])} |")
    lines += ["", "Per round: req/s A " + "; ".join(
        f"{r['scenario']} {', '.join(fmt(x) for x in r['a']['rps_runs'])} / B "
        f"{', '.join(fmt(x) for x in r['b']['rps_runs'])}" for r in table) + "."]
    md = "\n".join(lines) + "\n"
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, f"{label}.md"), "w", encoding="utf-8") as f:
        f.write(md)
    write_json(os.path.join(outdir, f"{label}.json"), {
        "a": binary_a, "b": binary_b, "rounds": rounds, "scenarios": table,
        "runs": {side: [{"context": r["context"], "load_average": r.get("load_average"),
                         "scenarios": r["scenarios"]} for r in sides[side]] for side in ("a", "b")}})
    sys.stdout.write(md)


COMMANDS = {
    "context": cmd_context,
    "wrk": cmd_wrk,
    "limit-params": cmd_limit_params,
    "pgbench": cmd_pgbench,
    "audit": cmd_audit,
    "webhooks": cmd_webhooks,
    "report": cmd_report,
    "ab": cmd_ab,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
