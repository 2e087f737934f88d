#!/usr/bin/env python3
"""Hostile-client checks against a running `cutover serve` (started by hack/hostile-test.sh).

Standard library only. Every stand-in agent pod is started here, on 127.0.0.1 ephemeral ports:
well-behaved ones are threaded http.server pods, misbehaving ones are raw socket servers that
trickle or stall their answers. Prints one line per check ("ok - ..." / "FAIL - ...") and at the
end "N passed, M failed"; exits 1 if any check failed.

Environment:
  CUTOVER_URL        the server under test, e.g. http://127.0.0.1:8080 (required)
  CUTOVER_PID        its process id, for the final "still alive" check
  CUTOVER_LOG        its log file (JSON lines), for the final "no critical line" check
  CUTOVER_BACKEND    sqlite | postgres (the database checks run on postgres only)
  CUTOVER_BIN        the binary, for the separate token-protected serve (sqlite run only)
  HOSTILE_PG_STOP    shell command that stops the server's PostgreSQL (pg_ctl -m fast stop)
  HOSTILE_PG_START   shell command that starts it again on the same port
  HOSTILE_SKIP       comma-separated check function names to skip (debugging)
"""

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import cutover_test as ct  # noqa: E402  (hack/lib/cutover_test.py)
from cutover_test import free_port, report, run_shell, short, wait_for  # noqa: E402

URL = os.environ.get("CUTOVER_URL", "http://127.0.0.1:8080")
_parsed = urllib.parse.urlsplit(URL)
HOST, PORT = _parsed.hostname or "127.0.0.1", _parsed.port or 80
BACKEND = os.environ.get("CUTOVER_BACKEND", "sqlite")
SKIP = ct.skip_set("HOSTILE_SKIP")
SUITE_TIMEOUT = 240  # seconds; a watchdog ends the run (as a failure) if anything ever hangs

ct.SHOW_OK_DETAIL = False  # "ok - name" lines carry no detail here


# ---------------------------------------------------------------------------------------------
# Raw-socket HTTP client: send bytes, read one response (or until close), everything bounded.
# ---------------------------------------------------------------------------------------------

class RawResponse:
    def __init__(self):
        self.status = None        # int, or None if no complete head arrived
        self.reason = ""
        self.headers = {}         # lower-case name -> value (last wins)
        self.body = b""           # de-chunked body (as much as arrived)
        self.complete = False     # a whole response (head + framed body) arrived
        self.closed = False       # the server closed the connection
        self.timed_out = False    # the deadline passed first
        self.error = None         # socket error text, if any
        self.elapsed = 0.0        # seconds from send to the end of reading
        self.first_body_at = None  # seconds from send to the first body byte
        self.extra = b""          # bytes after the first complete response

    def json(self):
        try:
            return json.loads(self.body)
        except Exception:
            return None

    def describe(self):
        state = []
        if self.timed_out:
            state.append("timed out")
        if self.closed:
            state.append("closed")
        if self.error:
            state.append(f"error {self.error}")
        head = f"HTTP {self.status}" if self.status is not None else "no response"
        return f"{head} after {self.elapsed:.1f}s ({', '.join(state) or 'open'}), body {short(self.body, 200)!r}"


def _parse_chunked(data):
    """De-chunks as much as possible: (body, done, rest, error)."""
    body, pos = b"", 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return body, False, b"", None
        size_text = data[pos:line_end].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return body, False, b"", f"bad chunk size {size_text!r}"
        start = line_end + 2
        if size == 0:  # the last chunk, then optional trailers and an empty line
            if data[start:start + 2] == b"\r\n":
                return body, True, data[start + 2:], None
            end = data.find(b"\r\n\r\n", start)
            if end >= 0:
                return body, True, data[end + 4:], None
            return body, False, b"", None
        if len(data) < start + size + 2:
            return body + data[start:start + size], False, b"", None
        body += data[start:start + size]
        pos = start + size + 2


def _parse(buf, resp, head_request=False):
    """Fills resp from buf; returns True once a complete response is in buf."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    lines = buf[:head_end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        resp.status = int(parts[1])
    except (IndexError, ValueError):
        resp.error = f"bad status line {lines[0]!r}"
        return True
    resp.reason = parts[2] if len(parts) > 2 else ""
    resp.headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            resp.headers[name.strip().lower()] = value.strip()
    rest = buf[head_end + 4:]
    if head_request or resp.status in (204, 304) or 100 <= resp.status < 200:
        resp.body, resp.extra = b"", rest
        return True
    if "chunked" in resp.headers.get("transfer-encoding", "").lower():
        body, done, extra, error = _parse_chunked(rest)
        resp.body = body
        if error:
            resp.error = error
            return True
        if done:
            resp.extra = extra
        return done
    if "content-length" in resp.headers:
        try:
            length = int(resp.headers["content-length"])
        except ValueError:
            resp.error = "bad content-length"
            return True
        resp.body = rest[:length]
        resp.extra = rest[length:]
        return len(rest) >= length
    resp.body = rest  # delimited by close
    return False


class RawConn:
    """One client connection to the server under test (or anywhere on loopback)."""

    def __init__(self, host=None, port=None, timeout=5.0):
        self.sock = socket.create_connection((host or HOST, port or PORT), timeout=timeout)
        self.buf = b""
        self.sent_at = time.monotonic()
        self.closed = False

    def send(self, data):
        self.sent_at = time.monotonic()
        try:
            self.sock.sendall(data)
            return None
        except OSError as e:  # the server may close while we still send: that is an answer too
            return str(e)

    def _recv(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(min(remaining, 1.0))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            if time.monotonic() >= deadline:
                raise
            return None
        if not chunk:
            self.closed = True
        return chunk

    def read_response(self, timeout=8.0, head_request=False, until_close=False):
        """Reads until one full response is parsed (or, with until_close, until the server closes),
        the server closes, or timeout seconds pass."""
        resp = RawResponse()
        deadline = self.sent_at + timeout
        while True:
            if self.buf and resp.first_body_at is None and b"\r\n\r\n" in self.buf \
                    and len(self.buf) > self.buf.find(b"\r\n\r\n") + 4:
                resp.first_body_at = time.monotonic() - self.sent_at
            if _parse(self.buf, resp, head_request) and not until_close:
                resp.complete = resp.error is None
                break
            if self.closed:
                resp.complete = _parse(self.buf, resp, head_request) and resp.error is None
                if resp.status is not None and "content-length" not in resp.headers \
                        and "chunked" not in resp.headers.get("transfer-encoding", "").lower():
                    resp.complete = True  # close-delimited body
                break
            try:
                chunk = self._recv(deadline)
            except socket.timeout:
                resp.timed_out = True
                _parse(self.buf, resp, head_request)
                break
            except OSError as e:
                resp.error = str(e)
                self.closed = True
                _parse(self.buf, resp, head_request)
                break
            if chunk:
                self.buf += chunk
        resp.closed = self.closed
        resp.elapsed = time.monotonic() - self.sent_at
        return resp

    def wait_closed(self, timeout):
        """True if the server closes the connection (recv returns b"") within timeout seconds."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            try:
                chunk = self._recv(deadline)
            except socket.timeout:
                return False
            except OSError:
                return True
            if chunk:
                self.buf += chunk
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_request(data, timeout=8.0, drain=1.0, **kw):
    """Sends data on a fresh connection and reads one response; then waits up to `drain` seconds
    for anything more (resp.extra: a second response on the same connection is a protocol bug)."""
    conn = RawConn(timeout=timeout, **kw)
    try:
        send_error = conn.send(data)
        resp = conn.read_response(timeout=timeout)
        if send_error and resp.status is None and not resp.error:
            resp.error = send_error
        if resp.complete and not conn.closed and drain > 0:
            conn.wait_closed(drain)
            again = RawResponse()
            _parse(conn.buf, again)
            resp.extra = again.extra
        resp.closed = conn.closed
        return resp
    finally:
        conn.close()


def http_bytes(method, path, body=b"", headers=None, version="HTTP/1.1"):
    lines = [f"{method} {path} {version}", f"Host: {HOST}:{PORT}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ---------------------------------------------------------------------------------------------
# Plain API client (http.client, a fresh connection per request, bounded).
# ---------------------------------------------------------------------------------------------

def api(method, path, body=None, headers=None, timeout=8.0, base=None):
    host, port = (HOST, PORT) if base is None else base
    return ct.request(host, port, method, path, body, headers, timeout, digits=1)


def register(name, acp_url, deployment_id=None, base=None, headers=None, timeout=8.0, **extra):
    body = {"name": name, "description": f"hostile test agent {name}", "acp_url": acp_url, "acp_type": "async"}
    if deployment_id is not None:
        body["registration_metadata"] = {"deployment_id": deployment_id, "docker_image": "img"}
    body.update(extra)
    return api("POST", "/agents/register", body, base=base, headers=headers, timeout=timeout)


def agent_names():
    a = api("GET", "/agents?limit=1000")
    if a.status != 200 or not isinstance(a.body, list):
        return None
    return {x.get("name") for x in a.body}


def get_deployment(agent_id, did):
    return api("GET", f"/agents/{agent_id}/deployments/{urllib.parse.quote(did)}", timeout=5)


def envelope_problem(status, body):
    """None if body is the control error envelope for status, else what is wrong."""
    if not isinstance(body, dict):
        return f"body is not a JSON object: {short(body)!r}"
    if not isinstance(body.get("message"), str):
        return "message missing or not a string"
    if body.get("code") != status or isinstance(body.get("code"), bool):
        return f"code {body.get('code')!r} != HTTP status {status}"
    if "data" not in body:
        return "data missing"
    return None


def jsonrpc_problem(body, code=None):
    """None if body is a JSON-RPC error body (with the given error code), else what is wrong."""
    if not isinstance(body, dict):
        return f"body is not a JSON object: {short(body)!r}"
    if body.get("jsonrpc") != "2.0":
        return "jsonrpc is not \"2.0\""
    if "id" not in body:
        return "id missing"
    error = body.get("error")
    if not isinstance(error, dict):
        return "error missing"
    if not isinstance(error.get("code"), int) or isinstance(error.get("code"), bool):
        return f"error.code {error.get('code')!r} is not an integer"
    if not isinstance(error.get("message"), str):
        return "error.message missing"
    if "data" not in error:
        return "error.data missing"
    if code is not None and error["code"] != code:
        return f"error.code {error['code']} != {code} (message {error.get('message')!r})"
    return None


# ---------------------------------------------------------------------------------------------
# Stand-in agent pods.
# ---------------------------------------------------------------------------------------------

class _HealthyHandler(ct.JSONHandler):
    # HTTP/1.0 (the default): every connection closes after one answer, so once the pod is
    # stopped no pooled connection to it can still be answered.
    def do_GET(self):
        if self.path.rstrip("/").endswith("/healthz"):
            self._send(200, {"status": "healthy"})
        else:
            self._send(404, {"detail": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.api_calls.append(raw)
        try:
            request_id = json.loads(raw).get("id")
        except Exception:
            request_id = None
        self._send(200, {"jsonrpc": "2.0", "id": request_id, "result": {"echo": True}})


class HealthyPod:
    """healthz answers 200 {"status":"healthy"}; POST /api echoes a JSON-RPC result."""

    def __init__(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthyHandler)
        self.server.daemon_threads = True
        self.server.api_calls = []
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        self.stopped = False

    @property
    def api_calls(self):
        return self.server.api_calls

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()  # the listening socket is closed: connects are refused


class RawPod:
    """A raw socket server; handler(pod, conn, method, path, headers, body) writes whatever it likes.
    stop() closes the listening socket and every open connection and wakes stalled handlers."""

    def __init__(self, handler):
        self.handler = handler
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop_event = threading.Event()
        self.conns = []
        self.requests = []  # (method, path)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.stop_event.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(10)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length") or 0)
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                rest += chunk
            with self.lock:
                self.requests.append((method, path))
            self.handler(self, conn, method, path, headers, rest)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def sleep(self, seconds):
        """Stalls the handler; True if the pod was stopped meanwhile."""
        return self.stop_event.wait(seconds)

    def stop(self):
        self.stop_event.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    c.close()
                except OSError:
                    pass


HEALTHY_BODY = b'{"status":"healthy"}'


def send_healthy(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(HEALTHY_BODY), HEALTHY_BODY))


def trickle_healthz(pod, conn, method, path, headers, body):
    """GET /healthz: a 200 head promising 100 bytes, then one byte every 0.3 s."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    for _ in range(100):
        if pod.sleep(0.3):
            return
        conn.sendall(b" ")


def stalled_api(pod, conn, method, path, headers, body):
    """healthz healthy; POST /api: a 200 head promising 100 bytes, 11 bytes, then a 30 s stall."""
    if method == "GET":
        return send_healthy(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    conn.sendall(b'{"jsonrpc":')
    pod.sleep(30)


NDJSON_LINE = b'{"jsonrpc":"2.0","id":"x","result":{"type":"delta","index":0,"delta":{"type":"text","text_delta":"first"}}}\n'


def stalled_ndjson(pod, conn, method, path, headers, body):
    """healthz healthy; POST /api: chunked application/x-ndjson, one line, then a 30 s stall."""
    if method == "GET":
        return send_healthy(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.sendall(b"%x\r\n%s\r\n" % (len(NDJSON_LINE), NDJSON_LINE))
    pod.sleep(30)


def make_production(name, pod_url, did=None, timeout=15, acp_type="async"):
    """Registers deployment did (default "<name>-v1"; deployment ids are global) of agent name at
    pod_url and waits until it is Ready and production. Returns (agent_id, problem)."""
    did = did or f"{name}-v1"
    r = register(name, pod_url, deployment_id=did, acp_type=acp_type)
    if r.status != 200 or not isinstance(r.body, dict):
        return None, f"registration answered {r.describe()}"
    agent_id = r.body["id"]

    def production():
        d = get_deployment(agent_id, did)
        return d.status == 200 and d.body.get("status") == "Ready" and d.body.get("is_production")

    if not wait_for(production, timeout, interval=0.2):
        d = get_deployment(agent_id, did)
        return agent_id, f"deployment {did} not Ready+production after {timeout}s: {d.describe()}"
    return agent_id, None


def rpc_bytes(path, payload=None, extra_headers=None):
    body = json.dumps(payload or {"jsonrpc": "2.0", "id": 1, "method": "task/create", "params": {}}).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(extra_headers or {})
    return http_bytes("POST", path, body, headers)


# ---------------------------------------------------------------------------------------------
# The checks, one function each.
# ---------------------------------------------------------------------------------------------

STATE = {}


def setup_main_agent():
    """An agent whose production deployment is a healthy pod; the chunked RPC checks aim at it."""
    pod = HealthyPod()
    agent_id, problem = make_production("hostile-main", pod.url)
    STATE["main_pod"], STATE["main_agent"] = pod, agent_id
    report(problem is None, "setup: agent hostile-main has a Ready production deployment", problem or "")


CHUNKED_VARIANTS = [
    ("chunk size ZZ", lambda body: b"ZZ\r\n" + body + b"\r\n0\r\n\r\n"),
    ("overflowing chunk size", lambda body: b"FFFFFFFFFFFFFFFFFFFF\r\n" + body + b"\r\n0\r\n\r\n"),
    ("valid first chunk, broken second", lambda body: b"%x\r\n%s\r\nZZ\r\nxx\r\n0\r\n\r\n" % (len(body), body)),
]


def chunked_request(path, chunked_body):
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    return raw_request(head + chunked_body, timeout=6.0)


def check_malformed_chunked_control():
    before = agent_names()
    for i, (label, make) in enumerate(CHUNKED_VARIANTS):
        name = f"hostile-chunked-{i}"
        body = json.dumps({"name": name, "description": "x", "acp_url": "http://127.0.0.1:9",
                           "acp_type": "async"}).encode()
        r = chunked_request("/agents/register", make(body))
        problem = None
        if r.status != 400:
            problem = f"expected HTTP 400, got {r.describe()}"
        elif r.body:
            problem = envelope_problem(400, r.json())
        if problem is None and r.extra.startswith(b"HTTP/"):
            problem = f"a second response followed on the same connection: {short(r.extra, 200)!r}"
        report(problem is None, f"malformed chunked body ({label}) to POST /agents/register -> 400", problem or "")
        h = api("GET", "/healthz", timeout=5)
        stored = api("GET", f"/agents/name/{name}", timeout=5)
        report(h.status == 200 and stored.status == 404,
               f"after malformed chunked register ({label}): /healthz 200 and nothing registered",
               f"healthz {h.describe()}; GET /agents/name/{name} {stored.describe()}")
    after = agent_names()
    report(before is not None and after == before, "malformed chunked registrations added no agent",
           f"before {sorted(before or [])}, after {sorted(after or [])}")


def check_malformed_chunked_rpc():
    agent_id = STATE.get("main_agent")
    pod = STATE.get("main_pod")
    if not agent_id:
        report(False, "malformed chunked RPC bodies", "no main agent (setup failed)")
        return
    calls_before = len(pod.api_calls)
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "task/create", "params": {}}).encode()
    targets = [(label, make, "/agents/name/hostile-main/rpc") for label, make in CHUNKED_VARIANTS]
    targets.append(("chunk size ZZ", CHUNKED_VARIANTS[0][1], f"/agents/{agent_id}/rpc"))
    targets.append(("chunk size ZZ", CHUNKED_VARIANTS[0][1], f"/agents/{agent_id}/deployments/hostile-main-v1/rpc"))
    for label, make, path in targets:
        r = chunked_request(path, make(body))
        problem = None
        if r.status != 400:
            problem = f"expected HTTP 400, got {r.describe()}"
        else:
            problem = jsonrpc_problem(r.json())
        if problem is None and r.extra.startswith(b"HTTP/"):
            problem = f"a second response followed on the same connection: {short(r.extra, 200)!r}"
        shown = path.replace(agent_id, "{id}")
        report(problem is None, f"malformed chunked body ({label}) to POST {shown} -> 400 JSON-RPC error",
               problem or "")
        h = api("GET", "/healthz", timeout=5)
        report(h.status == 200, f"after malformed chunked RPC ({label}, {shown}): /healthz 200", h.describe())
    report(len(pod.api_calls) == calls_before, "no malformed chunked RPC reached the agent pod",
           f"{len(pod.api_calls) - calls_before} calls reached it")


def check_http10_close():
    conn = RawConn(timeout=5)
    try:
        conn.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        r = conn.read_response(timeout=5)
        if r.status != 200:
            report(False, "HTTP/1.0 GET /healthz answers 200", r.describe())
            return
        report(True, "HTTP/1.0 GET /healthz answers 200")
        closed = conn.wait_closed(2.0)
        head = conn.buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").replace("\r\n", " | ")
        report(closed, "HTTP/1.0 without keep-alive: the server closes the connection within 2 s",
               f"connection still open 2 s after the response ({head})")
    finally:
        conn.close()


def check_registration_validation():
    before = agent_names()
    base = '"acp_url":"http://127.0.0.1:9","acp_type":"async"'

    # U+0000 inside description.
    body = ('{"name":"hostile-nul","description":"a\\u0000b",' + base + "}").encode()
    r = api("POST", "/agents/register", body)
    problem = None
    if r.status != 422:
        problem = f"expected 422, got {r.describe()}"
    else:
        problem = envelope_problem(422, r.body)
        errors = ((r.body or {}).get("data") or {}).get("errors") if isinstance(r.body, dict) else None
        if problem is None and not (isinstance(errors, list)
                                    and any(isinstance(e, dict) and e.get("field") == "description" for e in errors)):
            problem = f"data.errors does not name description: {short(r.raw)!r}"
    report(problem is None, "registration with U+0000 in description -> 422 naming description", problem or "")

    # Duplicate keys.
    body = ('{"name":"hostile-dup-x","name":"hostile-dup-y","description":"d",' + base + "}").encode()
    r = api("POST", "/agents/register", body)
    problem = f"expected 400, got {r.describe()}" if r.status != 400 else envelope_problem(400, r.body)
    report(problem is None, "registration with duplicate JSON keys -> 400", problem or "")

    # A number JSON cannot represent as a double.
    body = ('{"name":"hostile-big","description":"d",' + base + ',"registration_metadata":{"n":1e400}}').encode()
    r = api("POST", "/agents/register", body)
    problem = f"expected 422, got {r.describe()}" if r.status != 422 else envelope_problem(422, r.body)
    report(problem is None, "registration with registration_metadata {\"n\": 1e400} -> 422", problem or "")

    after = agent_names()
    leaked = sorted((after or set()) - (before or set()))
    report(before is not None and after is not None and not leaked,
           "rejected registrations stored nothing", f"new agents: {leaked}" if leaked else "could not list agents")


def check_stalled_probes():
    slow_pod = RawPod(trickle_healthz)
    healthy = HealthyPod()
    try:
        slow = []
        for i in range(5):
            r = register("hostile-slowprobe", slow_pod.url, deployment_id=f"slow-{i}")
            if r.status != 200:
                report(False, "stalled probes: register slow deployments", r.describe())
                return
            slow.append((r.body["id"], f"slow-{i}"))
        started = time.monotonic()
        r = register("hostile-fastprobe", healthy.url, deployment_id="fast-1")
        if r.status != 200:
            report(False, "stalled probes: register the healthy deployment", r.describe())
            return
        fast_agent = r.body["id"]

        def ready():
            d = get_deployment(fast_agent, "fast-1")
            return d.status == 200 and d.body.get("status") == "Ready"

        ok = wait_for(ready, 10.0, interval=0.2)
        d = get_deployment(fast_agent, "fast-1")
        report(bool(ok), "a healthy deployment becomes Ready within 10 s while 5 probes trickle",
               f"after {time.monotonic() - started:.1f}s: status {d.body.get('status') if d.body else None!r}, "
               f"status_reason {d.body.get('status_reason') if d.body else None!r}")

        def slow_states():
            states = []
            for agent_id, did in slow:
                d = get_deployment(agent_id, did)
                states.append((did, (d.body or {}).get("status"), (d.body or {}).get("status_reason")))
            return states

        def all_timed_out():
            states = slow_states()
            good = all(s == "Pending" and reason and re.search(r"time[ds]?[ -]?out", reason, re.I)
                       for _, s, reason in states)
            return states if good else None

        result = wait_for(all_timed_out, max(1.0, 12.0 - (time.monotonic() - started)), interval=0.5)
        states = result or slow_states()
        report(bool(result), "trickling-probe deployments stay Pending with a timeout in status_reason",
               f"after {time.monotonic() - started:.1f}s: " + "; ".join(f"{d}={s}/{r!r}" for d, s, r in states))
    finally:
        slow_pod.stop()
        healthy.stop()


def check_refused_probe():
    port = free_port()
    r = register("hostile-refused", f"http://127.0.0.1:{port}", deployment_id="refused-1")
    if r.status != 200:
        report(False, "refused probe: registration", r.describe())
        return
    agent_id = r.body["id"]

    def refused():
        d = get_deployment(agent_id, "refused-1")
        reason = (d.body or {}).get("status_reason") or ""
        return d if "refused" in reason.lower() else None

    ok = wait_for(refused, 5.0, interval=0.2)
    d = get_deployment(agent_id, "refused-1")
    report(bool(ok), "a deployment on a refused port gets a status_reason mentioning 'refused' within 5 s",
           f"status {(d.body or {}).get('status')!r}, status_reason {(d.body or {}).get('status_reason')!r}")


def check_refused_rpc():
    pod = HealthyPod()
    agent_id, problem = make_production("hostile-rpcrefused", pod.url)
    if problem:
        pod.stop()
        report(False, "refused RPC: setup", problem)
        return
    pod.stop()
    r = raw_request(rpc_bytes("/agents/name/hostile-rpcrefused/rpc"), timeout=8.0, drain=0)
    body = r.json()
    problem = None
    if r.status != 502:
        problem = f"expected 502, got {r.describe()}"
    elif r.elapsed >= 3.0:
        problem = f"took {r.elapsed:.1f}s (bound 3 s)"
    else:
        problem = jsonrpc_problem(body, -32003)
        if problem is None and "refused" not in body["error"]["message"].lower():
            problem = f"message does not mention refused: {body['error']['message']!r}"
    report(problem is None, "RPC to a production pod that stopped listening -> 502 -32003 'refused' within 3 s",
           problem or "")


def check_stalled_rpc_body():
    pod = RawPod(stalled_api)
    try:
        agent_id, problem = make_production("hostile-stallbody", pod.url)
        if problem:
            report(False, "stalled RPC body: setup", problem)
            return
        r = raw_request(rpc_bytes("/agents/name/hostile-stallbody/rpc"), timeout=12.0, drain=0)
        problem = None
        if r.status != 504:
            problem = f"expected 504, got {r.describe()}"
        elif r.elapsed >= 8.0:
            problem = f"took {r.elapsed:.1f}s (bound 8 s)"
        else:
            problem = jsonrpc_problem(r.json(), -32005)
        if problem:
            problem += f"; the pod saw {[' '.join(x) for x in pod.requests]}"
        report(problem is None, "RPC whose pod stalls mid-body -> 504 -32005 within 8 s", problem or "")
    finally:
        pod.stop()


def check_stalled_ndjson():
    pod = RawPod(stalled_ndjson)
    try:
        agent_id, problem = make_production("hostile-stallstream", pod.url, acp_type="sync")
        if problem:
            report(False, "stalled NDJSON stream: setup", problem)
            return
        # A streamed message/send: the pod's first line reaches the client (re-addressed to its id).
        message = {"jsonrpc": "2.0", "id": 1, "method": "message/send",
                   "params": {"stream": True, "content": {"type": "text", "author": "user", "content": "hi"}}}
        r = raw_request(rpc_bytes("/agents/name/hostile-stallstream/rpc", message), timeout=12.0, drain=0)
        got_line = b'"text_delta":"first"' in r.body
        report(r.status == 200 and got_line, "stalled NDJSON stream: the client receives the first line",
               r.describe())
        ended = (r.complete or r.closed) and not r.timed_out
        report(ended and r.elapsed < 8.0,
               "stalled NDJSON stream: the response ends (closed or terminated) within 8 s",
               f"{r.describe()}, first body bytes after "
               + (f"{r.first_body_at:.1f}s" if r.first_body_at is not None else "never"))
    finally:
        pod.stop()


def check_database_outage():
    stop_cmd, start_cmd = os.environ.get("HOSTILE_PG_STOP"), os.environ.get("HOSTILE_PG_START")
    if BACKEND != "postgres" or not stop_cmd or not start_cmd:
        print("ok - database stop/restart checks # skip (PostgreSQL run only)", flush=True)
        return
    acknowledged = []  # (path, what) that must read 200 afterwards
    for i in range(3):
        r = register(f"hostile-db-{i}", "http://127.0.0.1:9")
        if r.status != 200:
            report(False, "database outage: writes before the stop answer 200", r.describe())
            return
        acknowledged.append(f"/agents/{r.body['id']}")
    r = api("POST", f"{acknowledged[0]}/deployments", {"docker_image": "img", "id": "hostile-db-dep"})
    if r.status != 200:
        report(False, "database outage: create deployment before the stop answers 200", r.describe())
        return
    acknowledged.append(f"{acknowledged[0]}/deployments/hostile-db-dep")
    report(True, "database outage: 4 writes acknowledged 200 before the stop")

    unanswered_writes = 0  # registrations during the outage that got no answer at all
    rc, out, took = run_shell(stop_cmd)
    if rc != 0:
        report(False, "database outage: pg_ctl stop", short(out))
        return
    try:
        requests = [
            ("GET /agents", lambda: api("GET", "/agents", timeout=4.5)),
            ("POST /agents/register", lambda: register("hostile-db-down", "http://127.0.0.1:9", timeout=4.5)),
            ("GET /readyz", lambda: api("GET", "/readyz", timeout=4.5)),
        ]
        for round_ in range(2):
            for label, call in requests:
                start = time.monotonic()
                a = call()
                took = time.monotonic() - start
                if label.startswith("POST") and a.status is None:
                    unanswered_writes += 1
                problem = None
                if a.status != 503:
                    problem = f"expected 503, got {a.describe()}"
                elif took >= 3.0:
                    problem = f"503 took {took:.1f}s (bound 3 s)"
                else:
                    problem = envelope_problem(503, a.body)
                report(problem is None, f"database stopped: {label} -> 503 within 3 s (try {round_ + 1})",
                       problem or "")
        h = api("GET", "/healthz", timeout=5)
        report(h.status == 200, "database stopped: /healthz still 200", h.describe())
    finally:
        rc, out, took = run_shell(start_cmd)
    if not report(rc == 0, "database outage: pg_ctl start", short(out)):
        return
    started = time.monotonic()

    def recovered():
        a, b = api("GET", "/agents", timeout=3), api("GET", "/readyz", timeout=3)
        return (a.status, b.status) == (200, 200)

    ok = wait_for(recovered, 5.0, interval=0.25)
    a, b = api("GET", "/agents", timeout=3), api("GET", "/readyz", timeout=3)
    report(bool(ok), "database restarted: GET /agents and /readyz answer 200 within 5 s",
           f"after {time.monotonic() - started:.1f}s: /agents {a.describe()}; /readyz {b.describe()}")
    w = register("hostile-db-after", "http://127.0.0.1:9")
    report(w.status == 200, "database restarted: a registration answers 200", w.describe())
    missing = [p for p in acknowledged if api("GET", p, timeout=5).status != 200]
    report(not missing, "every write acknowledged before the stop is still readable", f"missing: {missing}")
    if unanswered_writes:
        print("ok - the registrations refused during the outage were not stored # skip "
              f"({unanswered_writes} got no answer at all, so storing them later is allowed)", flush=True)
    else:
        gone = api("GET", "/agents/name/hostile-db-down", timeout=5)
        report(gone.status == 404, "the registrations refused during the outage were not stored", gone.describe())


def check_agent_key_privacy():
    binary = os.environ.get("CUTOVER_BIN")
    if BACKEND != "sqlite" or not binary:
        print("ok - agent key privacy # skip (separate serve on the SQLite run only)", flush=True)
        return
    tmp = tempfile.mkdtemp(prefix="cutover-hostile-token.")
    port = free_port()
    token = "hostile-admin-token-0123456789"
    log = open(os.path.join(tmp, "server.log"), "wb")
    proc = subprocess.Popen(
        [binary, "serve", "--database-url", f"sqlite://{tmp}/cutover.sqlite", "--listen", f"127.0.0.1:{port}",
         "--admin-token", token, "--probe", "none", "--log-format", "json"],
        stdout=log, stderr=subprocess.STDOUT)
    base = ("127.0.0.1", port)
    admin = {"Authorization": f"Bearer {token}"}
    try:
        up = wait_for(lambda: api("GET", "/healthz", timeout=2, base=base).status == 200 or proc.poll() is not None,
                      30.0, interval=0.3)
        if not up or proc.poll() is not None:
            report(False, "agent key privacy: token-protected serve starts", f"exit code {proc.poll()}")
            return
        a = register("hostile-key-a", "http://127.0.0.1:9", deployment_id="a1", base=base, headers=admin)
        b = register("hostile-key-b", "http://127.0.0.1:9", deployment_id="b1", base=base, headers=admin)
        if a.status != 200 or b.status != 200:
            report(False, "agent key privacy: registrations", f"{a.describe()} / {b.describe()}")
            return
        key_a, id_b = a.body["agent_api_key"], b.body["id"]
        as_a = {"x-agent-api-key": key_a}
        probes = [
            ("GET", f"/agents/{id_b}", None),
            ("GET", "/agents/name/hostile-key-b", None),
            ("DELETE", "/agents/name/hostile-key-b", None),
            ("GET", f"/agents/{id_b}/deployments", None),
            ("GET", f"/agents/{id_b}/deployments/b1", None),
            ("GET", f"/agents/{id_b}/events", None),
            ("POST", f"/agents/{id_b}/deployments/b1/promote", None),
            ("POST", f"/agents/{id_b}/rollback", None),
            ("POST", "/agents/name/hostile-key-b/rpc", {"jsonrpc": "2.0", "id": 1, "method": "task/create", "params": {}}),
            ("POST", f"/agents/{id_b}/deployments/b1/rpc", {"jsonrpc": "2.0", "id": 1, "method": "task/create", "params": {}}),
            ("POST", f"/agents/{a.body['id']}/deployments", {"docker_image": "img", "id": "b1"}),
        ]
        leaks = []
        for method, path, body in probes:
            r = api(method, path, body, headers=as_a, base=base)
            path_names_b = id_b in path
            if (not path_names_b and id_b.encode() in r.raw) or r.status is None or r.status == 200 \
                    or r.status >= 500:
                shown = path.replace(id_b, "{b}")
                leaks.append(f"{method} {shown}: {r.describe().replace(id_b, '<B-ID>')}")
        names = api("GET", "/agents", headers=as_a, base=base)
        if names.status != 200 or id_b.encode() in names.raw:
            leaks.append(f"GET /agents: {names.describe().replace(id_b, '<B-ID>')}")
        report(not leaks, "an agent API key never learns another agent's id (nor gets a 200/5xx on it)",
               " | ".join(leaks))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        subprocess.run(["rm", "-rf", tmp])


def check_server_survived():
    pid = os.environ.get("CUTOVER_PID")
    if pid:
        try:
            os.kill(int(pid), 0)
            alive = True
        except OSError:
            alive = False
        report(alive, "the server process is still alive", f"pid {pid} is gone")
    h = api("GET", "/healthz", timeout=5)
    report(h.status == 200, "the server still answers /healthz", h.describe())
    log_path = os.environ.get("CUTOVER_LOG")
    if log_path:
        critical = ct.log_level_lines(log_path, {"critical"}, 300, text_match=True)
        report(not critical, "the server log has no critical line", " | ".join(critical[:3]))


CHECKS = [
    setup_main_agent,
    check_malformed_chunked_control,
    check_malformed_chunked_rpc,
    check_http10_close,
    check_registration_validation,
    check_refused_probe,
    check_refused_rpc,
    check_stalled_rpc_body,
    check_stalled_ndjson,
    check_stalled_probes,
    check_database_outage,
    check_agent_key_privacy,
    check_server_survived,
]


def main():
    timer = ct.start_watchdog(SUITE_TIMEOUT, f"the suite did not finish within {SUITE_TIMEOUT} s (a check hung)")
    started = time.monotonic()
    print(f"# hostile-client checks against {URL} ({BACKEND})", flush=True)
    ct.run_checks(CHECKS, SKIP)
    pod = STATE.get("main_pod")
    if pod:
        pod.stop()
    timer.cancel()
    print(f"# total {time.monotonic() - started:.1f}s", flush=True)
    ct.summary()
    sys.exit(1 if ct.FAILED else 0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
