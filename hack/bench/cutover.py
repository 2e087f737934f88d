#!/usr/bin/env python3
"""The replica benchmark behind hack/bench/cutover (read its header for what runs and the knobs).

Three `cutover serve` replicas (release build) on one fresh PostgreSQL database, two stand-in pods
(benchlib.StandIns: every request answered 200). Measures
  (a) promotion visibility on the other replicas (polling RPCs on persistent connections),
  (b) failover after `kill -9` of the leader (new `cutover_leader 1`; a new registration `Ready`),
  (c) hand-over after SIGTERM of the leader (the same two times; the old leader exits 0),
and prints one table with the targets.
"""

import http.client
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

B.PREFIX = "cutover-bench"
log = B.log

BIN = os.environ["CUTOVER_BIN"]
TMP = os.environ["BENCH_TMP"]
PG_ADMIN = os.environ["BENCH_PG_ADMIN_URL"]
PROMOTIONS = B.env_int("BENCH_PROMOTIONS", 300)
FAILOVERS = B.env_int("BENCH_FAILOVERS", 5)
POLL_S = B.env_float("BENCH_POLL_MS", 1) / 1000.0
SERVE_ARGS = shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))
TAG = os.urandom(4).hex()
VISIBLE_P99_TARGET_MS = 100.0
FAILOVER_TARGET_S = 5.0
LEADER_RE = re.compile(r"^cutover_leader(?:\{[^}]*\})?\s+([-+0-9.eE]+)\s*$", re.M)
RPC_BODY = b'{"jsonrpc":"2.0","id":1,"method":"task/create","params":{}}'

results = B.Results()
SERVERS = []
COUNTER = [0]


# --- a blocking keep-alive client (http.client) ----------------------------------------------------

class Conn:
    def __init__(self, port, timeout=5.0):
        self.port, self.timeout, self.c = port, timeout, None

    def request(self, method, path, body=None):
        """(status, headers {lower: value}, body bytes); reconnects once after a dropped connection."""
        for attempt in (1, 2):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                hdrs = {"Content-Type": "application/json"} if body is not None else {}
                self.c.request(method, path, body=body, headers=hdrs)
                r = self.c.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def once(port, method, path, body=None, timeout=2.0):
    c = Conn(port, timeout)
    try:
        return c.request(method, path, body)
    except Exception as e:
        return None, {}, str(e).encode()
    finally:
        c.close()


def leader_value(server):
    status, _, data = once(server.port, "GET", "/metrics", timeout=1.0)
    if status != 200:
        return None
    m = LEADER_RE.search(data.decode("utf-8", "replace"))
    return None if not m else (1 if float(m.group(1)) == 1.0 else 0)


def live():
    return [s for s in SERVERS if s.alive()]


def one_leader(servers, timeout=15.0):
    deadline = time.monotonic() + timeout
    values = {}
    while time.monotonic() < deadline:
        values = {s.port: leader_value(s) for s in servers}
        ls = [s for s in servers if values[s.port] == 1]
        if len(ls) == 1:
            return ls[0]
        time.sleep(0.05)
    raise RuntimeError(f"no single leader among {[s.port for s in servers]} after {timeout:.0f} s: {values}")


def start_replica(db):
    COUNTER[0] += 1
    s = B.Server(BIN, db, os.path.join(TMP, f"replica-{COUNTER[0]}.log"),
                 ["--probe", "http", "--progress-deadline", "60s"], SERVE_ARGS)
    s.start()
    SERVERS.append(s)
    return s


def register(port, agent, did, pod_url):
    body = ('{"name":"%s","description":"bench","acp_type":"async","acp_url":"%s",'
            '"registration_metadata":{"deployment_id":"%s","docker_image":"%s:%s"}}'
            % (agent, pod_url, did, agent, did)).encode()
    status, _, data = once(port, "POST", "/agents/register", body, timeout=10.0)
    if status != 200:
        raise RuntimeError(f"registration of {did} through :{port} -> {status}: {data[:300]!r}")
    import json
    return json.loads(data)["id"]


def status_of(port, agent_id, did):
    import json
    status, _, data = once(port, "GET", f"/agents/{agent_id}/deployments/{urllib.parse.quote(did)}", timeout=1.0)
    if status != 200:
        return None
    try:
        return json.loads(data).get("status")
    except ValueError:
        return None


# --- (a) promotion visibility ------------------------------------------------------------------------

def bench_visibility(pods):
    reps = live()
    leader = one_leader(reps)
    a = [s for s in reps if s is not leader][0]  # promote through a standby; B and C include the leader
    others = [s for s in reps if s is not a]
    agent = f"bench-promo-{TAG}"
    ids = ["promo-a-" + TAG, "promo-b-" + TAG]
    agent_id = register(a.port, agent, ids[0], pods.urls[0])
    register(a.port, agent, ids[1], pods.urls[1])
    deadline = time.monotonic() + 30
    while not all(status_of(a.port, agent_id, d) == "Ready" for d in ids):
        if time.monotonic() > deadline:
            raise RuntimeError("the two deployments of (a) are not Ready after 30 s")
        time.sleep(0.05)
    rpc_path = f"/agents/{agent_id}/rpc"
    jobs = {s.port: queue.Queue() for s in others}
    done = queue.Queue()

    def watcher(server):
        conn = Conn(server.port, timeout=5.0)
        while True:
            job = jobs[server.port].get()
            if job is None:
                conn.close()
                return
            target, acked, give_up = job
            seen = None
            polls = 0
            while time.monotonic() < give_up:
                try:
                    status, hdrs, _ = conn.request("POST", rpc_path, RPC_BODY)
                except Exception:
                    status, hdrs = None, {}
                polls += 1
                if status == 200 and hdrs.get("x-cutover-deployment-id") == target:
                    seen = time.monotonic() - acked
                    break
                time.sleep(POLL_S)
            done.put((server.port, seen, polls))  # polls == 1: already routed there at the first poll
    threads = [threading.Thread(target=watcher, args=(s,), daemon=True) for s in others]
    for t in threads:
        t.start()
    conn_a = Conn(a.port)
    delays = {s.port: [] for s in others}
    never = []
    wrong_next = []
    total_polls = 0
    first_poll = 0
    promote_ms = []
    # Start from ids[0] production (auto-promoted); alternate.
    for i in range(PROMOTIONS):
        target = ids[(i + 1) % 2]
        t0 = time.monotonic()
        status, _, data = conn_a.request("POST", f"/agents/{agent_id}/deployments/{target}/promote",
                                         b'{"reason":"bench"}')
        acked = time.monotonic()
        if status != 200:
            raise RuntimeError(f"promotion {i} to {target} -> {status}: {data[:300]!r}")
        promote_ms.append((acked - t0) * 1000)
        for s in others:
            jobs[s.port].put((target, acked, acked + 3.0))
        status, hdrs, _ = conn_a.request("POST", rpc_path, RPC_BODY)
        if status != 200 or hdrs.get("x-cutover-deployment-id") != target:
            wrong_next.append(f"promotion {i}: A's next RPC -> {status} {hdrs.get('x-cutover-deployment-id')!r}")
        for _ in others:
            port, seen, polls = done.get(timeout=10)
            total_polls += polls
            first_poll += 1 if seen is not None and polls == 1 else 0
            if seen is None:
                never.append(f"promotion {i} to {target}: :{port} not routing to it after 3 s")
            else:
                delays[port].append(seen * 1000)
    for s in others:
        jobs[s.port].put(None)
    for t in threads:
        t.join(timeout=5)
    conn_a.close()
    all_delays = [d for v in delays.values() for d in v]
    results.add({"bench": "visibility", "promotions": PROMOTIONS, "delays_ms": all_delays,
                 "never": never, "wrong_next": wrong_next, "promote_ms": promote_ms})
    log(f"(a) {PROMOTIONS} promotions; {total_polls} polling RPCs; not visible within 3 s: {len(never)}; "
        f"A's next RPC wrong: {len(wrong_next)}")
    for line in (never + wrong_next)[:5]:
        log("  " + line)
    return {"delays": all_delays, "per_replica": delays, "never": never, "wrong_next": wrong_next,
            "promote_ms": promote_ms, "a": a, "first_poll": first_poll}


# --- (b) and (c) failover / hand-over -------------------------------------------------------------

def bench_failover(db, pods, sig, rounds):
    kind = "kill -9" if sig == signal.SIGKILL else "SIGTERM"
    to_leader, to_ready, problems = [], [], []
    for r in range(rounds):
        reps = live()
        leader = one_leader(reps)
        survivors = [s for s in reps if s is not leader]
        via = survivors[r % len(survivors)]
        did = f"fo-{'k' if sig == signal.SIGKILL else 't'}{r}-{TAG}"
        agent = f"bench-failover-{TAG}"
        t0 = time.monotonic()
        leader.proc.send_signal(sig)
        try:
            agent_id = register(via.port, agent, did, pods.urls[r % len(pods.urls)])
        except RuntimeError as e:
            problems.append(f"round {r}: {e}")
            agent_id = None
        t_leader = t_ready = None
        deadline = t0 + 15.0
        while time.monotonic() < deadline and (t_leader is None or (t_ready is None and agent_id)):
            if t_leader is None:
                if any(leader_value(s) == 1 for s in survivors):
                    t_leader = time.monotonic() - t0
            if t_ready is None and agent_id and status_of(via.port, agent_id, did) == "Ready":
                t_ready = time.monotonic() - t0
            time.sleep(0.01)
        try:
            rc = leader.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            rc = "still running"
            leader.proc.kill()
            leader.proc.wait(timeout=10)
        leader.log_file.close()
        if sig == signal.SIGTERM and rc != 0:
            problems.append(f"round {r}: the old leader exited {rc}: {leader.log_tail(5)}")
        if t_leader is None:
            problems.append(f"round {r}: no survivor leads after 15 s")
        else:
            to_leader.append(t_leader)
        if t_ready is None:
            problems.append(f"round {r}: {did} not Ready after 15 s")
        else:
            to_ready.append(t_ready)
        log(f"({kind}) round {r}: leader after {t_leader if t_leader is None else round(t_leader, 3)} s, "
            f"Ready after {t_ready if t_ready is None else round(t_ready, 3)} s")
        start_replica(db)
        one_leader(live())
    results.add({"bench": kind, "to_leader_s": to_leader, "to_ready_s": to_ready, "problems": problems})
    for p in problems:
        log("  " + p)
    return {"leader": to_leader, "ready": to_ready, "problems": problems}


def fmt_ms(v):
    return "-" if v is None else f"{v:.1f} ms"


def fmt_s(v):
    return "-" if v is None else f"{v:.2f} s"


def main():
    B.install_sigterm()
    started = time.monotonic()
    pods = None
    ok = True
    try:
        db = B.new_pg_database(PG_ADMIN, f"cutover_bench_{TAG}")
        r = subprocess.run([BIN, "migrate", "--database-url", db], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"cutover migrate failed: {r.stdout}{r.stderr}")
        pods = B.StandIns(2)
        for _ in range(3):
            start_replica(db)
        one_leader(live())
        log(f"three replicas up on {db}: {[s.port for s in SERVERS]}")
        t = time.monotonic()
        vis = bench_visibility(pods)
        log(f"(a) took {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        kill = bench_failover(db, pods, signal.SIGKILL, FAILOVERS)
        log(f"(b) took {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        term = bench_failover(db, pods, signal.SIGTERM, FAILOVERS)
        log(f"(c) took {time.monotonic() - t:.1f} s")

        P = B.percentile
        rows = []
        d = vis["delays"]
        p99 = P(d, 99)
        rows.append(["(a) promotion through A -> B and C route RPCs to it", str(len(d)), fmt_ms(P(d, 50)),
                     fmt_ms(p99), fmt_ms(max(d) if d else None), f"p99 < {VISIBLE_P99_TARGET_MS:.0f} ms",
                     "yes" if d and p99 < VISIBLE_P99_TARGET_MS and not vis["never"] else "NO"])
        for port, v in vis["per_replica"].items():
            rows.append([f"    seen by :{port}", str(len(v)), fmt_ms(P(v, 50)), fmt_ms(P(v, 99)),
                         fmt_ms(max(v) if v else None), "", ""])
        pm = vis["promote_ms"]
        rows.append(["    promote request itself (A)", str(len(pm)), fmt_ms(P(pm, 50)), fmt_ms(P(pm, 99)),
                     fmt_ms(max(pm)), "", ""])
        rows.append(["(a) A's next RPC goes to the new deployment", f"{PROMOTIONS - len(vis['wrong_next'])}"
                     f"/{PROMOTIONS}", "", "", "", "every time", "yes" if not vis["wrong_next"] else "NO"])
        for label, res in (("(b) kill -9 of the leader", kill), ("(c) SIGTERM of the leader", term)):
            for what, key in (("-> another replica reports cutover_leader 1", "leader"),
                              ("-> a deployment registered after it is Ready", "ready")):
                v = res[key]
                good = len(v) == FAILOVERS and v and max(v) < FAILOVER_TARGET_S
                rows.append([f"{label} {what}", str(len(v)), fmt_s(P(v, 50)), fmt_s(P(v, 99)),
                             fmt_s(max(v) if v else None), f"< {FAILOVER_TARGET_S:.0f} s (every round)",
                             "yes" if good else "NO"])
        notes = [f"release binary {BIN}; PostgreSQL {PG_ADMIN.split('@')[-1]}; three replicas, stand-in pods "
                 f"answering 200; polling RPC every {POLL_S * 1000:.0f} ms on a persistent connection per replica",
                 "(a) A is a standby, so B and C include the leader; times from A's 200 to the first RPC answer "
                 "carrying the new x-cutover-deployment-id (includes up to one poll interval and one RPC); "
                 f"{vis['first_poll']} of {len(d)} already at the first poll, sent right after the 200 (then the "
                 "figure is one RPC round trip, an upper bound)",
                 "(b)/(c) times from the signal; the registration goes through a survivor right after it; the "
                 "old replica is replaced and one leader awaited before the next round"]
        if vis["never"] or vis["wrong_next"] or kill["problems"] or term["problems"]:
            notes.append("problems: " + "; ".join((vis["never"] + vis["wrong_next"] + kill["problems"]
                                                   + term["problems"])[:6]))
        B.print_table(f"Cutover replicas on PostgreSQL ({time.monotonic() - started:.0f} s)",
                      ["measurement", "n", "p50", "p99", "max", "target", "met"], rows, notes)
        ok = bool(d) and len(kill["leader"]) == FAILOVERS and len(term["leader"]) == FAILOVERS
    except (Exception, KeyboardInterrupt) as e:
        log(f"failed: {type(e).__name__}: {e}")
        for s in SERVERS:
            if s.log_lines():
                log(f"log tail of :{s.port}:\n" + s.log_tail(8))
        ok = False
    finally:
        for s in SERVERS:
            try:
                s.stop()
            except Exception:
                pass
        if pods is not None:
            pods.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
