/// The result of one readiness probe of a registered deployment.
public enum ProbeOutcome: Sendable, Equatable {
    case healthy
    case unhealthy(String)
}

/// The typed reasons of a `Failed` deployment.
public enum FailureReason: String, Sendable, Equatable {
    case neverRegistered = "NeverRegistered"
    case probeFailed = "ProbeFailed"
}

/// What reconciling one deployment calls for. Level-triggered: the same record and time always give
/// the same action, so running it twice is harmless.
public enum ReconcileAction: Sendable, Equatable {
    /// Nothing to do now or later (not pending, or soft-deleted: GC owns it).
    case none
    /// Probe `url`, then decide again with the outcome.
    case probe(url: String)
    /// Healthy: mark `Ready` (and auto-promote if the policy allows).
    case markReady
    /// The progress deadline passed.
    case markFailed(FailureReason, detail: String)
    /// Not registered yet: look again at `deadline`, unless a change arrives first.
    case awaitRegistration(deadline: Timestamp)
    /// Registered but not healthy: probe again with backoff, but no later than `deadline`.
    case retryProbe(lastError: String, deadline: Timestamp)
}

public enum Reconcile {
    /// The pending hint recorded in `status_reason` while a deployment is not ready yet.
    public static func pendingHint(_ action: ReconcileAction) -> String? {
        switch action {
        case .awaitRegistration(let deadline): "WaitingForRegistration: no pod has registered yet (deadline \(deadline))"
        case .retryProbe(let error, _): "ProbePending: \(error)"
        default: nil
        }
    }

    public static func decide(
        _ deployment: Deployment, probe: ProbeOutcome?, now: Timestamp, policy: ReconcilePolicy
    ) -> ReconcileAction {
        guard !deployment.isDeleted, deployment.status == .pending else { return .none }
        let deadline = deployment.createdAt + policy.progressDeadline
        guard let url = deployment.acpURL else {
            if now >= deadline {
                return .markFailed(
                    .neverRegistered, detail: "no pod registered within \(policy.progressDeadline.formatted)")
            }
            return .awaitRegistration(deadline: deadline)
        }
        if policy.probe == .none { return .markReady }
        switch probe {
        case nil:
            // At the deadline a probe that already failed decides: probing again could take the whole probe
            // timeout and make the failure late. A deployment never probed gets its one probe.
            if now >= deadline, let lastError = lastProbeError(deployment) {
                return .markFailed(.probeFailed, detail: lastError)
            }
            return .probe(url: URLPath.join(url, policy.probePath))
        case .healthy:
            return .markReady
        case .unhealthy(let error):
            if now >= deadline {
                return .markFailed(.probeFailed, detail: error)
            }
            return .retryProbe(lastError: error, deadline: deadline)
        }
    }

    /// Whether the agent's first `Ready` deployment becomes production: only when the agent has
    /// no production deployment and no legacy route, so a preview pod of a legacy agent never takes over.
    public static func shouldAutoPromote(agent: Agent, policy: AutoPromotePolicy) -> Bool {
        policy == .first && agent.productionDeploymentId == nil && agent.acpURL == nil && agent.status != .deleted
    }

    /// The error recorded by the last failed probe (the `ProbePending` hint), if any.
    static func lastProbeError(_ deployment: Deployment) -> String? {
        let prefix = "ProbePending: "
        guard let reason = deployment.statusReason, reason.hasPrefix(prefix) else { return nil }
        return String(reason.dropFirst(prefix.count))
    }
}

/// Interprets a readiness probe's answer: 2xx and, when the body is JSON with a `status` field,
/// `status == "healthy"`.
public enum ProbeVerdict {
    public static func judge(statusCode: Int, body: [UInt8]) -> ProbeOutcome {
        guard (200..<300).contains(statusCode) else { return .unhealthy("readiness probe answered HTTP \(statusCode)") }
        guard let object = try? JSONCodec.parse(body).objectValue,
            let status = object["status"]
        else {
            return .healthy
        }
        if status == .string("healthy") { return .healthy }
        let shown = status.stringValue ?? status.typeName
        return .unhealthy("readiness probe reported status '\(shown)'")
    }
}

/// Appends a path to an agent's base URL with exactly one slash between them.
public enum URLPath {
    public static func join(_ base: String, _ path: String) -> String {
        var base = Substring(base)
        while base.hasSuffix("/") { base = base.dropLast() }
        return base + (path.hasPrefix("/") ? path : "/" + path)
    }
}
