#!/usr/bin/env bash
# Offline checks of manifests/: renders manifests/base and every manifests/overlays/*/ with
# `kubectl kustomize`, then
#   - validates every rendered object against the Kubernetes OpenAPI JSON schemas (strict: an
#     unknown field is an error, and so is a kind with no schema) with the `kubernetes-validate`
#     package from PyPI, installed into a throwaway venv, for each version in
#     MANIFESTS_K8S_VERSIONS (default "1.30 1.37": the oldest we support and the newest the
#     package knows);
#   - checks the `cutover` Deployment against the server: readiness /readyz and liveness /healthz,
#     both routes present in Sources/CutoverAPI/OperationsRoutes.swift; probes, the container port
#     `http`, the Service's targetPort and the Prometheus port all equal the port of CUTOVER_LISTEN;
#     terminationGracePeriodSeconds longer than CUTOVER_SHUTDOWN_GRACE; every CUTOVER_* variable
#     known to Sources/cutover/ServeOptions.swift; at least two replicas; selectors that match the pod labels; secretKeyRefs whose Secret, when the
#     overlay renders it, has the key.
# Prints one line per kustomization; exits non-zero on any problem. Needs kubectl and python3;
# nothing is cached between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
me=validate-manifests

if ! command -v kubectl >/dev/null; then
  echo "$me: kubectl not found (needed for \`kubectl kustomize\`)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 -m venv "$tmp/venv"
if ! "$tmp/venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==1.37.0" >"$tmp/pip.log" 2>&1; then
  cat "$tmp/pip.log" >&2
  echo "$me: could not install kubernetes-validate" >&2
  exit 1
fi

rc=0
targets=()
for dir in manifests/base manifests/overlays/*/; do
  dir=${dir%/}
  [[ -f $dir/kustomization.yaml ]] || continue
  name=${dir#manifests/}
  out="$tmp/${name//\//_}.yaml"
  if kubectl kustomize "$dir" >"$out" 2>"$tmp/kustomize.err"; then
    targets+=("$name=$out")
  else
    sed "s|^|$me: $name: |" "$tmp/kustomize.err" >&2
    echo "$me: $name: FAILED: kubectl kustomize $dir" >&2
    rc=1
  fi
done

cat >"$tmp/check.py" <<'PY'
import os
import re
import sys

import yaml
from kubernetes_validate import utils as kv

ME = "validate-manifests"
VERSIONS = os.environ.get("MANIFESTS_K8S_VERSIONS", "1.30 1.37").split()
ROUTES = "Sources/CutoverAPI/OperationsRoutes.swift"
OPTIONS = "Sources/cutover/ServeOptions.swift"
DEFAULT_GRACE_S = 30.0  # serve's --shutdown-grace default
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text):
    """serve's duration syntax: integers with a unit, combinable (1h30m)."""
    parts = re.findall(r"(\d+)(us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("not a duration: %r" % text)
    return sum(int(n) * UNITS[u] for n, u in parts)


routes_text = open(ROUTES).read()
known_env = set(re.findall(r"CUTOVER_[A-Z_]+", open(OPTIONS).read()))
failures = 0


def check(name, path):
    problems = []
    bad = problems.append
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    if not docs:
        return ["renders no objects"]

    # 1. Schemas, strict, for every version.
    for doc in docs:
        what = "%s/%s" % (doc.get("kind"), (doc.get("metadata") or {}).get("name"))
        for version in VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "(top)"
                bad("%s: Kubernetes %s schema: %s: %s" % (what, version, where, e.message))
            except (kv.SchemaNotFoundError, kv.VersionNotSupportedError, kv.InvalidSchemaError) as e:
                bad("%s: Kubernetes %s: %s" % (what, version, e.message))

    # 2. The cutover Deployment against the server.
    deployments = [d for d in docs if d.get("kind") == "Deployment" and d["metadata"].get("name") == "cutover"]
    if len(deployments) != 1:
        return problems + ["expected exactly one Deployment named cutover, found %d" % len(deployments)]
    dep = deployments[0]
    spec = dep.get("spec", {})
    pod = spec.get("template", {})
    podspec = pod.get("spec", {})
    pod_labels = pod.get("metadata", {}).get("labels") or {}
    containers = [c for c in podspec.get("containers", []) if c.get("name") == "cutover"]
    if len(containers) != 1:
        return problems + ["Deployment cutover has no container named cutover"]
    c = containers[0]
    env = {e["name"]: e for e in c.get("env", [])}
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}

    for var in env:
        if var.startswith("CUTOVER_") and var not in known_env:
            bad("env %s is not a setting of serve (not in %s)" % (var, OPTIONS))

    listen = env.get("CUTOVER_LISTEN", {}).get("value")
    listen_port = None
    if not listen or ":" not in listen:
        bad("CUTOVER_LISTEN must be set to host:port, got %r" % listen)
    else:
        host, _, port = listen.rpartition(":")
        if host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127."):
            bad("CUTOVER_LISTEN %s is loopback: probes and the Service cannot reach it" % listen)
        listen_port = int(port) if port.isdigit() else None
        if listen_port is None:
            bad("CUTOVER_LISTEN %r has no numeric port" % listen)
    if ports.get("http") != listen_port:
        bad("containerPort named http is %s, CUTOVER_LISTEN port is %s" % (ports.get("http"), listen_port))

    def probe(kind, path, required=True):
        p = c.get(kind)
        if not p:
            if required:
                bad("container cutover has no %s" % kind)
            return
        get = p.get("httpGet")
        if not get:
            bad("%s is not an httpGet probe" % kind)
            return
        if get.get("path") != path:
            bad("%s path is %r, expected %r" % (kind, get.get("path"), path))
        port = get.get("port")
        resolved = ports.get(port) if isinstance(port, str) else port
        if resolved is None or resolved != listen_port:
            bad("%s port %r is not the CUTOVER_LISTEN port %s" % (kind, port, listen_port))

    probe("readinessProbe", "/readyz")
    probe("livenessProbe", "/healthz")
    probe("startupProbe", "/healthz", required=False)
    for route in ("/readyz", "/healthz", "/metrics"):
        if 'router.get("%s")' % route not in routes_text:
            bad('the server has no route %s (router.get("%s") not in %s)' % (route, route, ROUTES))

    annotations = pod.get("metadata", {}).get("annotations") or {}
    if annotations.get("prometheus.io/scrape") != "true":
        bad('pod annotation prometheus.io/scrape is not "true"')
    if annotations.get("prometheus.io/port") != str(listen_port):
        bad("pod annotation prometheus.io/port %r is not the CUTOVER_LISTEN port %s"
            % (annotations.get("prometheus.io/port"), listen_port))
    if annotations.get("prometheus.io/path") != "/metrics":
        bad("pod annotation prometheus.io/path is not /metrics")

    grace_text = env.get("CUTOVER_SHUTDOWN_GRACE", {}).get("value")
    try:
        grace = duration_seconds(grace_text) if grace_text else DEFAULT_GRACE_S
    except ValueError as e:
        bad("CUTOVER_SHUTDOWN_GRACE: %s" % e)
        grace = DEFAULT_GRACE_S
    termination = podspec.get("terminationGracePeriodSeconds", 30)
    if not termination > grace:
        bad("terminationGracePeriodSeconds %s must exceed the shutdown grace %gs" % (termination, grace))

    if spec.get("replicas", 1) < 2:
        bad("the Deployment should run at least 2 replicas (one leads, the others stand by); it has %s"
            % spec.get("replicas", 1))

    # 3. Selectors, Service ports and Secrets against the pod.
    def selects(selector):
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    if not selects(spec.get("selector", {}).get("matchLabels")):
        bad("Deployment selector does not match its pod labels")
    for doc in docs:
        kind, meta = doc.get("kind"), doc.get("metadata", {})
        if kind == "Service" and meta.get("name") == "cutover":
            if not selects(doc["spec"].get("selector")):
                bad("Service cutover does not select the cutover pods")
            for p in doc["spec"].get("ports", []):
                target = p.get("targetPort", p.get("port"))
                resolved = ports.get(target) if isinstance(target, str) else target
                if resolved != listen_port:
                    bad("Service cutover targetPort %r is not the CUTOVER_LISTEN port %s" % (target, listen_port))
        if kind == "PodDisruptionBudget" and meta.get("name") == "cutover":
            if not selects(doc["spec"].get("selector", {}).get("matchLabels")):
                bad("PodDisruptionBudget cutover does not select the cutover pods")
    secrets = {d["metadata"]["name"]: set(d.get("data") or {}) | set(d.get("stringData") or {})
               for d in docs if d.get("kind") == "Secret"}
    for d in docs:
        for pc in (d.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []):
            for e in pc.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref.get("name") in secrets and ref.get("key") not in secrets[ref["name"]]:
                    bad("%s/%s env %s: Secret %s has no key %s"
                        % (d["kind"], d["metadata"]["name"], e["name"], ref["name"], ref["key"]))

    if not problems:
        kinds = len(docs)
        print("%s: %s: OK: %d objects valid against Kubernetes %s (strict); readiness /readyz, "
              "liveness /healthz on :%s; termination grace %ss > shutdown grace %gs"
              % (ME, name, kinds, ", ".join(VERSIONS), listen_port, termination, grace))
    return problems


for arg in sys.argv[1:]:
    name, _, path = arg.partition("=")
    found = check(name, path)
    for p in found:
        print("%s: %s: %s" % (ME, name, p), file=sys.stderr)
    if found:
        print("%s: %s: FAILED (%d problems)" % (ME, name, len(found)), file=sys.stderr)
        failures += 1
sys.exit(1 if failures else 0)
PY

if ((${#targets[@]})); then
  "$tmp/venv/bin/python" -u "$tmp/check.py" "${targets[@]}" || rc=1
else
  echo "$me: no kustomization found under manifests/" >&2
  rc=1
fi

echo "$me: $([[ $rc == 0 ]] && echo passed || echo FAILED) in $((SECONDS - started))s"
exit "$rc"
