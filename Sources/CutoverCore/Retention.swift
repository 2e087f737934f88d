/// How many deployments an agent keeps, and for how long deleted ones stay restorable.
public struct RetentionPolicy: Sendable, Equatable {
    /// Former production deployments kept (the rollback targets), most recently demoted first.
    public var retainPreviousProduction: Int
    /// Other deployments kept (never production), newest first.
    public var retainInactive: Int
    /// A `Failed` deployment older than this expires whatever the counts.
    public var failedTTL: Duration
    /// How long an expired or deleted deployment stays restorable before it is collected.
    public var deletionGrace: Duration
    /// A deployment that owns a RUNNING task active within this long is not expired, so a long task can
    /// finish on the build that began it.
    public var taskDrain: Duration

    public init(
        retainPreviousProduction: Int = 5, retainInactive: Int = 20, failedTTL: Duration = .seconds(86_400),
        deletionGrace: Duration = .seconds(86_400), taskDrain: Duration = .seconds(3600)
    ) {
        self.retainPreviousProduction = retainPreviousProduction
        self.retainInactive = retainInactive
        self.failedTTL = failedTTL
        self.deletionGrace = deletionGrace
        self.taskDrain = taskDrain
    }
}

/// Why retention expired a deployment: the `reason` of its `Expired` event.
public enum ExpiryReason: String, Sendable, Equatable {
    case previousProductionLimit = "PreviousProductionLimit"
    case inactiveLimit = "InactiveLimit"
    case failedTTL = "FailedTTL"
    case agentDeleted = "AgentDeleted"
}

/// What one retention pass of an agent writes and when it must look again.
public struct RetentionPlan: Sendable, Equatable {
    /// The deployments to expire, with `expires_at` set.
    public var expire: [Deployment]
    public var events: [EventDraft]
    /// The earliest time something not expired now will be due (a failed TTL), or a soft-deleted
    /// deployment's `expires_at` passes: when the agent needs its next pass.
    public var nextCheck: Timestamp?
}

public enum Retention {
    /// Decides which of `agent`'s deployments expire now. Never the production deployment, never one
    /// already soft-deleted; for a deleted agent (which routes nowhere and cannot be restored) every other
    /// deployment expires, its production record alone stays. `taskActivity` is, per deployment, when its
    /// RUNNING tasks were last active: one active within the task drain is held until the drain ends.
    public static func plan(
        agent: Agent, deployments: [Deployment], now: Timestamp, policy: RetentionPolicy,
        taskActivity: [String: Timestamp] = [:]
    ) -> RetentionPlan {
        let live = deployments.filter { !$0.isDeleted && !$0.isProduction && $0.id != agent.productionDeploymentId }
        var reasons: [String: (ExpiryReason, String)] = [:]
        if agent.status == .deleted {
            for d in live { reasons[d.id] = (.agentDeleted, "agent '\(agent.name)' is deleted") }
        } else {
            let previous = live.filter(\.wasProduction).sorted {
                ($0.demotedAt ?? $0.promotedAt ?? $0.createdAt, $0.id) > ($1.demotedAt ?? $1.promotedAt ?? $1.createdAt, $1.id)
            }
            // A negative count keeps nothing (as 0 does); `dropFirst` would trap on it.
            for d in previous.dropFirst(max(0, policy.retainPreviousProduction)) {
                reasons[d.id] = (
                    .previousProductionLimit,
                    "beyond the \(policy.retainPreviousProduction) most recent previous production deployments")
            }
            let others = live.filter { !$0.wasProduction }.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
            for d in others.dropFirst(max(0, policy.retainInactive)) {
                reasons[d.id] = (.inactiveLimit, "beyond the \(policy.retainInactive) most recent other deployments")
            }
            for d in live where reasons[d.id] == nil && d.status == .failed && failedSince(d) + policy.failedTTL <= now {
                reasons[d.id] = (.failedTTL, "Failed for longer than \(policy.failedTTL.formatted)")
            }
        }
        var held: [Timestamp] = []
        if agent.status != .deleted {
            for (id, active) in taskActivity where reasons[id] != nil && active + policy.taskDrain > now {
                reasons[id] = nil
                held.append(active + policy.taskDrain)
            }
        }
        var expire: [Deployment] = []
        var events: [EventDraft] = []
        let expiresAt = now + policy.deletionGrace
        // Oldest first, so the audit trail reads in the order the deployments were made.
        for d in live.sorted(by: { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }) {
            guard let (reason, why) = reasons[d.id] else { continue }
            var expired = d
            expired.expiresAt = expiresAt
            expire.append(expired)
            events.append(.init(
                deploymentId: d.id, type: .expired, reason: reason.rawValue,
                message: "expired by retention: \(why); restorable until \(expiresAt)"))
        }
        var due: [Timestamp] = deployments.compactMap(\.expiresAt).filter { $0 > now } + held
        // A held Failed deployment's TTL may be past already: its drain's end is what is due.
        due += live.filter { reasons[$0.id] == nil && $0.status == .failed }.map { failedSince($0) + policy.failedTTL }
            .filter { $0 > now }
        if !expire.isEmpty { due.append(expiresAt) }
        return RetentionPlan(expire: expire, events: events, nextCheck: due.min())
    }

    /// When a `Failed` deployment failed (its creation, for rows from before that was recorded).
    static func failedSince(_ d: Deployment) -> Timestamp { d.failedAt ?? d.createdAt }
}
