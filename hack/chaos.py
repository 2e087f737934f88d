#!/usr/bin/env python3
"""Chaos run (started by hack/chaos.sh, which owns the PostgreSQL cluster and the overall timeout).

Standard library only. Starts three `cutover serve` replicas on one PostgreSQL database (short GC and
retention settings) and three healthy stand-in agent pods, then for CHAOS_DURATION seconds runs
concurrent clients spread over the replicas: registrations (a new deployment id of one of five agents),
promotions, rollbacks, deletes, restores and RPCs; meanwhile every ~5 s one replica (chosen at random,
sometimes the leader on purpose) is killed with `kill -9` and restarted. Afterwards, with all replicas
up and the controllers quiet, it checks with psql:
  - the invariants of the records (one production per agent, agents.production_deployment_id, no
    expiring production, no orphan deployment, collected ids never owned by another agent);
  - no acknowledged write lost: every registration answered 200 exists or was collected (then there is
    a GarbageCollected event), every promotion/rollback answered 200 has its Promoted/RolledBack event
    (a promotion of the deployment that already was production is a no-op without an event: then the
    event history must show it was production at that moment);
  - the RPC rule: an RPC sent after a promotion's/rollback's 200, through the same replica process
    that committed it, is served by that deployment (`x-cutover-deployment-id`) unless another
    production change of that agent committed in between.
Prints one line per check ("ok - ..." / "FAIL - ..."), the counts of every operation by outcome, and
ends with "N passed, M failed"; exits 1 if any check failed.

Environment:
  CHAOS_BIN            the cutover binary (required)
  CHAOS_DATABASE_URL   the migrated PostgreSQL database (required)
  CHAOS_TMP            directory for replica logs and the pid list (required)
  CHAOS_PSQL           psql to use (default: psql from PATH, else $PG_BIN/psql)
  CHAOS_DURATION       seconds of chaos (default 60)
  CHAOS_KILL_EVERY     seconds between kills (default 5)
  CHAOS_CLIENTS        concurrent client threads (default 8)
  CHAOS_SEED           random seed (default: random; printed)
"""

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import cutover_test as ct  # noqa: E402  (hack/lib/cutover_test.py)
from cutover_test import Pod, free_port, now_us, report, short, wait_for  # noqa: E402

BIN = os.environ.get("CHAOS_BIN", "")
DATABASE_URL = os.environ.get("CHAOS_DATABASE_URL", "")
TMP = os.environ.get("CHAOS_TMP", "")
DURATION = float(os.environ.get("CHAOS_DURATION", "60"))
KILL_EVERY = float(os.environ.get("CHAOS_KILL_EVERY", "5"))
CLIENTS = int(os.environ.get("CHAOS_CLIENTS", "8"))
SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 30))
AGENTS = 5
SUITE_TIMEOUT = 165  # seconds; chaos.sh's timeout is 180
SERVE_FLAGS = ["--gc-interval", "1s", "--deletion-grace", "2s", "--retain-inactive", "5",
               "--retain-previous-production", "2", "--probe", "http", "--progress-deadline", "30s",
               "--shutdown-grace", "5s", "--log-format", "json"]
SLACK_US = 50_000  # event timestamps (server clock) against the client's send/receive times, same host


def api(port, method, path, body=None, timeout=10.0):
    """A fresh connection per request, bounded; the answer's t0/t1 are the wall-clock send/receive times."""
    return ct.request("127.0.0.1", port, method, path, body, timeout=timeout, limit=200)


# ---------------------------------------------------------------------------------------------
# Replica slots: three `cutover serve` processes, each slot restarted after a kill.
# ---------------------------------------------------------------------------------------------

PROCS = []  # every process ever started


class Slot:
    def __init__(self, index):
        self.name = f"r{index}"
        self.lock = threading.Lock()
        self.incarnation = 0
        self.port = None
        self.proc = None
        self.up = False
        self.log_path = None

    def start(self):
        with self.lock:
            self.incarnation += 1
            inc = self.incarnation
            port = free_port()
            self.log_path = os.path.join(TMP, f"replica-{self.name}-{inc}.log")
            proc = ct.start_serve(BIN, DATABASE_URL, port, SERVE_FLAGS, self.log_path, os.path.join(TMP, "pids"))
            PROCS.append((f"{self.name}.{inc}", proc, self.log_path))
            self.proc, self.port = proc, port
        healthy = ct.wait_serving(proc, port, 30.0, 0.05)
        with self.lock:
            if self.proc is proc:
                self.up = healthy
        return healthy

    def kill(self):
        with self.lock:
            self.up = False
            proc = self.proc
            self.incarnation += 1  # requests in flight to the old process are to a killed replica
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def target(self):
        """(port, incarnation, up) for one request."""
        with self.lock:
            return self.port, self.incarnation, self.up

    def leader(self):
        port, _, up = self.target()
        if not up:
            return None
        return ct.leader_value(port, timeout=2)

    def tail(self, n=8):
        return ct.log_tail(self.log_path, n, 300)


SLOTS = []


def leader_values():
    return {s.name: s.leader() for s in SLOTS}


# ---------------------------------------------------------------------------------------------
# The load.
# ---------------------------------------------------------------------------------------------

LOCK = threading.Lock()
COUNTS = collections.defaultdict(collections.Counter)  # op -> outcome -> n
PROBLEMS = collections.defaultdict(list)  # kind -> examples
REG_ACKS = []  # (agent_id, did, t0, t1, slot, inc)
PROD_ACKS = []  # (kind, agent_id, did, t0, t1, slot, inc)
RPCS = []  # (agent_id, slot, inc, t0, t1, served did)
AGENT_IDS = {}  # name -> id
DIDS = collections.defaultdict(list)  # agent id -> acknowledged registered ids, oldest first
DELETED = collections.defaultdict(list)  # agent id -> ids whose delete answered 200
SEQ = [0]
STOP = threading.Event()


def classify(op, answer, slot, inc_at_send, up_at_send):
    """Counts the outcome; records what is a failure."""
    if answer.status is None:
        _, inc_now, _ = slot.target()
        expected = inc_now != inc_at_send or not up_at_send
        outcome = "conn-error (killed replica)" if expected else "conn-error (live replica)"
        if not expected:
            PROBLEMS["connection error or timeout on a live replica"].append(
                f"{op} via {slot.name}.{inc_at_send}: {answer.describe()}")
    elif answer.status == 200:
        outcome = "200"
    elif 400 <= answer.status < 500:
        outcome = str(answer.status)
        if answer.status not in (404, 409):
            PROBLEMS["unexpected 4xx"].append(f"{op} via {slot.name}.{inc_at_send}: {answer.describe()}")
    elif answer.status in (502, 503, 504):
        outcome = str(answer.status)
    else:
        outcome = str(answer.status)
        PROBLEMS["5xx other than 502/503/504"].append(f"{op} via {slot.name}.{inc_at_send}: {answer.describe()}")
    with LOCK:
        COUNTS[op][outcome] += 1
    return outcome


def pick_slot(rng):
    return rng.choice(SLOTS)


def send(rng, op, method, path, body=None, slot=None):
    slot = slot or pick_slot(rng)
    port, inc, up = slot.target()
    a = api(port, method, path, body)
    classify(op, a, slot, inc, up)
    return a, slot, inc


def do_register(rng, agent_name, pods):
    with LOCK:
        SEQ[0] += 1
        did = f"{agent_name}-d{SEQ[0]}"
    body = {"name": agent_name, "description": f"chaos agent {agent_name}", "acp_type": "async",
            "acp_url": rng.choice(pods).url,
            "registration_metadata": {"deployment_id": did, "docker_image": f"{agent_name}:{did}"}}
    a, slot, inc = send(rng, "register", "POST", "/agents/register", body)
    if a.status == 200 and isinstance(a.body, dict) and a.body.get("id"):
        with LOCK:
            AGENT_IDS[agent_name] = a.body["id"]
            REG_ACKS.append((a.body["id"], did, a.t0, a.t1, slot.name, inc))
            DIDS[a.body["id"]].append(did)
    return a


def do_rpc(rng, agent_id, slot=None):
    a, slot, inc = send(rng, "rpc", "POST", f"/agents/{agent_id}/rpc", {"method": "task/create", "params": {}},
                        slot=slot)
    if a.status == 200:
        served = a.headers.get("x-cutover-deployment-id")
        if not served:
            PROBLEMS["RPC answered 200 without x-cutover-deployment-id"].append(a.describe())
        with LOCK:
            RPCS.append((agent_id, slot.name, inc, a.t0, a.t1, served))
    return a


def client(seed):
    rng = random.Random(seed)
    pods = STATE["pods"]
    while not STOP.is_set():
        agent_name = f"chaos-{rng.randrange(AGENTS) + 1}"
        with LOCK:
            agent_id = AGENT_IDS.get(agent_name)
            recent = list(DIDS.get(agent_id, [])[-7:])
            deleted = list(DELETED.get(agent_id, [])[-5:])
        r = rng.random()
        if agent_id is None or r < 0.25:
            do_register(rng, agent_name, pods)
        elif r < 0.45 and recent:
            did = rng.choice(recent)
            a, slot, inc = send(rng, "promote", "POST",
                                f"/agents/{agent_id}/deployments/{urllib.parse.quote(did)}/promote",
                                {"reason": "chaos"})
            if a.status == 200:
                with LOCK:
                    PROD_ACKS.append(("promote", agent_id, did, a.t0, a.t1, slot.name, inc))
                do_rpc(rng, agent_id, slot=slot)  # the committing replica's very next request
        elif r < 0.53:
            a, slot, inc = send(rng, "rollback", "POST", f"/agents/{agent_id}/rollback", {"reason": "chaos"})
            if a.status == 200 and isinstance(a.body, dict) and a.body.get("id"):
                with LOCK:
                    PROD_ACKS.append(("rollback", agent_id, a.body["id"], a.t0, a.t1, slot.name, inc))
                do_rpc(rng, agent_id, slot=slot)
        elif r < 0.63 and recent:
            did = rng.choice(recent)
            a, _, _ = send(rng, "delete", "DELETE", f"/agents/{agent_id}/deployments/{urllib.parse.quote(did)}")
            if a.status == 200:
                with LOCK:
                    DELETED[agent_id].append(did)
        elif r < 0.70 and deleted:
            did = rng.choice(deleted)
            send(rng, "restore", "POST", f"/agents/{agent_id}/deployments/{urllib.parse.quote(did)}/restore")
        else:
            do_rpc(rng, agent_id)
        time.sleep(rng.uniform(0.0, 0.02))


KILLS = []  # (slot, was leader, restarted healthy, seconds to healthy)


def killer(rng):
    next_at = time.monotonic() + KILL_EVERY
    while not STOP.is_set():
        if STOP.wait(max(0.0, next_at - time.monotonic())):
            break
        next_at = time.monotonic() + KILL_EVERY * rng.uniform(0.8, 1.2)
        values = leader_values()
        leaders = [s for s in SLOTS if values.get(s.name) == 1]
        if leaders and rng.random() < 0.4:
            victim = leaders[0]
        else:
            victim = rng.choice(SLOTS)
        was_leader = values.get(victim.name) == 1
        victim.kill()
        print(f"# t+{time.monotonic() - STATE['t0']:.1f}s kill -9 {victim.name}"
              f"{' (leader)' if was_leader else ''}", flush=True)
        time.sleep(rng.uniform(0.2, 1.0))
        started = time.monotonic()
        healthy = victim.start()
        KILLS.append((victim.name, was_leader, healthy, time.monotonic() - started))
        if not healthy:
            PROBLEMS["a killed replica did not restart"].append(f"{victim.name}: " + " | ".join(victim.tail()))


# ---------------------------------------------------------------------------------------------
# psql.
# ---------------------------------------------------------------------------------------------

def psql_bin():
    explicit = os.environ.get("CHAOS_PSQL")
    if explicit:
        return explicit
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if os.access(os.path.join(d, "psql"), os.X_OK):
            return "psql"
    return os.path.join(os.environ.get("PG_BIN", ""), "psql")


def psql(sql):
    r = subprocess.run([psql_bin(), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", DATABASE_URL],
                       input=sql, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"psql failed ({r.returncode}): {r.stderr.strip()[:1000]}")
    return [line.split("\t") for line in r.stdout.splitlines() if line]


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------

STATE = {}


def setup():
    STATE["pods"] = [Pod(keep_alive=True, quiet_errors=True) for _ in range(3)]
    for i in range(3):
        SLOTS.append(Slot(i + 1))
    for s in SLOTS:
        if not report(s.start(), f"replica {s.name} starts and answers /healthz", " | ".join(s.tail())):
            return False
    rng = random.Random(SEED)
    for n in range(AGENTS):
        name = f"chaos-{n + 1}"
        a = do_register(rng, name, STATE["pods"])
        if not report(a.status == 200, f"setup: first registration of {name}", a.describe()):
            return False
    # Wait until each agent has a production deployment (auto-promotion of its first Ready one).
    def all_production():
        rows = psql("SELECT count(*) FROM agents WHERE name LIKE 'chaos-%' AND production_deployment_id IS NOT NULL")
        return int(rows[0][0]) == AGENTS
    ok = wait_for(all_production, 20.0, 0.2)
    return report(bool(ok), f"setup: all {AGENTS} agents have a production deployment")


def quiesce():
    """All replicas up, one leader, no Pending deployment, no overdue expiry, events stable for 2 s."""
    down = [s.name for s in SLOTS if not s.target()[2]]
    report(not down, "after the chaos: every replica is up", f"down: {down}")
    leaders = wait_for(lambda: [n for n, v in leader_values().items() if v == 1] if
                       sum(1 for v in leader_values().values() if v == 1) == 1 else None, 15.0, 0.2)
    report(bool(leaders), "after the chaos: exactly one replica reports cutover_leader 1", str(leader_values()))
    start = time.monotonic()
    last = None

    def quiet():
        nonlocal last
        rows = psql(f"SELECT (SELECT count(*) FROM deployments WHERE status = 'Pending'),"
                    f" (SELECT count(*) FROM deployments WHERE expires_at IS NOT NULL AND expires_at < {now_us()}),"
                    f" (SELECT count(*) FROM events)")
        snap = tuple(int(x) for x in rows[0])
        stable = last is not None and snap == last and snap[0] == 0 and snap[1] == 0
        last = snap
        return stable
    ok = wait_for(quiet, 45.0, 2.0)
    report(bool(ok), "after the chaos: quiescent (no Pending deployment, no overdue expiry, events stable for 2 s)",
           f"after {time.monotonic() - start:.1f}s; (pending, overdue, events) = {last}")
    print(f"# quiescent after {time.monotonic() - start:.1f}s: (pending, overdue, events) = {last}", flush=True)


def check_invariants():
    def none(name, sql):
        rows = psql(sql)
        report(not rows, name, f"{len(rows)} rows: {rows[:5]}")

    none("invariant: at most one is_production = 1 per agent",
         "SELECT agent_id, count(*) FROM deployments WHERE is_production = 1 GROUP BY agent_id HAVING count(*) > 1")
    none("invariant: agents.production_deployment_id is null or names that agent's production deployment, "
         "Ready, expires_at null",
         "SELECT a.id, a.production_deployment_id, d.agent_id, d.is_production, d.status, d.expires_at FROM agents a"
         " LEFT JOIN deployments d ON d.id = a.production_deployment_id"
         " WHERE a.production_deployment_id IS NOT NULL AND (d.id IS NULL OR d.agent_id <> a.id"
         " OR d.is_production <> 1 OR d.status <> 'Ready' OR d.expires_at IS NOT NULL)")
    none("invariant: every production deployment is its agent's production_deployment_id",
         "SELECT d.id, d.agent_id, a.production_deployment_id FROM deployments d JOIN agents a ON a.id = d.agent_id"
         " WHERE d.is_production = 1 AND a.production_deployment_id IS DISTINCT FROM d.id")
    none("invariant: no production deployment has expires_at set",
         "SELECT id, agent_id, expires_at FROM deployments WHERE is_production = 1 AND expires_at IS NOT NULL")
    none("invariant: every deployment's agent exists",
         "SELECT d.id, d.agent_id FROM deployments d LEFT JOIN agents a ON a.id = d.agent_id WHERE a.id IS NULL")
    none("invariant: no collected deployment id under another agent than a live deployment with that id",
         "SELECT c.id, c.agent_id, d.agent_id FROM collected_deployments c JOIN deployments d ON d.id = c.id"
         " WHERE d.agent_id <> c.agent_id")
    rows = psql("SELECT count(*), sum(CASE WHEN status = 'Ready' THEN 1 ELSE 0 END),"
                " sum(CASE WHEN expires_at IS NOT NULL THEN 1 ELSE 0 END) FROM deployments")
    crows = psql("SELECT count(*) FROM collected_deployments")
    print(f"# database: {rows[0][0]} deployments ({rows[0][1]} Ready, {rows[0][2]} expiring/deleted), "
          f"{crows[0][0]} collected", flush=True)


def check_acknowledged(events):
    deployments = {(r[0], r[1]) for r in psql("SELECT agent_id, id FROM deployments")}
    collected_events = {(ag, d) for ag, d, t, _, _ in events if t == "GarbageCollected"}
    missing = []
    n_gc = 0
    for agent_id, did, t0, t1, slot, inc in REG_ACKS:
        if (agent_id, did) in deployments:
            continue
        if (agent_id, did) in collected_events:
            n_gc += 1
            continue
        missing.append(f"registration {did} of {agent_id} via {slot}.{inc} (answered at {t1})")
    report(not missing, f"no lost registration: all {len(REG_ACKS)} answered 200 exist ({n_gc} collected by GC, "
           f"each with a GarbageCollected event)", "; ".join(missing[:8]))

    by_dep = collections.defaultdict(list)  # (agent, did) -> [(time, type)] in seq (commit) order
    for ag, d, t, at, seq in sorted(events, key=lambda e: e[4]):
        by_dep[(ag, d)].append((at, t))
    lost = []
    noops = 0
    for kind, agent_id, did, t0, t1, slot, inc in PROD_ACKS:
        hist = by_dep.get((agent_id, did), [])
        want = "Promoted" if kind == "promote" else "RolledBack"
        if any(t == want and t0 - SLACK_US <= at <= t1 + SLACK_US for at, t in hist):
            continue
        if kind == "promote":
            # A no-op: the deployment was production at some moment between the send and the answer:
            # already when it was sent, or made so by another client's promotion/rollback meanwhile.
            state = False
            for at, t in hist:
                if at >= t0 - SLACK_US:
                    continue
                if t in ("Promoted", "AutoPromoted", "RolledBack"):
                    state = True
                elif t == "Demoted":
                    state = False
            if state or any(t in ("Promoted", "AutoPromoted", "RolledBack") and t0 - SLACK_US <= at <= t1 + SLACK_US
                            for at, t in hist):
                noops += 1
                continue
        lost.append(f"{kind} of {did} ({agent_id}) via {slot}.{inc}, sent {t0} answered {t1}: no {want} event "
                    f"in that window; its events: {hist[-6:]}")
    n_p = sum(1 for x in PROD_ACKS if x[0] == "promote")
    report(not lost, f"no lost promotion/rollback: {n_p} promotions ({noops} no-ops of the current production) "
           f"and {len(PROD_ACKS) - n_p} rollbacks answered 200 each have their event", "; ".join(lost[:5]))


def check_rpc_rule(events):
    """Event order per agent is `seq` order (every write locks the agent row, then inserts its events);
    `created_at` is the transaction's clock, read before it waited for that lock, so it only bounds the
    commit from below."""
    changes = collections.defaultdict(list)  # agent -> [(seq, time, type, did)] in seq order
    demoted_at = {}
    for ag, d, t, at, seq in events:
        if t in ("Promoted", "AutoPromoted", "RolledBack", "ProductionCleared"):
            changes[ag].append((seq, at, t, d))
        elif t == "Demoted":
            demoted_at[(ag, at)] = d
    for v in changes.values():
        v.sort()
    acks = collections.defaultdict(list)  # (agent, slot, inc) -> [(t1, t0, did, kind)]
    for kind, agent_id, did, t0, t1, slot, inc in PROD_ACKS:
        acks[(agent_id, slot, inc)].append((t1, t0, did, kind))
    for v in acks.values():
        v.sort()
    checked = 0
    violations = []
    excused = 0
    for agent_id, slot, inc, t0, t1, served in RPCS:
        prior = [a for a in acks.get((agent_id, slot, inc), []) if a[0] < t0]
        if not prior:
            continue
        a_t1, a_t0, did, kind = prior[-1]
        checked += 1
        if served == did:
            continue
        # The event that made `did` production for this acknowledgement: its own event (in its window),
        # else (a no-op promotion) the last one before, or one in, its window. The earliest candidate.
        want = "Promoted" if kind == "promote" else "RolledBack"
        hist = changes.get(agent_id, [])
        own = [(seq, at) for seq, at, t, d in hist if d == did and t == want
               and a_t0 - SLACK_US <= at <= a_t1 + SLACK_US]
        if not own:
            before = [(seq, at) for seq, at, t, d in hist if d == did and t != "ProductionCleared"
                      and at < a_t0 - SLACK_US]
            inside = [(seq, at) for seq, at, t, d in hist if d == did and t != "ProductionCleared"
                      and a_t0 - SLACK_US <= at <= a_t1 + SLACK_US]
            own = before[-1:] + inside
        base_seq, committed = min(own) if own else (-1, a_t0)
        # A production change ordered after it that may have committed before the RPC was answered.
        later = [x for x in hist if x[0] > base_seq and x[1] <= t1 + SLACK_US]
        if later:
            excused += 1
            continue
        what = "the deployment it demoted" if demoted_at.get((agent_id, committed)) == served else "another deployment"
        violations.append(f"agent {agent_id}: {kind} to {did} answered 200 by {slot}.{inc} at {a_t1}; an RPC sent "
                          f"through the same process at {t0} (answered {t1}) was served by {served!r} ({what}), "
                          f"with no production change of that agent ordered after it; the agent's changes around "
                          f"it (seq, created_at, type, id): "
                          f"{[x for x in hist if a_t0 - 2_000_000 <= x[1] <= t1 + 2_000_000][:8]}")
    report(not violations, f"RPC rule: {checked} RPCs sent through the replica that acknowledged the agent's last "
           f"promotion/rollback reach that deployment ({excused} excused by a later production change)",
           "; ".join(violations[:5]))


def run():
    if not setup():
        return
    STATE["t0"] = time.monotonic()
    threads = [threading.Thread(target=client, args=(SEED + i + 1,), daemon=True) for i in range(CLIENTS)]
    kt = threading.Thread(target=killer, args=(random.Random(SEED),), daemon=True)
    for t in threads:
        t.start()
    kt.start()
    time.sleep(DURATION)
    STOP.set()
    for t in threads:
        t.join(timeout=15)
    kt.join(timeout=40)
    print(f"# chaos ran {time.monotonic() - STATE['t0']:.1f}s with {CLIENTS} clients; "
          f"{len(KILLS)} kills ({sum(1 for k in KILLS if k[1])} of the leader); restarts healthy after "
          + ", ".join(f"{k[3]:.1f}s" for k in KILLS), flush=True)
    print("# operations by outcome:", flush=True)
    for op in ("register", "promote", "rollback", "delete", "restore", "rpc"):
        c = COUNTS.get(op, collections.Counter())
        print(f"#   {op:9} {sum(c.values()):6}  " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())), flush=True)
    for kind in ("5xx other than 502/503/504", "unexpected 4xx", "connection error or timeout on a live replica",
                 "a killed replica did not restart", "RPC answered 200 without x-cutover-deployment-id"):
        found = PROBLEMS.get(kind, [])
        report(not found, f"during the chaos: none of: {kind}", f"{len(found)}: " + "; ".join(found[:5]))
    report(len(KILLS) >= max(1, int(DURATION / KILL_EVERY) - 2), f"replicas were killed ({len(KILLS)} kills)")
    quiesce()
    check_invariants()
    events = [(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in psql(
        "SELECT agent_id, coalesce(deployment_id, ''), type, created_at, seq FROM events WHERE type IN"
        " ('Promoted', 'AutoPromoted', 'RolledBack', 'Demoted', 'ProductionCleared', 'GarbageCollected')")]
    check_acknowledged(events)
    check_rpc_rule(events)
    crit = []
    for name, proc, path in PROCS:
        try:
            with open(path, "rb") as f:
                for line in f:
                    text = line.decode("utf-8", "replace")
                    if '"level":"critical"' in text.replace(" ", ""):
                        crit.append(f"{name}: {short(text, 300)}")
        except OSError:
            pass
    report(not crit, "no replica logged a critical line", "; ".join(crit[:3]))


def stop_everything():
    ct.stop_all([proc for _, proc, _ in PROCS], STATE.get("pods", []))


def kill_procs():
    for _, proc, _ in PROCS:
        try:
            proc.kill()
        except Exception:
            pass


def main():
    if not (BIN and DATABASE_URL and TMP):
        print("chaos.py: CHAOS_BIN, CHAOS_DATABASE_URL and CHAOS_TMP are required (run hack/chaos.sh)",
              file=sys.stderr)
        return 2
    timer = ct.start_watchdog(SUITE_TIMEOUT, f"the chaos run did not finish within {SUITE_TIMEOUT} s", kill_procs)
    started = time.monotonic()
    print(f"# chaos on {DATABASE_URL}: {DURATION:.0f}s, {CLIENTS} clients, a kill every ~{KILL_EVERY:.0f}s, "
          f"seed {SEED}", flush=True)
    try:
        run()
    except Exception as e:
        report(False, "the chaos run raised", f"{type(e).__name__}: {e}")
    finally:
        timer.cancel()
        stop_everything()
        print(f"# total {time.monotonic() - started:.1f}s", flush=True)
    ct.summary()
    return 1 if ct.FAILED else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
