"""Helpers shared by hack/e2e.py, hack/chaos.py and hack/hostile_test.py. Standard library only.

Check counters and the "ok - ..." / "FAIL - ..." lines, the "N passed, M failed" summary, the suite
watchdog and check loop, bounded HTTP requests (a fresh connection per request), healthy stand-in
agent pods, `cutover serve` start-up and /metrics leadership, log scanning, and shell commands (the
pg_ctl stop/start lines the wrappers hand over).
"""

import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time

# ---------------------------------------------------------------------------------------------
# Checks and their report.
# ---------------------------------------------------------------------------------------------

PASSED = 0
FAILED = 0
SHOW_OK_DETAIL = True  # "ok - name (detail)" for details up to 160 characters; False: never


def report(ok, name, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        shown = detail if SHOW_OK_DETAIL and detail and len(detail) <= 160 else ""  # long details only on failure
        print(f"ok - {name}" + (f" ({shown})" if shown else ""), flush=True)
    else:
        FAILED += 1
        print(f"FAIL - {name}" + (f": {detail}" if detail else ""), flush=True)
    return ok


def summary(extra_failed=0):
    """Prints the final "N passed, M failed" line."""
    print(f"{PASSED} passed, {FAILED + extra_failed} failed", flush=True)


def start_watchdog(timeout, message, on_fire=None):
    """After timeout seconds: prints "FAIL - message", runs on_fire(), prints the summary (counting
    the watchdog as a failure) and ends the process with exit 1. Returns the timer (cancel it)."""
    def fire():
        print(f"FAIL - {message}", flush=True)
        if on_fire is not None:
            on_fire()
        summary(extra_failed=1)
        os._exit(1)
    timer = threading.Timer(timeout, fire)
    timer.daemon = True
    timer.start()
    return timer


def run_checks(checks, skip):
    """Runs each check (skipping those named in skip); a check that raises is a failure and the
    run goes on. Prints each check's duration."""
    for check in checks:
        if check.__name__ in skip:
            print(f"ok - {check.__name__} # skip", flush=True)
            continue
        t0 = time.monotonic()
        try:
            check()
        except Exception as e:  # a check that blew up is a failure, and the run goes on
            report(False, f"{check.__name__} raised", f"{type(e).__name__}: {e}")
        print(f"# {check.__name__}: {time.monotonic() - t0:.1f}s", flush=True)


def skip_set(variable):
    """The comma-separated check names in environment variable `variable`."""
    return {s for s in os.environ.get(variable, "").split(",") if s}


# ---------------------------------------------------------------------------------------------
# Small things.
# ---------------------------------------------------------------------------------------------

def short(value, limit=300):
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def now_us():
    return time.time_ns() // 1000


def wait_for(predicate, timeout, interval=0.1):
    """Polls predicate() until it returns a truthy value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def run_shell(command, timeout=90):
    """Runs command with bash -c: (exit code, combined output, seconds)."""
    start = time.monotonic()
    p = subprocess.run(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), time.monotonic() - start


# ---------------------------------------------------------------------------------------------
# HTTP client (http.client, a fresh connection per request, bounded).
# ---------------------------------------------------------------------------------------------

class Answer:
    """One request's outcome: status (None: no answer), lower-case headers, raw body, parsed JSON
    body (or None), elapsed seconds (monotonic), t0/t1 (wall clock, microseconds: send/receive)."""

    def __init__(self, status, headers, raw, elapsed, t0, t1, error=None, digits=2, limit=300):
        self.status, self.headers, self.raw, self.elapsed, self.error = status, headers, raw, elapsed, error
        self.t0, self.t1, self.digits, self.limit = t0, t1, digits, limit
        try:
            self.body = json.loads(raw) if raw else None
        except ValueError:
            self.body = None

    def describe(self):
        if self.status is None:
            return f"no answer after {self.elapsed:.{self.digits}f}s ({self.error})"
        return f"HTTP {self.status} after {self.elapsed:.{self.digits}f}s, body {short(self.raw, self.limit)!r}"


def request(host, port, method, path, body=None, headers=None, timeout=5.0, digits=2, limit=300):
    """body: None, bytes (sent as is) or anything JSON (encoded, with Content-Type: application/json).
    digits/limit: how Answer.describe() shows the seconds and the body."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    t0 = now_us()
    start = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw, time.monotonic() - start,
                      t0, now_us(), digits=digits, limit=limit)
    except Exception as e:  # timeouts, refused, resets: "no answer"
        return Answer(None, {}, b"", time.monotonic() - start, t0, now_us(), f"{type(e).__name__}: {e}",
                      digits=digits, limit=limit)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Healthy stand-in agent pods.
# ---------------------------------------------------------------------------------------------

class JSONHandler(http.server.BaseHTTPRequestHandler):
    """Silent handler with a JSON answer helper."""

    def log_message(self, *args):
        pass

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class PodHandler(JSONHandler):
    """healthz answers 200 {"status":"healthy"}; every POST a JSON-RPC result echoing the method
    (and the pod's name, if it has one)."""

    def do_GET(self):
        if self.path.split("?")[0].rstrip("/").endswith("/healthz"):
            self._send(200, {"status": "healthy"})
        else:
            self._send(404, {"detail": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            req = json.loads(raw)
        except ValueError:
            req = {}
        if not isinstance(req, dict):
            req = {}
        result = {"echo": req.get("method")}
        if self.server.pod_name is not None:
            result["pod"] = self.server.pod_name
        self._send(200, {"jsonrpc": "2.0", "id": req.get("id"), "result": result})


class KeepAlivePodHandler(PodHandler):
    protocol_version = "HTTP/1.1"


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a killed replica resets its keep-alive connections: not the pod's problem


class Pod:
    """A healthy pod on a 127.0.0.1 ephemeral port. keep_alive: HTTP/1.1 connections (default
    HTTP/1.0, one answer per connection); quiet_errors: connection errors are not printed."""

    def __init__(self, name=None, keep_alive=False, quiet_errors=False):
        server_class = QuietServer if quiet_errors else http.server.ThreadingHTTPServer
        self.server = server_class(("127.0.0.1", 0), KeepAlivePodHandler if keep_alive else PodHandler)
        self.server.daemon_threads = True
        self.server.pod_name = name
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# `cutover serve` replicas.
# ---------------------------------------------------------------------------------------------

LEADER_RE = re.compile(r"^cutover_leader(?:\{[^}]*\})?\s+([-+0-9.eE]+)\s*$", re.M)


def start_serve(binary, database_url, port, flags, log_path, pid_file):
    """Starts `binary serve` on 127.0.0.1:port (output to log_path) and appends its pid to pid_file
    (the wrapper's safety net). Returns the Popen."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "serve", "--database-url", database_url, "--listen", f"127.0.0.1:{port}",
                                 *flags], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    with open(pid_file, "a") as f:
        f.write(f"{proc.pid}\n")
    return proc


def wait_serving(proc, port, timeout=30.0, interval=0.1):
    """True once /healthz answers 200 while proc still runs; False if it exits or timeout passes."""
    ok = wait_for(lambda: proc.poll() is not None or request("127.0.0.1", port, "GET", "/healthz", timeout=1).status
                  == 200, timeout, interval)
    return bool(ok) and proc.poll() is None


def leader_value(port, timeout=1.0):
    """1 / 0 from /metrics, or None if /metrics did not answer or has no cutover_leader line."""
    a = request("127.0.0.1", port, "GET", "/metrics", timeout=timeout)
    if a.status != 200:
        return None
    m = LEADER_RE.search(a.raw.decode("utf-8", "replace"))
    if not m:
        return None
    return 1 if float(m.group(1)) == 1.0 else 0


def log_tail(path, n, limit):
    """The last n lines of the log at path (each shortened to limit), or [] if unreadable."""
    try:
        with open(path, "rb") as f:
            return [short(x.rstrip(b"\n"), limit) for x in f.readlines()[-n:]]
    except (OSError, TypeError):
        return []


def log_level_lines(path, levels, limit=400, text_match=False):
    """The JSON log lines at path whose "level" is in levels (lower case); with text_match also the
    lines that merely contain "level":"<level>" (ignoring spaces)."""
    found = []
    try:
        with open(path, "rb") as f:
            for line in f:
                text = line.decode("utf-8", "replace").strip()
                try:
                    level = json.loads(text).get("level")
                except (ValueError, AttributeError):
                    level = None
                squeezed = text.replace(" ", "")
                if str(level).lower() in levels or \
                        (text_match and any(f'"level":"{x}"' in squeezed for x in levels)):
                    found.append(short(text, limit))
    except OSError as e:
        found.append(f"cannot read the log: {e}")
    return found


def stop_all(procs, pods):
    """End of a run: kill -9 every process still running, stop every pod; errors are ignored."""
    for proc in procs:
        try:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        except Exception:
            pass
    for p in pods:
        try:
            p.stop()
        except Exception:
            pass
