#!/usr/bin/env python3
"""The garbage-collection benchmark behind hack/bench/gc (read its header for what runs and the knobs).

Two servers, each on a fresh PostgreSQL database migrated with `cutover migrate` and seeded with psql:
  baseline  the GC agents with nothing to collect, plus the API agent (two Ready deployments, one of
            them production); the API load runs for BENCH_BASELINE_DURATION.
  gc        the same plus BENCH_GC_AGENTS × BENCH_GC_PER_AGENT deployments whose expires_at has passed;
            the API load starts as soon as /healthz answers (GC starts on the first retention pass at
            start-up) and runs until a psql poll (every 200 ms) finds no expired row left, then
            BENCH_AFTER_DURATION more on the same server.
The API load: GET /agents/{id}/deployments?limit=50 and POST .../promote (alternating between the two
Ready deployments), each at BENCH_RATE requests/s, open loop (latency counted from each request's due
time). Target: p99 during GC < 2× p99 without GC, for each of the two.
"""

import asyncio
import collections
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

B.PREFIX = "gc"
log = B.log

BIN = os.environ["CUTOVER_BIN"]
TMP = os.environ["BENCH_TMP"]
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "")
GC_AGENTS = B.env_int("BENCH_GC_AGENTS", 10)
PER_AGENT = B.env_int("BENCH_GC_PER_AGENT", 10_000)
RATE = B.env_float("BENCH_RATE", 50)
BASELINE_S = B.env_float("BENCH_BASELINE_DURATION", 15)
AFTER_S = B.env_float("BENCH_AFTER_DURATION", 10)
GC_TIMEOUT = B.env_float("BENCH_GC_TIMEOUT", 600)
GC_INTERVAL = os.environ.get("BENCH_GC_INTERVAL", "2s")
POLL_S = B.env_float("BENCH_GC_POLL", 0.2)
SERVE_ARGS = shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))
TAG = os.urandom(4).hex()
TOTAL = GC_AGENTS * PER_AGENT
P99_FACTOR = 2.0

API_AGENT = "api-agent"
LIST_PATH = f"/agents/{API_AGENT}/deployments?limit=50"
PROMOTE_TARGETS = ("api-b", "api-a")  # api-a starts as production
EXPIRED_SQL = "SELECT count(*) FROM deployments WHERE expires_at IS NOT NULL"

results = B.Results()


def seed(url, expired):
    """The agents and deployments, inserted directly (timestamps in microseconds)."""
    now = B.now_us()
    day = 86_400 * 1_000_000
    deployments = ""
    if expired:
        # Created a week ago, expired (soft-deleted) an hour ago, one microsecond apart.
        deployments = f"""
INSERT INTO deployments (id, agent_id, docker_image, status, acp_url, is_production, created_at, registered_at,
                         ready_at, expires_at)
SELECT 'gc-' || a || '-' || d, 'gc-agent-' || a, 'img:' || d, 'Ready', 'http://127.0.0.1:9/', 0,
       {now - 7 * day} + d, {now - 7 * day} + d, {now - 7 * day} + d, {now - 3_600_000_000} + d
FROM generate_series(0, {GC_AGENTS - 1}) a, generate_series(0, {PER_AGENT - 1}) d;
"""
    B.psql(url, f"""
BEGIN;
INSERT INTO agents (id, name, description, status, acp_type, created_at, updated_at, api_key, api_key_lookup,
                    production_deployment_id)
VALUES ('{API_AGENT}', '{API_AGENT}', 'gc benchmark: API load', 'Ready', 'async', {now}, {now},
        'api-agent-key-{TAG}', 'api-agent-lookup-{TAG}', 'api-a');
INSERT INTO deployments (id, agent_id, docker_image, status, acp_url, is_production, created_at, registered_at,
                         ready_at, promoted_at)
VALUES ('api-a', '{API_AGENT}', 'img:a', 'Ready', 'http://127.0.0.1:9/', 1, {now - 2000}, {now - 2000},
        {now - 1500}, {now - 1500}),
       ('api-b', '{API_AGENT}', 'img:b', 'Ready', 'http://127.0.0.1:9/', 0, {now - 1000}, {now - 1000},
        {now - 500}, NULL);
INSERT INTO agents (id, name, description, status, acp_type, created_at, updated_at, api_key, api_key_lookup)
SELECT 'gc-agent-' || a, 'gc-agent-' || a, 'gc benchmark', 'Ready', 'async', {now}, {now},
       'gc-agent-key-' || a || '-{TAG}', 'gc-agent-lookup-' || a || '-{TAG}'
FROM generate_series(0, {GC_AGENTS - 1}) a;
{deployments}
COMMIT;
ANALYZE;
""")
    return int(B.psql(url, EXPIRED_SQL))


async def count_expired(url):
    p = await asyncio.create_subprocess_exec(
        B.psql_bin(), "-X", "-q", "-A", "-t", "-d", url, "-c", EXPIRED_SQL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(p.communicate(), 10)
    except asyncio.TimeoutError:
        p.kill()
        await p.wait()
        return None
    return int(out) if p.returncode == 0 and out.strip().isdigit() else None


def cpu_now(server):
    return (B.now_us(), server.cpu(), B.pg_cpu_seconds())


async def load(server, url, expired):
    """Runs the API load; returns the samples and the phase boundaries (client wall clock, µs)."""
    lists, promotes = [], []
    state = {"stop": False}
    marks = {"load_start": cpu_now(server)}
    samples_at = {}

    def make_list(k):
        return "GET", LIST_PATH, None

    def make_promote(k):
        return "POST", f"/agents/{API_AGENT}/deployments/{PROMOTE_TARGETS[k % 2]}/promote", b""

    async def monitor():
        try:
            if expired:
                give_up = time.monotonic() + GC_TIMEOUT
                last = None
                while time.monotonic() < give_up:
                    n = await count_expired(url)
                    if n is not None:
                        if n != last:
                            samples_at[B.now_us()] = n
                            last = n
                        if n == 0:
                            break
                    await asyncio.sleep(POLL_S)
                marks["gc_seen_done"] = cpu_now(server)
                if last != 0:
                    marks["gc_timed_out"] = True
                    return
                log(f"  no expired row left {(marks['gc_seen_done'][0] - server.started_us) / 1e6:.2f} s after "
                    f"the server started; {AFTER_S:.0f} s more load")
                await asyncio.sleep(AFTER_S)
            else:
                await asyncio.sleep(BASELINE_S)
        finally:
            marks["load_end"] = cpu_now(server)
            state["stop"] = True

    stop = lambda: state["stop"]  # noqa: E731
    await asyncio.gather(
        monitor(),
        B.fixed_rate(server.base, "list", RATE, make_list, stop, lists),
        B.fixed_rate(server.base, "promote", RATE, make_promote, stop, promotes))
    return lists, promotes, marks, samples_at


def window_stats(samples, start_us, end_us):
    inside = [(lat, status) for due, lat, status in samples if start_us <= due < end_us]
    ok = [lat / 1000 for lat, status in inside if status == 200]
    bad = collections.Counter(str(status) for _, status in inside if status != 200)
    return {"requests": len(inside), "latency_ms": B.summary(ok), "errors": dict(bad)}


def cpu_share(a, b):
    """CPU used between two cpu_now() marks, as a share of one core (cutover, postgres)."""
    secs = (b[0] - a[0]) / 1e6
    if secs <= 0 or a[1] is None or b[1] is None:
        return None
    pg = None if a[2] is None or b[2] is None else (b[2] - a[2]) / secs
    return {"window_s": secs, "cutover": (b[1] - a[1]) / secs, "postgres": pg}


def run_phase(name, expired):
    db = B.new_pg_database(PG_ADMIN, f"gc_{name}_{TAG}")
    r = subprocess.run([BIN, "migrate", "--database-url", db], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"cutover migrate failed: {r.stdout}{r.stderr}")
    t = time.monotonic()
    n = seed(db, expired)
    log(f"{name}: seeded {n:,} expired deployments ({GC_AGENTS} agents) and the API agent in "
        f"{time.monotonic() - t:.1f} s; serve --gc-interval {GC_INTERVAL}")
    server = B.Server(BIN, db, os.path.join(TMP, f"gc_{name}.log"), ["--gc-interval", GC_INTERVAL], SERVE_ARGS)
    row = {"phase": name, "seeded_expired": n, "rate_per_endpoint": RATE, "loadavg_start": B.load_average()}
    try:
        server.start()
        row["healthy_after_start_s"] = (server.healthy_us - server.started_us) / 1e6
        m0 = server.metrics()
        lists, promotes, marks, counts = asyncio.run(load(server, db, expired))
        row["metrics"] = B.metrics_delta(m0, server.metrics())
        row["alive"] = server.alive()
    finally:
        row["loadavg_end"] = B.load_average()
        server.stop()
        lines = server.log_lines()
        row["server_log"] = {"count": len(lines), "sample": B.log_sample(lines)}
    start = marks["load_start"][0]
    end = marks["load_end"][0]
    if expired:
        gc = B.psql(db, "SELECT count(*) || ' ' || coalesce(min(created_at), 0) || ' ' || coalesce(max(created_at), 0) "
                        "FROM events WHERE type = 'GarbageCollected'").split()
        collected, first_ev, last_ev = (int(x) for x in gc)
        row["left"] = int(B.psql(db, EXPIRED_SQL))
        row["collected_events"] = collected
        row["gc_timed_out"] = bool(marks.get("gc_timed_out"))
        seen = marks.get("gc_seen_done", marks["load_end"])[0]
        # The GC's end: its last GarbageCollected event (written with the last batch), else the poll.
        gc_end = last_ev if collected and not row["gc_timed_out"] else seen
        row["gc"] = {
            "server_start_to_seen_done_s": (seen - server.started_us) / 1e6,
            "server_start_to_last_event_s": (last_ev - server.started_us) / 1e6 if collected else None,
            "first_to_last_event_s": (last_ev - first_ev) / 1e6 if collected else None,
            "count_samples": {str((k - server.started_us) / 1e6): v for k, v in sorted(counts.items())},
        }
        removed = n - row["left"]
        g = row["gc"]
        g["rows_per_s_from_start"] = removed / g["server_start_to_seen_done_s"] if g["server_start_to_seen_done_s"] else None
        if collected and g["server_start_to_last_event_s"]:
            g["rows_per_s_from_start_events"] = removed / g["server_start_to_last_event_s"]
        if collected and g["first_to_last_event_s"]:
            g["rows_per_s_gc_span"] = collected / g["first_to_last_event_s"]
        row["windows"] = {
            "during": {"list": window_stats(lists, start, gc_end), "promote": window_stats(promotes, start, gc_end),
                       "span_s": (gc_end - start) / 1e6,
                       "cpu": cpu_share(marks["load_start"], marks.get("gc_seen_done", marks["load_end"]))},
            "after": {"list": window_stats(lists, seen, end), "promote": window_stats(promotes, seen, end),
                      "span_s": (end - seen) / 1e6,
                      "cpu": cpu_share(marks.get("gc_seen_done", marks["load_end"]), marks["load_end"])},
        }
        log(f"  GC: {removed:,} rows gone {g['server_start_to_seen_done_s']:.2f} s after start "
            f"({g['rows_per_s_from_start'] or 0:,.0f} rows/s)")
    else:
        row["windows"] = {"none": {"list": window_stats(lists, start, end), "promote": window_stats(promotes, start, end),
                                   "span_s": (end - start) / 1e6, "cpu": cpu_share(marks["load_start"], marks["load_end"])}}
    for w, v in row["windows"].items():
        log(f"  {w}: list p99 {v['list']['latency_ms'].get('p99', float('nan')):.1f} ms "
            f"(n={v['list']['requests']}), promote p99 {v['promote']['latency_ms'].get('p99', float('nan')):.1f} ms "
            f"(n={v['promote']['requests']})")
    results.add(row)
    return row


def report(rows):
    by = {r["phase"]: r for r in rows}
    cols = []  # (label, window dict)
    if "baseline" in by:
        cols.append(("no GC", by["baseline"]["windows"]["none"]))
    if "gc" in by:
        cols.append(("during GC", by["gc"]["windows"]["during"]))
        if by["gc"]["windows"]["after"]["list"]["requests"]:
            cols.append(("after GC (same server)", by["gc"]["windows"]["after"]))
    base = by.get("baseline", {}).get("windows", {}).get("none")
    during = by.get("gc", {}).get("windows", {}).get("during")
    table = []

    def lat(endpoint, p):
        def f(w):
            v = w[endpoint]["latency_ms"].get(p)
            return "—" if v is None else f"{v:.2f}"
        return f

    def ratio(endpoint, p, check=False):
        if not base or not during:
            return "", ""
        a, b = during[endpoint]["latency_ms"].get(p), base[endpoint]["latency_ms"].get(p)
        if a is None or not b:
            return "—", ""
        text = f"{a / b:.2f}×"
        if check:
            text += " ok" if a < P99_FACTOR * b else " MISS"
        return text, ""

    def row(label, f, r=("", ""), target=""):
        table.append([label] + [f(w) for _, w in cols] + [r[0], target])

    for endpoint, title in (("list", "GET …/deployments?limit=50"), ("promote", "POST …/promote (alternating)")):
        row(f"{title} p50 (ms)", lat(endpoint, "p50"), ratio(endpoint, "p50"))
        row(f"{title} p99 (ms)", lat(endpoint, "p99"), ratio(endpoint, "p99", check=True),
            f"p99 during GC < {P99_FACTOR:g}× no GC")
        row(f"{title} max (ms)", lat(endpoint, "max"), ratio(endpoint, "max"))
        row(f"{title} requests / errors",
            lambda w, e=endpoint: f"{w[e]['requests']} / {sum(w[e]['errors'].values())}")
    row("window (s)", lambda w: f"{w['span_s']:.1f}")
    row("CPU, cores: cutover / postgres",
        lambda w: "—" if not w.get("cpu") else f"{w['cpu']['cutover']:.2f} / "
        + ("—" if w["cpu"]["postgres"] is None else f"{w['cpu']['postgres']:.2f}"))
    gc = by.get("gc", {}).get("gc")
    if gc:
        def only_during(text):
            return lambda w: text if w is during else ""
        removed = by["gc"]["seeded_expired"] - by["gc"]["left"]
        row("expired rows collected", only_during(f"{removed:,} of {by['gc']['seeded_expired']:,}"))
        row("server start → no expired row (s, psql poll)", only_during(f"{gc['server_start_to_seen_done_s']:.2f}"))
        if gc.get("first_to_last_event_s") is not None:
            row("first → last GarbageCollected event (s)", only_during(f"{gc['first_to_last_event_s']:.2f}"))
        row("rows collected/s (from server start)", only_during(f"{gc['rows_per_s_from_start'] or 0:,.0f}"),
            target="(no target)")
        if gc.get("rows_per_s_gc_span"):
            row("rows collected/s (first → last event)", only_during(f"{gc['rows_per_s_gc_span']:,.0f}"),
                target="(no target)")

    notes = []
    for r in rows:
        name = r["phase"]
        for w, v in r.get("windows", {}).items():
            for e in ("list", "promote"):
                if v[e]["errors"]:
                    notes.append(f"{name} {w} {e}: errors {v[e]['errors']}")
        if r.get("gc_timed_out"):
            notes.append(f"{name}: expired rows still left after BENCH_GC_TIMEOUT ({GC_TIMEOUT:.0f} s): {r['left']:,}")
        if r.get("gc"):
            notes.append(f"{name}: expired rows left by time after server start (s → rows): "
                         + ", ".join(f"{float(k):.1f}→{v:,}" for k, v in list(r["gc"]["count_samples"].items())[:12])
                         + (" …" if len(r["gc"]["count_samples"]) > 12 else ""))
        d = (r.get("metrics") or {}).get("derived", {})
        delta = (r.get("metrics") or {}).get("delta", {})
        rt = d.get('controller_runtime_reconcile_time_seconds_mean_ms{controller="retention"}')
        cnt = delta.get('controller_runtime_reconcile_time_seconds_count{controller="retention"}')
        if rt is not None:
            notes.append(f"{name}: retention reconciles {int(cnt)} (mean {rt:.1f} ms); cutover_gc_deleted_total "
                         f"+{int(delta.get('cutover_gc_deleted_total', 0)):,}")
        if r.get("server_log", {}).get("count"):
            notes.append(f"{name}: {r['server_log']['count']} server log line(s) (warning or above):")
            notes.extend("    " + line[:300] for line in r["server_log"]["sample"])
        if r.get("alive") is False:
            notes.append(f"{name}: the server had died by the end of the run")
        notes.append(f"{name}: load average (1, 5, 15 min) {r['loadavg_start']} at the start, "
                     f"{r.get('loadavg_end', '?')} at the end")
    B.print_table(
        f"Cutover GC benchmark on PostgreSQL ({os.cpu_count()} CPUs, one host): {TOTAL:,} expired deployments "
        f"({GC_AGENTS} agents × {PER_AGENT:,}), serve --gc-interval {GC_INTERVAL}; API load {RATE:g} req/s per "
        "endpoint, open loop, latency from each request's due time",
        ["measure"] + [c for c, _ in cols] + ["during/no GC", "target"], table, notes)


def main():
    B.install_sigterm()
    if not PG_ADMIN:
        raise SystemExit("gc: BENCH_PG_ADMIN_URL is required")
    log(f"binary {BIN}; {os.cpu_count()} CPUs")
    rows = []
    for name, expired in (("baseline", False), ("gc", True)):
        try:
            rows.append(run_phase(name, expired))
        except Exception as e:
            log(f"{name} failed: {type(e).__name__}: {e}")
            raise
    report(rows)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
