/// How a deployment becomes production: each kind writes its own event type.
public enum PromotionKind: Sendable, Equatable {
    case promote
    case autoPromote
    case rollback
}

/// The complete change a promotion or rollback makes, decided before anything is written.
public struct PromotionPlan: Sendable, Equatable {
    /// The target is already production: answer 200 and write nothing.
    public var isNoop: Bool
    public var agent: Agent
    public var target: Deployment
    public var demoted: Deployment?
    public var events: [EventDraft]
}

public enum Promotion {
    /// Plans making `target` the production deployment of `agent`. `current` is the agent's
    /// production deployment as read under the agent's row lock.
    public static func plan(
        agent: Agent, target: Deployment, current: Deployment?, kind: PromotionKind, reason: String?,
        now: Timestamp
    ) throws(CutoverError) -> PromotionPlan {
        guard target.agentId == agent.id else { throw .deploymentNotFound(target.id, agent: agent.id) }
        guard agent.status != .deleted else { throw .conflict("agent '\(agent.name)' is deleted") }
        if target.isDeleted {
            throw .conflict("deployment '\(target.id)' is deleted; restore it before promoting it")
        }
        guard target.status == .ready else {
            throw .conflict(
                "deployment '\(target.id)' is \(target.status.rawValue); only a Ready deployment can be promoted")
        }
        if target.isProduction, agent.productionDeploymentId == target.id {
            return PromotionPlan(isNoop: true, agent: agent, target: target, demoted: nil, events: [])
        }

        var agent = agent
        var target = target
        var demoted = current.flatMap { $0.id == target.id ? nil : $0 }
        demoted?.isProduction = false
        demoted?.demotedAt = now
        target.isProduction = true
        target.promotedAt = now
        agent.productionDeploymentId = target.id
        if madeReady.contains(agent.status) { agent.status = .ready }
        agent.updatedAt = now

        let events = Self.events(kind: kind, target: target.id, demoted: demoted?.id, reason: reason)
        return PromotionPlan(isNoop: false, agent: agent, target: target, demoted: demoted, events: events)
    }
}

extension Promotion {
    /// The agent statuses a promotion turns into `Ready`: an agent that gets a production deployment serves.
    public static let madeReady: [AgentStatus] = [.buildOnly, .unknown]

    /// The events of making `target` production, replacing `demoted` (nil when the agent had no production
    /// deployment): the promotion's, then the demotion's.
    public static func events(kind: PromotionKind, target: String, demoted: String?, reason: String?) -> [EventDraft] {
        var events: [EventDraft] = []
        let replaced = demoted.map { " (replacing '\($0)')" } ?? ""
        switch kind {
        case .promote:
            events.append(.init(deploymentId: target, type: .promoted, reason: reason,
                                message: "promoted '\(target)' to production\(replaced)"))
        case .autoPromote:
            events.append(.init(deploymentId: target, type: .autoPromoted, reason: reason,
                                message: "first Ready deployment '\(target)' promoted to production"))
        case .rollback:
            events.append(.init(deploymentId: target, type: .rolledBack, reason: reason,
                                message: "rolled production back to '\(target)'\(replaced)"))
        }
        if let demoted {
            events.append(.init(deploymentId: demoted, type: .demoted, reason: reason,
                                message: "'\(demoted)' is no longer production; '\(target)' is"))
        }
        return events
    }
}

public enum Rollback {
    /// Chooses the deployment a rollback returns to. `history` holds the agent's deployments
    /// that were production before (any state); `requested` is `to_deployment_id` when given.
    public static func target(
        agent: Agent, requested: Deployment?, requestedId: String?, history: [Deployment]
    ) throws(CutoverError) -> Deployment {
        if let requestedId {
            guard let requested, requested.agentId == agent.id else {
                throw .deploymentNotFound(requestedId, agent: agent.id)
            }
            guard requested.wasProduction else {
                throw .conflict(
                    "deployment '\(requestedId)' was never production, so it is not a rollback target; use promote")
            }
            return requested
        }
        let candidates = history.filter {
            $0.agentId == agent.id && $0.wasProduction && !$0.isProduction && $0.status == .ready && !$0.isDeleted
        }
        guard
            let best = candidates.max(by: {
                ($0.demotedAt ?? $0.promotedAt!, $0.promotedAt!) < ($1.demotedAt ?? $1.promotedAt!, $1.promotedAt!)
            })
        else {
            throw .conflict(
                "agent '\(agent.name)' has no previous production deployment that is Ready and not deleted to roll back to")
        }
        return best
    }
}
