#!/usr/bin/env python3
"""Figures for bench/run: turns wrk, pgbench and /metrics output into one JSON
file per run, and the runs into the report (Markdown, JSON, SVG plot).

Standard library only. Subcommands (bench/run calls them):

  context OUT key=value ...            the run's settings as JSON
  wrk OUT WRK_JSON [BEFORE AFTER]      a load run, with the service's metric deltas
  limit-params RUN_JSON                "MISS_PPM AUDIT_BATCH" measured in a service run
  pgbench OUT STDOUT LOG_PREFIX CLIENTS  a pgbench run (its per-transaction logs are deleted)
  audit OUT key=value ... PROM...      the audit-count check
  report WORKDIR OUTDIR LABEL          latest.md, latest.json, the sweep plot
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
    base = name.removesuffix("_pgbouncer")  # beside the same scenario without the pooler
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


def markdown(ctx, table, sweep_table, audit, label):
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
    md = markdown(ctx, table, sweep_table, audit, label)
    with open(os.path.join(outdir, f"{label}.md"), "w", encoding="utf-8") as f:
        f.write(md)
    write_json(os.path.join(outdir, f"{label}.json"), {
        "context": ctx,
        "scenarios": sorted(table, key=sort_key),
        "sweep": sorted(sweep_table, key=sort_key),
        "audit_check": audit,
        "runs": runs,
    })
    sys.stdout.write(md)
    if audit and not audit["ok"]:
        sys.exit(3)


COMMANDS = {
    "context": cmd_context,
    "wrk": cmd_wrk,
    "limit-params": cmd_limit_params,
    "pgbench": cmd_pgbench,
    "audit": cmd_audit,
    "report": cmd_report,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
