"""Wire-compatibility test: the official `agentex-client` (and agentex-sdk's registration call)
against a running Cutover server.

Run by hack/compat-test.sh, which starts `cutover serve` and sets CUTOVER_URL. Steps run in order;
the first failure skips the rest (they depend on it). The last line reads `N passed, N failed`.
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

import agentex

BASE = os.environ.get("CUTOVER_URL", "http://127.0.0.1:8080").rstrip("/")
RUN = uuid.uuid4().hex[:8]
AGENT_NAME = f"compat-{RUN}"
DEP1 = f"compat-{RUN}-v1"
DEP2 = f"compat-{RUN}-v2"
READY_TIMEOUT = 30.0

# No key: Cutover on loopback with no tokens runs open. Strict validation makes the client check
# every response against its pydantic models (required fields, types, enum values), which its
# default (lenient) mode silently skips. No retries, so a 409/5xx shows up as it happened.
os.environ.pop("AGENTEX_SDK_API_KEY", None)
client = agentex.Agentex(base_url=BASE, max_retries=0, timeout=30, _strict_response_validation=True)


class StandIn:
    """A tiny agent pod: GET /healthz -> {"status": "healthy"}, POST /api -> a JSON-RPC result."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                outer.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                if self.path == "/healthz":
                    self._reply(200, {"status": "healthy"})
                else:
                    self._reply(404, {"detail": "not found"})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = None
                outer.requests.append(
                    {"method": "POST", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                rpc_id = body.get("id") if isinstance(body, dict) else None
                task = {"id": f"task-{outer.name}", "name": f"served-by-{outer.name}", "status": "RUNNING"}
                self._reply(200, {"jsonrpc": "2.0", "id": rpc_id, "result": task})

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def rpc_calls(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == "/api"]


def register(acp_port: int, deployment_id: str | None = None) -> tuple[int, dict]:
    """POST /agents/register exactly as agentex-sdk's register_agent() does: plain JSON, no auth
    header, acp_url = f"{ACP_URL}:{ACP_PORT}", principal_context null, registration_metadata =
    build info (+ deployment_id from AGENTEX_DEPLOYMENT_ID) or null."""
    metadata: dict | None = None
    if deployment_id:
        metadata = {"commit_hash": RUN, "branch_name": "main", "deployment_id": deployment_id}
    body = {
        "name": AGENT_NAME,
        "description": f"Generic description for agent: {AGENT_NAME}",
        "acp_url": f"http://127.0.0.1:{acp_port}",
        "acp_type": "async",
        "principal_context": None,
        "registration_metadata": metadata,
    }
    return http_json("POST", "/agents/register", body)


def http_json(method: str, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def wait_ready(deployment_id: str):
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        dep = client.agents.deployments.retrieve(deployment_id, agent_id=state["agent_id"])
        if dep.status == "Ready":
            return dep
        check(dep.status == "Pending", f"{deployment_id} went {dep.status}: {getattr(dep, 'status_reason', None)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{deployment_id} not Ready after {READY_TIMEOUT:.0f}s (status {dep.status})")
        time.sleep(0.25)


legacy_pod, pod1, pod2 = StandIn("legacy"), StandIn("v1"), StandIn("v2")
state: dict = {}


# ---- steps -------------------------------------------------------------------------------------

def step_register_sdk_style():
    status, agent = register(legacy_pod.port)
    check(status == 200, f"status {status}: {agent}")
    for field in ("id", "name", "agent_api_key"):
        check(bool(agent.get(field)), f"response lacks {field}: {agent}")
    check(agent["name"] == AGENT_NAME, f"name {agent['name']!r}")
    state["agent_id"], state["api_key"] = agent["id"], agent["agent_api_key"]


def step_reregister_same_agent_same_key():
    status, agent = register(legacy_pod.port)
    check(status == 200, f"status {status}: {agent}")
    check(agent["id"] == state["agent_id"], "a second registration created another agent")
    check(agent["agent_api_key"] == state["api_key"], "agent_api_key changed on re-registration")


def step_agents_list():
    agents = client.agents.list(limit=1000)
    check(isinstance(agents, list), f"expected a list, got {type(agents)}")
    check(state["agent_id"] in [a.id for a in agents], "registered agent missing from list")


def step_agents_retrieve():
    agent = client.agents.retrieve(state["agent_id"])
    check(agent.name == AGENT_NAME, f"name {agent.name!r}")
    check(agent.acp_type == "async", f"acp_type {agent.acp_type!r}")
    check(agent.status == "Ready", f"status {agent.status!r}")


def step_agents_retrieve_by_name():
    agent = client.agents.retrieve_by_name(AGENT_NAME)
    check(agent.id == state["agent_id"], f"id {agent.id!r}")


def step_agent_json_hides_internals():
    status, agent = http_json("GET", f"/agents/{state['agent_id']}")
    check(status == 200, f"status {status}")
    check("acp_url" not in agent, "agent JSON exposes acp_url (it is internal, never serialized)")
    check("agent_api_key" not in agent, "agent JSON exposes agent_api_key")
    for field in ("production_deployment_id", "status_reason", "registered_at", "registration_metadata"):
        check(field in agent, f"optional field {field} missing (optional fields are present, null when unset)")


def step_deployment_create():
    dep = client.agents.deployments.create(
        state["agent_id"],
        docker_image=f"registry.local/compat:{RUN}-v1",
        registration_metadata={"commit_hash": RUN, "branch_name": "main"},
        extra_body={"id": DEP1},  # Cutover extension; the client has no `id` parameter
    )
    check(dep.id == DEP1, f"id {dep.id!r}, wanted the requested {DEP1!r}")
    check(dep.agent_id == state["agent_id"], f"agent_id {dep.agent_id!r}")
    check(dep.status == "Pending", f"status {dep.status!r}")
    check(dep.is_production is False, "new deployment is production")


def step_deployment_list():
    ids = [d.id for d in client.agents.deployments.list(state["agent_id"])]
    check(DEP1 in ids, f"{DEP1} missing from {ids}")


def step_deployment_retrieve():
    dep = client.agents.deployments.retrieve(DEP1, agent_id=state["agent_id"])
    check(dep.id == DEP1 and dep.status == "Pending", f"{dep.id} {dep.status}")
    check(dep.docker_image == f"registry.local/compat:{RUN}-v1", f"docker_image {dep.docker_image!r}")


def step_register_pod_v1():
    status, agent = register(pod1.port, deployment_id=DEP1)
    check(status == 200, f"status {status}: {agent}")
    check(agent["id"] == state["agent_id"], "deployment registration created another agent")
    check(agent["agent_api_key"] == state["api_key"], "agent_api_key changed")


def step_v1_becomes_ready():
    dep = wait_ready(DEP1)
    check(dep.acp_url == f"http://127.0.0.1:{pod1.port}", f"acp_url {dep.acp_url!r}")
    check(any(r["path"] == "/healthz" for r in pod1.requests), "pod v1 was never probed on /healthz")


def step_create_register_v2_ready():
    dep = client.agents.deployments.create(
        state["agent_id"], docker_image=f"registry.local/compat:{RUN}-v2", extra_body={"id": DEP2}
    )
    check(dep.id == DEP2 and dep.status == "Pending", f"{dep.id} {dep.status}")
    status, agent = register(pod2.port, deployment_id=DEP2)
    check(status == 200, f"register status {status}: {agent}")
    wait_ready(DEP2)


def step_promote_v2():
    dep = client.agents.deployments.promote(DEP2, agent_id=state["agent_id"])
    check(dep.id == DEP2, f"id {dep.id!r}")
    check(dep.is_production is True, "promoted deployment is not production")
    check(dep.status == "Ready", f"status {dep.status!r}")
    check(dep.promoted_at is not None, "promoted_at not set")


def step_single_production():
    deps = client.agents.deployments.list(state["agent_id"])
    check([d.id for d in deps if d.is_production] == [DEP2], f"production: {[d.id for d in deps if d.is_production]}")
    agent = client.agents.retrieve(state["agent_id"])
    check(agent.production_deployment_id == DEP2, f"production_deployment_id {agent.production_deployment_id!r}")


def step_rpc_routes_to_production():
    raw = client.agents.with_raw_response.rpc(state["agent_id"], method="task/create", params={"name": "compat"})
    check(raw.headers.get("x-cutover-deployment-id") == DEP2, f"x-cutover-deployment-id {raw.headers.get('x-cutover-deployment-id')!r}")
    resp = raw.parse()
    check(resp.error is None, f"error {resp.error!r}")
    task = resp.result
    check(task is not None and getattr(task, "name", None) == "compat" and getattr(task, "status", None) == "RUNNING",
          f"result {task!r}")
    call = pod2.rpc_calls()[-1]
    body = call["body"]
    check(body.get("method") == "task/create" and body.get("id") == f"task/create-{task.id}", f"forwarded body {body!r}")
    check(body["params"]["task"]["id"] == task.id and body["params"]["agent"]["id"] == state["agent_id"],
          f"the platform's envelope: {body!r}")
    check(call["headers"].get("x-agent-api-key") == state["api_key"], "pod did not get the agent's x-agent-api-key")


def step_rpc_by_name():
    resp = client.agents.rpc_by_name(AGENT_NAME, method="task/create", params={"name": "compat-by-name"})
    check(getattr(resp.result, "name", None) == "compat-by-name", f"result {resp.result!r}")
    check(pod2.rpc_calls()[-1]["body"]["params"]["task"]["name"] == "compat-by-name", "served by v2")


def step_preview_rpc_v1():
    raw = client.agents.deployments.with_raw_response.preview_rpc(
        DEP1, agent_id=state["agent_id"], method="task/create", params={"name": "compat-preview"}
    )
    check(raw.headers.get("x-cutover-deployment-id") == DEP1, f"x-cutover-deployment-id {raw.headers.get('x-cutover-deployment-id')!r}")
    check(getattr(raw.parse().result, "name", None) == "compat-preview", f"result {raw.parse().result!r}")
    check(pod1.rpc_calls()[-1]["body"]["params"]["task"]["name"] == "compat-preview", "preview not served by v1")


def step_delete_production_conflicts():
    try:
        client.agents.deployments.delete(DEP2, agent_id=state["agent_id"])
    except agentex.ConflictError:
        return
    raise AssertionError("deleting the production deployment did not answer 409")


def step_delete_v1():
    resp = client.agents.deployments.delete(DEP1, agent_id=state["agent_id"])
    check(resp.id == DEP1, f"id {resp.id!r}")
    check(bool(resp.message), "empty message")


def step_list_hides_deleted():
    ids = [d.id for d in client.agents.deployments.list(state["agent_id"])]
    check(DEP1 not in ids, f"deleted {DEP1} still listed: {ids}")
    check(DEP2 in ids, f"{DEP2} missing: {ids}")


def step_deleted_still_retrievable():
    dep = client.agents.deployments.retrieve(DEP1, agent_id=state["agent_id"])
    check(dep.expires_at is not None, "soft-deleted deployment has no expires_at")


STEPS = [
    ("register agent (agentex-sdk body)", step_register_sdk_style),
    ("re-register: same agent, same agent_api_key", step_reregister_same_agent_same_key),
    ("agents.list", step_agents_list),
    ("agents.retrieve", step_agents_retrieve),
    ("agents.retrieve_by_name", step_agents_retrieve_by_name),
    ("agent JSON: no acp_url/agent_api_key, nulls present", step_agent_json_hides_internals),
    ("deployments.create (with id)", step_deployment_create),
    ("deployments.list", step_deployment_list),
    ("deployments.retrieve", step_deployment_retrieve),
    ("register pod for v1 (deployment_id)", step_register_pod_v1),
    ("v1 probed and Ready", step_v1_becomes_ready),
    ("v2 created, registered, Ready", step_create_register_v2_ready),
    ("deployments.promote v2", step_promote_v2),
    ("exactly one production, agent points at it", step_single_production),
    ("agents.rpc routes to production", step_rpc_routes_to_production),
    ("agents.rpc_by_name", step_rpc_by_name),
    ("deployments.preview_rpc to v1", step_preview_rpc_v1),
    ("deployments.delete production -> 409", step_delete_production_conflicts),
    ("deployments.delete v1", step_delete_v1),
    ("deployments.list hides deleted v1", step_list_hides_deleted),
    ("deleted v1 retrievable with expires_at", step_deleted_still_retrievable),
]



def main() -> int:
    print(f"compat: agentex-client {agentex.__version__} against {BASE}, agent {AGENT_NAME}")
    passed = failed = skipped = 0
    for name, fn in STEPS:
        if failed:
            print(f"SKIP {name}")
            skipped += 1
            continue
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - any exception fails the step
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
            if isinstance(exc, agentex.APIResponseValidationError):
                print(f"     {exc.__cause__}\n     body: {exc.body!r}")  # which field broke the model
            elif not isinstance(exc, (AssertionError, agentex.APIError)):
                traceback.print_exc(limit=3)
        else:
            passed += 1
            print(f"PASS {name}")
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
