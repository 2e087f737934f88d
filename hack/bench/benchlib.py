"""The harness of every benchmark under hack/bench/ (Python 3 standard library only).

Each benchmark is one executable file (hack/bench/control-plane, rpc, reconcile, gc, cutover) that
imports this module and calls `run(name, __doc__, main)`; `main(h)` gets a `Harness` and returns a
`Report`. The harness provides:

- the command line: `-h` (the benchmark's header) and `--json` (the raw results as one JSON document
  on stdout; the tables then go to stderr);
- the binary: `CUTOVER_BIN`, else `swift build -c release --product cutover --static-swift-stdlib --scratch-path .build-bench`,
  copied into the run's temp directory so a concurrent build cannot swap it under a running server;
- processes: `cutover serve` (`Server`), `cutover demo-agent` (`DemoAgent`), nginx (`Nginx`), healthy
  stand-in pods (`StandIns`), on free loopback ports; every child is stopped (SIGTERM, then SIGKILL
  after 10 s) when the benchmark ends, fails or is interrupted, and is asked by the kernel to exit
  if the harness itself dies (PR_SET_PDEATHSIG);
- databases: a SQLite file in the temp directory, or a fresh database in one throwaway PostgreSQL
  cluster started through hack/lib/postgres.sh (or on `CUTOVER_BENCH_POSTGRES_URL`);
- CPU accounting: utime+stime from /proc/PID/stat (`cpu_seconds`), PostgreSQL's postmaster and all
  its children together, exited ones included (`Postgres.cpu`), turned into CPU ms per request
  (`CpuMeter`);
- load: `run_wrk` (wrk with a script from hack/bench/lua/, whose common.lua prints one `BENCHJSON`
  summary line), an asyncio keep-alive client (`HTTPConn`, `fixed_rate`) and blocking helpers
  (`http`, `http_json`);
- output: `Report`: measurement tables and one targets table, printed by the one table printer
  (`format_table`), each target row with the measured figure, the target and `meets`/`MISSES`.

Exit status of a benchmark: 0 when every measurement was taken (missed targets included), 1 when
one could not be taken or the harness failed (the reason is printed), 130 when interrupted.
"""

import argparse
import asyncio
import calendar
import ctypes
import json
import operator
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
import http.client as httplib

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(BENCH_DIR))
LUA_DIR = os.path.join(BENCH_DIR, "lua")
PREFIX = "bench"


class BenchError(Exception):
    """A failure the benchmark cannot go on after; its message is printed as it is."""


def log(msg):
    print(f"{PREFIX}: {msg}", file=sys.stderr, flush=True)


def now_us():
    return time.time_ns() // 1000


# --- knobs ---------------------------------------------------------------------------------------

def env_str(name, default):
    text = os.environ.get(name, "").strip()
    return text if text else default


def env_list(name, default):
    return env_str(name, default).split()


def env_int(name, default):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise BenchError(f"{name}={text!r} is not an integer")


def env_ints(name, default):
    text = env_str(name, default)
    try:
        return [int(v) for v in text.split()]
    except ValueError:
        raise BenchError(f"{name}={text!r} is not a list of integers")


def env_float(name, default):
    """A number of seconds; a trailing `s` is allowed."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text.rstrip("s"))
    except ValueError:
        raise BenchError(f"{name}={text!r} is not a number (seconds)")


_WRK_DURATION = re.compile(r"^(\d+)([smh]?)$")


def env_duration(name, default):
    """A wrk duration (`10s`, `2m`, `30`), or `0`; returned as wrk takes it."""
    text = env_str(name, default)
    if not _WRK_DURATION.match(text):
        raise BenchError(f"{name}={text!r} is not a wrk duration (e.g. 10s, 2m, 0)")
    return text


def duration_seconds(text):
    m = _WRK_DURATION.match(text)
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def serve_args():
    """BENCH_SERVE_ARGS, word-split like a shell does."""
    return shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))


# --- statistics and time -------------------------------------------------------------------------

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z$")


def parse_ts(text):
    """Cutover's RFC 3339 timestamps (UTC, up to 6 fractional digits) as integer microseconds."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r}")
    seconds = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000 + int((m.group(2) or "0").ljust(6, "0"))


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, -(-len(s) * p // 100))  # ceil(n * p / 100)
    return s[min(len(s), int(rank)) - 1]


def summary(values):
    if not values:
        return {"n": 0}
    return {
        "n": len(values), "min": min(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
        "p99": percentile(values, 99), "max": max(values), "mean": sum(values) / len(values),
    }


def load_average():
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


# --- CPU and memory from /proc -------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """Fields 3.. of /proc/PID/stat (counted after the last ')': the name may hold spaces); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat[stat.rindex(")") + 2:].split()


def cpu_seconds(pid):
    """utime+stime of a process (fields 14 and 15 of /proc/PID/stat), every thread's included."""
    fields = _stat_fields(pid) if pid else None
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid):
    """The pids whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and fields[1] == str(pid):
                out.append(int(entry))
    return out


def tree_cpu_seconds(root):
    """utime+stime of `root` and its children (PostgreSQL: the postmaster and every backend), those that
    exited included: `root` has reaped them, and their CPU is then in its cutime+cstime (fields 16 and
    17). Without it, a backend that exits during a run (Cutover closes a connection idle for a minute)
    takes its CPU out of the sum, which then falls: PostgreSQL's CPU came out negative."""
    if not root:
        return None
    fields = _stat_fields(root)
    if fields is None:
        return None
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK
    return total + sum(cpu_seconds(c) or 0.0 for c in children(root))


def self_cpu_seconds():
    t = os.times()
    return t.user + t.system


def proc_status_kb(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class CpuMeter:
    """CPU seconds of named sources (callables returning seconds, or None when unknown) over a window:
    `start()`, then `stop()` -> {name: seconds or None}."""

    def __init__(self, sources):
        self.sources = dict(sources)
        self.before = {}

    def _read(self):
        out = {}
        for name, f in self.sources.items():
            try:
                out[name] = f()
            except Exception:
                out[name] = None
        return out

    def start(self):
        self.before = self._read()

    def stop(self):
        after = self._read()
        return {k: (None if self.before.get(k) is None or after[k] is None else round(after[k] - self.before[k], 4))
                for k in after}


def per_request_ms(cpu_s, requests):
    """{name: CPU ms per request} from {name: CPU seconds}."""
    if not requests:
        return {k: None for k in cpu_s}
    return {k: (None if v is None else v * 1000 / requests) for k, v in cpu_s.items()}


# --- ports, tools, HTTP --------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _apt_install(packages):
    """The first of `packages` that installs from Debian's packages; False when none does (or no apt)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in (1, 2):
        for pkg in packages:
            r = subprocess.run(["apt-get", "install", "-y", "-q", pkg], stdout=sys.stderr, stderr=sys.stderr, env=env)
            if r.returncode == 0:
                return True
        if attempt == 1:
            subprocess.run(["apt-get", "update", "-q"], stdout=sys.stderr, stderr=sys.stderr, env=env)
    return False


def find_tool(name, env_var=None, packages=(), extra=()):
    """The path of a tool: `env_var` when set (it must be an executable), else PATH or one of `extra`,
    else installed from `packages` (Debian) when possible. BenchError when there is none."""
    if env_var and os.environ.get(env_var):
        path = os.environ[env_var]
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BenchError(f"{env_var}={path} is not an executable")
        return path

    def look():
        found = shutil.which(name)
        if found:
            return found
        for p in extra:
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
        return None
    found = look()
    if not found and packages:
        log(f"{name} not found, installing it from Debian's packages ({' or '.join(packages)})")
        if _apt_install(packages):
            found = look()
    if not found:
        hint = f" (apt-get install {packages[0]})" if packages else ""
        raise BenchError(f"{name} not found: install it{hint}" + (f" or set {env_var}" if env_var else ""))
    return found


def http_request(base, method, path, body=None, timeout=10.0, headers=None):
    """One request on a new connection: (status, {header: value} lower-cased, body bytes)."""
    u = urllib.parse.urlsplit(base)
    c = httplib.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        h = dict(headers or {})
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def http_json(base, method, path, body=None, expect=200, timeout=10.0):
    """The decoded JSON answer; BenchError unless the status is `expect`."""
    try:
        status, _, data = http_request(base, method, path, body, timeout)
    except OSError as e:
        raise BenchError(f"{method} {base}{path}: {e}")
    if status != expect:
        raise BenchError(f"{method} {base}{path} -> HTTP {status}: {data[:500].decode('utf-8', 'replace')}")
    return json.loads(data)


def wait_http(url, proc, timeout=60.0, method="GET", body=None):
    """Until `url` answers 200; BenchError (with the log's tail) if `proc` exits first or time runs out."""
    u = urllib.parse.urlsplit(url)
    base = f"{u.scheme}://{u.netloc}"
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited ({proc.returncode()}) before {url} answered 200; "
                             f"its log ({proc.log_path}):\n{proc.log_tail()}")
        try:
            status, _, data = http_request(base, method, u.path or "/", body, timeout=2.0)
            if status == 200:
                return
            last = f"HTTP {status}: {data[:200]!r}"
        except OSError as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise BenchError(f"{url} not 200 after {timeout:.0f} s (last: {last}); {proc.name}'s log:\n"
                             + proc.log_tail())
        time.sleep(0.05)


# --- processes -----------------------------------------------------------------------------------

_STARTED = []  # every Proc still to stop, in start order

try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent():
    """In the child, before exec: SIGTERM when the harness dies, so nothing outlives a killed run."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


class Proc:
    """A child process of the benchmark: its output in `log_path`, stopped at the end of the run."""

    def __init__(self, name, cmd, log_path, env=None, cwd=None, stdout=None):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.started_us = now_us()
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=stdout or self.log_file, stderr=self.log_file,
                                         stdin=subprocess.DEVNULL, env=env, cwd=cwd, preexec_fn=_die_with_parent)
        except OSError as e:
            self.log_file.close()
            raise BenchError(f"could not start {name} ({self.cmd[0]}): {e}")
        _STARTED.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def returncode(self):
        return self.proc.poll()

    def cpu(self):
        return cpu_seconds(self.pid)

    def log_lines(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def log_tail(self, n=20):
        return "\n".join(self.log_lines()[-n:])

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout` s; reaps it. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) still running {timeout:.0f} s after SIGTERM; sending SIGKILL")
                with open(self.log_path, "a") as f:
                    f.write(f"note: needed SIGKILL, still running {timeout:.0f} s after SIGTERM\n")
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self.log_file.closed:
            self.log_file.close()
        if self in _STARTED:
            _STARTED.remove(self)


def stop_all():
    for p in reversed(list(_STARTED)):
        try:
            p.stop()
        except Exception as e:
            log(f"could not stop {p.name} (pid {p.pid}): {e}")


class Server(Proc):
    """`cutover serve` on a free 127.0.0.1 port (warning-level text logs), up once /healthz answers 200."""

    def __init__(self, binary, database_url, log_path, args=(), extra_args=(), name="cutover serve"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        cmd = [binary, "serve", "--database-url", database_url, "--listen", f"127.0.0.1:{self.port}",
               "--log-level", "warning", "--log-format", "text", "--shutdown-grace", "5s", *args, *extra_args]
        self._cmd, self.name, self.log_path = cmd, name, log_path
        self.proc = None
        self.healthy_us = None

    def start(self, timeout=60.0):
        Proc.__init__(self, self.name, self._cmd, self.log_path)
        wait_http(self.base + "/healthz", self, timeout)
        self.healthy_us = now_us()
        # Figures of a server whose async code fell back to Swift's thread pool are not the product's.
        for line in self.log_lines():
            if "event-loop executor is not installed" in line:
                raise BenchError(f"{self.name}: {line.strip()}")
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self):
        kb = proc_status_kb(self.pid, "VmRSS")
        return None if kb is None else kb / 1024

    def hwm_mb(self):
        kb = proc_status_kb(self.pid, "VmHWM")
        return None if kb is None else kb / 1024

    def metrics(self):
        """/metrics without histogram buckets: {series: value}."""
        try:
            _, _, data = http_request(self.base, "GET", "/metrics", timeout=5.0)
        except Exception as e:
            return {"error": str(e)}
        out = {}
        for line in data.decode("utf-8", "replace").splitlines():
            if not line or line.startswith("#") or "_bucket{" in line:
                continue
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
        return out

    def stop(self, timeout=10.0):
        if self.proc is not None:
            Proc.stop(self, timeout)


class DemoAgent(Proc):
    """`cutover demo-agent` on a free port (not registered: the benchmark registers it itself)."""

    def __init__(self, binary, log_path, stream_delay="1ms"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("demo-agent", [binary, "demo-agent", "--port", self.port, "--stream-delay", stream_delay],
                         log_path)
        wait_http(self.url + "/healthz", self)


class Nginx(Proc):
    """nginx from hack/bench/nginx-rpc.conf.template: 1 worker, proxy_pass to 127.0.0.1:upstream_port with
    keep-alive upstream connections. `worker_pid` is the one process that does the work."""

    def __init__(self, nginx, directory, upstream_port, check_path="/healthz", check_body=None):
        os.makedirs(directory, exist_ok=True)
        for d in (os.path.dirname(directory), directory):
            os.chmod(d, 0o755)  # an unprivileged worker may need its temp paths
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(os.path.join(BENCH_DIR, "nginx-rpc.conf.template")) as f:
            conf = f.read()
        conf = (conf.replace("@PREFIX@", directory).replace("@USER@", "user root root;" if os.geteuid() == 0 else "")
                .replace("@LISTEN_PORT@", str(self.port)).replace("@AGENT_PORT@", str(upstream_port)))
        path = os.path.join(directory, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        base = [nginx, "-p", directory + "/", "-e", os.path.join(directory, "error.log"), "-c", path]
        t = subprocess.run(base + ["-t"], capture_output=True, text=True)
        if t.returncode != 0:
            raise BenchError(f"nginx -t failed:\n{t.stdout}{t.stderr}")
        super().__init__("nginx", base, os.path.join(directory, "stdout.log"))
        wait_http(self.url + check_path, self, method="POST" if check_body else "GET", body=check_body)
        workers = children(self.pid)
        if len(workers) != 1:
            raise BenchError(f"nginx (pid {self.pid}) has {len(workers)} worker processes, expected 1")
        self.worker_pid = workers[0]

    def worker_cpu(self):
        return cpu_seconds(self.worker_pid)

    def log_lines(self):
        """Its error log (warnings and above) and anything it wrote on stdout/stderr."""
        lines = []
        for name in ("error.log", "stdout.log"):
            try:
                with open(os.path.join(os.path.dirname(self.log_path), name), errors="replace") as f:
                    lines += f.read().splitlines()
            except FileNotFoundError:
                pass
        return lines


# --- PostgreSQL ----------------------------------------------------------------------------------

def redact(url):
    """A database URL without its password."""
    u = urllib.parse.urlsplit(url)
    if u.password is None:
        return url
    return urllib.parse.urlunsplit(u._replace(netloc=u.netloc.replace(":" + u.password + "@", ":***@", 1)))


def psql(url, sql, timeout=600):
    """Runs `sql` (one or more statements) with psql; the unaligned, tuples-only output."""
    r = subprocess.run([find_tool("psql", "PSQL", ("postgresql-client",)), "-X", "-q", "-A", "-t",
                        "-v", "ON_ERROR_STOP=1", "-d", url],
                       input=sql, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise BenchError(f"psql failed ({r.returncode}): {r.stderr.strip()[:2000]}")
    return r.stdout.strip()


def psql_bin():
    return find_tool("psql", "PSQL", ("postgresql-client",))


class Postgres:
    """The PostgreSQL server of a run: CUTOVER_BENCH_POSTGRES_URL, else a throwaway cluster started with
    hack/lib/postgres.sh's start_pg (stopped and removed by `stop`). `cpu()` is the cluster's CPU
    seconds (postmaster and every child), None for an outside server."""

    def __init__(self, tmp):
        self.pgtmp = self.pg_bin = None
        self.pid = None
        outside = os.environ.get("CUTOVER_BENCH_POSTGRES_URL", "").strip()
        psql_bin()
        if outside:
            self.admin_url = outside
            psql(outside, "SELECT 1")
            log(f"PostgreSQL at {redact(outside)} (CUTOVER_BENCH_POSTGRES_URL; its CPU is not measured)")
            return
        out = os.path.join(tmp, "postgres.vars")
        script = ('trap \'printf "%s\\n" "$PG_URL" "$PGTMP" "$PG_BIN" >"$2"\' EXIT; '
                  'source "$1/hack/lib/postgres.sh"; start_pg >&2')
        r = subprocess.run(["bash", "-c", script, "bash", ROOT, out], stdout=sys.stderr, stderr=sys.stderr,
                           env=dict(os.environ, PG_LOG_PREFIX=PREFIX))
        try:
            with open(out) as f:
                url, self.pgtmp, self.pg_bin = (f.read().split("\n") + ["", "", ""])[:3]
        except FileNotFoundError:
            url = ""
        self.pgtmp = self.pgtmp or None
        if r.returncode != 0 or not url:
            self.stop()
            raise BenchError(f"could not start a throwaway PostgreSQL (hack/lib/postgres.sh start_pg exited {r.returncode})")
        self.admin_url = url
        try:
            with open(os.path.join(self.pgtmp, "data", "postmaster.pid")) as f:
                self.pid = int(f.readline())
        except (OSError, ValueError):
            self.pid = None

    def cpu(self):
        return tree_cpu_seconds(self.pid)

    def new_database(self, name):
        """CREATE DATABASE `name`; its URL."""
        psql(self.admin_url, f"CREATE DATABASE {name}")
        u = urllib.parse.urlsplit(self.admin_url)
        return urllib.parse.urlunsplit(u._replace(path="/" + name))

    def stop(self):
        if self.pgtmp:
            subprocess.run(["bash", "-c", 'source "$1/hack/lib/postgres.sh"; PGTMP=$2; PG_BIN=$3; stop_pg',
                            "bash", ROOT, self.pgtmp, self.pg_bin or ""], stdout=sys.stderr, stderr=sys.stderr,
                           env=dict(os.environ, PG_LOG_PREFIX=PREFIX))
            self.pgtmp = None


# --- wrk -----------------------------------------------------------------------------------------

def run_wrk(wrk, base, script, args, connections, duration, warmup="0", threads=2, timeout="5s", cpu=None,
            out_dir=None, settle=None):
    """wrk against `base` with hack/bench/lua/`script` (`args` after `--`): an unmeasured warm-up of
    `warmup` (unless "0"), then `duration` measured. `cpu`: a CpuMeter read around the measured run.
    `settle`: called after the warm-up and after the measured run (inside the CPU window), it waits until
    the server has finished the background work the requests started (the controller's reconciles) and
    returns the seconds it waited; then `settle_s` and `sustained_rps` (requests over wrk's duration plus
    that wait) are in the result too, so work left behind counts against the run that left it.
    The BENCHJSON summary plus rps, errors_total, cpu_s and cpu_ms_per_req; or {"error": ..., "wrk_output": ...}."""
    threads = max(1, min(threads, connections))
    cmd = [wrk, f"-t{threads}", f"-c{connections}", "--timeout", timeout, "--latency",
           "-s", os.path.join(LUA_DIR, script), base, "--", *[str(a) for a in args]]
    env = dict(os.environ, BENCH_LUA_DIR=LUA_DIR)
    limit = duration_seconds(duration) + duration_seconds(timeout.rstrip("s") or "0") + 60
    if warmup != "0":
        subprocess.run(cmd[:1] + [f"-d{warmup}"] + cmd[1:], capture_output=True, env=env,
                       timeout=duration_seconds(warmup) + limit, preexec_fn=_die_with_parent)
        if settle:
            settle()
    if cpu:
        cpu.start()
    try:
        r = subprocess.run(cmd[:1] + [f"-d{duration}"] + cmd[1:], capture_output=True, text=True, env=env,
                           timeout=limit, preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        return {"error": f"wrk did not finish within {limit} s"}
    settled = settle() if settle else None
    cpu_s = cpu.stop() if cpu else {}
    text = r.stdout + r.stderr
    if out_dir:
        with open(os.path.join(out_dir, "wrk.out"), "w") as f:
            f.write(text)
    m = re.search(r"^BENCHJSON (.*)$", text, re.M)
    if not m:
        return {"error": f"wrk exited {r.returncode} without a BENCHJSON summary", "wrk_output": text[-2000:]}
    res = json.loads(m.group(1))
    if r.returncode != 0:
        res["note"] = f"wrk exited {r.returncode}"
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res.get("duration_us") else None
    if settled is not None and res.get("duration_us"):
        res["settle_s"] = settled
        res["sustained_rps"] = res["requests"] / (res["duration_us"] / 1e6 + settled)
    e = res.get("errors", {})
    res["socket_errors"] = {k: e.get(k, 0) for k in ("connect", "read", "write", "timeout") if e.get(k, 0)}
    res["errors_total"] = res.get("non2xx", 0) + sum(res["socket_errors"].values())
    res["cpu_s"] = cpu_s
    res["cpu_ms_per_req"] = per_request_ms(cpu_s, res.get("requests"))
    return res


def wrk_errors_text(res):
    """`0`, or `N (k×409, j×timeout)`."""
    total = res.get("errors_total", 0)
    if not total:
        return "0"
    parts = [f"{v}×{k}" for k, v in sorted(res.get("statuses", {}).items())]
    parts += [f"{v}×{k}" for k, v in res.get("socket_errors", {}).items()]
    return f"{total} ({', '.join(parts)})"


def wrk_notes(name, res):
    notes = []
    if res.get("error"):
        notes.append(f"{name}: {res['error']}")
    if res.get("note"):
        notes.append(f"{name}: {res['note']}")
    for status, body in sorted(res.get("samples", {}).items()):
        notes.append(f"{name}: first HTTP {status} body: {body}")
    if res.get("wrk_output"):
        notes.append(f"{name}: wrk output:\n{res['wrk_output']}")
    return notes


# --- stand-in pods -------------------------------------------------------------------------------

STANDIN_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
                    b'{"status":"healthy"}')


class _StandInProtocol(asyncio.Protocol):
    """Answers each request head with the fixed healthy response, keep-alive. A body is read as the
    start of the next head, so only bodiless requests get one answer each; POSTs with a body get
    one answer too, as long as the body holds no blank line."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buffer += data
        n = self.buffer.count(b"\r\n\r\n")
        if n:
            self.buffer = self.buffer[self.buffer.rindex(b"\r\n\r\n") + 4:]
            self.transport.write(STANDIN_RESPONSE * n)
        elif len(self.buffer) > 65536:
            self.transport.close()


def run_standin():
    """One stand-in pod: binds a free loopback port, prints it, serves until SIGTERM/SIGINT or its parent
    goes away (checked every second, so it never outlives the benchmark)."""
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_StandInProtocol, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        parent = os.getppid()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set() and os.getppid() == parent:
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        server.close()
    asyncio.run(main())


class StandIns:
    """`count` stand-in pods, each its own process and port; `urls`, `cpu()`, `stop()`."""

    def __init__(self, count, tmp):
        self.procs = []
        self.urls = []
        try:
            for i in range(count):
                p = Proc(f"stand-in {i}", [sys.executable, os.path.abspath(__file__), "standin"],
                         os.path.join(tmp, f"standin-{i}.log"), stdout=subprocess.PIPE)
                self.procs.append(p)
                line = p.proc.stdout.readline().decode().strip()
                if not line.isdigit():
                    raise BenchError(f"stand-in pod did not print its port (got {line!r}): {p.log_tail()}")
                self.urls.append(f"http://127.0.0.1:{line}")
            for url in self.urls:
                status, _, body = http_request(url, "GET", "/healthz")
                if status != 200 or json.loads(body) != {"status": "healthy"}:
                    raise BenchError(f"stand-in {url} answered {status} {body!r}")
        except BaseException:
            self.stop()
            raise

    def cpu(self):
        return sum(p.cpu() or 0.0 for p in self.procs)

    def stop(self):
        for p in self.procs:
            p.stop(timeout=5)
            if p.proc.stdout:
                p.proc.stdout.close()
        self.procs = []


# --- asyncio HTTP client -------------------------------------------------------------------------

class HTTPError(Exception):
    pass


class HTTPConn:
    """One keep-alive HTTP/1.1 connection on asyncio streams (cheap enough that the load generator is not
    what is measured); reconnects after an error or `Connection: close`."""

    def __init__(self, base, timeout=30.0):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.hostheader = f"{self.host}:{self.port}".encode()
        self.timeout = timeout
        self.reader = self.writer = None

    async def _open(self):
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 22), self.timeout)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method, path, body=None):
        """(status, body bytes). `body`: bytes, str or a JSON-able object; POSTs always send a length."""
        try:
            return await asyncio.wait_for(self._request(method, path, body), self.timeout)
        except BaseException:
            self.close()
            raise

    async def _request(self, method, path, body):
        if self.writer is None:
            await self._open()
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), path.encode(), self.hostheader)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            body = body or b""
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + (body or b""))
        line = await self.reader.readline()
        if not line:
            raise HTTPError("connection closed before the response")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HTTPError(f"bad status line {line[:100]!r}")
        status = int(parts[1])
        length, chunked, close = None, False, False
        while True:
            h = await self.reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.lower() == b"close":
                close = True
        if chunked:
            data = bytearray()
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            data = bytes(data)
        elif length is not None:
            data = await self.reader.readexactly(length)
        else:
            data = await self.reader.read()
            close = True
        if close:
            self.close()
        return status, data

    async def json(self, method, path, body=None, expect=200):
        status, data = await self.request(method, path, body)
        if status != expect:
            raise HTTPError(f"{method} {path} -> HTTP {status}: {data[:300]!r}")
        return json.loads(data)


async def fixed_rate(base, name, rate, make_request, stop, latencies, max_connections=64, timeout=10.0):
    """Open-loop load: request k is due at start + k/rate whatever the earlier answers did, on an idle
    connection (a new one when all are busy, at most `max_connections`). Appends
    (due_us, latency_us, status) to `latencies`, the latency counted from the due time, so a stall is
    not hidden by the client waiting (no coordinated omission). Stops issuing when `stop()` is true,
    then waits for what is in flight (bounded by `timeout`)."""
    idle = []
    opened = 0
    tasks = set()
    k = 0
    start = time.monotonic()
    start_us = now_us()

    async def one(due_mono, due_us, method, path, body):
        nonlocal opened
        conn = idle.pop() if idle else None
        if conn is None:
            opened += 1
            conn = HTTPConn(base, timeout=timeout)
        try:
            status, _ = await conn.request(method, path, body)
        except Exception as e:
            status = f"error: {type(e).__name__}"
        latencies.append((due_us, int((time.monotonic() - due_mono) * 1e6), status))
        if conn.writer is not None:
            idle.append(conn)
        else:
            opened -= 1

    while not stop():
        due = start + k / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if opened >= max_connections and not idle:
            # Every connection busy: this request waits (its latency still counts from its due time).
            while opened >= max_connections and not idle:
                await asyncio.sleep(0.001)
        method, path, body = make_request(k)
        t = asyncio.ensure_future(one(due, start_us + int(k / rate * 1e6), method, path, body))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        k += 1
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    for conn in idle:
        conn.close()


def metrics_delta(before, after):
    """What changed between two /metrics snapshots, plus the derived means of the histograms."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after if isinstance(after.get(k), float)}
    delta = {k: v for k, v in delta.items() if v}
    derived = {}
    for key, value in delta.items():
        if key.endswith("_count") or "_count{" in key:
            sum_key = key.replace("_count", "_sum", 1)
            if value and sum_key in delta:
                derived[sum_key.replace("_sum", "_mean_ms", 1)] = round(delta[sum_key] / value * 1000, 3)
    return {"delta": delta, "derived": derived}


def log_sample(lines, head=6, tail=4):
    if len(lines) <= head + tail:
        return lines
    return lines[:head] + [f"... ({len(lines) - head - tail} more)"] + lines[-tail:]


# --- output --------------------------------------------------------------------------------------

_NUMERIC = re.compile(r"^[-+−]?[0-9.,]+(?:[×%]| ?(?:ms|s|/s|MB))?$|^—$")


def format_table(title, columns, rows, notes=()):
    """The one table format of every benchmark: `== title`, a header, a rule, the rows (columns whose
    cells are all figures are right-aligned), then the notes. Returns the text."""
    rows = [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(columns)]
    right = [bool(rows) and all(_NUMERIC.match(r[i]) for r in rows if r[i]) and any(r[i] for r in rows)
             for i in range(len(columns))]

    def line(cells, align=True):
        return " | ".join((c.rjust(w) if align and right[i] else c.ljust(w))
                          for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = ["", f"== {title}", line(columns, align=False), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    if notes:
        out.append("Notes:")
        out += ["  " + n for n in notes]
    return "\n".join(out)


_OPS = {">=": (operator.ge, "≥"), "<=": (operator.le, "≤"), "<": (operator.lt, "<"), ">": (operator.gt, ">"),
        "==": (operator.eq, "=")}


class Report:
    """What a benchmark found: raw results (for --json), measurement tables, targets and notes."""

    def __init__(self, name):
        self.name = name
        self.tables = []
        self.targets = []
        self.results = []
        self.notes = []
        self.failures = []
        self.appendix = []  # free text printed after everything else (a profile's summary)
        self.meta = {}

    def result(self, row):
        self.results.append(row)
        return row

    def table(self, title, columns, rows, notes=()):
        self.tables.append((title, list(columns), list(rows), list(notes)))

    def fail(self, what):
        """A measurement that could not be taken: noted, and the benchmark exits 1."""
        self.failures.append(what)

    def target(self, what, value, op, limit, fmt="{:,.2f}", detail="", wanted=None):
        """One target row: `value op limit` (value None: not measured). `fmt` formats both figures."""
        f, sym = _OPS[op]
        ok = None if value is None else bool(f(value, limit))
        measured = "—" if value is None else fmt.format(value)
        if detail:
            measured += f" ({detail})"
        self.targets.append({
            "target": what, "value": value, "op": op, "limit": limit, "measured": measured,
            "wanted": wanted or f"{sym} {fmt.format(limit)}",
            "verdict": "meets" if ok else ("MISSES" if ok is False else "not measured")})

    def text(self):
        parts = [format_table(*t) for t in self.tables]
        if self.targets:
            met = sum(1 for t in self.targets if t["verdict"] == "meets")
            parts.append(format_table(
                "Targets", ["target", "measured", "wanted", "verdict"],
                [[t["target"], t["measured"], t["wanted"], t["verdict"]] for t in self.targets],
                [f"{met} of {len(self.targets)} targets met"]))
        if self.notes:
            parts.append("\nNotes:\n" + "\n".join("  " + n for n in self.notes))
        if self.failures:
            parts.append("\nMeasurements not taken:\n" + "\n".join("  " + n for n in self.failures))
        parts += self.appendix
        return "\n".join(parts) + "\n"

    def document(self):
        return {"benchmark": self.name, **self.meta, "results": self.results, "targets": self.targets,
                "notes": self.notes, "failures": self.failures}


# --- the harness ---------------------------------------------------------------------------------

class Harness:
    """One benchmark run: its temp directory, its binary, its PostgreSQL, its databases."""

    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix=f"cutover-bench-{name}.")
        self._bin = None
        self._pg = None
        self.tag = os.urandom(4).hex()

    def binary(self):
        """CUTOVER_BIN, else the release build in .build-bench; as a private copy in the temp directory."""
        if self._bin:
            return self._bin
        src = os.environ.get("CUTOVER_BIN", "").strip()
        if not src:
            cmd = ["swift", "build", "-c", "release", "--product", "cutover", "--static-swift-stdlib",
                   "--scratch-path", ".build-bench"]
            log("building: " + " ".join(cmd))
            try:
                r = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr)
            except FileNotFoundError:
                raise BenchError("swift not found: install a Swift toolchain, or set CUTOVER_BIN")
            if r.returncode != 0:
                raise BenchError(f"swift build failed (exit {r.returncode})")
            src = os.path.join(ROOT, ".build-bench", "release", "cutover")
        if not (os.path.isfile(src) and os.access(src, os.X_OK)):
            raise BenchError(f"{src} is not an executable (set CUTOVER_BIN to a cutover binary)")
        self._bin = os.path.join(self.tmp, "cutover")
        shutil.copy2(os.path.realpath(src), self._bin)
        self.source_binary = os.path.realpath(src)
        return self._bin

    def postgres(self):
        if self._pg is None:
            self._pg = Postgres(self.tmp)
        return self._pg

    def pg_cpu(self):
        return self._pg.cpu() if self._pg else None

    def database(self, backend, name):
        """A fresh database: `sqlite` (a new file in the temp directory) or `postgres` (CREATE DATABASE)."""
        name = f"{name}_{self.tag}".replace("-", "_")
        if backend == "sqlite":
            d = os.path.join(self.tmp, name)
            os.makedirs(d, exist_ok=True)
            return f"sqlite://{d}/cutover.sqlite"
        if backend == "postgres":
            return self.postgres().new_database(name)
        raise BenchError(f"unknown backend {backend!r} (sqlite, postgres)")

    def server(self, database_url, name, args=(), start=True):
        s = Server(self.binary(), database_url, os.path.join(self.tmp, f"{name}.log"), args, serve_args())
        return s.start() if start else s

    def path(self, *parts):
        """A file path in the temp directory (its directory made)."""
        p = os.path.join(self.tmp, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def dir(self, *parts):
        """A directory in the temp directory (made)."""
        p = os.path.join(self.tmp, *parts)
        os.makedirs(p, exist_ok=True)
        return p

    def close(self):
        stop_all()
        if self._pg is not None:
            self._pg.stop()
        if os.environ.get("BENCH_KEEP", "") == "1":
            log(f"kept {self.tmp} (BENCH_KEEP=1)")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def check_backends(backends):
    for b in backends:
        if b not in ("sqlite", "postgres"):
            raise BenchError(f"unknown backend {b!r} in BENCH_BACKENDS (sqlite, postgres)")
    return backends


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(name, doc, main, max_seconds=None):
    """The entry point of a benchmark: parses the command line, runs `main(harness) -> Report` and prints
    the report (the tables on stdout, or with --json the JSON document on stdout and the tables on
    stderr), stops whatever was started, removes the temp directory, and exits 0/1/130."""
    global PREFIX
    PREFIX = name
    parser = argparse.ArgumentParser(prog=f"hack/bench/{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true",
                        help="print the raw results as one JSON document on stdout (the tables go to stderr)")
    opts = parser.parse_args()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if max_seconds:
        def too_long(signum, frame):
            raise BenchError(f"still running after {max_seconds} s; giving up")
        signal.signal(signal.SIGALRM, too_long)
        signal.alarm(max_seconds)
    started = time.time()
    h = None
    rc = 0
    try:
        h = Harness(name)
        report = main(h)
        if max_seconds:
            signal.alarm(0)
        report.meta = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 1), "cpus": os.cpu_count(), "loadavg_end": load_average(),
            "binary": getattr(h, "source_binary", None),
            "settings": {k: redact(v) if k == "CUTOVER_BENCH_POSTGRES_URL" else v for k, v in sorted(os.environ.items())
                         if k.startswith("BENCH_") or k in ("CUTOVER_BIN", "CUTOVER_BENCH_POSTGRES_URL")},
            **report.meta}
        text = report.text()
        if opts.json:
            sys.stderr.write(text)
            sys.stderr.flush()
            json.dump(report.document(), sys.stdout, indent=1, default=str)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(text)
        sys.stdout.flush()
        if report.failures:
            log(f"{len(report.failures)} measurement(s) could not be taken (see above)")
            rc = 1
    except BenchError as e:
        log(f"error: {e}")
        rc = 1
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except Exception:
        log("failed:\n" + traceback.format_exc())
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if h is not None:
            h.close()
        log(f"done in {time.time() - started:.0f} s")
    sys.exit(rc)


if __name__ == "__main__":
    if sys.argv[1:] == ["standin"]:
        run_standin()
    else:
        sys.exit("usage: benchlib.py standin (a stand-in pod; the benchmarks start it themselves)")
