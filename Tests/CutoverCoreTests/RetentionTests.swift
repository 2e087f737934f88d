import CutoverCore
import Testing

private let t0 = Fixture.t0
/// The time of every pass: 30 days after `t0`.
private let now = t0 + .seconds(30 * 86_400)
private let day = Duration.seconds(86_400)
private let grace = Duration.seconds(3_600)
/// Two previous productions, three others, a day for a `Failed` one, an hour to restore.
private let standardPolicy = RetentionPolicy(
    retainPreviousProduction: 2, retainInactive: 3, failedTTL: day, deletionGrace: grace)
private let live = Fixture.agent(productionDeploymentId: "prod")
private let deleted = Fixture.agent(status: .deleted, productionDeploymentId: "prod")

/// A deployment created `created` seconds after `t0`.
private func deployment(
    _ id: String, created: Int64, status: DeploymentStatus = .ready, isProduction: Bool = false,
    promoted: Int64? = nil, demoted: Int64? = nil, failedAt: Timestamp? = nil, expiresAt: Timestamp? = nil
) -> Deployment {
    var d = Fixture.deployment(
        id, status: status, isProduction: isProduction, createdAt: t0 + .seconds(created),
        promotedAt: promoted.map { t0 + .seconds($0) }, demotedAt: demoted.map { t0 + .seconds($0) },
        expiresAt: expiresAt)
    d.failedAt = failedAt
    return d
}

/// The production deployment, created before everything else and promoted last.
private let production = deployment("prod", created: 0, isProduction: true, promoted: 1_000)

/// A former production deployment, promoted at `created + 1` and demoted at `demoted`.
private func former(_ id: String, created: Int64, demoted: Int64) -> Deployment {
    deployment(id, created: created, promoted: created + 1, demoted: demoted)
}

@Suite("Retention.plan")
struct RetentionTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var agent: Agent = live
        var deployments: [Deployment]
        var policy: RetentionPolicy = standardPolicy
        /// The deployments that expire, with the reason of their `Expired` event, oldest first.
        var expired: [(String, ExpiryReason)]
        var nextCheck: Timestamp?
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        .init(name: "no deployments", deployments: [], expired: [], nextCheck: nil),
        .init(name: "within every count nothing expires and nothing is due",
              deployments: [production, former("p1", created: 10, demoted: 20), deployment("i1", created: 30),
                            deployment("i2", created: 40, status: .pending)],
              expired: [], nextCheck: nil),
        .init(name: "production is kept even when it is the oldest, with both counts at 0",
              deployments: [production, former("p1", created: 10, demoted: 20), deployment("i1", created: 30)],
              policy: RetentionPolicy(retainPreviousProduction: 0, retainInactive: 0, failedTTL: day, deletionGrace: grace),
              expired: [("p1", .previousProductionLimit), ("i1", .inactiveLimit)], nextCheck: now + grace),
        .init(name: "production is kept when it is the only deployment and the counts are 0",
              deployments: [production],
              policy: RetentionPolicy(retainPreviousProduction: 0, retainInactive: 0, failedTTL: .microseconds(1), deletionGrace: grace),
              expired: [], nextCheck: nil),
        .init(name: "the agent's production pointer protects its deployment as the flag does",
              agent: Fixture.agent(productionDeploymentId: "pointed"),
              deployments: [deployment("pointed", created: 0, promoted: 5), deployment("i1", created: 10)],
              policy: RetentionPolicy(retainPreviousProduction: 0, retainInactive: 0, failedTTL: day, deletionGrace: grace),
              expired: [("i1", .inactiveLimit)], nextCheck: now + grace),
        .init(name: "the two most recently demoted previous productions are kept, whatever their age",
              deployments: [production,
                            former("p-old-recent", created: 10, demoted: 900),
                            former("p2", created: 20, demoted: 300),
                            former("p3", created: 30, demoted: 400),
                            former("p-new-early", created: 40, demoted: 100)],
              expired: [("p2", .previousProductionLimit), ("p-new-early", .previousProductionLimit)],
              nextCheck: now + grace),
        .init(name: "a former production never demoted (no demoted_at) is ordered by its promotion",
              deployments: [production,
                            deployment("p-a", created: 10, promoted: 500),
                            former("p-b", created: 20, demoted: 400),
                            former("p-c", created: 30, demoted: 600)],
              expired: [("p-b", .previousProductionLimit)], nextCheck: now + grace),
        .init(name: "the three newest other deployments are kept, the older ones expire",
              deployments: [production,
                            deployment("i1", created: 10), deployment("i2", created: 20, status: .pending),
                            deployment("i3", created: 30), deployment("i4", created: 40, status: .pending),
                            deployment("i5", created: 50)],
              expired: [("i1", .inactiveLimit), ("i2", .inactiveLimit)], nextCheck: now + grace),
        .init(name: "previous productions and others count separately",
              deployments: [production,
                            former("p1", created: 10, demoted: 100), former("p2", created: 20, demoted: 200),
                            deployment("i1", created: 30), deployment("i2", created: 40), deployment("i3", created: 50)],
              expired: [], nextCheck: nil),
        .init(name: "ties on created_at are broken by id: the greater id counts as newer",
              deployments: [production,
                            deployment("i-a", created: 10), deployment("i-b", created: 10), deployment("i-c", created: 10),
                            deployment("i-d", created: 10)],
              expired: [("i-a", .inactiveLimit)], nextCheck: now + grace),
        .init(name: "a Failed deployment past the TTL expires; at exactly the TTL too",
              deployments: [production,
                            deployment("f-old", created: 10, status: .failed, failedAt: now - day - .seconds(1)),
                            deployment("f-edge", created: 20, status: .failed, failedAt: now - day)],
              expired: [("f-old", .failedTTL), ("f-edge", .failedTTL)], nextCheck: now + grace),
        .init(name: "a Failed deployment younger than the TTL stays, and is due at its TTL",
              deployments: [production,
                            deployment("f-young", created: 10, status: .failed, failedAt: now - .seconds(60))],
              expired: [], nextCheck: now - .seconds(60) + day),
        .init(name: "a Failed deployment with no failed_at counts from its creation",
              deployments: [production,
                            deployment("f-legacy", created: 10, status: .failed),
                            deployment("f-recent", created: 20, status: .failed, failedAt: now - .microseconds(1))],
              expired: [("f-legacy", .failedTTL)], nextCheck: now + grace),
        .init(name: "the earliest due time wins: a young Failed one before the new expiries' grace",
              deployments: [production,
                            deployment("f-young", created: 10, status: .failed, failedAt: now - day + .seconds(5)),
                            deployment("f-old", created: 20, status: .failed, failedAt: t0)],
              expired: [("f-old", .failedTTL)], nextCheck: now + .seconds(5)),
        .init(name: "a Failed deployment beyond the count expires by the count, and is not due later",
              deployments: [production,
                            deployment("f-young", created: 10, status: .failed, failedAt: now - .seconds(60)),
                            deployment("i1", created: 20), deployment("i2", created: 30), deployment("i3", created: 40)],
              expired: [("f-young", .inactiveLimit)], nextCheck: now + grace),
        .init(name: "a Failed deployment is kept by no count: within the count it still expires at its TTL",
              deployments: [production, deployment("f", created: 10, status: .failed, failedAt: t0 + .seconds(11))],
              policy: RetentionPolicy(retainPreviousProduction: 100, retainInactive: 100, failedTTL: day, deletionGrace: grace),
              expired: [("f", .failedTTL)], nextCheck: now + grace),
        .init(name: "soft-deleted deployments are untouched, count for nothing, and their future expiry is due",
              deployments: [production,
                            deployment("d-future", created: 10, expiresAt: now + .seconds(90)),
                            deployment("d-past", created: 20, expiresAt: now - .seconds(1)),
                            deployment("d-failed", created: 30, status: .failed, failedAt: t0, expiresAt: now + .seconds(900)),
                            former("d-former", created: 40, demoted: 50)
                                .with { $0.expiresAt = now + .seconds(120) },
                            deployment("i1", created: 50)],
              policy: RetentionPolicy(retainPreviousProduction: 0, retainInactive: 1, failedTTL: day, deletionGrace: grace),
              expired: [], nextCheck: now + .seconds(90)),
        .init(name: "a soft-deleted deployment whose expiry is now or past is not due again (GC collects it)",
              deployments: [production, deployment("d-now", created: 10, expiresAt: now),
                            deployment("d-past", created: 20, expiresAt: t0)],
              expired: [], nextCheck: nil),
        .init(name: "a soft-deleted deployment due before the new expiries sets the next check",
              deployments: [production, deployment("d-soon", created: 10, expiresAt: now + .seconds(7)),
                            deployment("i1", created: 20), deployment("i2", created: 30), deployment("i3", created: 40),
                            deployment("i4", created: 50)],
              expired: [("i1", .inactiveLimit)], nextCheck: now + .seconds(7)),
        .init(name: "a deleted agent: every non-production deployment expires with AgentDeleted, whatever the counts",
              agent: deleted,
              deployments: [production, former("p1", created: 10, demoted: 20),
                            deployment("i1", created: 30), deployment("i2", created: 40, status: .pending),
                            deployment("f1", created: 50, status: .failed, failedAt: now - .seconds(1))],
              policy: RetentionPolicy(retainPreviousProduction: 100, retainInactive: 100, failedTTL: day, deletionGrace: grace),
              expired: [("p1", .agentDeleted), ("i1", .agentDeleted), ("i2", .agentDeleted), ("f1", .agentDeleted)],
              nextCheck: now + grace),
        .init(name: "a deleted agent keeps its production record, even as its oldest deployment",
              agent: deleted, deployments: [production], expired: [], nextCheck: nil),
        .init(name: "a deleted agent with no production expires everything; soft-deleted ones stay as they are",
              agent: Fixture.agent(status: .deleted),
              deployments: [deployment("i1", created: 10), deployment("d1", created: 5, expiresAt: now + .seconds(30))],
              expired: [("i1", .agentDeleted)], nextCheck: now + .seconds(30)),
    ]

    @Test("which deployments expire, why, and when the agent is due again", arguments: cases)
    func plan(_ c: Case) {
        let plan = Retention.plan(agent: c.agent, deployments: c.deployments, now: now, policy: c.policy)
        #expect(plan.expire.map(\.id) == c.expired.map(\.0))
        #expect(plan.events.map(\.deploymentId) == c.expired.map(\.0))
        #expect(plan.events.map(\.reason) == c.expired.map(\.1.rawValue))
        #expect(plan.events.allSatisfy { $0.type == .expired })
        #expect(plan.nextCheck == c.nextCheck)
        // Each expired deployment is the original with expires_at set, nothing else changed.
        for expired in plan.expire {
            var original = c.deployments.first { $0.id == expired.id }
            original?.expiresAt = now + c.policy.deletionGrace
            #expect(expired == original)
        }
        #expect(!plan.expire.contains { $0.isProduction || $0.id == c.agent.productionDeploymentId })
    }

    @Test("expires_at is now + the deletion grace, and the event says until when it can be restored",
          arguments: [Duration.microseconds(1), .seconds(1), .seconds(3_600), .seconds(7 * 86_400)])
    func expiresAtIsNowPlusGrace(_ deletionGrace: Duration) throws {
        let p = RetentionPolicy(retainPreviousProduction: 0, retainInactive: 0, failedTTL: day, deletionGrace: deletionGrace)
        let plan = Retention.plan(
            agent: live, deployments: [production, deployment("i1", created: 1), former("p1", created: 2, demoted: 3)],
            now: now, policy: p)
        #expect(plan.expire.map(\.expiresAt) == [now + deletionGrace, now + deletionGrace])
        #expect(plan.nextCheck == now + deletionGrace)
        for event in plan.events {
            #expect(event.message.contains("restorable until \(now + deletionGrace)"), "\(event.message)")
        }
    }

    @Test("events come oldest first, one per expired deployment, whatever order the rows come in")
    func eventsOldestFirst() {
        let rows = [
            deployment("c", created: 30), production, deployment("a", created: 10), deployment("e", created: 50),
            deployment("b", created: 20), deployment("d", created: 40, status: .failed, failedAt: t0),
        ]
        let p = RetentionPolicy(retainPreviousProduction: 5, retainInactive: 0, failedTTL: day, deletionGrace: grace)
        for permutation in [rows, rows.reversed(), rows.sorted { $0.id > $1.id }] {
            let plan = Retention.plan(agent: live, deployments: permutation, now: now, policy: p)
            #expect(plan.events.map(\.deploymentId) == ["a", "b", "c", "d", "e"])
            #expect(plan.expire.map(\.id) == ["a", "b", "c", "d", "e"])
            #expect(Set(plan.events.compactMap(\.deploymentId)).count == plan.events.count)
        }
    }

    @Test("the event messages name the limit or the TTL")
    func messages() throws {
        let p = RetentionPolicy(retainPreviousProduction: 1, retainInactive: 2, failedTTL: .seconds(7_200), deletionGrace: grace)
        let plan = Retention.plan(
            agent: live,
            deployments: [production, former("p1", created: 1, demoted: 2), former("p2", created: 3, demoted: 4),
                          deployment("i1", created: 5), deployment("i2", created: 6), deployment("i3", created: 7),
                          deployment("f1", created: 8, status: .failed, failedAt: t0)],
            now: now, policy: p)
        let byId = Dictionary(uniqueKeysWithValues: plan.events.map { ($0.deploymentId ?? "", $0) })
        #expect(byId.keys.sorted() == ["f1", "i1", "i2", "p1"])
        #expect(try #require(byId["p1"]).message.contains("1 most recent previous production"))
        #expect(try #require(byId["i1"]).message.contains("2 most recent other"))
        #expect(try #require(byId["f1"]).message.contains("Failed for longer than 2h"))
        let gone = Retention.plan(
            agent: Fixture.agent(name: "billing", status: .deleted), deployments: [deployment("x", created: 1)],
            now: now, policy: p)
        #expect(gone.events.first?.message.contains("agent 'billing' is deleted") == true)
    }

    @Test("planning again after applying a plan expires nothing more (level-triggered)", arguments: cases)
    func idempotent(_ c: Case) {
        let first = Retention.plan(agent: c.agent, deployments: c.deployments, now: now, policy: c.policy)
        let applied = c.deployments.map { d in first.expire.first { $0.id == d.id } ?? d }
        let second = Retention.plan(agent: c.agent, deployments: applied, now: now, policy: c.policy)
        #expect(second.expire.isEmpty)
        #expect(second.events.isEmpty)
        // The new expiries are now ordinary soft-deleted rows, due at the end of their grace.
        #expect(second.nextCheck == first.nextCheck)
    }

    @Test("a negative count keeps nothing, like 0, rather than trapping")
    func negativeCounts() {
        let p = RetentionPolicy(retainPreviousProduction: -1, retainInactive: -3, failedTTL: day, deletionGrace: grace)
        let plan = Retention.plan(
            agent: live, deployments: [production, former("p1", created: 1, demoted: 2), deployment("i1", created: 3)],
            now: now, policy: p)
        #expect(plan.expire.map(\.id) == ["p1", "i1"])
        #expect(plan.events.map(\.reason) == ["PreviousProductionLimit", "InactiveLimit"])
    }

    @Test("a deployment owning a RUNNING task active within the drain is held until the drain ends")
    func taskDrain() {
        let p = RetentionPolicy(retainPreviousProduction: 0, retainInactive: 0, failedTTL: day, deletionGrace: grace, taskDrain: .seconds(600))
        let rows = [production, former("p1", created: 1, demoted: 2), deployment("i1", created: 3),
                    deployment("f1", created: 4, status: .failed, failedAt: t0)]
        // p1's task was active 5 minutes ago: held for 5 more; i1's 20 minutes ago: past the drain.
        let activity = ["p1": now - .seconds(300), "i1": now - .seconds(1_200), "f1": now - .seconds(60)]
        let plan = Retention.plan(agent: live, deployments: rows, now: now, policy: p, taskActivity: activity)
        #expect(plan.expire.map(\.id) == ["i1"])
        #expect(plan.nextCheck == now + .seconds(300), "p1's drain ends first, in 5 minutes")
        // Once the drain is over, the same rows expire.
        let later = Retention.plan(agent: live, deployments: rows, now: now + .seconds(600), policy: p, taskActivity: activity)
        #expect(later.expire.map(\.id) == ["p1", "i1", "f1"])
        // A deleted agent's tasks cannot be reached: nothing is held.
        let gone = Retention.plan(agent: deleted, deployments: rows, now: now, policy: p, taskActivity: activity)
        #expect(gone.expire.map(\.id) == ["p1", "i1", "f1"])
    }

    @Test("the default policy keeps 5 previous productions and 20 others, a Failed one a day, a day to restore")
    func defaults() {
        let p = RetentionPolicy()
        #expect(p.retainPreviousProduction == 5)
        #expect(p.retainInactive == 20)
        #expect(p.failedTTL == .seconds(86_400))
        #expect(p.deletionGrace == .seconds(86_400))
        #expect(p.taskDrain == .seconds(3_600))
        let reasons: [ExpiryReason] = [.previousProductionLimit, .inactiveLimit, .failedTTL, .agentDeleted]
        #expect(reasons.map(\.rawValue) == ["PreviousProductionLimit", "InactiveLimit", "FailedTTL", "AgentDeleted"])
    }
}

extension Deployment {
    fileprivate func with(_ change: (inout Deployment) -> Void) -> Deployment {
        var copy = self
        change(&copy)
        return copy
    }
}

extension Timestamp {
    fileprivate static func - (t: Timestamp, d: Duration) -> Timestamp { t + .microseconds(-d.microseconds) }
}
