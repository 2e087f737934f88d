import CutoverCore
import Testing

private let t0 = Fixture.t0
private let now = t0 + .seconds(3_600)
private let allKinds: [PromotionKind] = [.promote, .autoPromote, .rollback]

/// The agent with `d-old` in production and a Ready `d-new` to promote.
private let agent = Fixture.agent(productionDeploymentId: "d-old")
private let current = Fixture.deployment("d-old", isProduction: true, promotedAt: t0 + .seconds(10))
private let target = Fixture.deployment("d-new", createdAt: t0 + .seconds(20))

@Suite("Promotion.plan")
struct PromotionPlanTests {
    @Test("a deployment of another agent is not found (404), even when it is also deleted or not Ready",
          arguments: allKinds, [DeploymentStatus.ready, .pending, .failed])
    func wrongAgent(_ kind: PromotionKind, _ status: DeploymentStatus) throws {
        var foreign = Fixture.deployment("d-foreign", agentId: "agent-2", status: status)
        for expiresAt in [nil, t0] {
            foreign.expiresAt = expiresAt
            let caught = CutoverError.caught {
                try Promotion.plan(agent: agent, target: foreign, current: current, kind: kind, reason: nil, now: now)
            }
            let error = try #require(caught)
            #expect(error == .deploymentNotFound("d-foreign", agent: "agent-1"))
            #expect(error.status == 404)
            #expect(error.message == "deployment 'd-foreign' not found for agent 'agent-1'")
        }
    }

    struct ConflictCase: Sendable, CustomTestStringConvertible {
        var name: String
        var agent: Agent
        var target: Deployment
        /// Fragments the message must contain so a person can act on it.
        var mentions: [String]
        var testDescription: String { name }
    }

    static let conflicts: [ConflictCase] = [
        .init(name: "deleted agent", agent: Fixture.agent(status: .deleted, productionDeploymentId: nil),
              target: target, mentions: ["support-bot", "deleted"]),
        .init(name: "deleted Ready deployment", agent: agent,
              target: Fixture.deployment("d-new", expiresAt: now + .seconds(86_400)),
              mentions: ["'d-new'", "deleted", "restore"]),
        .init(name: "deleted former production deployment", agent: agent,
              target: Fixture.deployment("d-new", promotedAt: t0, demotedAt: t0 + .seconds(1), expiresAt: now),
              mentions: ["'d-new'", "deleted"]),
        .init(name: "Pending deployment", agent: agent, target: Fixture.deployment("d-new", status: .pending),
              mentions: ["'d-new'", "Pending", "Ready"]),
        .init(name: "registered Pending deployment", agent: agent,
              target: Fixture.deployment("d-new", status: .pending, acpURL: "http://x:8000"),
              mentions: ["'d-new'", "Pending"]),
        .init(name: "Failed deployment", agent: agent, target: Fixture.deployment("d-new", status: .failed),
              mentions: ["'d-new'", "Failed", "Ready"]),
        .init(name: "deleted Failed deployment", agent: agent,
              target: Fixture.deployment("d-new", status: .failed, expiresAt: now), mentions: ["'d-new'"]),
    ]

    @Test("promoting a deleted or not-Ready deployment, or for a deleted agent, is a 409 conflict",
          arguments: conflicts, allKinds)
    func conflict(_ c: ConflictCase, _ kind: PromotionKind) throws {
        let caught = CutoverError.caught {
            try Promotion.plan(agent: c.agent, target: c.target, current: current, kind: kind, reason: "r", now: now)
        }
        let error = try #require(caught)
        guard case .conflict = error else {
            Issue.record("expected a conflict, got \(error)")
            return
        }
        #expect(error.status == 409)
        for fragment in c.mentions {
            let message = error.message
            #expect(message.contains(fragment), "the message names \(fragment)")
        }
    }

    @Test("promoting the current production deployment is a no-op that writes nothing", arguments: allKinds)
    func noop(_ kind: PromotionKind) throws {
        for passed in [current, nil] {
            let plan = try Promotion.plan(
                agent: agent, target: current, current: passed, kind: kind, reason: "again", now: now)
            #expect(plan.isNoop)
            #expect(plan.events.isEmpty)
            #expect(plan.demoted == nil)
            #expect(plan.agent == agent)
            #expect(plan.target == current)
        }
    }

    @Test("promotion demotes the current production and points the agent at the target", arguments: allKinds)
    func demotesCurrent(_ kind: PromotionKind) throws {
        let plan = try Promotion.plan(agent: agent, target: target, current: current, kind: kind, reason: nil, now: now)
        #expect(!plan.isNoop)

        var expectedTarget = target
        expectedTarget.isProduction = true
        expectedTarget.promotedAt = now
        #expect(plan.target == expectedTarget)

        var expectedDemoted = current
        expectedDemoted.isProduction = false
        expectedDemoted.demotedAt = now
        #expect(plan.demoted == expectedDemoted)
        #expect(plan.demoted?.promotedAt == t0 + .seconds(10), "a demoted deployment keeps when it was promoted")

        var expectedAgent = agent
        expectedAgent.productionDeploymentId = "d-new"
        expectedAgent.updatedAt = now
        #expect(plan.agent == expectedAgent)
    }

    @Test("a first promotion (no current production) demotes nothing", arguments: allKinds)
    func firstPromotion(_ kind: PromotionKind) throws {
        let fresh = Fixture.agent(status: .buildOnly)
        let plan = try Promotion.plan(agent: fresh, target: target, current: nil, kind: kind, reason: nil, now: now)
        #expect(!plan.isNoop)
        #expect(plan.demoted == nil)
        #expect(plan.events.count == 1)
        #expect(plan.target.isProduction)
        #expect(plan.target.promotedAt == now)
        #expect(plan.agent.productionDeploymentId == "d-new")
    }

    @Test("re-promoting a former production deployment sets a new promoted_at")
    func repromote() throws {
        let former = Fixture.deployment("d-new", promotedAt: t0, demotedAt: t0 + .seconds(5))
        let plan = try Promotion.plan(
            agent: agent, target: former, current: current, kind: .rollback, reason: nil, now: now)
        #expect(plan.target.promotedAt == now)
        #expect(plan.target.isProduction)
    }

    @Test("when the target is passed as current too, it is not demoted")
    func currentIsTarget() throws {
        let plan = try Promotion.plan(
            agent: Fixture.agent(), target: target, current: target, kind: .promote, reason: nil, now: now)
        #expect(plan.demoted == nil)
        #expect(plan.events.map(\.type) == [.promoted])
        #expect(plan.target.isProduction)
    }

    struct EventCase: Sendable, CustomTestStringConvertible {
        var kind: PromotionKind
        var withCurrent: [EventType]
        var withoutCurrent: [EventType]
        var testDescription: String { "\(kind)" }
    }

    static let eventCases: [EventCase] = [
        .init(kind: .promote, withCurrent: [.promoted, .demoted], withoutCurrent: [.promoted]),
        .init(kind: .autoPromote, withCurrent: [.autoPromoted, .demoted], withoutCurrent: [.autoPromoted]),
        .init(kind: .rollback, withCurrent: [.rolledBack, .demoted], withoutCurrent: [.rolledBack]),
    ]

    @Test("each kind writes its own event, plus Demoted for the replaced deployment, with the reason",
          arguments: eventCases, ["bad release 1.4.2", nil] as [String?])
    func events(_ c: EventCase, _ reason: String?) throws {
        let replaced = try Promotion.plan(
            agent: agent, target: target, current: current, kind: c.kind, reason: reason, now: now)
        #expect(replaced.events.map(\.type) == c.withCurrent)
        #expect(replaced.events.map(\.deploymentId) == ["d-new", "d-old"])
        #expect(replaced.events.allSatisfy { $0.reason == reason })
        let main = try #require(replaced.events.first)
        #expect(main.message.contains("'d-new'"))
        if c.kind != .autoPromote {
            #expect(main.message.contains("'d-old'"), "\(c.kind) names the deployment it replaced: \(main.message)")
        }
        let demoted = try #require(replaced.events.last)
        #expect(demoted.message.contains("'d-old'") && demoted.message.contains("'d-new'"))

        let first = try Promotion.plan(
            agent: Fixture.agent(), target: target, current: nil, kind: c.kind, reason: reason, now: now)
        #expect(first.events.map(\.type) == c.withoutCurrent)
        #expect(first.events.map(\.deploymentId) == ["d-new"])
        #expect(first.events.allSatisfy { $0.reason == reason })
        #expect(first.events.allSatisfy { !$0.message.contains("replacing") })
    }

    @Test("the event messages read as documented")
    func eventMessages() throws {
        func messages(_ kind: PromotionKind) throws -> [String] {
            try Promotion.plan(agent: agent, target: target, current: current, kind: kind, reason: nil, now: now)
                .events.map(\.message)
        }
        #expect(try messages(.promote) == [
            "promoted 'd-new' to production (replacing 'd-old')", "'d-old' is no longer production; 'd-new' is",
        ])
        #expect(try messages(.autoPromote) == [
            "first Ready deployment 'd-new' promoted to production", "'d-old' is no longer production; 'd-new' is",
        ])
        #expect(try messages(.rollback) == [
            "rolled production back to 'd-new' (replacing 'd-old')", "'d-old' is no longer production; 'd-new' is",
        ])
    }

    @Test("a BuildOnly or Unknown agent becomes Ready; other statuses are kept",
          arguments: [(AgentStatus.buildOnly, AgentStatus.ready), (.unknown, .ready), (.ready, .ready),
                      (.failed, .failed), (.unhealthy, .unhealthy)])
    func agentStatus(_ before: AgentStatus, _ after: AgentStatus) throws {
        let a = Fixture.agent(status: before, productionDeploymentId: "d-old")
        let plan = try Promotion.plan(agent: a, target: target, current: current, kind: .promote, reason: nil, now: now)
        #expect(plan.agent.status == after)
        #expect(plan.agent.updatedAt == now)
    }
}

@Suite("Rollback.target")
struct RollbackTargetTests {
    static func former(
        _ id: String, promoted: Int64, demoted: Int64?, status: DeploymentStatus = .ready, deleted: Bool = false,
        agentId: String = "agent-1"
    ) -> Deployment {
        Fixture.deployment(
            id, agentId: agentId, status: status, promotedAt: t0 + .seconds(promoted),
            demotedAt: demoted.map { t0 + .seconds($0) }, expiresAt: deleted ? now : nil)
    }

    @Test("an explicit target that was never production is a 409 that says to use promote")
    func explicitNeverProduction() throws {
        let d = Fixture.deployment("d-preview")
        let caught = CutoverError.caught {
            try Rollback.target(agent: agent, requested: d, requestedId: "d-preview", history: [])
        }
        let error = try #require(caught)
        #expect(error.status == 409)
        #expect(error.message.contains("use promote"))
        #expect(error.message.contains("'d-preview'"))
    }

    @Test("an explicit target that is unknown or belongs to another agent is a 404",
          arguments: [nil, Fixture.deployment("d-x", agentId: "agent-2", promotedAt: t0, demotedAt: t0)])
    func explicitNotFound(_ requested: Deployment?) throws {
        let caught = CutoverError.caught {
            try Rollback.target(
                agent: agent, requested: requested, requestedId: "d-x",
                history: [Self.former("d-1", promoted: 1, demoted: 2)])
        }
        let error = try #require(caught)
        #expect(error == .deploymentNotFound("d-x", agent: "agent-1"))
        #expect(error.status == 404)
    }

    @Test("an explicit former production deployment is the target, whatever the history")
    func explicitFormerProduction() throws {
        let d = Self.former("d-1", promoted: 1, demoted: 2)
        let history = [Self.former("d-2", promoted: 3, demoted: 9)]
        #expect(try Rollback.target(agent: agent, requested: d, requestedId: "d-1", history: history) == d)
    }

    @Test("an explicit former production deployment that is deleted or Failed is then refused by the promotion",
          arguments: [former("d-1", promoted: 1, demoted: 2, deleted: true),
                      former("d-1", promoted: 1, demoted: 2, status: .failed)])
    func explicitUnpromotable(_ d: Deployment) throws {
        let chosen = try Rollback.target(agent: agent, requested: d, requestedId: "d-1", history: [])
        let caught = CutoverError.caught {
            try Promotion.plan(agent: agent, target: chosen, current: current, kind: .rollback, reason: nil, now: now)
        }
        let error = try #require(caught)
        #expect(error.status == 409)
        #expect(error.message.contains("'d-1'"))
    }

    struct AutoCase: Sendable, CustomTestStringConvertible {
        var name: String
        var history: [Deployment]
        var expected: String
        var testDescription: String { name }
    }

    static let autoCases: [AutoCase] = [
        .init(name: "the only candidate", history: [former("d-1", promoted: 1, demoted: 2)], expected: "d-1"),
        .init(name: "most recently demoted wins, not most recently promoted",
              history: [former("d-1", promoted: 1, demoted: 9), former("d-2", promoted: 5, demoted: 6)],
              expected: "d-1"),
        .init(name: "order of the history does not matter",
              history: [former("d-2", promoted: 5, demoted: 6), former("d-1", promoted: 1, demoted: 9)],
              expected: "d-1"),
        .init(name: "deleted, Failed, Pending, current, foreign and never-production ones are skipped",
              history: [
                  former("d-ok", promoted: 1, demoted: 2),
                  former("d-deleted", promoted: 3, demoted: 20, deleted: true),
                  former("d-failed", promoted: 4, demoted: 21, status: .failed),
                  former("d-pending", promoted: 5, demoted: 22, status: .pending),
                  former("d-foreign", promoted: 6, demoted: 23, agentId: "agent-2"),
                  Fixture.deployment("d-current", isProduction: true, promotedAt: t0 + .seconds(24)),
                  Fixture.deployment("d-never"),
              ],
              expected: "d-ok"),
        .init(name: "without demoted_at the promotion time orders it",
              history: [former("d-1", promoted: 1, demoted: 5), former("d-legacy", promoted: 7, demoted: nil)],
              expected: "d-legacy"),
        .init(name: "equal demotion times: the later promotion wins",
              history: [former("d-1", promoted: 1, demoted: 8), former("d-2", promoted: 2, demoted: 8)],
              expected: "d-2"),
    ]

    @Test("without a target: the most recently demoted Ready, non-deleted former production", arguments: autoCases)
    func automatic(_ c: AutoCase) throws {
        let chosen = try Rollback.target(agent: agent, requested: nil, requestedId: nil, history: c.history)
        #expect(chosen.id == c.expected)
    }

    static let noCandidates: [[Deployment]] = [
        [],
        [former("d-deleted", promoted: 1, demoted: 2, deleted: true)],
        [former("d-failed", promoted: 1, demoted: 2, status: .failed)],
        [former("d-foreign", promoted: 1, demoted: 2, agentId: "agent-2")],
        [Fixture.deployment("d-current", isProduction: true, promotedAt: t0), Fixture.deployment("d-never")],
    ]

    @Test("without a target and no candidate: 409 naming the agent", arguments: noCandidates)
    func noCandidate(_ history: [Deployment]) throws {
        let caught = CutoverError.caught {
            try Rollback.target(agent: agent, requested: nil, requestedId: nil, history: history)
        }
        let error = try #require(caught)
        guard case .conflict = error else {
            Issue.record("expected a conflict, got \(error)")
            return
        }
        #expect(error.status == 409)
        #expect(error.message.contains("'support-bot'"))
    }

    @Test("the automatic target then plans as a rollback that demotes the current production")
    func rollbackEndToEnd() throws {
        let history = [Self.former("d-1", promoted: 1, demoted: 10), Self.former("d-2", promoted: 11, demoted: 12)]
        let chosen = try Rollback.target(agent: agent, requested: nil, requestedId: nil, history: history)
        let plan = try Promotion.plan(
            agent: agent, target: chosen, current: current, kind: .rollback, reason: "error rate", now: now)
        #expect(plan.target.id == "d-2")
        #expect(plan.demoted?.id == "d-old")
        #expect(plan.events.map(\.type) == [.rolledBack, .demoted])
        #expect(plan.events.first?.reason == "error rate")
    }
}
