#!/usr/bin/env python3
"""Checks of the `cutover` client commands (started by hack/cli-test.sh, once per backend).

Standard library only. Starts one `cutover serve` (an admin token, --progress-deadline 4s, HTTP
probes) on the database it is given and a healthy stand-in agent pod (threaded http.server, GET
/healthz 200) on 127.0.0.1 ephemeral ports, registers a few agents' pods with POST /agents/register
(deployment-scoped), then runs the built binary as a CLI (CUTOVER_SERVER / CUTOVER_TOKEN in its
environment, or the --server / --token flags) and checks exit codes, stdout and stderr against the
contract of the client commands: agents, deployments, promote, rollback, delete, restore (each with
--dry-run writing nothing), events, the --watch streams, wait, apply, server errors and an
unreachable server. The API itself (urllib) is the reference: `-o json` must equal its JSON, `-o
yaml` the same value. Prints one line per check ("ok - ..." / "FAIL - ...") and "N passed, M
failed"; exits 1 if any check failed.

Environment:
  CLI_BIN            the cutover binary (server and client; required)
  CLI_DATABASE_URL   the database for `cutover serve` (sqlite://... or postgres://...; required)
  CLI_TMP            directory for the server log, apply files and watchers' stderr (required)
  CLI_BACKEND        sqlite | postgres (prefixes every check name)
  CLI_PIDS           file to append every started process id to (the wrapper's safety net)
  CLI_SKIP           comma-separated check function names to skip (debugging)
"""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import cutover_test as ct  # noqa: E402  (hack/lib/cutover_test.py)
from cutover_test import Pod, free_port, short, wait_for  # noqa: E402

BIN = os.environ.get("CLI_BIN", "")
DATABASE_URL = os.environ.get("CLI_DATABASE_URL", "")
TMP = os.environ.get("CLI_TMP", "")
BACKEND = os.environ.get("CLI_BACKEND", "sqlite")
PIDS = os.environ.get("CLI_PIDS", "")
SKIP = ct.skip_set("CLI_SKIP")
SUITE_TIMEOUT = 100  # seconds; a watchdog ends the run (as a failure) if anything ever hangs
DEADLINE_S = 4  # --progress-deadline: a deployment nobody registers is Failed after this
TOKEN = "cli-admin-" + secrets.token_hex(12)
URL = ""  # http://127.0.0.1:PORT, once the server runs
DRY = " (dry run)"

ct.SHOW_OK_DETAIL = False  # "ok - name" lines carry no detail; figures are printed as "# ..." lines

STATE = {"procs": [], "pods": [], "background": [], "outputs": []}
AGE_RE = re.compile(r"^\d+[smhd]$")


def check(ok, name, detail=""):
    return ct.report(bool(ok), f"{BACKEND}: {name}", detail)


def remember_pid(pid):
    if PIDS:
        with open(PIDS, "a") as f:
            f.write(f"{pid}\n")


# ---------------------------------------------------------------------------------------------
# The API (urllib, no proxies, bounded): the reference the CLI's output is compared with.
# ---------------------------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def api(method, path, body=None, token=TOKEN, timeout=5.0):
    """(status, parsed JSON body or None); status None when the server did not answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except Exception as e:  # refused, reset, timeout
        return None, f"{type(e).__name__}: {e}"
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def q(did):
    return urllib.parse.quote(did, safe="")


AGENT_IDS = {}  # name -> id


def dpath(agent, did=None, suffix=""):
    base = f"/agents/{AGENT_IDS[agent]}/deployments"
    return (f"{base}/{q(did)}" if did is not None else base) + suffix


def get_agent(agent):
    return api("GET", f"/agents/{AGENT_IDS[agent]}")[1]


def get_dep(agent, did):
    """The deployment's JSON, or None when the API does not answer 200."""
    status, body = api("GET", dpath(agent, did))
    return body if status == 200 else None


def events(agent, limit=1000):
    status, body = api("GET", f"/agents/{AGENT_IDS[agent]}/events?limit={limit}")
    return body if status == 200 and isinstance(body, list) else []


def snapshot(agent, dids):
    """What a dry run must leave as it is: the agent, the deployments and the events written by
    anyone but the controller (its Failed events of never-registered deployments come on their own)."""
    return {"agent": get_agent(agent), "deployments": {d: get_dep(agent, d) for d in dids},
            "events": len([e for e in events(agent) if e.get("actor") != "controller"])}


def snapshot_diff(before, after):
    problems = []
    if before["agent"] != after["agent"]:
        problems.append(f"agent changed: {short(before['agent'])} -> {short(after['agent'])}")
    for d, b in before["deployments"].items():
        if b != after["deployments"].get(d):
            problems.append(f"deployment {d} changed: {short(b)} -> {short(after['deployments'].get(d))}")
    if before["events"] != after["events"]:
        problems.append(f"event count {before['events']} -> {after['events']}")
    return "; ".join(problems)


def register(agent, did, url=None, image=None):
    """POST /agents/register for one pod of deployment `did` (as hack/e2e.py does); remembers the agent id."""
    url = url or STATE["pod"].url
    body = {"name": agent, "description": f"cli test agent {agent}", "acp_type": "async", "acp_url": url,
            "registration_metadata": {"deployment_id": did, "docker_image": image or f"reg.example/{agent}:{did}"}}
    status, answer = api("POST", "/agents/register", body, token=None)
    if status == 200 and isinstance(answer, dict):
        AGENT_IDS[agent] = answer["id"]
    return status, answer


def create_api(agent, did, image=None, metadata=None):
    body = {"docker_image": image or f"reg.example/{agent}:{did}", "id": did}
    if metadata is not None:
        body["registration_metadata"] = metadata
    return api("POST", dpath(agent), body)


def wait_status(agent, did, status, timeout=15.0):
    return bool(wait_for(lambda: (get_dep(agent, did) or {}).get("status") == status, timeout, 0.05))


def error_message(method, path, body=None):
    """The server's message for a request expected to fail (mutations are sent as dry runs)."""
    if method != "GET":
        path += ("&" if "?" in path else "?") + "dry_run=true"
    status, answer = api(method, path, body)
    return status, (answer or {}).get("message") if isinstance(answer, dict) else None


# ---------------------------------------------------------------------------------------------
# Running the CLI.
# ---------------------------------------------------------------------------------------------

def base_env(server=True, token=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_") and k != "NO_COLOR"}
    if server:
        env["CUTOVER_SERVER"] = URL
    if token:
        env["CUTOVER_TOKEN"] = TOKEN
    return env


class Run:
    """One finished CLI run: rc (None: it hung and was killed), stdout, stderr, seconds."""

    def __init__(self, args, rc, out, err, elapsed):
        self.args, self.rc, self.out, self.err, self.elapsed = args, rc, out, err, elapsed

    @property
    def lines(self):
        return self.out.splitlines()

    @property
    def err_lines(self):
        return self.err.splitlines()

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError:
            return "<stdout is not JSON>"

    def describe(self):
        return (f"`cutover {' '.join(self.args)}`: exit {self.rc} after {self.elapsed:.1f}s; "
                f"stdout {short(self.out, 600)!r}; stderr {short(self.err, 400)!r}")


def cli(*args, env=None, stdin=None, timeout=20.0, server=True, token=True):
    e = base_env(server, token)
    e.update(env or {})
    start = time.monotonic()
    try:
        p = subprocess.run([BIN, *args], input=stdin.encode() if stdin is not None else None,
                           stdin=None if stdin is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=timeout)
        run = Run(args, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"),
                  time.monotonic() - start)
    except subprocess.TimeoutExpired as x:
        run = Run(args, None, (x.stdout or b"").decode("utf-8", "replace"),
                  (x.stderr or b"").decode("utf-8", "replace") + f" [killed: still running after {timeout}s]",
                  time.monotonic() - start)
    STATE["outputs"].append(run)
    return run


class Background:
    """A CLI process left running (watch, wait, apply --wait): stdout lines collected as they come."""

    def __init__(self, name, *args):
        self.name, self.args = name, args
        self.err_path = os.path.join(TMP, f"{name}.stderr")
        self.started = time.monotonic()
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.DEVNULL, env=base_env())
        remember_pid(self.proc.pid)
        self.lines = []  # (seconds since start, line without the newline)
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        STATE["background"].append(self)

    def _read(self):
        for raw in self.proc.stdout:
            with self.lock:
                self.lines.append((time.monotonic() - self.started, raw.decode("utf-8", "replace").rstrip("\n")))

    def texts(self):
        with self.lock:
            return [t for _, t in self.lines]

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait(self, timeout):
        """Exit code, or None if it still runs after timeout seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGINT, timeout=5.0):
        """Sends sig; (exit code, seconds to exit) or (None, timeout) when it had to be killed."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        start = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.wait(timeout)
        took = time.monotonic() - start
        if rc is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.reader.join(timeout=2)
        return rc, took

    def finished_run(self):
        """A Run of the ended process (for the output checks)."""
        self.reader.join(timeout=2)
        run = Run(self.args, self.proc.returncode, "".join(t + "\n" for t in self.texts()), self.stderr(),
                  time.monotonic() - self.started)
        STATE["outputs"].append(run)
        return run

    def describe(self):
        return (f"`cutover {' '.join(self.args)}`: exit {self.proc.poll()}; stdout {short(chr(10).join(self.texts()), 600)!r}; "
                f"stderr {short(self.stderr(), 400)!r}")


# ---------------------------------------------------------------------------------------------
# Parsing the CLI's output.
# ---------------------------------------------------------------------------------------------

def split_row(line, n):
    return re.split(r" {3,}", line.strip(), maxsplit=n - 1)


def parse_table(text):
    """(header words, rows of cells). Cells are cut at the header's column starts when the row is
    aligned with the header (kubectl-like), else split on runs of 3+ spaces."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return [], []
    header_line = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header_line)]
    header = header_line.split()
    rows = []
    for line in lines[1:]:
        # Aligned: every column start (but the first) follows a space, so no value runs into the next column.
        if all(s == 0 or s >= len(line) or line[s - 1] == " " for s in starts):
            rows.append([line[s:(starts[i + 1] if i + 1 < len(starts) else len(line))].strip()
                         for i, s in enumerate(starts)])
        else:
            rows.append(split_row(line, len(header)))
    return header, rows


def header_ok(text, columns):
    """The first line is exactly the columns, in capitals, separated by at least 3 spaces."""
    first = text.splitlines()[0] if text.strip() else ""
    return re.fullmatch(r" {3,}".join(re.escape(c) for c in columns) + r"\s*", first) is not None


def yaml_load(text):
    """The value of a YAML document with PyYAML (timestamps left as strings), or raises ImportError."""
    import yaml  # noqa: PLC0415  (optional)

    class Loader(yaml.SafeLoader):
        pass
    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return yaml.load(text, Loader=Loader)  # noqa: S506  (a SafeLoader subclass)


def _plain(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            return text[1:-1]
    return {"null": None, "~": None, "": None, "true": True, "false": False}.get(text, text)


def yaml_matches(text, expected):
    """(ok, detail): the YAML text holds the value `expected` (PyYAML when present; else the
    top-level `key: value` lines of a mapping / the items of a list are compared)."""
    sorted_problem = ""
    if isinstance(expected, dict):
        keys = [m.group(1) for m in re.finditer(r"^([A-Za-z_][A-Za-z0-9_]*):", text, re.M)]
        if keys != sorted(keys):
            sorted_problem = f"top-level keys not sorted: {keys}"
    try:
        value = yaml_load(text)
        if value != expected:
            return False, f"YAML value {short(value, 500)} != API {short(expected, 500)}"
        return not sorted_problem, sorted_problem or "parsed with PyYAML"
    except ImportError:
        pass
    except Exception as e:  # not YAML at all
        return False, f"not YAML: {type(e).__name__}: {short(str(e), 200)}"
    if isinstance(expected, list):
        items = re.findall(r"^- ", text, re.M)
        ids = {_plain(m.group(1)) for m in re.finditer(r"^[- ] (?:  )*id: (.*)$", text, re.M)}
        want = {x.get("id") for x in expected if isinstance(x, dict)}
        ok = len(items) == len(expected) and want <= ids
        return ok, f"{len(items)} items (want {len(expected)}), ids {sorted(map(str, ids))} (without PyYAML)"
    problems = []
    lines = text.splitlines()
    for key, want in expected.items():
        if isinstance(want, (dict, list)) and want:
            continue
        for i, line in enumerate(lines):
            m = re.match(rf"^{re.escape(key)}:(.*)$", line)
            if not m:
                continue
            folded = i + 1 < len(lines) and lines[i + 1].startswith(" ")
            if folded:
                break
            got = _plain(m.group(1))
            if want in ({}, []):
                got = {"{}": {}, "[]": []}.get(m.group(1).strip(), got)
            if got != want and str(got) != str(want):
                problems.append(f"{key}: {got!r} != {want!r}")
            break
        else:
            problems.append(f"no line '{key}: ...'")
    if sorted_problem:
        problems.append(sorted_problem)
    return not problems, "; ".join(problems) or "key: value lines match (without PyYAML)"


def one_json_output(run):
    """stdout is one JSON value followed by exactly one newline."""
    return run.out.endswith("\n") and not run.out.endswith("\n\n")


def error_line_ok(run, message):
    """Exit 1, nothing on stdout, and stderr exactly `error: <message>` on one line."""
    return run.rc == 1 and run.out == "" and run.err_lines == [f"error: {message}"]


# ---------------------------------------------------------------------------------------------
# Setup: the server, the pod, the agents.
# ---------------------------------------------------------------------------------------------

def start_server():
    """Starts `cutover serve` on STATE["port"] (a new log file each time); True once /healthz answers."""
    STATE["logs"] = STATE.get("logs", []) + [os.path.join(TMP, f"server-{len(STATE.get('logs', [])) + 1}.log")]
    STATE["log"] = STATE["logs"][-1]
    proc = ct.start_serve(BIN, DATABASE_URL, STATE["port"],
                          ["--admin-token", TOKEN, "--progress-deadline", f"{DEADLINE_S}s", "--probe", "http",
                           "--log-format", "json", "--shutdown-grace", "2s"],
                          STATE["log"], PIDS or os.path.join(TMP, "pids"))
    STATE["procs"].append(proc)
    STATE["server"] = proc
    return ct.wait_serving(proc, STATE["port"], 60.0)


def setup():
    global URL
    port = free_port()
    URL = f"http://127.0.0.1:{port}"
    STATE["port"] = port
    if not check(start_server(), "cutover serve starts and answers /healthz",
                 f"exit {STATE['server'].poll()}; " + " | ".join(ct.log_tail(STATE["log"], 15, 300))):
        raise SystemExit(finish())
    STATE["pod"] = Pod("cli-pod")
    STATE["pods"].append(STATE["pod"])
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: probes are refused
    problems = []
    for agent, did, url in [("cli-alpha", "a1", None), ("cli-alpha", "a2", None), ("cli-alpha", "a3", None),
                            ("cli-beta", "b1", None), ("cli-gamma", "g1", None), ("cli-delta", "d1", dead_url),
                            ("cli-create", "c1", None), ("cli-wait", "w1", None)]:
        status, answer = register(agent, did, url)
        if status != 200:
            problems.append(f"register {agent}/{did}: {status} {short(answer)}")
        if did in ("a1", "a2"):  # a1 is the first Ready one (auto-promoted), a2 the second
            if not wait_status(agent, did, "Ready", 10):
                problems.append(f"{agent}/{did} not Ready: {short(get_dep(agent, did))}")
    # Never registered: Failed once the progress deadline passes (the checks that need it wait for it).
    for agent, did in [("cli-create", "c-doomed"), ("cli-wait", "w-fail")]:
        status, answer = create_api(agent, did)
        if status != 200:
            problems.append(f"create {agent}/{did}: {status} {short(answer)}")
    for agent, did in [("cli-alpha", "a3"), ("cli-beta", "b1"), ("cli-gamma", "g1"), ("cli-create", "c1"),
                       ("cli-wait", "w1")]:
        if not wait_status(agent, did, "Ready", 10):
            problems.append(f"{agent}/{did} not Ready: {short(get_dep(agent, did))}")
    if not check(not problems, "setup: 6 agents registered through POST /agents/register, their pods Ready",
                 "; ".join(problems)):
        raise SystemExit(finish())
    print(f"# server {URL} ({BACKEND}), pod {STATE['pod'].url}, agents {AGENT_IDS}", flush=True)


# ---------------------------------------------------------------------------------------------
# The checks.
# ---------------------------------------------------------------------------------------------

def check_connection_options():
    # --token instead of CUTOVER_TOKEN; --server instead of CUTOVER_SERVER (and over it).
    _, reference = api("GET", "/agents")
    r = cli("agents", "list", "-o", "json", "--token", TOKEN, token=False)
    check(r.rc == 0 and r.json() == reference, "--token TOKEN (no CUTOVER_TOKEN) authenticates", r.describe())
    r = cli("agents", "list", "-o", "json", "--server", URL, server=False)
    check(r.rc == 0 and r.json() == reference, "--server URL (no CUTOVER_SERVER) reaches the server", r.describe())
    r = cli("agents", "list", "-o", "json", "--server", URL, env={"CUTOVER_SERVER": "http://127.0.0.1:1"})
    check(r.rc == 0 and r.json() == reference, "--server URL wins over CUTOVER_SERVER", r.describe())

    # No token / a wrong token: the server's 401 message.
    _, unauthorized = error_message_no_token()
    r = cli("agents", "list", token=False)
    check(unauthorized and error_line_ok(r, unauthorized),
          "no token: exit 1, stderr `error: <the server's 401 message>`, nothing on stdout", r.describe())
    r = cli("agents", "list", "--token", "wrong-token", token=False)
    check(unauthorized and error_line_ok(r, unauthorized), "--token with a wrong token: exit 1, the server's 401 message",
          r.describe())

    # Unreachable server: one line naming the URL, exit 1, bounded.
    for args, env in [(["--server", "http://127.0.0.1:1"], None), ([], {"CUTOVER_SERVER": "http://127.0.0.1:1"})]:
        r = cli("agents", "list", *args, env=env, timeout=30)
        how = "--server" if args else "CUTOVER_SERVER"
        check(r.rc == 1 and r.out == "" and len(r.err_lines) == 1
              and r.err_lines[0].startswith("error: cannot reach the Cutover server at http://127.0.0.1:1: ")
              and len(r.err_lines[0]) > len("error: cannot reach the Cutover server at http://127.0.0.1:1: ")
              and r.elapsed < 15,
              f"unreachable server ({how} http://127.0.0.1:1): exit 1, one stderr line "
              "`error: cannot reach the Cutover server at http://127.0.0.1:1: <cause>`", r.describe())

    # Usage errors: exit 64.
    for args, what in [(["promote", "--agent", "cli-alpha"], "promote without DEPLOYMENT"),
                       (["agents", "list", "-o", "xml"], "-o xml"),
                       (["wait", "--agent", "cli-alpha", "a1", "--for", "sideways"], "wait --for sideways"),
                       (["wait", "--agent", "cli-alpha", "a1", "--for", "ready", "--timeout", "soon"],
                        "wait --timeout soon"),
                       (["deployments", "list"], "deployments list without --agent")]:
        r = cli(*args)
        check(r.rc == 64 and r.out == "", f"usage error ({what}): exit 64, nothing on stdout", r.describe())


def error_message_no_token():
    status, body = api("GET", "/agents", token=None)
    return status, (body or {}).get("message") if isinstance(body, dict) else None


def check_agents():
    agents_before = api("GET", "/agents")[1]
    r = cli("agents", "list")
    agents_after = api("GET", "/agents")[1]
    header, rows = parse_table(r.out)
    check(r.rc == 0 and header_ok(r.out, ["NAME", "STATUS", "PRODUCTION", "TYPE", "AGE"]),
          "agents list: header `NAME   STATUS   PRODUCTION   TYPE   AGE`", r.describe())
    by_name = {row[0]: row for row in rows if row}
    problems = []
    for agent in agents_after or []:
        row = by_name.get(agent["name"])
        want = [agent["name"], agent["status"], agent["production_deployment_id"] or "<none>", agent["acp_type"]]
        if row is None or len(row) != 5 or row[:4] != want or not AGE_RE.match(row[4]):
            problems.append(f"row {row} != {want} + AGE")
    if len(rows) != len(agents_after or []):
        problems.append(f"{len(rows)} rows for {len(agents_after or [])} agents")
    check(r.rc == 0 and not problems, "agents list: one row per agent (NAME, STATUS, PRODUCTION id, TYPE, AGE)",
          "; ".join(problems) + " | " + r.describe())
    check((by_name.get("cli-delta") or [None] * 3)[2:3] == ["<none>"],
          "agents list: an agent without production shows `<none>`", r.describe())

    r = cli("agents", "list", "-o", "json")
    check(r.rc == 0 and one_json_output(r) and r.json() in (agents_before, api("GET", "/agents")[1]),
          "agents list -o json: the API's array (GET /agents), one trailing newline", r.describe())

    alpha = get_agent("cli-alpha")
    for ref, how in [("cli-alpha", "by name"), (AGENT_IDS["cli-alpha"], "by id")]:
        r = cli("agents", "get", ref)
        header, rows = parse_table(r.out)
        check(r.rc == 0 and header_ok(r.out, ["NAME", "STATUS", "PRODUCTION", "TYPE", "AGE"]) and len(rows) == 1
              and rows[0][:4] == ["cli-alpha", alpha["status"], alpha["production_deployment_id"], alpha["acp_type"]],
              f"agents get {how}: one-row table", r.describe())
        r = cli("agents", "get", ref, "-o", "json")
        check(r.rc == 0 and one_json_output(r) and r.json() == get_agent("cli-alpha"),
              f"agents get {how} -o json: equals GET /agents/{{id}}", r.describe())
    r = cli("agents", "get", "cli-alpha", "-o", "yaml")
    ok, detail = yaml_matches(r.out, get_agent("cli-alpha"))
    check(r.rc == 0 and ok, "agents get -o yaml: the same value as the API's JSON, keys sorted",
          detail + " | " + r.describe())
    r = cli("agents", "list", "-o", "yaml")
    ok, detail = yaml_matches(r.out, api("GET", "/agents")[1])
    check(r.rc == 0 and ok, "agents list -o yaml: the same list as the API's JSON", detail + " | " + r.describe())

    _, message = error_message("GET", "/agents/name/no-such-agent")
    r = cli("agents", "get", "no-such-agent")
    check(message and error_line_ok(r, message), "agents get of an unknown agent: exit 1, the server's 404 message",
          r.describe())


def check_agent_delete():
    before = snapshot("cli-beta", ["b1"])
    r = cli("agents", "delete", "cli-beta", "--dry-run")
    after = snapshot("cli-beta", ["b1"])
    diff = snapshot_diff(before, after)
    check(r.rc == 0 and r.lines == ["agent cli-beta deleted" + DRY] and not diff,
          "agents delete NAME --dry-run: `agent cli-beta deleted (dry run)`, nothing written", diff + " " + r.describe())
    r = cli("agents", "delete", AGENT_IDS["cli-beta"])
    agent = get_agent("cli-beta")
    check(r.rc == 0 and r.lines == ["agent cli-beta deleted"] and agent.get("status") == "Deleted",
          "agents delete ID: `agent cli-beta deleted` (the name), the agent is Deleted", f"{short(agent)} {r.describe()}")


def deployment_row(d):
    return [d["id"], d["status"] + (" (deleted)" if d.get("expires_at") else ""),
            "yes" if d["is_production"] else "-", d["docker_image"]]


def table_matches(run, expected, columns):
    """Problems comparing a deployments table with the API's list (same order), or ""."""
    header, rows = parse_table(run.out)
    problems = []
    if run.rc != 0 or not header_ok(run.out, columns):
        problems.append("bad exit or header")
    got = [row[:4] for row in rows]
    want = [deployment_row(d) for d in expected]
    if got != want:
        problems.append(f"rows {got} != {want}")
    ages = [row[4] if len(row) > 4 else "" for row in rows]
    if not all(AGE_RE.match(a) for a in ages):
        problems.append(f"AGE values {ages}")
    return "; ".join(problems)


DEP_COLUMNS = ["NAME", "STATUS", "PRODUCTION", "IMAGE", "AGE"]


def check_deployments_read():
    listed = api("GET", dpath("cli-alpha"))[1]
    r = cli("deployments", "list", "--agent", "cli-alpha")
    problems = table_matches(r, listed, DEP_COLUMNS)
    check(not problems, "deployments list: header `NAME   STATUS   PRODUCTION   IMAGE   AGE`, rows newest first "
          "(id, status, yes/-, image, age)", problems + " | " + r.describe())
    r = cli("deployments", "list", "--agent", "cli-alpha", "-o", "json")
    check(r.rc == 0 and one_json_output(r) and r.json() == api("GET", dpath("cli-alpha"))[1],
          "deployments list -o json: the API's array", r.describe())
    r2 = cli("deployments", "list", "--agent", AGENT_IDS["cli-alpha"], "-o", "json")
    check(r2.rc == 0 and r2.out == r.out, "deployments list --agent ID: the same as --agent NAME", r2.describe())
    r = cli("deployments", "list", "--agent", "cli-alpha", "-o", "yaml")
    ok, detail = yaml_matches(r.out, api("GET", dpath("cli-alpha"))[1])
    check(r.rc == 0 and ok, "deployments list -o yaml: the same list as the API's JSON", detail + " | " + r.describe())

    d = get_dep("cli-alpha", "a1")
    r = cli("deployments", "get", "a1", "--agent", "cli-alpha")
    problems = table_matches(r, [d], DEP_COLUMNS)
    check(not problems, "deployments get: one-row table", problems + " | " + r.describe())
    r = cli("deployments", "get", "a1", "--agent", AGENT_IDS["cli-alpha"], "-o", "json")
    check(r.rc == 0 and one_json_output(r) and r.json() == get_dep("cli-alpha", "a1"),
          "deployments get -o json (--agent ID): equals GET .../deployments/{did}", r.describe())
    r = cli("deployments", "get", "a2", "--agent", "cli-alpha", "-o", "yaml")
    ok, detail = yaml_matches(r.out, get_dep("cli-alpha", "a2"))
    check(r.rc == 0 and ok, "deployments get -o yaml: the same value as the API's JSON, keys sorted",
          detail + " | " + r.describe())

    _, message = error_message("GET", dpath("cli-alpha", "no-such-deployment"))
    r = cli("deployments", "get", "no-such-deployment", "--agent", "cli-alpha")
    check(message and error_line_ok(r, message), "deployments get of an unknown id: exit 1, the server's 404 message",
          r.describe())
    _, message = error_message("GET", "/agents/name/no-such-agent")
    r = cli("deployments", "list", "--agent", "no-such-agent")
    check(message and error_line_ok(r, message), "deployments list --agent <unknown>: exit 1, the server's 404 message",
          r.describe())


def created_events(agent, did):
    return [e for e in events(agent) if e.get("deployment_id") == did and e.get("type") == "Created"]


def check_create():
    before = snapshot("cli-create", ["c1"])
    r = cli("deployments", "create", "--agent", "cli-create", "--image", "reg.example/create:dry", "--id", "c-dry",
            "--dry-run")
    after = snapshot("cli-create", ["c1"])
    status, _ = api("GET", dpath("cli-create", "c-dry"))
    diff = snapshot_diff(before, after)
    check(r.rc == 0 and r.lines == ["deployment cli-create/c-dry created" + DRY] and status == 404 and not diff,
          "deployments create --dry-run: `... created (dry run)`, nothing written",
          f"GET {status}; {diff} {r.describe()}")

    r = cli("deployments", "create", "--agent", "cli-create", "--image", "reg.example/create:2", "--id", "c-labels",
            "--label", "team=core", "--label", "tier=gold")
    d = get_dep("cli-create", "c-labels") or {}
    check(r.rc == 0 and r.lines == ["deployment cli-create/c-labels created"]
          and d.get("docker_image") == "reg.example/create:2"
          and d.get("registration_metadata") == {"team": "core", "tier": "gold"} and d.get("status") == "Pending",
          "deployments create --label k=v...: `deployment cli-create/c-labels created`, labels in registration_metadata",
          f"{short(d)} {r.describe()}")
    r = cli("deployments", "create", "--agent", "cli-create", "--image", "reg.example/create:2", "--id", "c-labels",
            "--label", "team=core", "--label", "tier=gold")
    n = len(created_events("cli-create", "c-labels"))
    check(r.rc == 0 and r.err == "" and n == 1,
          "deployments create of the same id again: exit 0, no second Created event", f"{n} Created events; {r.describe()}")

    r = cli("deployments", "create", "--agent", AGENT_IDS["cli-create"], "--image", "reg.example/create:3", "--id",
            "c-json", "-o", "json")
    check(r.rc == 0 and one_json_output(r) and r.json() == get_dep("cli-create", "c-json"),
          "deployments create -o json (--agent ID): the API's answer (= GET of the new deployment)", r.describe())

    r = cli("deployments", "create", "--agent", "cli-create", "--image", "reg.example/create:4")
    m = re.fullmatch(r"deployment cli-create/(\S+) created", r.out.strip())
    check(r.rc == 0 and m and get_dep("cli-create", m.group(1)) is not None,
          "deployments create without --id: the server's id in `deployment cli-create/ID created`", r.describe())

    r = cli("deployments", "create", "--agent", "cli-create", "--image", "reg.example/create:5", "--id", "bad id!")
    check(r.rc == 1 and r.out == "" and len(r.err_lines) == 1 and r.err.startswith("error: ") and "id" in r.err,
          "deployments create with an invalid id: exit 1, the server's 422 message", r.describe())


def check_server_errors():
    # Pending (c-pending, created now) and Failed (c-doomed, never registered) cannot be promoted.
    create_api("cli-create", "c-pending")
    for did, status in [("c-pending", "Pending"), ("c-doomed", "Failed")]:
        reached = wait_status("cli-create", did, status, 15)
        before = snapshot("cli-create", ["c1", did])
        _, message = error_message("POST", dpath("cli-create", did, "/promote"), {})
        r = cli("promote", "--agent", "cli-create", did)
        diff = snapshot_diff(before, snapshot("cli-create", ["c1", did]))
        check(reached and message and status in message and error_line_ok(r, message) and not diff,
              f"promote a {status} deployment: exit 1, stderr `error: <the server's 409 message>`, nothing on stdout",
              f"status reached {reached}; message {message!r}; {diff} {r.describe()}")
    r = cli("promote", "--agent", "cli-create", "c-doomed", "-o", "json")
    check(r.rc == 1 and r.out == "" and r.err.startswith("error: "),
          "promote a Failed deployment -o json: the error on stderr, nothing on stdout", r.describe())


def check_promote_rollback():
    dids = ["a1", "a2", "a3"]
    a = get_agent("cli-alpha")
    if not check(a.get("production_deployment_id") == "a1", "alpha: a1 (first Ready) is production", short(a)):
        return

    before = snapshot("cli-alpha", dids)
    r = cli("promote", "--agent", "cli-alpha", "a2", "--dry-run")
    diff = snapshot_diff(before, snapshot("cli-alpha", dids))
    check(r.rc == 0 and r.lines == ["deployment cli-alpha/a2 promoted to production" + DRY] and not diff,
          "promote --dry-run: `deployment cli-alpha/a2 promoted to production (dry run)`, nothing written",
          diff + " " + r.describe())

    r = cli("promote", "--agent", "cli-alpha", "a2", "--reason", "cli test promote")
    a = get_agent("cli-alpha")
    promoted = [e for e in events("cli-alpha") if e["type"] == "Promoted" and e["deployment_id"] == "a2"]
    check(r.rc == 0 and r.lines == ["deployment cli-alpha/a2 promoted to production"]
          and a.get("production_deployment_id") == "a2" and promoted and promoted[0].get("reason") == "cli test promote"
          and promoted[0].get("actor") == "admin",
          "promote --reason: `deployment cli-alpha/a2 promoted to production`, a2 is production, the event has the reason",
          f"{short(a)} {short(promoted)} {r.describe()}")

    before = snapshot("cli-alpha", dids)
    r = cli("rollback", "--agent", "cli-alpha", "--dry-run")
    diff = snapshot_diff(before, snapshot("cli-alpha", dids))
    check(r.rc == 0 and r.lines == ["agent cli-alpha rolled back to a1" + DRY] and not diff,
          "rollback --dry-run: `agent cli-alpha rolled back to a1 (dry run)`, nothing written", diff + " " + r.describe())

    r = cli("rollback", "--agent", "cli-alpha", "--reason", "cli test rollback")
    a = get_agent("cli-alpha")
    check(r.rc == 0 and r.lines == ["agent cli-alpha rolled back to a1"] and a.get("production_deployment_id") == "a1",
          "rollback (default target): `agent cli-alpha rolled back to a1`, a1 is production", f"{short(a)} {r.describe()}")

    before = snapshot("cli-alpha", dids)
    r = cli("rollback", "--agent", "cli-alpha", "--to", "a2", "--dry-run")
    diff = snapshot_diff(before, snapshot("cli-alpha", dids))
    check(r.rc == 0 and r.lines == ["agent cli-alpha rolled back to a2" + DRY] and not diff,
          "rollback --to --dry-run: `agent cli-alpha rolled back to a2 (dry run)`, nothing written",
          diff + " " + r.describe())

    r = cli("rollback", "--agent", AGENT_IDS["cli-alpha"], "--to", "a2")
    a = get_agent("cli-alpha")
    check(r.rc == 0 and r.lines == ["agent cli-alpha rolled back to a2"] and a.get("production_deployment_id") == "a2",
          "rollback --to a2 (--agent ID): `agent cli-alpha rolled back to a2`, a2 is production",
          f"{short(a)} {r.describe()}")

    _, message = error_message("POST", f"/agents/{AGENT_IDS['cli-alpha']}/rollback", {"to_deployment_id": "a3"})
    before = snapshot("cli-alpha", dids)
    r = cli("rollback", "--agent", "cli-alpha", "--to", "a3")
    diff = snapshot_diff(before, snapshot("cli-alpha", dids))
    check(message and error_line_ok(r, message) and not diff,
          "rollback --to a never-production deployment: exit 1, the server's 409 message, nothing written",
          diff + " " + r.describe())

    r = cli("promote", "--agent", "cli-alpha", "a1", "-o", "json")
    check(r.rc == 0 and one_json_output(r) and r.json() == get_dep("cli-alpha", "a1")
          and get_agent("cli-alpha").get("production_deployment_id") == "a1",
          "promote -o json: the API's answer (the promoted deployment)", r.describe())
    r = cli("rollback", "--agent", "cli-alpha", "-o", "yaml")
    ok, detail = yaml_matches(r.out, get_dep("cli-alpha", "a2"))
    check(r.rc == 0 and ok and get_agent("cli-alpha").get("production_deployment_id") == "a2",
          "rollback -o yaml: the API's answer as YAML", detail + " | " + r.describe())
    # Back to a1 for what follows.
    status, _ = api("POST", dpath("cli-alpha", "a1", "/promote"), {"reason": "cli test reset"})
    check(status == 200, "alpha: a1 promoted again through the API", str(status))


def check_delete_restore():
    dids = ["a1", "a2", "a3"]
    _, message = error_message("DELETE", dpath("cli-alpha", "a1"))
    before = snapshot("cli-alpha", dids)
    r = cli("delete", "--agent", "cli-alpha", "a1")
    diff = snapshot_diff(before, snapshot("cli-alpha", dids))
    check(message and "production" in message and error_line_ok(r, message) and not diff,
          "delete the production deployment: exit 1, the server's 409 message, nothing written",
          diff + " " + r.describe())

    before = snapshot("cli-alpha", dids)
    r = cli("delete", "--agent", "cli-alpha", "a3", "--dry-run")
    diff = snapshot_diff(before, snapshot("cli-alpha", dids))
    check(r.rc == 0 and len(r.lines) == 1 and r.lines[0].startswith("deployment cli-alpha/a3 deleted")
          and r.lines[0].endswith(DRY) and not diff,
          "delete --dry-run: `deployment cli-alpha/a3 deleted ... (dry run)`, nothing written", diff + " " + r.describe())

    r = cli("delete", "--agent", "cli-alpha", "a3")
    d = get_dep("cli-alpha", "a3") or {}
    expires = d.get("expires_at") or ""
    check(r.rc == 0 and len(r.lines) == 1
          and re.fullmatch(r"deployment cli-alpha/a3 deleted \(restorable until \S.*\)", r.lines[0])
          and expires and expires[:10] in r.lines[0],
          "delete: `deployment cli-alpha/a3 deleted (restorable until <time>)`, soft-deleted in the API",
          f"expires_at {expires}; {r.describe()}")

    r = cli("deployments", "list", "--agent", "cli-alpha")
    _, rows = parse_table(r.out)
    check(r.rc == 0 and "a3" not in [row[0] for row in rows] and len(rows) == 2,
          "deployments list: a soft-deleted deployment is not listed", r.describe())
    r = cli("deployments", "list", "--agent", "cli-alpha", "--all")
    listed = api("GET", dpath("cli-alpha") + "?include_deleted=true")[1]
    problems = table_matches(r, listed, DEP_COLUMNS)
    _, rows = parse_table(r.out)
    a3 = [row for row in rows if row and row[0] == "a3"]
    check(not problems and a3 and a3[0][1] == "Ready (deleted)",
          "deployments list --all: the deleted one with STATUS `Ready (deleted)`", problems + " | " + r.describe())
    r = cli("deployments", "list", "--agent", "cli-alpha", "--all", "-o", "json")
    check(r.rc == 0 and r.json() == api("GET", dpath("cli-alpha") + "?include_deleted=true")[1],
          "deployments list --all -o json: GET ...?include_deleted=true", r.describe())

    before = snapshot("cli-alpha", dids)
    r = cli("restore", "--agent", "cli-alpha", "a3", "--dry-run")
    diff = snapshot_diff(before, snapshot("cli-alpha", dids))
    check(r.rc == 0 and r.lines == ["deployment cli-alpha/a3 restored" + DRY] and not diff,
          "restore --dry-run: `deployment cli-alpha/a3 restored (dry run)`, still deleted", diff + " " + r.describe())
    r = cli("restore", "--agent", "cli-alpha", "a3")
    d = get_dep("cli-alpha", "a3") or {}
    check(r.rc == 0 and r.lines == ["deployment cli-alpha/a3 restored"] and d.get("expires_at") is None,
          "restore: `deployment cli-alpha/a3 restored`, no longer deleted", f"{short(d)} {r.describe()}")
    r = cli("delete", "--agent", "cli-alpha", "a3", "-o", "json")
    status, _ = api("DELETE", dpath("cli-alpha", "a3") + "?dry_run=true")
    check(r.rc == 0 and isinstance(r.json(), dict) and r.json().get("id") == "a3"
          and "deleted" in str(r.json().get("message")) and (get_dep("cli-alpha", "a3") or {}).get("expires_at"),
          "delete -o json: the API's answer ({id, message})", r.describe())
    r = cli("restore", "--agent", "cli-alpha", "a3", "-o", "json")
    check(r.rc == 0 and r.json() == get_dep("cli-alpha", "a3") and r.json().get("expires_at") is None,
          "restore -o json: the API's answer (the restored deployment)", r.describe())


def check_watch():
    """events --watch (table and -o json) and deployments list --watch see a promotion made through the API."""
    evs = events("cli-alpha")
    deps = api("GET", dpath("cli-alpha"))[1]
    production = get_agent("cli-alpha").get("production_deployment_id")
    target = next((d["id"] for d in deps if d["status"] == "Ready" and not d["is_production"]), None)
    if not check(target is not None, "watch: alpha has a Ready deployment to promote", short(deps)):
        return
    w_events = Background("watch-events", "events", "--agent", "cli-alpha", "--watch")
    w_json = Background("watch-events-json", "events", "--agent", "cli-alpha", "--watch", "-o", "json")
    w_deps = Background("watch-deployments", "deployments", "list", "--agent", "cli-alpha", "--watch")
    w_djson = Background("watch-deployments-json", "deployments", "list", "--agent", "cli-alpha", "--watch", "-o", "json")
    try:
        # (What deployments list --watch -o json prints first is not in the contract: at least a line.)
        initial = {w_events: 1 + len(evs), w_json: len(evs), w_deps: 1 + len(deps), w_djson: 1}
        ready = wait_for(lambda: all(len(w.texts()) >= n for w, n in initial.items()), 10.0, 0.05)
        for w, n in initial.items():
            check(len(w.texts()) >= n and w.proc.poll() is None,
                  f"{w.name}: prints what exists ({n} lines) and keeps running", w.describe())
        if not ready:
            return
        promoted_at = time.monotonic()
        status, answer = api("POST", dpath("cli-alpha", target, "/promote"), {"reason": "cli watch test"})
        if not check(status == 200, f"watch: {target} promoted through the API", f"{status} {short(answer)}"):
            return
        after = events("cli-alpha")
        new = [e for e in after if e["id"] not in {x["id"] for x in evs}]

        def events_row():
            rows = [split_row(t, 5) for t in w_events.texts()[initial[w_events]:]]
            return any(len(r) == 5 and r[1] == "Promoted" and r[2] == target for r in rows)

        def json_lines():
            objs = []
            for t in w_json.texts():
                try:
                    objs.append(json.loads(t))
                except ValueError:
                    objs.append(None)
            return objs

        def json_promoted():
            return any(isinstance(o, dict) and o.get("type") == "Promoted" and o.get("deployment_id") == target
                       for o in json_lines())

        def deps_row():
            rows = [split_row(t, 5) for t in w_deps.texts()[initial[w_deps]:]]
            return any(len(r) >= 3 and r[0] == target and r[2] == "yes" for r in rows)

        def djson_line():
            for t in w_djson.texts()[1:]:
                try:
                    o = json.loads(t)
                except ValueError:
                    continue
                if isinstance(o, dict) and o.get("id") == target and o.get("is_production") is True:
                    return o
            return None

        seen = {}
        deadline = promoted_at + 10.0
        while time.monotonic() < deadline and len(seen) < 4:
            for name, f in [("events", events_row), ("json", json_promoted), ("deployments", deps_row),
                            ("deployments-json", djson_line)]:
                if name not in seen and f():
                    seen[name] = time.monotonic() - promoted_at
            time.sleep(0.02)
        print(f"# watch latency after the promotion: {', '.join(f'{k} {v:.2f}s' for k, v in seen.items())}",
              flush=True)
        check("events" in seen, f"events --watch: a Promoted row for {target} within 10 s of the API's promotion",
              w_events.describe())
        check("deployments" in seen,
              f"deployments list --watch: a row `{target} ... yes` within 10 s of the API's promotion", w_deps.describe())
        check("json" in seen, f"events --watch -o json: the Promoted event for {target} within 10 s", w_json.describe())
        check("deployments-json" in seen and djson_line() == get_dep("cli-alpha", target)
              and all(isinstance(json.loads(t), dict) for t in w_djson.texts()[1:] if t.strip().startswith("{")),
              f"deployments list --watch -o json: {target}'s new state as one JSON object (the API's) within 10 s",
              w_djson.describe())
        # One JSON object per line, one line per event: the existing ones and the new ones, each as the API has it.
        wait_for(lambda: len(w_json.texts()) >= len(evs) + len(new), 5.0, 0.05)
        objs = json_lines()
        by_id = {e["id"]: e for e in after}
        bad = [o for o in objs if not isinstance(o, dict) or by_id.get(o.get("id")) != o]
        ids = [o.get("id") for o in objs if isinstance(o, dict)]
        check(not bad and sorted(ids) == sorted(by_id) and len(ids) == len(set(ids)),
              f"events --watch -o json: one JSON object per line, one per event ({len(evs)} existing + {len(new)} new), "
              "each equal to the API's", f"{len(objs)} lines; not matching: {short(bad, 400)}")
        wait_for(lambda: len(w_events.texts()) >= 1 + len(evs) + len(new), 5.0, 0.05)
        check(len(w_events.texts()) == 1 + len(evs) + len(new),
              f"events --watch: one row per new event ({len(new)} new: {[e['type'] for e in new]})", w_events.describe())
        check(production != target, "watch: the promotion changed production", f"{production} -> {target}")
    finally:
        for w in (w_events, w_json, w_deps, w_djson):
            running = w.proc.poll() is None
            rc, took = w.stop(signal.SIGINT, 5.0)
            check(running and rc is not None, f"{w.name}: ends within 5 s of SIGINT (it ran until interrupted)",
                  f"exit {rc} after {took:.1f}s; stderr {short(w.stderr(), 300)!r}")
            w.finished_run()


def shown_message(event):
    reason = event.get("reason")
    if reason and reason not in event["message"]:
        return f"{event['message']} ({reason})"
    return event["message"]


def match_event_rows(rows, evs):
    """Matches every events-table row to one event (type, actor, message; DEPLOYMENT when set). The
    MESSAGE cell may carry the event's reason after the message, ` (<reason>)` (the contract leaves the
    column's text open), and may be cut short. (problems, events no row matched, the matched events'
    created_at in row order)."""
    unused, times, problems = sorted(evs, key=lambda e: e["created_at"]), [], []  # identical rows: oldest first
    for row in rows:
        if len(row) != 5:
            problems.append(f"row {row} has {len(row)} cells")
            continue
        age, typ, dep, actor, message = row
        match = next((e for e in unused if e["type"] == typ and e["actor"] == actor
                      and shown_message(e).startswith(message.rstrip(".…"))
                      and dep in (e["deployment_id"], "-", "<none>", "")), None)
        if match is None or not AGE_RE.match(age) or (match["deployment_id"] and dep != match["deployment_id"]):
            problems.append(f"row {row} matches no event")
            continue
        unused.remove(match)
        times.append(match["created_at"])
    return problems, unused, times


def check_events_table():
    evs = events("cli-alpha")
    r = cli("events", "--agent", "cli-alpha")
    header, rows = parse_table(r.out)
    check(r.rc == 0 and header_ok(r.out, ["AGE", "TYPE", "DEPLOYMENT", "ACTOR", "MESSAGE"]),
          "events: header `AGE   TYPE   DEPLOYMENT   ACTOR   MESSAGE`", r.describe())
    problems, unused, times = match_event_rows(rows, evs)
    check(r.rc == 0 and rows and not problems and not unused and times == sorted(times),
          f"events: one row per event ({len(evs)}), oldest first",
          "; ".join(problems[:5]) + f" unmatched {len(unused)} | " + r.describe())
    r = cli("events", "--agent", "cli-alpha", "-o", "json")
    check(r.rc == 0 and one_json_output(r) and r.json() == api("GET", f"/agents/{AGENT_IDS['cli-alpha']}/events")[1],
          "events -o json: the API's array, newest first", r.describe())
    want = api("GET", dpath("cli-alpha", "a3", "/events"))[1] or []
    r = cli("events", "--agent", "cli-alpha", "--deployment", "a3")
    _, rows = parse_table(r.out)
    problems, unused, times = match_event_rows(rows, want)
    check(r.rc == 0 and rows and not problems and not unused and times == sorted(times)
          and all(row[2] == "a3" for row in rows),
          f"events --deployment a3: a3's {len(want)} events only, oldest first",
          "; ".join(problems[:5]) + f" unmatched {len(unused)} | " + r.describe())
    r = cli("events", "--agent", "cli-alpha", "--deployment", "a3", "-o", "json")
    check(r.rc == 0 and r.json() == api("GET", dpath("cli-alpha", "a3", "/events"))[1],
          "events --deployment a3 -o json: GET .../deployments/a3/events", r.describe())


def check_wait():
    # Already reached: at once.
    r = cli("wait", "--agent", "cli-wait", "w1", "--for", "ready")
    check(r.rc == 0 and r.lines == ["deployment cli-wait/w1 is ready"] and r.elapsed < 3,
          "wait --for ready on a Ready deployment: exit 0 at once, `deployment cli-wait/w1 is ready`", r.describe())
    r = cli("wait", "--agent", "cli-wait", "w1", "--for", "production", "--timeout", "5s")
    check(r.rc == 0 and r.lines == ["deployment cli-wait/w1 is in production"] and r.elapsed < 3,
          "wait --for production on the production deployment: exit 0 at once", r.describe())

    # Ready: the pod registers after the wait started.
    status, _ = create_api("cli-wait", "w-late")
    w = Background("wait-ready", "wait", "--agent", "cli-wait", "w-late", "--for", "ready", "--timeout", "30s")
    time.sleep(0.5)  # the wait is under way (it must still be waiting: nothing registered yet)
    waiting = w.proc.poll() is None
    reg, _ = register("cli-wait", "w-late")
    registered_at = time.monotonic()
    rc = w.wait(20)
    took = time.monotonic() - registered_at
    run = w.finished_run() if rc is not None else None
    check(status == 200 and reg == 200 and waiting and rc == 0 and run.lines == ["deployment cli-wait/w-late is ready"],
          "wait --for ready: still waiting before the pod registers, exit 0 `deployment cli-wait/w-late is ready` after",
          f"waiting {waiting}; {took:.2f}s after the registration; {w.describe()}")
    if rc is None:
        w.stop(signal.SIGKILL)

    # Production: promoted through the API while the wait runs.
    w = Background("wait-production", "wait", "--agent", "cli-wait", "w-late", "--for", "production", "--timeout", "30s")
    time.sleep(0.5)
    waiting = w.proc.poll() is None
    status, _ = api("POST", dpath("cli-wait", "w-late", "/promote"), {})
    promoted_at = time.monotonic()
    rc = w.wait(20)
    took = time.monotonic() - promoted_at
    run = w.finished_run() if rc is not None else None
    check(status == 200 and waiting and rc == 0 and run.lines == ["deployment cli-wait/w-late is in production"],
          "wait --for production: exit 0 `deployment cli-wait/w-late is in production` after a promote",
          f"waiting {waiting}; {took:.2f}s after the promotion; {w.describe()}")
    if rc is None:
        w.stop(signal.SIGKILL)

    # Failed: can no longer become ready, at once.
    failed = wait_status("cli-wait", "w-fail", "Failed", 15)
    r = cli("wait", "--agent", "cli-wait", "w-fail", "--for", "ready", "--timeout", "30s")
    check(failed and r.rc == 1 and r.out == "" and len(r.err_lines) == 1
          and r.err_lines[0].startswith("error: deployment w-fail is Failed") and r.elapsed < 5,
          "wait --for ready on a Failed deployment: exit 1 at once, stderr `error: deployment w-fail is Failed (...)...`",
          r.describe())
    r = cli("wait", "--agent", "cli-wait", "w-fail", "--for", "production", "--timeout", "30s")
    check(r.rc == 1 and "Failed" in r.err and r.elapsed < 5, "wait --for production on a Failed deployment: exit 1 at once",
          r.describe())
    r = cli("wait", "--agent", "cli-wait", "w-fail", "--for", "failed")
    check(r.rc == 0 and r.lines == ["deployment cli-wait/w-fail is failed"] and r.elapsed < 3,
          "wait --for failed on a Failed deployment: exit 0 `deployment cli-wait/w-fail is failed`", r.describe())

    # Timeout: exit 2.
    status, _ = create_api("cli-wait", "w-slow")
    r = cli("wait", "--agent", "cli-wait", "w-slow", "--for", "ready", "--timeout", "1s")
    check(status == 200 and r.rc == 2 and r.out == "" and len(r.err_lines) == 1
          and r.err_lines[0].startswith("error: timed out after 1s waiting for deployment w-slow to be ready; it is Pending")
          and 0.9 <= r.elapsed < 3.5,
          "wait --timeout 1s on a Pending deployment: exit 2 after ~1 s, "
          "`error: timed out after 1s waiting for deployment w-slow to be ready; it is Pending (...)`", r.describe())
    r = cli("wait", "--agent", "cli-wait", "w-slow", "--for", "ready", "--timeout", "250ms")
    check(r.rc == 2 and r.elapsed < 3, "wait --timeout 250ms: exit 2", r.describe())

    # Deleted.
    status, _ = api("DELETE", dpath("cli-wait", "w-fail"))
    r = cli("wait", "--agent", "cli-wait", "w-fail", "--for", "deleted", "--timeout", "10s")
    check(status == 200 and r.rc == 0 and r.lines == ["deployment cli-wait/w-fail is deleted"] and r.elapsed < 3,
          "wait --for deleted on a soft-deleted deployment: exit 0 `deployment cli-wait/w-fail is deleted`", r.describe())
    r = cli("wait", "--agent", "cli-wait", "w-fail", "--for", "ready", "--timeout", "10s")
    check(r.rc == 1 and r.out == "" and len(r.err_lines) == 1 and r.elapsed < 3,
          "wait --for ready on a soft-deleted deployment: exit 1 at once", r.describe())

    # Unknown deployment: the server's 404.
    _, message = error_message("GET", dpath("cli-wait", "w-none"))
    r = cli("wait", "--agent", "cli-wait", "w-none", "--for", "ready", "--timeout", "10s")
    check(message and error_line_ok(r, message) and r.elapsed < 5,
          "wait on an unknown deployment: exit 1, the server's 404 message", r.describe())


def write_file(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def doc(did=None, image=None, agent="cli-gamma", production=None, metadata=None, kind="Deployment", extra=""):
    lines = [f"kind: {kind}", f"agent: {agent}"]
    if did is not None:
        lines.append(f"id: {did}")
    if image is not None:
        lines.append(f"image: {image}")
    if metadata is not None:
        lines.append(f"metadata: {metadata}")
    if production is not None:
        lines.append(f"production: {'true' if production else 'false'}")
    return "\n".join(lines) + "\n" + extra


def register_when_created(agent, dids, timeout=25.0):
    """Registers a healthy pod for each of dids as soon as it exists; returns (thread, first GET bodies)."""
    seen = {}

    def run():
        deadline = time.monotonic() + timeout
        pending = list(dids)
        while pending and time.monotonic() < deadline:
            for did in list(pending):
                body = get_dep(agent, did)
                if body is not None:
                    seen[did] = body
                    register(agent, did, image=body["docker_image"])
                    pending.remove(did)
            time.sleep(0.05)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, seen


def check_apply():
    g = "cli-gamma"
    img2, img3 = "reg.example/gamma:2", "reg.example/gamma:3"
    two = write_file("two.yaml", "---\n" + doc("g2", img2, production=True, metadata="{commit: 1f3e9c2, branch: main}")
                     + "---\n" + doc("g3", img3))
    t, seen = register_when_created(g, ["g2", "g3"])
    w = Background("apply-two", "apply", "-f", two, "--wait", "--timeout", "30s")
    rc = w.wait(40)
    t.join(timeout=30)
    run = w.finished_run() if rc is not None else None
    if rc is None:
        w.stop(signal.SIGKILL)
    lines = run.lines if run else []
    a = get_agent(g)
    g3 = get_dep(g, "g3") or {}
    order_ok = ("deployment cli-gamma/g2 created" in lines and "deployment cli-gamma/g2 promoted" in lines
                and lines.index("deployment cli-gamma/g2 created") < lines.index("deployment cli-gamma/g2 promoted"))
    check(rc == 0 and order_ok and "deployment cli-gamma/g3 created" in lines and len(lines) == 3
          and a.get("production_deployment_id") == "g2" and g3.get("docker_image") == img3,
          "apply -f (2 documents) --wait: `g2 created`, `g2 promoted`, `g3 created`; g2 is production",
          f"{short(a)} {w.describe()}")
    check((seen.get("g2") or {}).get("registration_metadata") == {"commit": "1f3e9c2", "branch": "main"}
          and (seen.get("g2") or {}).get("docker_image") == img2,
          "apply: metadata becomes registration_metadata on create", short(seen.get("g2")))
    if not wait_status(g, "g3", "Ready", 10):
        check(False, "apply: g3 Ready after its pod registered", short(get_dep(g, "g3")))

    before = snapshot(g, ["g1", "g2", "g3"])
    r = cli("apply", "-f", two, "--wait", "--timeout", "10s")
    diff = snapshot_diff(before, snapshot(g, ["g1", "g2", "g3"]))
    check(r.rc == 0 and r.lines == ["deployment cli-gamma/g2 unchanged", "deployment cli-gamma/g3 unchanged",
                                    "nothing to change"] and not diff,
          "apply of the same file again: two `unchanged` lines and `nothing to change`, no event written",
          diff + " " + r.describe())
    r = cli("apply", "-f", write_file("by-image.yaml", doc(None, img2)))
    diff = snapshot_diff(before, snapshot(g, ["g1", "g2", "g3"]))
    check(r.rc == 0 and r.lines == ["deployment cli-gamma/g2 unchanged", "nothing to change"] and not diff,
          "apply of a document without id: matched by image (`deployment cli-gamma/g2 unchanged`)",
          diff + " " + r.describe())

    before = snapshot(g, ["g1", "g2", "g3"])
    r = cli("apply", "-f", write_file("no-demote.yaml", doc("g2", img2, production=False)))
    diff = snapshot_diff(before, snapshot(g, ["g1", "g2", "g3"]))
    check(r.rc == 0 and r.lines == ["deployment cli-gamma/g2 unchanged", "nothing to change"] and not diff
          and get_agent(g).get("production_deployment_id") == "g2",
          "apply with production: false on the production deployment: unchanged (never demotes)",
          diff + " " + r.describe())

    # --dry-run: the plan, nothing written.
    dry = write_file("dry.yaml", doc("g4", "reg.example/gamma:4", production=True) + "---\n" + doc("g3", img3))
    before = snapshot(g, ["g1", "g2", "g3", "g4"])
    r = cli("apply", "-f", dry, "--dry-run")
    diff = snapshot_diff(before, snapshot(g, ["g1", "g2", "g3", "g4"]))
    check(r.rc == 0 and r.lines and r.lines[0].startswith("deployment cli-gamma/g4 created")
          and "deployment cli-gamma/g3 unchanged" + DRY in r.lines and all(x.endswith(DRY) for x in r.lines)
          and get_dep(g, "g4") is None and not diff,
          "apply --dry-run: the plan (`g4 created ... (dry run)`, `g3 unchanged (dry run)`), nothing written",
          diff + " " + r.describe())

    # Invalid documents: nothing written even though document 1 is valid.
    valid = doc("g-new", "reg.example/gamma:new", production=True)
    cases = [
        ("missing image", doc("g-x", None), "image"),
        ("unknown field", doc("g-x", "reg.example/gamma:x", extra="colour: blue\n"), "colour"),
        ("wrong kind", doc("g-x", "reg.example/gamma:x", kind="Service"), "kind"),
        ("unknown agent", doc("g-x", "reg.example/gamma:x", agent="no-such-agent"), "agent"),
        ("production not a bool", doc("g-x", "reg.example/gamma:x", extra="production: maybe\n"), "production"),
        ("image differs from the existing deployment's", doc("g2", "reg.example/gamma:999"), "image"),
    ]
    for what, bad, field in cases:
        path = write_file(f"invalid-{field}.yaml", valid + "---\n" + bad)
        before = snapshot(g, ["g1", "g2", "g3", "g-new"])
        r = cli("apply", "-f", path, "--wait", "--timeout", "5s")
        diff = snapshot_diff(before, snapshot(g, ["g1", "g2", "g3", "g-new"]))
        check(r.rc == 1 and r.out == "" and len(r.err_lines) == 1
              and r.err_lines[0].startswith(f"error: {path}: document 2: {field}: ")
              and len(r.err_lines[0]) > len(f"error: {path}: document 2: {field}: ") and not diff,
              f"apply with an invalid document 2 ({what}): exit 1, `error: FILE: document 2: {field}: ...`, "
              "nothing written", diff + " " + r.describe())
    path = write_file("invalid-yaml.yaml", valid + "---\nkind: Deployment\nagent: cli-gamma\nimage: [unclosed\n")
    before = snapshot(g, ["g1", "g2", "g3", "g-new"])
    r = cli("apply", "-f", path)
    diff = snapshot_diff(before, snapshot(g, ["g1", "g2", "g3", "g-new"]))
    check(r.rc == 1 and r.out == "" and len(r.err_lines) == 1 and r.err_lines[0].startswith(f"error: {path}: ")
          and not diff, "apply of bad YAML: exit 1, `error: FILE: ...` on one line, nothing written",
          diff + " " + r.describe())
    check(r.err.startswith(f"error: {path}: document 2: "), "apply of bad YAML: the message names document 2",
          r.describe())

    # A soft-deleted deployment named by id is restored.
    status, _ = api("DELETE", dpath(g, "g3"))
    r = cli("apply", "-f", write_file("restore.yaml", doc("g3", img3)))
    d = get_dep(g, "g3") or {}
    check(status == 200 and r.rc == 0 and r.lines == ["deployment cli-gamma/g3 restored"] and d.get("expires_at") is None,
          "apply naming a soft-deleted deployment: `deployment cli-gamma/g3 restored`", f"{short(d)} {r.describe()}")

    # stdin.
    r = cli("apply", "-f", "-", stdin=doc("g5", "reg.example/gamma:5", production=True))
    d = get_dep(g, "g5") or {}
    check(r.rc == 0 and r.lines == ["deployment cli-gamma/g5 created; not promoted: it is Pending "
                                    "(rerun apply, or use --wait)"]
          and d.get("docker_image") == "reg.example/gamma:5" and get_agent(g).get("production_deployment_id") == "g2",
          "apply -f - (stdin), production: true without --wait: `... created; not promoted: it is Pending "
          "(rerun apply, or use --wait)`", f"{short(d)} {r.describe()}")
    before = snapshot(g, ["g1", "g2", "g6"])
    r = cli("apply", "-f", "-", stdin=doc("g6", None))
    diff = snapshot_diff(before, snapshot(g, ["g1", "g2", "g6"]))
    check(r.rc == 1 and r.out == "" and r.err_lines and r.err_lines[0].startswith("error: -: document 1: image: ")
          and not diff, "apply -f - with an invalid document: `error: -: document 1: image: ...`, nothing written",
          diff + " " + r.describe())


def check_watch_reconnect():
    """events --watch -o json across a restart of the server: it resumes after the last event it saw,
    so the promotion made after the restart arrives, and no event twice."""
    evs = events("cli-alpha")
    w = Background("watch-reconnect", "events", "--agent", "cli-alpha", "--watch", "-o", "json")
    try:
        if not check(wait_for(lambda: len(w.texts()) >= len(evs), 10.0, 0.05) and w.proc.poll() is None,
                     f"watch across a restart: events --watch -o json prints the {len(evs)} existing events",
                     w.describe()):
            return
        old = STATE["server"]
        old.send_signal(signal.SIGTERM)
        try:
            old.wait(timeout=15)
        except subprocess.TimeoutExpired:
            old.kill()
            old.wait(timeout=5)
        stopped_at = time.monotonic()
        if not check(start_server(), "watch across a restart: the server restarts on the same port",
                     " | ".join(ct.log_tail(STATE["log"], 10, 300))):
            return
        print(f"# server down for {time.monotonic() - stopped_at:.1f}s", flush=True)
        alive = w.proc.poll() is None
        deps = api("GET", dpath("cli-alpha"))[1] or []
        target = next((d["id"] for d in deps if d["status"] == "Ready" and not d["is_production"]), None)
        status, _ = api("POST", dpath("cli-alpha", target or "none", "/promote"), {"reason": "cli reconnect test"})
        promoted_at = time.monotonic()
        after = events("cli-alpha")
        got = wait_for(lambda: len(w.texts()) >= len(after), 15.0, 0.05)
        took = time.monotonic() - promoted_at
        objs = []
        for t in w.texts():
            try:
                objs.append(json.loads(t))
            except ValueError:
                objs.append(t)
        ids = [o.get("id") if isinstance(o, dict) else o for o in objs]
        check(alive and status == 200 and got and sorted(ids) == sorted(e["id"] for e in after)
              and len(ids) == len(set(ids)),
              "watch across a restart: the watch keeps running, resumes, and prints each event once "
              f"(the {len(after) - len(evs)} of a promotion after the restart)",
              f"alive {alive}; promote {status}; {took:.1f}s; {len(ids)} lines for {len(after)} events; "
              f"duplicates {len(ids) - len(set(ids))}; {w.describe()}")
    finally:
        w.stop(signal.SIGINT, 5.0)
        w.finished_run()


def check_output_hygiene():
    runs = STATE["outputs"]
    coloured = [r for r in runs if "\x1b" in r.out or "\x1b" in r.err]
    check(not coloured, f"no ANSI escape in any output ({len(runs)} runs; stdout a pipe, NO_COLOR unset)",
          "; ".join(r.describe() for r in coloured[:3]))
    multi = [r for r in runs if r.rc not in (0, 64, None) and len(r.err_lines) > 1]
    check(not multi, "every failing run (but usage errors) wrote at most one stderr line",
          "; ".join(r.describe() for r in multi[:3]))
    proc = STATE.get("server")
    check(proc is not None and proc.poll() is None, "the server is still running", f"exit {proc.poll() if proc else None}")
    bad = [x for log in STATE["logs"] for x in ct.log_level_lines(log, {"critical", "error"}, 400)]
    check(not bad, "the server logs have no error/critical line", " | ".join(bad[:3]))


def check_tasks():
    status, _ = api("POST", "/agents/name/cli-alpha/rpc", {"method": "task/create", "params": {"name": "cli-task-1"}})
    task = api("GET", "/tasks/name/cli-task-1")[1]
    if not check(status == 200 and isinstance(task, dict) and task.get("status") == "RUNNING",
                 "tasks: setup (task/create to cli-alpha made a RUNNING task)", f"{status} {task}"):
        return
    r = cli("tasks", "list", "--agent", "cli-alpha")
    header, rows = parse_table(r.out)
    wanted = [task["id"], "cli-task-1", "RUNNING", task.get("deployment_id") or "legacy"]
    check(r.rc == 0 and header_ok(r.out, ["ID", "NAME", "STATUS", "DEPLOYMENT", "AGE"])
          and any(row[:4] == wanted for row in rows),
          "tasks list --agent: header `ID   NAME   STATUS   DEPLOYMENT   AGE`, the task's row", r.describe())
    r = cli("tasks", "list", "--agent", "cli-alpha", "-o", "json")
    check(r.rc == 0 and one_json_output(r) and r.json() == api("GET", f"/tasks?limit=1000&agent_id={AGENT_IDS['cli-alpha']}")[1],
          "tasks list -o json: the API's array", r.describe())
    r = cli("tasks", "get", "cli-task-1", "-o", "json")
    check(r.rc == 0 and one_json_output(r) and r.json() == task, "tasks get NAME -o json: the API's task", r.describe())
    r = cli("tasks", "get", task["id"])
    check(r.rc == 0 and task["id"] in r.out and "RUNNING" in r.out, "tasks get ID: one-row table", r.describe())
    r = cli("tasks", "get", "no-such-task")
    check(r.rc == 1 and r.err.startswith("error: ") and "no-such-task" in r.err and not r.out,
          "tasks get <unknown>: exit 1, the server's 404 message", r.describe())


CHECKS = [
    check_connection_options,
    check_agents,
    check_agent_delete,
    check_deployments_read,
    check_create,
    check_server_errors,
    check_promote_rollback,
    check_delete_restore,
    check_watch,
    check_events_table,
    check_tasks,
    check_wait,
    check_apply,
    check_watch_reconnect,
    check_output_hygiene,
]


def stop_everything():
    for w in STATE["background"]:
        try:
            if w.proc.poll() is None:
                w.proc.kill()
        except Exception:
            pass
    for proc in STATE["procs"]:
        try:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=5)
        except Exception:
            pass
    ct.stop_all(STATE["procs"], STATE["pods"])


def finish():
    stop_everything()
    if ct.FAILED and STATE.get("log"):
        print(f"# last lines of the server log ({STATE['log']}):", flush=True)
        for line in ct.log_tail(STATE["log"], 20, 400):
            print(f"#   {line}", flush=True)
    ct.summary()
    return 1 if ct.FAILED else 0


def main():
    if not (BIN and DATABASE_URL and TMP):
        print("cli_test.py: CLI_BIN, CLI_DATABASE_URL and CLI_TMP are required (run hack/cli-test.sh)", file=sys.stderr)
        return 2
    os.makedirs(TMP, exist_ok=True)
    timer = ct.start_watchdog(SUITE_TIMEOUT, f"{BACKEND}: the suite did not finish within {SUITE_TIMEOUT} s (a check hung)",
                              stop_everything)
    started = time.monotonic()
    print(f"# client command checks on {BACKEND} ({DATABASE_URL})", flush=True)
    try:
        setup()
        ct.run_checks(CHECKS, SKIP)
    finally:
        timer.cancel()
        print(f"# {BACKEND}: total {time.monotonic() - started:.1f}s", flush=True)
    return finish()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
