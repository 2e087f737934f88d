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
            if now >= deadline, let lastError = deployment.lastProbeError {
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

    /// The URL to probe before planning, when the decision needs a fresh probe.
    public static func probeURL(_ deployment: Deployment, now: Timestamp, policy: ReconcilePolicy) -> String? {
        if case .probe(let url) = decide(deployment, probe: nil, now: now, policy: policy) { return url }
        return nil
    }

    /// Everything one reconcile of `deployment` writes and when it comes back: the rows, the events and
    /// the requeue, for the one writer to apply. `agent` is the deployment's owner (auto-promotion reads
    /// it); `probe` counts only if it probed the deployment's current registration.
    public static func plan(
        _ deployment: Deployment, agent: Agent, probe: ProbeObservation?, now: Timestamp, policy: ReconcilePolicy
    ) -> ReconcilePlan {
        let outcome = probe.flatMap { $0.isFor(deployment) ? $0.outcome : nil }
        let action = decide(deployment, probe: outcome, now: now, policy: policy)
        var d = deployment
        switch action {
        case .none:
            return ReconcilePlan(requeue: .done)
        case .probe:
            // Registered anew since the probe (or never probed): probe the current registration now.
            return ReconcilePlan(requeue: .at(now))
        case .awaitRegistration(let deadline):
            d.statusReason = pendingHint(action)
            return ReconcilePlan(hint: d, unchanged: deployment, requeue: .at(deadline))
        case .retryProbe(let error, let deadline):
            d.statusReason = pendingHint(action)
            d.lastProbeError = error
            return ReconcilePlan(hint: d, unchanged: deployment, requeue: .backoff(notAfter: deadline))
        case .markFailed(let reason, let detail):
            d.status = .failed
            d.statusReason = "\(reason.rawValue): \(detail)"
            d.failedAt = now
            let failed = EventDraft(deploymentId: d.id, type: .failed, reason: reason.rawValue, message: detail)
            return ReconcilePlan(deployment: d, events: [failed], requeue: .done)
        case .markReady:
            d.status = .ready
            d.readyAt = now
            d.statusReason = nil
            d.lastProbeError = nil
            var plan = ReconcilePlan(
                deployment: d, events: [.init(deploymentId: d.id, type: .ready, message: "readiness probe passed")],
                requeue: .done)
            if shouldAutoPromote(agent: agent, policy: policy.autoPromote),
                let promotion = try? Promotion.plan(
                    agent: agent, target: d, current: nil, kind: .autoPromote, reason: nil, now: now)
            {
                plan.deployment = promotion.target
                plan.agent = promotion.agent
                plan.events += promotion.events
            }
            return plan
        }
    }
}

/// A readiness probe's outcome and the registration it probed.
public struct ProbeObservation: Sendable, Equatable {
    public var acpURL: String
    public var registeredAt: Timestamp?
    public var outcome: ProbeOutcome

    public init(of deployment: Deployment, outcome: ProbeOutcome) {
        acpURL = deployment.acpURL ?? ""
        registeredAt = deployment.registeredAt
        self.outcome = outcome
    }

    /// Whether this probed `deployment`'s current registration (a pod that re-registered elsewhere
    /// during the probe has not been probed yet).
    public func isFor(_ deployment: Deployment) -> Bool {
        deployment.acpURL == acpURL && deployment.registeredAt == registeredAt
    }
}

/// What one reconcile writes, in one transaction, and when the loop comes back.
public struct ReconcilePlan: Sendable, Equatable {
    /// The deployment row to write, or nil when it stays as it is.
    public var deployment: Deployment?
    /// The agent row to write (an auto-promotion), or nil.
    public var agent: Agent?
    public var events: [EventDraft]
    public var requeue: Requeue
    /// Whether the write is news to watchers: a pending hint is not (the controller requeues itself).
    public var notifies: Bool

    public init(
        deployment: Deployment? = nil, agent: Agent? = nil, events: [EventDraft] = [], requeue: Requeue,
        notifies: Bool = true
    ) {
        self.deployment = deployment
        self.agent = agent
        self.events = events
        self.requeue = requeue
        self.notifies = notifies
    }

    /// A pending deployment's new hint, written only if it differs from what is recorded.
    init(hint: Deployment, unchanged: Deployment, requeue: Requeue) {
        self.init(deployment: hint == unchanged ? nil : hint, requeue: requeue, notifies: false)
    }

    /// Nothing to write: the loop only needs the requeue.
    public var writesNothing: Bool { deployment == nil && agent == nil && events.isEmpty }
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
