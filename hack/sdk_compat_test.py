"""End-to-end test of real agentex-sdk 0.28.4 pods (hack/sdk-pods/) against a running Cutover,
driven only through the official `agentex-client` (reads of Cutover's own deployment records and
the promotion use plain HTTP; the pods' `GET /debug/received` shows what Cutover forwarded).

Run by hack/sdk-compat-test.sh, which makes the venv, starts `cutover serve` and sets:
  CUTOVER_URL          the server under test (no tokens; loopback)
  CUTOVER_TOKEN_URL    optional: a server started with --registration-token $REG_TOKEN
                       --admin-token $ADMIN_TOKEN (the registration-token checks run against it)
  SDK_PODS_DIR         hack/sdk-pods;  SDK_LOG_DIR  where the pods' logs go
  SDK_BACKEND          a label for the output (sqlite, postgres)
Every check prints "ok - name" or "FAIL - name: detail"; the last line reads "N passed, M failed".
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

import agentex

BASE = os.environ.get("CUTOVER_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN_BASE = (os.environ.get("CUTOVER_TOKEN_URL") or "").rstrip("/")
REG_TOKEN = os.environ.get("REG_TOKEN", "")
ADMIN_TOKEN = os.environ.get("ADMIN_TOKEN", "")
PODS_DIR = os.environ.get("SDK_PODS_DIR", os.path.join(os.path.dirname(__file__), "sdk-pods"))
LOG_DIR = os.environ.get("SDK_LOG_DIR", "/tmp")
BACKEND = os.environ.get("SDK_BACKEND", "sqlite")
SUITE_TIMEOUT = float(os.environ.get("SDK_SUITE_TIMEOUT", "240"))
RUN = uuid.uuid4().hex[:6]
WAIT = 15.0  # how long an async pod's callbacks may take to show up

os.environ.pop("AGENTEX_SDK_API_KEY", None)
os.environ.pop("AGENTEX_BASE_URL", None)
client = agentex.Agentex(base_url=BASE, max_retries=0, timeout=30, _strict_response_validation=True)

PASSED = 0
FAILED = 0
PODS: list["SDKPod"] = []


def report(ok: bool, name: str, detail: str = "") -> bool:
    global PASSED, FAILED
    name = f"[{BACKEND}] {name}"
    if ok:
        PASSED += 1
        print(f"ok - {name}" + (f" ({detail})" if detail and len(detail) <= 160 else ""), flush=True)
    else:
        FAILED += 1
        print(f"FAIL - {name}: {detail}", flush=True)
    return ok


def short(value: object, limit: int = 400) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(line.strip() for line in text.splitlines() if line.strip() and "errors.pydantic.dev" not in line)
    return text if len(text) <= limit else text[:limit] + "…"


def check(name: str, fn) -> object:
    """Runs fn(); an AssertionError or any exception is a FAIL with its message. Returns fn's value
    (None on failure)."""
    try:
        result = fn()
    except AssertionError as err:
        report(False, name, short(str(err)))
        return None
    except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the suite
        report(False, name, short(f"{type(err).__name__}: {err}"))
        return None
    detail = result if isinstance(result, str) else ""
    report(True, name, detail)
    return result if result is not None else True


def skipped(names: list[str], because: str) -> None:
    """Checks that cannot run because an earlier one failed count as failures, by name."""
    for name in names:
        report(False, name, f"skipped: {because}")


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def eventually(fn, timeout: float = WAIT, interval: float = 0.25):
    """Retries fn() until it returns without an AssertionError (or the timeout: re-raises)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (AssertionError, agentex.APIStatusError):
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def http_json(method: str, url: str, body: object = None, headers: dict | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw or b"null")
        except ValueError:
            return err.code, raw.decode("utf-8", "replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SDKPod:
    """One agent pod: `uvicorn <module>:app` from hack/sdk-pods with the SDK's environment."""

    def __init__(self, module: str, agent: str, acp_type: str, deployment: str | None, base: str = BASE,
                 api_key: str | None = None) -> None:
        self.module, self.agent, self.deployment = module, agent, deployment
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT", "ACP_", "AGENTEX_"))}
        env.update(
            AGENTEX_BASE_URL=base,
            ACP_URL="http://127.0.0.1",
            ACP_PORT=str(self.port),
            AGENT_NAME=agent,
            ACP_TYPE=acp_type,
            PYTHONUNBUFFERED="1",
            REDIS_URL="redis://127.0.0.1:1",  # no Redis: the ADK's stream publish fails fast and is logged
        )
        if deployment:
            env["AGENTEX_DEPLOYMENT_ID"] = deployment
        if api_key:
            env["AGENT_API_KEY"] = api_key
        self.log_path = os.path.join(LOG_DIR, f"pod-{BACKEND}-{deployment or agent}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            cwd=PODS_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        PODS.append(self)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return r.status == 200
        except Exception:  # noqa: BLE001
            return False

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"pod {self.deployment or self.agent} exited {self.proc.returncode}: "
                                     f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"pod {self.deployment or self.agent} not healthy after {timeout:.0f}s")
            time.sleep(0.25)

    def received(self, method: str | None = None) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/debug/received", timeout=5) as r:
            calls = json.loads(r.read())
        if method is None:
            return calls
        return [c for c in calls if isinstance(c.get("body"), dict) and c["body"].get("method") == method]

    def log_tail(self, n: int = 8) -> str:
        try:
            with open(self.log_path) as f:
                return " | ".join(line.strip() for line in f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def wait_deployment_ready(base: str, agent_name: str, deployment: str, headers: dict | None = None,
                          timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        status, agent = http_json("GET", f"{base}/agents/name/{agent_name}", headers=headers)
        if status == 200:
            status, dep = http_json("GET", f"{base}/agents/{agent['id']}/deployments/{deployment}", headers=headers)
            last = (status, dep)
            if status == 200 and dep.get("status") == "Ready":
                return {"agent": agent, "deployment": dep}
            if status == 200 and dep.get("status") == "Failed":
                raise AssertionError(f"{deployment} Failed: {dep.get('status_reason')}")
        else:
            last = (status, agent)
        time.sleep(0.2)
    raise AssertionError(f"{deployment} not Ready after {timeout:.0f}s: {short(last)}")


def text_of(message) -> str:
    content = getattr(message, "content", None)
    return getattr(content, "content", "") if content is not None else ""


def user_text(text: str) -> dict:
    return {"type": "text", "author": "user", "content": text}


def envelope_ok(pod: SDKPod, method: str, task_id: str, agent_id: str) -> str:
    """The pod got Agentex's envelope for method on task_id: id "<method>-<task id>", params.agent and
    params.task objects, Cutover's x-agent-api-key."""
    calls = [c for c in pod.received(method) if ((c["body"].get("params") or {}).get("task") or {}).get("id") == task_id]
    expect(calls, f"{pod.deployment or pod.agent} received no {method} for task {task_id} "
                  f"(it received {[c['body'].get('method') for c in pod.received() if isinstance(c.get('body'), dict)]})")
    body, headers = calls[-1]["body"], calls[-1]["headers"]
    expect(body.get("id") == f"{method}-{task_id}", f"envelope id {body.get('id')!r}, want '{method}-{task_id}'")
    expect(body.get("jsonrpc") == "2.0", f"jsonrpc {body.get('jsonrpc')!r}")
    agent = body["params"].get("agent") or {}
    expect(agent.get("id") == agent_id, f"params.agent.id {agent.get('id')!r}, want {agent_id}")
    expect(headers.get("x-agent-api-key"), "no x-agent-api-key header on the forwarded envelope")
    answer = calls[-1].get("answer") or ""
    expect('"error":null' in answer.replace(" ", "") or '"error"' not in answer,
           f"the pod answered with an error: {short(answer)}")
    return f"id {body['id']}"


# ---------------------------------------------------------------------------------------------
# The suites.
# ---------------------------------------------------------------------------------------------

def main() -> int:
    watchdog = threading.Timer(SUITE_TIMEOUT, lambda: (print(f"FAIL - [{BACKEND}] suite not done after {SUITE_TIMEOUT:.0f}s", flush=True),
                                                       print(f"{PASSED} passed, {FAILED + 1} failed", flush=True),
                                                       [p.stop() for p in PODS], os._exit(1)))
    watchdog.daemon = True
    watchdog.start()
    try:
        run_all()
    except Exception:  # noqa: BLE001
        report(False, "suite crashed", traceback.format_exc().strip().splitlines()[-1])
    finally:
        for pod in PODS:
            pod.stop()
        watchdog.cancel()
    print(f"{PASSED} passed, {FAILED} failed", flush=True)
    return 0 if FAILED == 0 else 1


def run_all() -> None:
    sync_name, async_name, legacy_name = f"sdk-sync-{RUN}", f"sdk-async-{RUN}", f"sdk-legacy-{RUN}"
    sync_dep, v1, v2 = f"sdk-sync-{RUN}-v1", f"sdk-async-{RUN}-v1", f"sdk-async-{RUN}-v2"

    # All pods start together (each takes ~10 s to import the SDK); v2 registers later because
    # its agent's first deployment (v1) must be the one auto-promoted.
    sync_pod = SDKPod("sync_echo", sync_name, "sync", sync_dep)
    pod_v1 = SDKPod("async_echo", async_name, "async", v1)
    legacy_pod = SDKPod("async_echo", legacy_name, "async", None)
    token_pods = []
    if TOKEN_BASE:
        token_pods = [SDKPod("async_echo", f"sdk-tok-{RUN}", "async", f"sdk-tok-{RUN}-v1", base=TOKEN_BASE, api_key=REG_TOKEN),
                      SDKPod("async_echo", f"sdk-notok-{RUN}", "async", f"sdk-notok-{RUN}-v1", base=TOKEN_BASE)]

    # --- registration, readiness, auto-promotion (expected to pass today) -------------------------
    ids = {}
    for pod, name, dep in ((sync_pod, sync_name, sync_dep), (pod_v1, async_name, v1)):
        r = check(f"register: {dep} starts, registers and turns Ready",
                  lambda pod=pod, name=name, dep=dep: (pod.wait_healthy(), wait_deployment_ready(BASE, name, dep))[1])
        if r:
            ids[name] = r["agent"]["id"]
            check(f"register: {dep} auto-promoted (first deployment)",
                  lambda name=name, dep=dep: expect(client.agents.retrieve_by_name(name).production_deployment_id == dep,
                                                    f"production {client.agents.retrieve_by_name(name).production_deployment_id}"))
    pod_v2 = SDKPod("async_echo", async_name, "async", v2)
    check("register: legacy pod (no AGENTEX_DEPLOYMENT_ID) registers, agent Ready",
          lambda: (legacy_pod.wait_healthy(),
                   expect(client.agents.retrieve_by_name(legacy_name).status == "Ready", "agent not Ready"))[1])
    ids[legacy_name] = client.agents.retrieve_by_name(legacy_name).id if legacy_pod.healthy() else None

    if sync_name in ids:
        sync_suite(sync_pod, sync_name, ids[sync_name])
    if async_name in ids:
        async_suite(pod_v1, pod_v2, async_name, ids[async_name], v1, v2)
    if ids.get(legacy_name):
        legacy_suite(legacy_pod, legacy_name, ids[legacy_name])
    if token_pods:
        token_suite(*token_pods)


def sync_suite(pod: SDKPod, name: str, agent_id: str) -> None:
    state: dict = {}

    def plain():
        resp = client.agents.send_message(agent_name=name, params={"content": user_text("hello sync")})
        msgs = resp.result
        expect(msgs, f"no messages in the answer: {short(resp)}")
        expect(any(text_of(m) == "echo: hello sync" for m in msgs), f"no echo in {[text_of(m) for m in msgs]}")
        expect(all(m.id and m.task_id for m in msgs), "a message without id/task_id")
        state["task_id"] = msgs[0].task_id
        return f"task {msgs[0].task_id}"

    if not check("sync: send_message (plain) returns the echo as TaskMessage[]", plain):
        skipped(["sync: envelope, stored messages, streaming, task status, task_id+task_name, unknown task"],
                "send_message failed")
        return
    task_id = state["task_id"]
    check("sync: the pod got the envelope message/send-<task id> with agent and task",
          lambda: envelope_ok(pod, "message/send", task_id, agent_id))

    def stored():
        msgs = client.messages.list(task_id=task_id)
        texts = sorted(text_of(m) for m in msgs)
        expect(texts == sorted(["hello sync", "echo: hello sync"]), f"stored {texts}")
        authors = sorted(m.content.author for m in msgs)
        expect(authors == ["agent", "user"], f"authors {authors}")
        return f"{len(msgs)} messages"

    check("sync: messages.list has the user's message and the agent's", stored)

    def streaming():
        chunks = list(client.agents.send_message_stream(
            agent_name=name, params={"task_id": task_id, "content": user_text("stream me please")}))
        kinds = [getattr(c.result, "type", None) for c in chunks]
        expect(chunks, "no chunks")
        deltas = "".join(c.result.delta.text_delta for c in chunks
                         if getattr(c.result, "type", None) == "delta" and c.result.delta is not None)
        expect("delta" in kinds, f"no delta chunk: {kinds}")
        expect(deltas == "echo: stream me please", f"deltas add up to {deltas!r}")
        parents = [c.result.parent_task_message for c in chunks if c.result is not None]
        expect(all(p is not None and p.task_id == task_id for p in parents),
               "a chunk without parent_task_message (the platform sets it on each chunk)")
        return f"{kinds}"

    check("sync: send_message_stream streams deltas then the full message", streaming)
    check("sync: the streamed message is stored when the stream ends (4 messages)",
          lambda: eventually(lambda: expect(len(client.messages.list(task_id=task_id)) == 4,
                                            f"{[text_of(m) for m in client.messages.list(task_id=task_id)]}"), 5))
    check("sync: tasks.retrieve shows the task RUNNING",
          lambda: expect(client.tasks.retrieve(task_id).status == "RUNNING", f"{client.tasks.retrieve(task_id)}"))

    def both_ids():
        try:
            client.agents.rpc_by_name(name, method="message/send",
                                      params={"task_id": task_id, "task_name": "x", "content": user_text("x")})
        except agentex.BadRequestError as err:
            body = err.body if isinstance(err.body, dict) else {}
            expect((body.get("error") or {}).get("code") == -32602, f"error {short(body)}")
            return "400 -32602"
        raise AssertionError("accepted task_id and task_name together")

    check("sync: naming both task_id and task_name -> 400 -32602", both_ids)

    def unknown_task():
        try:
            client.agents.rpc_by_name(name, method="message/send",
                                      params={"task_id": str(uuid.uuid4()), "content": user_text("x")})
        except agentex.NotFoundError as err:
            body = err.body if isinstance(err.body, dict) else {}
            expect((body.get("error") or {}).get("code") == -32004, f"error {short(body)}")
            return "404 -32004"
        raise AssertionError("an unknown task_id was accepted")

    check("sync: an unknown task_id -> 404 -32004", unknown_task)


def async_suite(pod_v1: SDKPod, pod_v2: SDKPod, name: str, agent_id: str, v1: str, v2: str) -> None:
    state: dict = {}

    def create():
        raw = client.agents.with_raw_response.rpc_by_name(name, method="task/create",
                                                          params={"name": f"t-{RUN}", "params": {"k": "v"}})
        expect(raw.headers.get("x-cutover-deployment-id") == v1,
               f"x-cutover-deployment-id {raw.headers.get('x-cutover-deployment-id')!r}")
        from agentex.types.agent_rpc_response import CreateTaskResponse
        task = CreateTaskResponse.model_validate(raw.parse(), from_attributes=True).result
        expect(task.id and task.status == "RUNNING", f"task {task}")
        expect(task.name == f"t-{RUN}" and task.params == {"k": "v"}, f"name/params {task.name} {task.params}")
        state["task_id"] = task.id
        return f"task {task.id}"

    if not check("async: create_task returns the Task (RUNNING), served by v1", create):
        skipped(["async: envelope, get-or-create by name, task/create writes, event/send (message, event, "
                 "tracker, state, spans), affinity after promotion, cancel, tasks.list"], "create_task failed")
        check("promotion: v2 Ready, then promoted (no task running)", lambda: (
            pod_v2.wait_healthy(), wait_deployment_ready(BASE, name, v2),
            expect(http_json("POST", f"{BASE}/agents/{agent_id}/deployments/{v2}/promote", {})[0] == 200,
                   "promote refused"),
            expect(client.agents.retrieve_by_name(name).production_deployment_id == v2, "production not v2"))[3])
        return
    task_id = state["task_id"]
    check("async: v1 got task/create-<task id> with agent, task and params",
          lambda: envelope_ok(pod_v1, "task/create", task_id, agent_id))
    check("async: create_task with the same name returns the same task",
          lambda: expect(client.agents.create_task(agent_name=name, params={"name": f"t-{RUN}"}).result.id == task_id,
                         "another task"))
    check("async: the pod's task/create writes (state, greeting message) are readable",
          lambda: eventually(lambda: (
              expect(any(text_of(m) == f"task {task_id} created by {v1}" for m in client.messages.list(task_id=task_id)),
                     f"messages {[text_of(m) for m in client.messages.list(task_id=task_id)]}"),
              expect([s.state.get("deployment") for s in client.states.list(task_id=task_id)] == [v1],
                     f"states {client.states.list(task_id=task_id)}"))[1]))

    def event(n: int, text: str, served_by: str):
        raw = client.agents.with_raw_response.rpc_by_name(name, method="event/send",
                                                          params={"task_id": task_id, "content": user_text(text)})
        from agentex.types.agent_rpc_response import SendEventResponse
        ev = SendEventResponse.model_validate(raw.parse(), from_attributes=True).result
        expect(ev.task_id == task_id and ev.agent_id == agent_id, f"event {ev}")
        expect(ev.sequence_id == n, f"sequence_id {ev.sequence_id}, want {n}")
        expect(raw.headers.get("x-cutover-deployment-id") == served_by,
               f"x-cutover-deployment-id {raw.headers.get('x-cutover-deployment-id')!r}, want {served_by}")
        state[f"event{n}"] = ev.id
        return f"event {ev.id} seq {ev.sequence_id}"

    if check("async: send_event returns the Event (sequence_id 1), served by v1", lambda: event(1, "first", v1)):
        ev1 = state["event1"]
        check("async: v1 got event/send-<task id> with the event", lambda: (
            envelope_ok(pod_v1, "event/send", task_id, agent_id),
            expect(pod_v1.received("event/send")[-1]["body"]["params"]["event"]["id"] == ev1, "another event"))[0])
        check("async: the pod's echo message is readable with client.messages",
              lambda: eventually(lambda: expect(
                  any(text_of(m) == f"echo: first (from {v1})" for m in client.messages.list(task_id=task_id)),
                  f"messages {[text_of(m) for m in client.messages.list(task_id=task_id)]}")))
        check("async: the user's event content is stored as a message (Agentex does this for author=user)",
              lambda: eventually(lambda: expect(
                  any(text_of(m) == "first" and m.content.author == "user" for m in client.messages.list(task_id=task_id)),
                  f"messages {[text_of(m) for m in client.messages.list(task_id=task_id)]}"), 3))
        check("async: events.list(task_id, agent_id) has the event",
              lambda: expect([e.id for e in client.events.list(task_id=task_id, agent_id=agent_id)] == [ev1],
                             f"{client.events.list(task_id=task_id, agent_id=agent_id)}"))

        def tracker():
            trackers = client.tracker.list(task_id=task_id)
            expect(len(trackers) == 1, f"trackers {trackers}")
            expect(trackers[0].last_processed_event_id == ev1 and trackers[0].agent_id == agent_id, f"{trackers[0]}")
            return f"tracker {trackers[0].id}"

        check("async: the tracker's last_processed_event_id is the event", lambda: eventually(tracker))
        check("async: state updated by the pod (events=1)", lambda: eventually(lambda: expect(
            client.states.list(task_id=task_id, agent_id=agent_id)[0].state.get("events") == 1,
            f"{client.states.list(task_id=task_id, agent_id=agent_id)}")))

        def via():
            s = eventually(lambda: client.states.list(task_id=task_id, agent_id=agent_id)[0].state)
            expect(s.get("tracker_via") == "tracker_id=task.id",
                   f"the SDK default handler's tracker.update(tracker_id=<task id>) was refused: {s.get('tracker_via')}")

        check("async: tracker.update(tracker_id=<task id>) (the SDK default handler's call) accepted", via)
        check("async: spans.list(trace_id=<task id>) has the pod's spans",
              lambda: eventually(lambda: expect(len(client.spans.list(trace_id=task_id)) >= 3,
                                                f"{len(client.spans.list(trace_id=task_id))} spans")))

    # --- promotion in the middle of the task -----------------------------------------------------
    promoted = check("promotion: v2 Ready, then promoted while the task runs", lambda: (
        pod_v2.wait_healthy(), wait_deployment_ready(BASE, name, v2),
        expect(http_json("POST", f"{BASE}/agents/{agent_id}/deployments/{v2}/promote", {"reason": "sdk test"})[0] == 200,
               "promote refused"),
        expect(client.agents.retrieve_by_name(name).production_deployment_id == v2, "production not v2"))[3])
    if promoted:
        check("affinity: send_event on the old task still reaches v1 (sequence_id 2)", lambda: event(2, "second", v1))
        check("affinity: v1 handled it (state handled_by v1, events=2), v2 got nothing for the task",
              lambda: eventually(lambda: (
                  expect(client.states.list(task_id=task_id, agent_id=agent_id)[0].state.get("handled_by") == v1
                         and client.states.list(task_id=task_id, agent_id=agent_id)[0].state.get("events") == 2,
                         f"{client.states.list(task_id=task_id, agent_id=agent_id)[0].state}"),
                  expect(not [c for c in pod_v2.received() if task_id in json.dumps(c.get("body"))],
                         "v2 received a call for the old task"))[1]))

        def new_task():
            raw = client.agents.with_raw_response.rpc_by_name(name, method="task/create", params={})
            from agentex.types.agent_rpc_response import CreateTaskResponse
            task = CreateTaskResponse.model_validate(raw.parse(), from_attributes=True).result
            expect(raw.headers.get("x-cutover-deployment-id") == v2,
                   f"x-cutover-deployment-id {raw.headers.get('x-cutover-deployment-id')!r}")
            envelope_ok(pod_v2, "task/create", task.id, agent_id)
            state["new_task"] = task.id
            return f"task {task.id}"

        check("affinity: a new task goes to v2", new_task)

    def cancel():
        resp = client.agents.cancel_task(agent_name=name, params={"task_id": task_id})
        expect(resp.result.id == task_id and resp.result.status == "CANCELED", f"{resp.result}")
        envelope_ok(pod_v1, "task/cancel", task_id, agent_id)
        expect(client.tasks.retrieve(task_id).status == "CANCELED", f"{client.tasks.retrieve(task_id)}")
        return "CANCELED"

    check("async: cancel_task on the old task -> CANCELED, forwarded to v1 (its owner)", cancel)
    check("async: tasks.list(agent_name) lists the agent's tasks",
          lambda: expect(task_id in [t.id for t in client.tasks.list(agent_name=name)], "task not listed"))


def legacy_suite(pod: SDKPod, name: str, agent_id: str) -> None:
    def run():
        raw = client.agents.with_raw_response.rpc_by_name(name, method="task/create", params={})
        from agentex.types.agent_rpc_response import CreateTaskResponse, SendEventResponse
        task = CreateTaskResponse.model_validate(raw.parse(), from_attributes=True).result
        expect(raw.headers.get("x-cutover-deployment-id") == "legacy", f"header {raw.headers.get('x-cutover-deployment-id')!r}")
        envelope_ok(pod, "task/create", task.id, agent_id)
        ev = client.agents.send_event(agent_name=name, params={"task_id": task.id, "content": user_text("legacy hi")}).result
        expect(ev.sequence_id == 1, f"{ev}")
        eventually(lambda: expect(any(text_of(m) == "echo: legacy hi (from legacy)" for m in client.messages.list(task_id=task.id)),
                                  "no echo"))
        return f"task {task.id}"

    check("legacy: task/create + event/send through the legacy URL (deployment 'legacy')", run)


def token_suite(tok_pod: SDKPod, notok_pod: SDKPod) -> None:
    admin = agentex.Agentex(base_url=TOKEN_BASE, api_key=ADMIN_TOKEN, max_retries=0, timeout=30)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = check("tokens: a pod with AGENT_API_KEY=<registration token> registers and turns Ready",
              lambda: (tok_pod.wait_healthy(), wait_deployment_ready(TOKEN_BASE, tok_pod.agent, tok_pod.deployment, headers))[1])

    def refused():
        deadline = time.monotonic() + 60
        while notok_pod.proc.poll() is None and time.monotonic() < deadline:
            expect(not notok_pod.healthy(), "the pod without a token came up (registered)")
            time.sleep(0.5)
        status, _ = http_json("GET", f"{TOKEN_BASE}/agents/name/{notok_pod.agent}", headers=headers)
        expect(status == 404, f"agent exists ({status})")
        return "registration refused, pod exited" if notok_pod.proc.poll() is not None else "still retrying"

    check("tokens: a pod without the token is refused (no agent created)", refused)
    if not r:
        return
    agent_id = r["agent"]["id"]

    def rpc():
        task = admin.agents.create_task(agent_name=tok_pod.agent, params={}).result
        envelope_ok(tok_pod, "task/create", task.id, agent_id)
        ev = admin.agents.send_event(agent_name=tok_pod.agent, params={"task_id": task.id, "content": user_text("tok")}).result
        eventually(lambda: expect(any(text_of(m) == f"echo: tok (from {tok_pod.deployment})"
                                      for m in admin.messages.list(task_id=task.id)), "no echo: the pod's callbacks "
                                  "(with the agent_api_key from registration) were refused?"))
        return f"event {ev.id}"

    check("tokens: task/create + event/send; the pod's callbacks authenticate with its agent key", rpc)


if __name__ == "__main__":
    sys.exit(main())
