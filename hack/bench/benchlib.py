"""Shared helpers of hack/bench/reconcile.py and hack/bench/gc.py (Python 3 standard library only).

- `Server`: one `cutover serve` on a free loopback port (start, wait for /healthz, RSS, CPU, /metrics,
  stop with SIGTERM then SIGKILL).
- `HTTPConn`: a minimal keep-alive HTTP/1.1 client on asyncio streams (cheap enough that the load
  generator is not what is measured); `fixed_rate`: an open-loop load at a fixed request rate.
- `StandIns`: healthy stand-in pods, each its own process running a raw asyncio server that answers
  every request with 200 {"status":"healthy"} (`python3 benchlib.py standin` is one of them).
- PostgreSQL helpers (psql), time parsing, percentiles, the table printer and the JSON-lines results.

Every wait here is bounded; the caller owns the overall schedule.
"""

import asyncio
import calendar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

PREFIX = os.environ.get("BENCH_LOG_PREFIX", "bench")


def log(msg):
    print(f"{PREFIX}: {msg}", file=sys.stderr, flush=True)


def now_us():
    return time.time_ns() // 1000


def env_int(name, default):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"{PREFIX}: {name}={text!r} is not an integer")


def env_float(name, default):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text.rstrip("s"))
    except ValueError:
        raise SystemExit(f"{PREFIX}: {name}={text!r} is not a number (seconds)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_sigterm():
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops what it started."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


# --- time and statistics -------------------------------------------------------------------------

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z$")


def parse_ts(text):
    """Cutover's RFC 3339 timestamps (UTC, up to 6 fractional digits) as integer microseconds."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r}")
    seconds = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000 + int((m.group(2) or "0").ljust(6, "0"))


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
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


# --- processes -----------------------------------------------------------------------------------

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


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime+stime of a process (fields 14 and 15 of /proc/PID/stat, counted after the last ')')."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pg_cpu_seconds():
    """utime+stime of the benchmark's PostgreSQL: its postmaster (BENCH_PG_PID, set by the wrapper
    for a throwaway cluster) and every live child (the backends). None when the pid is unknown (a
    server from CUTOVER_BENCH_POSTGRES_URL). A backend that exited meanwhile takes its time with it,
    but Cutover keeps its connections open."""
    root = os.environ.get("BENCH_PG_PID", "").strip()
    if not root.isdigit():
        return None
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if entry == root or fields[1] == root:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def load_average():
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def self_cpu_seconds():
    t = os.times()
    return t.user + t.system


def note_pid(pid):
    """Records a started server's pid in BENCH_PIDFILE, so the wrapper can still stop it if this
    process is killed before its `finally` runs."""
    path = os.environ.get("BENCH_PIDFILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{pid}\n")


def stop_process(proc, name, timeout=10.0, logfile=None):
    """SIGTERM, then SIGKILL after `timeout` s; reaps it. Safe on an already-exited process."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    log(f"{name} (pid {proc.pid}) still running {timeout:.0f} s after SIGTERM; sending SIGKILL")
    if logfile:
        with open(logfile, "a") as f:
            f.write(f"note: needed SIGKILL, still running {timeout:.0f} s after SIGTERM\n")
    proc.kill()
    proc.wait(timeout=10)


def http_get_text(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


class Server:
    """`cutover serve` on a free 127.0.0.1 port with a fresh database, its log in `log_path`."""

    def __init__(self, binary, database_url, log_path, args=(), extra_args=()):
        self.binary = binary
        self.database_url = database_url
        self.log_path = log_path
        self.args = list(args) + list(extra_args)
        self.proc = None
        self.port = None
        self.base = None
        self.started_us = None

    def start(self, timeout=30.0):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [self.binary, "serve", "--database-url", self.database_url, "--listen", f"127.0.0.1:{self.port}",
               "--log-level", "warning", "--log-format", "text", "--shutdown-grace", "5s", *self.args]
        self.log_file = open(self.log_path, "w")
        self.started_us = now_us()
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        note_pid(self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cutover serve exited ({self.proc.returncode}) before it was healthy:\n"
                                   + self.log_tail())
            try:
                if http_get_text(self.base + "/healthz", timeout=1.0)[0] == 200:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.base}/healthz not 200 after {timeout:.0f} s:\n" + self.log_tail())
            time.sleep(0.05)
        self.healthy_us = now_us()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self):
        kb = proc_status_kb(self.pid, "VmRSS")
        return None if kb is None else kb / 1024

    def hwm_mb(self):
        kb = proc_status_kb(self.pid, "VmHWM")
        return None if kb is None else kb / 1024

    def cpu(self):
        return cpu_seconds(self.pid)

    def metrics(self):
        """/metrics without histogram buckets: {series: value}."""
        try:
            _, text = http_get_text(self.base + "/metrics", timeout=5.0)
        except Exception as e:
            return {"error": str(e)}
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#") or "_bucket{" in line:
                continue
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
        return out

    def log_lines(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def log_tail(self, n=20):
        return "\n".join(self.log_lines()[-n:])

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, "cutover", logfile=self.log_path)
            self.log_file.close()


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


def metric(snapshot, name, **labels):
    if labels:
        key = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    else:
        key = name
    return snapshot.get(key)


# --- stand-in pods -------------------------------------------------------------------------------

STANDIN_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n"
                    b'{"status":"healthy"}')


class _StandInProtocol(asyncio.Protocol):
    """Answers each request head (GETs: no bodies) with the fixed healthy response, keep-alive."""

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
    """`count` stand-in pods, each its own process and port."""

    def __init__(self, count):
        self.procs = []
        self.urls = []
        try:
            for _ in range(count):
                p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "standin"],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
                self.procs.append(p)
                line = p.stdout.readline().strip()
                if not line.isdigit():
                    raise RuntimeError(f"stand-in pod did not print its port (got {line!r})")
                self.urls.append(f"http://127.0.0.1:{line}")
        except BaseException:
            self.stop()
            raise
        for url in self.urls:
            status, body = http_get_text(url + "/healthz")
            if status != 200 or json.loads(body) != {"status": "healthy"}:
                self.stop()
                raise RuntimeError(f"stand-in {url} answered {status} {body!r}")

    def cpu(self):
        return sum(cpu_seconds(p.pid) or 0.0 for p in self.procs)

    def stop(self):
        for p in self.procs:
            stop_process(p, "stand-in", timeout=5)
        self.procs = []


# --- HTTP client ---------------------------------------------------------------------------------

class HTTPError(Exception):
    pass


class HTTPConn:
    """One keep-alive HTTP/1.1 connection; reconnects after an error or `Connection: close`."""

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


# --- PostgreSQL ----------------------------------------------------------------------------------

def psql_bin():
    for candidate in (os.environ.get("PSQL"), "psql", os.path.join(os.environ.get("PG_BIN", ""), "psql")):
        if candidate and (os.path.sep in candidate and os.access(candidate, os.X_OK)
                          or os.path.sep not in candidate and any(
                              os.access(os.path.join(d, candidate), os.X_OK)
                              for d in os.environ.get("PATH", "").split(os.pathsep))):
            return candidate
    raise SystemExit(f"{PREFIX}: psql not found (install postgresql-client)")


def psql(url, sql, timeout=600):
    """Runs `sql` (one or more statements) with psql; the unaligned, tuples-only output."""
    r = subprocess.run([psql_bin(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url],
                       input=sql, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"psql failed ({r.returncode}): {r.stderr.strip()[:2000]}")
    return r.stdout.strip()


def new_pg_database(admin_url, name):
    """CREATE DATABASE `name` on the server of `admin_url`; its URL."""
    psql(admin_url, f"CREATE DATABASE {name}")
    u = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(u._replace(path="/" + name))


# --- output --------------------------------------------------------------------------------------

class Results:
    """Raw results as JSON lines, copied to BENCH_RESULTS (if set) as they are written."""

    def __init__(self):
        self.path = os.environ.get("BENCH_RESULTS") or None
        self.rows = []
        if self.path:
            open(self.path, "w").close()

    def add(self, row):
        self.rows.append(row)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def print_table(title, header, rows, notes=()):
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells):
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    print()
    print(title)
    print(line(header))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    if notes:
        print()
        print("Notes:")
        for n in notes:
            print("  " + n)
    sys.stdout.flush()


def log_sample(lines, head=6, tail=4):
    if len(lines) <= head + tail:
        return lines
    return lines[:head] + [f"... ({len(lines) - head - tail} more)"] + lines[-tail:]


if __name__ == "__main__":
    if sys.argv[1:] == ["standin"]:
        run_standin()
    else:
        sys.exit("usage: benchlib.py standin")
