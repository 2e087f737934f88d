#!/usr/bin/env python3
"""The reconcile benchmark behind hack/bench/reconcile (read its header for what runs and the knobs).

Per backend and per worker count, one server on a fresh database:
  (d) RSS idle after start;
  (a) BENCH_REGISTRATIONS deployment-scoped registrations from BENCH_CONCURRENCY connections against
      BENCH_PODS healthy stand-in pods; time from the first registration until all are Ready (the
      server's `ready_at` stamps), registrations/s and Ready/s;
  (d) RSS with those deployments present;
  (c) BENCH_SEQUENTIAL registrations one at a time, each until its deployment reads Ready;
and per backend, one more server with --progress-deadline BENCH_PROGRESS_DEADLINE:
  (b) BENCH_DEADLINE_DEPLOYMENTS deployments created in one burst and never registered; how late each
      turns Failed (its Failed event's created_at) after created_at + the deadline.
"""

import asyncio
import collections
import json
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

B.PREFIX = "reconcile"
log = B.log

BIN = os.environ["CUTOVER_BIN"]
TMP = os.environ["BENCH_TMP"]
BACKENDS = os.environ.get("BENCH_BACKENDS", "sqlite postgres").split()
WORKERS = [int(w) for w in os.environ.get("BENCH_WORKERS", "16 4").split()]
PARTS = os.environ.get("BENCH_PARTS", "storm deadlines sequential").split()
N = B.env_int("BENCH_REGISTRATIONS", 10_000)
AGENTS = B.env_int("BENCH_AGENTS", 100)
CONC = B.env_int("BENCH_CONCURRENCY", 64)
PODS = B.env_int("BENCH_PODS", 4)
READY_TIMEOUT = B.env_float("BENCH_READY_TIMEOUT", 300)
IDLE_WAIT = B.env_float("BENCH_IDLE_WAIT", 2)
DEADLINE_N = B.env_int("BENCH_DEADLINE_DEPLOYMENTS", 1000)
DEADLINE_AGENTS = B.env_int("BENCH_DEADLINE_AGENTS", 10)
DEADLINE_S = B.env_int("BENCH_PROGRESS_DEADLINE", 20)
SEQ_N = B.env_int("BENCH_SEQUENTIAL", 200)
SEQ_POLL = B.env_float("BENCH_SEQUENTIAL_POLL", 0.002)
SEQ_TIMEOUT = B.env_float("BENCH_SEQUENTIAL_TIMEOUT", 120)
SERVE_ARGS = shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "")
TAG = os.urandom(4).hex()

# Targets.
READY_PER_S = 1000          # (a) on PostgreSQL
LATENESS_P99_MS = 1000      # (b)
SEQ_P99_MS = 50             # (c)
RSS_IDLE_MB = 40            # (d)
RSS_LOADED_MB = 150         # (d)

results = B.Results()
SUCCESS = 'controller_runtime_reconcile_total{controller="deployment",result="success"}'


def database(backend, name):
    name = f"{name}_{TAG}"
    if backend == "sqlite":
        d = os.path.join(TMP, name)
        os.makedirs(d, exist_ok=True)
        return f"sqlite://{d}/cutover.sqlite"
    return B.new_pg_database(PG_ADMIN, name)


def backend_cpu(backend):
    return B.pg_cpu_seconds() if backend == "postgres" else 0.0


# --- (a) the registration storm ------------------------------------------------------------------

async def storm(server, backend, pods):
    base = server.base
    bodies, agent_of = [], []
    for i in range(N):
        a = i % AGENTS
        agent_of.append(f"bench-{a}")
        bodies.append(json.dumps({
            "name": f"bench-{a}", "acp_url": pods[i % len(pods)], "acp_type": "async",
            "registration_metadata": {"deployment_id": f"d-{i}", "docker_image": "img"},
        }).encode())
    agent_ids = {}
    expected = collections.Counter()
    statuses = collections.Counter()
    samples = {}
    lat_us = []
    nxt = 0

    async def worker():
        nonlocal nxt
        conn = B.HTTPConn(base)
        while nxt < N:
            i = nxt
            nxt += 1
            t = time.perf_counter()
            try:
                status, data = await conn.request("POST", "/agents/register", bodies[i])
            except Exception as e:
                status, data = f"error: {type(e).__name__}", b""
            lat_us.append((time.perf_counter() - t) * 1e6)
            statuses[status] += 1
            if status == 200:
                expected[agent_of[i]] += 1
                if agent_of[i] not in agent_ids:
                    agent_ids[agent_of[i]] = json.loads(data)["id"]
            else:
                samples.setdefault(str(status), data[:300].decode("utf-8", "replace"))
        conn.close()

    m0 = server.metrics()
    cpu0 = (server.cpu(), backend_cpu(backend), pods_cpu(), B.self_cpu_seconds())
    t0 = B.now_us()
    await asyncio.gather(*(worker() for _ in range(CONC)))
    t_reg = B.now_us()
    cpu_reg = (server.cpu(), backend_cpu(backend), pods_cpu(), B.self_cpu_seconds())
    m_reg = server.metrics()
    ok = statuses.get(200, 0)
    log(f"  {ok}/{N} registrations answered 200 in {(t_reg - t0) / 1e6:.2f} s; waiting for Ready")

    # Until every deployment is Ready. Cheap first: /metrics until the controller has reported as many
    # successful reconciles as there are deployments (no-op reconciles count too, so this is only a
    # hint); then, per agent still incomplete, the first deployment by status ascending (Failed <
    # Pending < Ready): Ready there means all of that agent's deployments are Ready.
    deadline = time.monotonic() + READY_TIMEOUT
    conn = B.HTTPConn(base)
    while time.monotonic() < deadline:
        try:
            status, text = await conn.request("GET", "/metrics")
            line = [ln for ln in text.decode().splitlines() if ln.startswith(SUCCESS + " ")]
            if not line or float(line[0].split()[-1]) - m0.get(SUCCESS, 0.0) >= ok:
                break
        except Exception:
            break
        await asyncio.sleep(0.2)
    incomplete = set(agent_ids.values())
    while incomplete and time.monotonic() < deadline:
        async def check(aid, c):
            d = await c.json("GET", f"/agents/{aid}/deployments?limit=1&order_by=status&order_direction=asc")
            if d and d[0]["status"] == "Ready":
                incomplete.discard(aid)
        todo = list(incomplete)
        conns = [B.HTTPConn(base) for _ in range(min(8, len(todo)))]

        async def checker(c, part):
            for aid in part:
                await check(aid, c)
            c.close()
        await asyncio.gather(*(checker(c, todo[j::len(conns)]) for j, c in enumerate(conns)))
        if incomplete:
            await asyncio.sleep(0.25)
    t_seen = B.now_us()
    cpu1 = (server.cpu(), backend_cpu(backend), pods_cpu(), B.self_cpu_seconds())
    m1 = server.metrics()
    conn.close()

    def cpu_delta(a, b):
        return {k: round(y - x, 2) if x is not None and y is not None else None
                for k, x, y in zip(("cutover", "postgres", "stand-ins", "load generator"), a, b)}
    return {
        "t0": t0, "t_reg": t_reg, "t_seen": t_seen, "ok": ok, "statuses": {str(k): v for k, v in statuses.items()},
        "samples": samples, "agent_ids": agent_ids, "expected": dict(expected), "timed_out": bool(incomplete),
        "incomplete_agents": len(incomplete), "registration_latency_ms": B.summary([v / 1000 for v in lat_us]),
        "cpu_s": cpu_delta(cpu0, cpu1), "cpu_s_registering": cpu_delta(cpu0, cpu_reg),
        "cpu_s_after_registering": cpu_delta(cpu_reg, cpu1),
        "metrics": B.metrics_delta(m0, m1), "metrics_registering": B.metrics_delta(m0, m_reg),
    }


async def collect_deployments(base, agent_ids):
    """Every deployment of the agents (pages of 1000), as the API returns them."""
    out = {}
    todo = list(agent_ids.items())

    async def fetch(part):
        c = B.HTTPConn(base)
        for name, aid in part:
            out[name] = []
            for page in range(1, 1001):
                items = await c.json("GET", f"/agents/{aid}/deployments?limit=1000&page_number={page}")
                out[name] += items
                if len(items) < 1000:
                    break
        c.close()
    await asyncio.gather(*(fetch(todo[j::8]) for j in range(8)))
    return out


def storm_stats(r, lists):
    ready_at, reg_to_ready, not_ready, wrong_count = [], [], collections.Counter(), 0
    for name, items in lists.items():
        if len(items) != r["expected"].get(name, 0):
            wrong_count += 1
        for d in items:
            if d["status"] == "Ready" and d["ready_at"]:
                ra = B.parse_ts(d["ready_at"])
                ready_at.append(ra)
                reg_to_ready.append((ra - B.parse_ts(d["registered_at"])) / 1000)
            else:
                not_ready[d["status"]] += 1
    s = {"ready": len(ready_at), "not_ready": dict(not_ready), "agents_with_unexpected_count": wrong_count,
         "registered_to_ready_ms": B.summary(reg_to_ready)}
    reg_s = (r["t_reg"] - r["t0"]) / 1e6
    s["registrations_per_s"] = r["ok"] / reg_s if reg_s > 0 else None
    if ready_at:
        s["first_ready_after_s"] = (min(ready_at) - r["t0"]) / 1e6
        s["all_ready_after_s"] = (max(ready_at) - r["t0"]) / 1e6
        s["ready_per_s"] = len(ready_at) / s["all_ready_after_s"]
        # Split at the last registration's answer: Ready while registrations still arrived, and the
        # controller alone draining the rest.
        s["ready_while_registering"] = sum(1 for t in ready_at if t <= r["t_reg"])
        s["ready_per_s_while_registering"] = s["ready_while_registering"] / reg_s if reg_s > 0 else None
        drain_s = (max(ready_at) - r["t_reg"]) / 1e6
        left = len(ready_at) - s["ready_while_registering"]
        s["drain_s"] = drain_s
        s["ready_per_s_draining"] = left / drain_s if drain_s > 0 and left else None
    return s


# --- (c) one registration at a time --------------------------------------------------------------

async def sequential(server, pod):
    conn = B.HTTPConn(server.base)
    client_ms, stamped_ms, problems = [], [], []
    stop_at = time.monotonic() + SEQ_TIMEOUT
    # One unmeasured registration first: it creates the agent and takes its auto-promotion.
    for k in range(-1, SEQ_N):
        if time.monotonic() > stop_at:
            problems.append(f"stopped after {len(client_ms)} registrations: BENCH_SEQUENTIAL_TIMEOUT "
                            f"({SEQ_TIMEOUT:.0f} s) reached")
            break
        did = f"seq-{k}" if k >= 0 else "seq-warmup"
        body = {"name": "bench-seq", "acp_url": pod, "acp_type": "async",
                "registration_metadata": {"deployment_id": did, "docker_image": "img"}}
        t = time.perf_counter()
        try:
            aid = (await conn.json("POST", "/agents/register", body))["id"]
            while True:
                d = await conn.json("GET", f"/agents/{aid}/deployments/{did}")
                if d["status"] != "Pending":
                    break
                if time.perf_counter() - t > 5:
                    raise TimeoutError("still Pending after 5 s")
                await asyncio.sleep(SEQ_POLL)
            seen = time.perf_counter()
        except Exception as e:
            problems.append(f"{did}: {type(e).__name__}: {e}")
            continue
        if d["status"] != "Ready":
            problems.append(f"{did}: {d['status']} ({d['status_reason']})")
            continue
        if k >= 0:
            client_ms.append((seen - t) * 1000)
            stamped_ms.append((B.parse_ts(d["ready_at"]) - B.parse_ts(d["registered_at"])) / 1000)
    conn.close()
    return {"client_ms": B.summary(client_ms), "stamped_ms": B.summary(stamped_ms), "problems": problems[:10],
            "problem_count": len(problems)}


# --- (b) deadlines at one instant ----------------------------------------------------------------

async def deadlines(server):
    base = server.base
    conn = B.HTTPConn(base)
    agent_ids = [(await conn.json("POST", "/agents/register-build", {"name": f"deadline-{a}"}))["id"]
                 for a in range(DEADLINE_AGENTS)]
    created, statuses, samples = {}, collections.Counter(), {}
    nxt = 0

    async def worker():
        nonlocal nxt
        c = B.HTTPConn(base)
        while nxt < DEADLINE_N:
            i = nxt
            nxt += 1
            aid = agent_ids[i % len(agent_ids)]
            try:
                status, data = await c.request("POST", f"/agents/{aid}/deployments",
                                               {"docker_image": "img", "id": f"dl-{i}"})
            except Exception as e:
                status, data = f"error: {type(e).__name__}", b""
            statuses[status] += 1
            if status == 200:
                d = json.loads(data)
                created[d["id"]] = (aid, B.parse_ts(d["created_at"]))
            else:
                samples.setdefault(str(status), data[:300].decode("utf-8", "replace"))
        c.close()

    m0 = server.metrics()
    t0 = B.now_us()
    await asyncio.gather(*(worker() for _ in range(CONC)))
    t1 = B.now_us()
    if not created:
        conn.close()
        return {"error": "no deployment was created", "statuses": {str(k): v for k, v in statuses.items()},
                "samples": samples}
    due = {did: c + DEADLINE_S * 1_000_000 for did, (_, c) in created.items()}
    first_due, last_due = min(due.values()), max(due.values())
    log(f"  created {len(created)} deployments in {(t1 - t0) / 1e6:.2f} s; deadlines fall within "
        f"{(last_due - first_due) / 1e3:.0f} ms, the last in {(last_due - B.now_us()) / 1e6:.1f} s")
    await asyncio.sleep(max(0.0, (last_due - B.now_us()) / 1e6))
    # Every ~100 ms, per agent not done: the first deployment by status descending (Ready > Pending >
    # Failed) is Failed only once all of that agent's deployments are.
    pending = set(agent_ids)
    give_up = time.monotonic() + 60
    while pending and time.monotonic() < give_up:
        for aid in list(pending):
            d = await conn.json("GET", f"/agents/{aid}/deployments?limit=1&order_by=status&order_direction=desc")
            if d and d[0]["status"] == "Failed":
                pending.discard(aid)
        if pending:
            await asyncio.sleep(0.1)
    t_seen = B.now_us()
    m1 = server.metrics()
    failed_at = {}
    for aid in agent_ids:
        for page in range(1, 101):
            events = await conn.json("GET", f"/agents/{aid}/events?limit=1000&page_number={page}")
            for e in events:
                if e["type"] == "Failed" and e["deployment_id"] in due:
                    failed_at[e["deployment_id"]] = B.parse_ts(e["created_at"])
            if len(events) < 1000:
                break
    conn.close()
    lateness = [(failed_at[d] - due[d]) / 1000 for d in due if d in failed_at]
    return {
        "created": len(created), "statuses": {str(k): v for k, v in statuses.items()}, "samples": samples,
        "burst_s": (t1 - t0) / 1e6, "deadline_spread_ms": (last_due - first_due) / 1000,
        "failed": len(failed_at), "never_failed": len(due) - len(failed_at),
        "all_failed_seen_after_last_deadline_ms": (t_seen - last_due) / 1000,
        "last_failed_after_last_deadline_ms": (max(failed_at.values()) - last_due) / 1000 if failed_at else None,
        "lateness_ms": B.summary(lateness), "metrics": B.metrics_delta(m0, m1),
    }


# --- running -------------------------------------------------------------------------------------

PODS_PROCS = None


def pods_cpu():
    return PODS_PROCS.cpu() if PODS_PROCS else 0.0


def server_notes(server):
    lines = server.log_lines()
    return {"count": len(lines), "sample": B.log_sample(lines)}


def run_backend(backend, pods):
    rows = []
    if "storm" in PARTS or "sequential" in PARTS:
        for w in WORKERS:
            name = f"reconcile_{backend}_w{w}"
            log(f"{backend} workers={w}: fresh database, serve --progress-deadline 10m --workers {w}")
            server = B.Server(BIN, database(backend, name), os.path.join(TMP, name + ".log"),
                              ["--progress-deadline", "10m", "--workers", str(w), "--retain-inactive", "1000000"],
                              SERVE_ARGS).start()
            row = {"backend": backend, "workers": w, "part": "storm", "loadavg_start": B.load_average()}
            try:
                time.sleep(IDLE_WAIT)
                row["rss_idle_mb"] = server.rss_mb()
                log(f"  idle RSS {row['rss_idle_mb']:.1f} MB")
                if "storm" in PARTS:
                    r = asyncio.run(storm(server, backend, pods))
                    time.sleep(1)
                    row["rss_loaded_mb"] = server.rss_mb()
                    row["rss_peak_mb"] = server.hwm_mb()
                    lists = asyncio.run(collect_deployments(server.base, r["agent_ids"]))
                    row.update({k: v for k, v in r.items() if k not in ("agent_ids", "expected")})
                    row.update(storm_stats(r, lists))
                    log(f"  {row['ready']} Ready; all Ready {row.get('all_ready_after_s', float('nan')):.2f} s "
                        f"after the first registration ({row.get('ready_per_s', 0):,.0f}/s); "
                        f"RSS {row['rss_loaded_mb']:.1f} MB (peak {row['rss_peak_mb']:.1f} MB)")
                if "sequential" in PARTS:
                    row["sequential"] = asyncio.run(sequential(server, pods[0]))
                    s = row["sequential"]["stamped_ms"]
                    log(f"  sequential: p99 {s.get('p99', float('nan')):.1f} ms (server stamps), "
                        f"{row['sequential']['client_ms'].get('p99', float('nan')):.1f} ms (client)")
                row["alive"] = server.alive()
            except Exception as e:
                log(f"  failed: {type(e).__name__}: {e}")
                row["error"] = f"{type(e).__name__}: {e}"
                row["alive"] = server.alive()
            finally:
                row["loadavg_end"] = B.load_average()
                server.stop()
                row["server_log"] = server_notes(server)
            results.add(row)
            rows.append(row)
    if "deadlines" in PARTS:
        w = WORKERS[0]
        name = f"deadlines_{backend}_w{w}"
        log(f"{backend}: fresh database, serve --progress-deadline {DEADLINE_S}s --workers {w}")
        server = B.Server(BIN, database(backend, name), os.path.join(TMP, name + ".log"),
                          ["--progress-deadline", f"{DEADLINE_S}s", "--workers", str(w), "--retain-inactive", "1000000"],
                          SERVE_ARGS).start()
        row = {"backend": backend, "workers": w, "part": "deadlines", "loadavg_start": B.load_average()}
        try:
            row.update(asyncio.run(deadlines(server)))
            late = row.get("lateness_ms", {})
            if late.get("n"):
                log(f"  {row['failed']}/{row['created']} Failed; lateness p50 {late['p50']:.0f} ms, "
                    f"p99 {late['p99']:.0f} ms, max {late['max']:.0f} ms")
            row["alive"] = server.alive()
        except Exception as e:
            log(f"  failed: {type(e).__name__}: {e}")
            row["error"] = f"{type(e).__name__}: {e}"
            row["alive"] = server.alive()
        finally:
            row["loadavg_end"] = B.load_average()
            server.stop()
            row["server_log"] = server_notes(server)
        results.add(row)
        rows.append(row)
    return rows


def metrics_text(m):
    """The deployment controller's share of a /metrics delta, in one line."""
    derived, delta = m.get("derived", {}), m.get("delta", {})
    parts = []
    for label, key in (("reconcile", 'controller_runtime_reconcile_time_seconds_mean_ms{controller="deployment"}'),
                       ("queue wait", 'workqueue_queue_duration_seconds_mean_ms{name="deployment"}'),
                       ("work", 'workqueue_work_duration_seconds_mean_ms{name="deployment"}')):
        if key in derived:
            parts.append(f"{label} mean {derived[key]:.1f} ms")
    counts = {k.split('result="')[1].rstrip('"}'): int(v) for k, v in delta.items()
              if k.startswith("controller_runtime_reconcile_total") and 'controller="deployment"' in k}
    if counts:
        parts.append("reconciles " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for label, key in (("errors", 'controller_runtime_reconcile_errors_total{controller="deployment"}'),
                       ("retries", 'workqueue_retries_total{name="deployment"}'),
                       ("adds", 'workqueue_adds_total{name="deployment"}')):
        if delta.get(key):
            parts.append(f"{label} {int(delta[key])}")
    return "; ".join(parts)


# --- the table -----------------------------------------------------------------------------------

def verdict(ok):
    return "ok" if ok else "MISS"


def report(rows):
    by = {(r["backend"], r["part"], r["workers"]): r for r in rows}
    worker_list = sorted({r["workers"] for r in rows if r["part"] == "storm"}, key=WORKERS.index)
    deadline_workers = sorted({r["workers"] for r in rows if r["part"] == "deadlines"})
    table, notes = [], []

    def add(label, part, workers, fmt, target_text, check=None, pg_only_target=False, ratio_key=None):
        cells = {}
        primary = {}
        for backend in ("postgres", "sqlite"):
            r = by.get((backend, part, workers))
            if r is None:
                cells[backend] = "not run" if backend in BACKENDS else "—"
                continue
            text, value = fmt(r)
            primary[backend] = value
            if value is not None and check is not None and (backend == "postgres" or not pg_only_target):
                text += f" {verdict(check(value))}"
            cells[backend] = text
        ratio = ""
        if ratio_key and primary.get("postgres") and primary.get("sqlite"):
            ratio = f"{primary['postgres'] / primary['sqlite']:.2f}×"
        table.append([label, str(workers), cells["postgres"], cells["sqlite"], ratio, target_text])

    def triple(key, sub=None):
        def f(r):
            s = r.get(sub, {}).get(key, {}) if sub else r.get(key, {})
            if not s or not s.get("n"):
                return "—", None
            return f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f}", s["p99"]
        return f

    def number(key, fmt_spec, unit=""):
        def f(r):
            v = r.get(key)
            return ("—", None) if v is None else (f"{v:{fmt_spec}}{unit}", v)
        return f

    for w in worker_list:
        add(f"(a) registrations/s ({N:,} from {CONC} connections)", "storm", w,
            number("registrations_per_s", ",.0f", "/s"), "(no target)", ratio_key=True)
        add(f"(a) Ready/s (first registration → all {N:,} Ready)", "storm", w,
            number("ready_per_s", ",.0f", "/s"), f"≥ {READY_PER_S:,}/s on PostgreSQL",
            check=lambda v: v >= READY_PER_S, pg_only_target=True, ratio_key=True)
        add("(a) Ready/s while registrations arrive / after (controller alone)", "storm", w,
            lambda r: ("—", None) if r.get("ready_per_s_while_registering") is None else (
                f"{r['ready_per_s_while_registering']:,.0f} / "
                + ("—" if r.get("ready_per_s_draining") is None else f"{r['ready_per_s_draining']:,.0f}"),
                r.get("ready_per_s_draining")),
            "(no target; the split of the row above)", ratio_key=True)
        add("(a) first registration → all Ready (s)", "storm", w, number("all_ready_after_s", ".2f", " s"),
            f"≤ {N / READY_PER_S:g} s on PostgreSQL", check=lambda v: v <= N / READY_PER_S,
            pg_only_target=True, ratio_key=True)
        add("(a) registration latency p50 / p99 / max (ms)", "storm", w, triple("registration_latency_ms"),
            "(no target)", ratio_key=True)
        add("(a) registered_at → ready_at p50 / p99 / max (ms)", "storm", w, triple("registered_to_ready_ms"),
            "(no target; queueing under the storm)", ratio_key=True)
    for w in deadline_workers:
        add(f"(b) lateness of {DEADLINE_N:,} deadlines p50 / p99 / max (ms)", "deadlines", w,
            triple("lateness_ms"), f"p99 < {LATENESS_P99_MS:,} ms", check=lambda v: v < LATENESS_P99_MS,
            ratio_key=True)
    for w in worker_list:
        if "sequential" in PARTS:
            add("(c) one registration → Ready, server stamps p50 / p99 / max (ms)", "storm", w,
                triple("stamped_ms", "sequential"), f"p99 < {SEQ_P99_MS} ms", check=lambda v: v < SEQ_P99_MS,
                ratio_key=True)
            add("(c) one registration → Ready, client-observed p50 / p99 / max (ms)", "storm", w,
                triple("client_ms", "sequential"), f"p99 < {SEQ_P99_MS} ms", check=lambda v: v < SEQ_P99_MS,
                ratio_key=True)
    for w in worker_list:
        add("(d) RSS idle after start (MB)", "storm", w, number("rss_idle_mb", ".1f"), f"< {RSS_IDLE_MB} MB",
            check=lambda v: v < RSS_IDLE_MB, ratio_key=True)
        if "storm" in PARTS:
            add(f"(d) RSS with the {N:,} deployments of (a) (MB)", "storm", w, number("rss_loaded_mb", ".1f"),
                f"< {RSS_LOADED_MB} MB", check=lambda v: v < RSS_LOADED_MB, ratio_key=True)
            add("(d) peak RSS (VmHWM) through (a) (MB)", "storm", w, number("rss_peak_mb", ".1f"),
                "(no target)", ratio_key=True)

            def cpu(r):
                c = r.get("cpu_s") or {}
                if not c:
                    return "—", None
                return " / ".join("—" if c.get(k) is None else f"{c[k]:.1f}" for k in
                                  ("cutover", "postgres", "stand-ins", "load generator")), c.get("cutover")
            add("(a) CPU s: cutover / postgres / stand-ins / client", "storm", w, cpu,
                f"({os.cpu_count()} CPUs; the whole of (a))")

            def cpu_per(r):
                c, n = r.get("cpu_s") or {}, r.get("ready") or 0
                if not c or not n or c.get("cutover") is None:
                    return "—", None
                pg = c.get("postgres")
                return (f"{c['cutover'] * 1000 / n:.2f} / " + ("—" if pg is None else f"{pg * 1000 / n:.2f}"),
                        c["cutover"] * 1000 / n)
            add("(a) CPU ms per deployment: cutover / postgres", "storm", w, cpu_per,
                "(registration + reconcile, all of (a))", ratio_key=True)

            def cpu_per_drained(r):
                c = r.get("cpu_s_after_registering") or {}
                n = (r.get("ready") or 0) - (r.get("ready_while_registering") or 0)
                if not c or n <= 0 or c.get("cutover") is None:
                    return "—", None
                pg = c.get("postgres")
                return (f"{c['cutover'] * 1000 / n:.2f} / " + ("—" if pg is None else f"{pg * 1000 / n:.2f}"),
                        c["cutover"] * 1000 / n)
            add("(a) CPU ms per reconcile to Ready after the registrations", "storm", w, cpu_per_drained,
                "(the controller alone: probe, read, write)", ratio_key=True)

    for r in rows:
        name = f"{r['backend']} {r['part']} workers={r['workers']}"
        bad = {k: v for k, v in r.get("statuses", {}).items() if k != "200"}
        if bad:
            notes.append(f"{name}: non-200 answers {bad}; first bodies {r.get('samples')}")
        if r.get("error"):
            notes.append(f"{name}: {r['error']}")
        if r.get("timed_out"):
            notes.append(f"{name}: {r['incomplete_agents']} agent(s) still not all Ready after "
                         f"BENCH_READY_TIMEOUT ({READY_TIMEOUT:.0f} s)")
        if r.get("not_ready"):
            notes.append(f"{name}: deployments not Ready at the end: {r['not_ready']}")
        if r.get("agents_with_unexpected_count"):
            notes.append(f"{name}: {r['agents_with_unexpected_count']} agent(s) listed another number of "
                         "deployments than registered")
        if r.get("never_failed"):
            notes.append(f"{name}: {r['never_failed']} deployment(s) never turned Failed")
        if r["part"] == "deadlines" and r.get("created"):
            notes.append(f"{name}: {r['created']} created in {r['burst_s']:.2f} s (deadlines spread over "
                         f"{r['deadline_spread_ms']:.0f} ms); last Failed event "
                         f"{r['last_failed_after_last_deadline_ms']:.0f} ms after the last deadline")
        if r.get("cpu_s_registering"):
            notes.append(f"{name}: CPU s while registrations arrived {r['cpu_s_registering']}, after "
                         f"{r['cpu_s_after_registering']}; {r.get('ready_while_registering', 0)} Ready by the last "
                         f"registration's answer, the rest in {r.get('drain_s', 0):.2f} s more")
        seq = r.get("sequential") or {}
        if seq.get("problem_count"):
            notes.append(f"{name}: sequential: {seq['problem_count']} problem(s), e.g. {seq['problems'][:3]}")
        m = r.get("metrics") or {}
        if m.get("delta"):
            notes.append(f"{name}: /metrics during the {r['part']}: {metrics_text(m)}")
        if r.get("server_log", {}).get("count"):
            notes.append(f"{name}: {r['server_log']['count']} server log line(s) (warning or above):")
            notes.extend("    " + line[:300] for line in r["server_log"]["sample"])
        if r.get("alive") is False:
            notes.append(f"{name}: the server had died by the end of the run")
        notes.append(f"{name}: load average (1, 5, 15 min) {r['loadavg_start']} at the start, "
                     f"{r.get('loadavg_end', '?')} at the end")

    B.print_table(
        f"Cutover reconcile benchmark ({os.cpu_count()} CPUs, everything on one host; {PODS} stand-in pods; "
        "pg/sqlite compares the first figure of each row)",
        ["measure", "workers", "PostgreSQL", "SQLite", "pg/sqlite", "target"], table, notes)


def main():
    global PODS_PROCS
    B.install_sigterm()
    for b in BACKENDS:
        if b not in ("sqlite", "postgres"):
            raise SystemExit(f"reconcile: unknown backend {b} (sqlite, postgres)")
    if "postgres" in BACKENDS and not PG_ADMIN:
        raise SystemExit("reconcile: BENCH_PG_ADMIN_URL is required for the postgres backend")
    rows = []
    PODS_PROCS = B.StandIns(PODS)
    try:
        log(f"binary {BIN}; {os.cpu_count()} CPUs; stand-in pods {' '.join(PODS_PROCS.urls)}")
        for backend in BACKENDS:
            rows += run_backend(backend, PODS_PROCS.urls)
    finally:
        PODS_PROCS.stop()
    report(rows)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
