import CutoverCore
import Logging
import Testing

@testable import CutoverController
@testable import CutoverStore

/// On PostgreSQL a create, a pod's registration and a promotion are each one statement, whose snapshot is
/// taken before it waits for the agent's lock. What another writer of the agent committed meanwhile must
/// still count: the agent's times stay in commit order, a registration without an image takes the newest
/// one, a promotion demotes the production deployment as it is now.
@Suite("Creates, registrations and promotions in one statement")
struct OneStatementTests {
    @Test(arguments: Backend.postgresOnly)
    func aRegistrationThatWaitedForItsAgentSeesWhatCommittedMeanwhile(_ backend: Backend) async throws {
        // Written at the clock's time: the registration's own time is later and stands.
        try await Self.whileAnotherWriterHoldsTheAgent(backend, at: .now()) { controlPlane, ctx in
            let request = RegistrationRequest(
                name: "app", description: "", acpURL: "http://127.0.0.1:9", acpType: .async,
                registrationMetadata: ["deployment_id": "r"])
            return try await controlPlane.register(request, ctx).id
        } check: { store, t1 in
            let r = try #require(try await store.read { try await $0.deployment(id: "r") })
            #expect(r.dockerImage == "img:2", "the image of the deployment committed while the registration waited")
            #expect(r.createdAt >= t1 && r.registeredAt! >= t1, "no earlier than the trail's newest time")
        }
    }

    @Test(arguments: Backend.postgresOnly)
    func aCreateThatWaitedForItsAgentTakesNoEarlierTime(_ backend: Backend) async throws {
        // An hour ahead of the clock: the create takes that time, and its waiting hint's deadline from it.
        try await Self.whileAnotherWriterHoldsTheAgent(backend, at: .now() + .seconds(3600)) { controlPlane, ctx in
            try await controlPlane.createDeployment(agentId: "agent-1", DeploymentRequest(dockerImage: "img:3"), ctx).id
        } check: { store, t1 in
            let created = try #require(try await store.read { tx in
                try await tx.listDeployments(agentId: "agent-1", includeDeleted: false, page: Page(limit: 10)) ?? []
            }.first { $0.dockerImage == "img:3" })
            #expect(created.createdAt >= t1, "no earlier than the trail's newest time")
            let deadline = created.createdAt + ReconcilePolicy().progressDeadline
            #expect(created.statusReason == Reconcile.pendingHint(.awaitRegistration(deadline: deadline)))
        }
    }

    /// Registrations that came together go as one statement: each it can write is written once, in the
    /// batch's order, with the events it would have had alone; each of the rest is left to a transaction
    /// of its own, with nothing written for it.
    @Test(arguments: Backend.postgresOnly)
    func aBatchOfRegistrationsWritesWhatItCanAndLeavesTheRest(_ backend: Backend) async throws {
        try await backend.withStore(Self.writeABatchOfRegistrations)
    }

    private static func writeABatchOfRegistrations(_ store: any Store) async throws {
        let t0 = Timestamp.now() + .seconds(-3600)
        try await store.transaction { tx in
            for (id, name, key) in [("agent-1", "app", "a"), ("agent-2", "other", "b")] {
                _ = try await tx.insertAgentIfAbsent(Agent(
                    id: id, name: name, description: "", status: .ready, acpType: .async, createdAt: t0, updatedAt: t0,
                    apiKey: String(repeating: key, count: 64)))
            }
            _ = try await tx.insertDeploymentIfAbsent(Deployment(id: "old", agentId: "agent-1", dockerImage: "img:1", createdAt: t0))
            _ = try await tx.insertDeploymentIfAbsent(Deployment(id: "theirs", agentId: "agent-2", dockerImage: "img:9", createdAt: t0))
            _ = try await tx.insertDeploymentIfAbsent(
                Deployment(id: "gone", agentId: "agent-2", dockerImage: "img:9", createdAt: t0, expiresAt: t0))
            #expect(try await tx.collectExpired(agentId: "agent-2", now: t0 + .seconds(1), limit: 10) == ["gone"])
        }
        func registration(_ id: String) -> RegistrationRequest {
            RegistrationRequest(
                name: "app", description: "", acpURL: "http://127.0.0.1:9/\(id)", acpType: .async,
                registrationMetadata: ["deployment_id": .string(id)])
        }
        let batch = ["a", "old", "a", "theirs", "gone", "b"].map(registration)
        func otherTrail() async throws -> [Event] {
            try await store.read { try await $0.events(agentId: "agent-2", after: 0, limit: 100) }.map(\.event)
        }
        let otherBefore = try await otherTrail()
        let answers = try await ControlPlane.registerInOneStatement(store, batch)
        #expect(answers.map { $0?.id } == ["agent-1", "agent-1", nil, nil, nil, "agent-1"])

        func deployment(_ id: String) async throws -> Deployment? { try await store.read { try await $0.deployment(id: id) } }
        let (a, b, old, theirs, gone) = (
            try await deployment("a"), try await deployment("b"), try await deployment("old"), try await deployment("theirs"),
            try await deployment("gone"))
        #expect(a?.dockerImage == "img:1" && b?.dockerImage == "img:1", "new ones take the newest image")
        #expect(a?.acpURL == "http://127.0.0.1:9/a" && b?.status == .pending)
        #expect(old?.acpURL == "http://127.0.0.1:9/old" && old?.registeredAt != nil, "the existing one re-registered")
        #expect(theirs?.agentId == "agent-2" && theirs?.acpURL == nil, "another agent's deployment untouched")
        #expect(gone == nil, "a collected id of another agent not taken")
        let trail = try await store.read { try await $0.events(agentId: "agent-1", after: 0, limit: 100) }.map(\.event)
        #expect(trail.map { "\($0.deploymentId ?? "-") \($0.type.rawValue)" } == [
            "a Created", "a Registered", "old Registered", "b Created", "b Registered",
        ])
        #expect(Set(trail.map(\.createdAt)).count == 1 && trail[0].createdAt >= t0)
        #expect(try await otherTrail() == otherBefore)

        // An agent that does not exist: nothing written, each left to its own transaction (which creates it).
        let unknown = batch.map { request -> RegistrationRequest in
            var request = request
            request.name = "new"
            return request
        }
        #expect(try await ControlPlane.registerInOneStatement(store, unknown).allSatisfy { $0 == nil })
        #expect(try await store.read { try await $0.agent(name: "new") } == nil)
    }

    /// A promotion the statement can make is written as its transaction would write it (the demotion, the
    /// agent's pointer and status, the events with their messages, one time for all); one it cannot make
    /// writes nothing and is left to the transaction; promoting production again writes nothing.
    @Test(arguments: Backend.postgresOnly)
    func aPromotionWritesWhatItsTransactionWouldOrNothing(_ backend: Backend) async throws {
        try await backend.withStore(Self.promoteInOneStatement)
    }

    private static func promoteInOneStatement(_ store: any Store) async throws {
        let t0 = Timestamp.now() + .seconds(-3600)
        try await store.transaction { tx in
            for (id, name, status, production) in [
                ("agent-1", "app", AgentStatus.unknown, "v1"), ("agent-2", "other", .ready, nil),
                ("agent-3", "gone", .deleted, nil),
            ] {
                _ = try await tx.insertAgentIfAbsent(Agent(
                    id: id, name: name, description: "", status: status, acpType: .async, createdAt: t0, updatedAt: t0,
                    productionDeploymentId: production, apiKey: String(repeating: "k", count: 64)))
            }
            for (id, agent, status, production, expires) in [
                ("v1", "agent-1", DeploymentStatus.ready, true, nil), ("v2", "agent-1", .ready, false, nil),
                ("v3", "agent-1", .pending, false, nil), ("v4", "agent-1", .ready, false, t0 + .seconds(60)),
                ("x", "agent-2", .ready, false, nil), ("y", "agent-3", .ready, false, nil),
            ] as [(String, String, DeploymentStatus, Bool, Timestamp?)] {
                _ = try await tx.insertDeploymentIfAbsent(Deployment(
                    id: id, agentId: agent, dockerImage: "img", status: status, isProduction: production, createdAt: t0,
                    promotedAt: production ? t0 : nil, expiresAt: expires))
            }
        }
        func promote(_ agent: String, _ id: String) async throws -> (deployment: Deployment, changed: Bool)? {
            try await ControlPlane.promoteInOneStatement(store, agentId: agent, deploymentId: id, reason: "r", actor: .admin)
        }
        func world() async throws -> [String] {
            try await store.read { tx in
                var rows: [String] = []
                for agent in ["agent-1", "agent-2", "agent-3"] {
                    rows.append("\(try await tx.agent(id: agent)!)")
                    rows += try await tx.listDeployments(agentId: agent, includeDeleted: true, page: Page(limit: 10))!.map { "\($0)" }
                    rows += try await tx.events(agentId: agent, after: 0, limit: 100).map { "\($0.event)" }
                }
                return rows
            }
        }

        let before = try await world()
        for (agent, id) in [
            ("agent-1", "v3"), ("agent-1", "v4"), ("agent-1", "x"), ("agent-1", "none"), ("agent-3", "y"), ("agent-9", "v2"),
        ] {
            #expect(try await promote(agent, id) == nil, "\(agent) \(id): left to the transaction")
        }
        #expect(try await world() == before, "nothing written")

        let promoted = try #require(try await promote("agent-1", "v2"))
        #expect(promoted.changed && promoted.deployment.isProduction && promoted.deployment.id == "v2")
        let at = try #require(promoted.deployment.promotedAt)
        let (agent, v1, v2) = try await store.read { tx in
            (try await tx.agent(id: "agent-1")!, try await tx.deployment(id: "v1")!, try await tx.deployment(id: "v2")!)
        }
        #expect(v2 == promoted.deployment)
        #expect(!v1.isProduction && v1.demotedAt == at && v1.promotedAt == t0)
        #expect(agent.productionDeploymentId == "v2" && agent.status == .ready && agent.updatedAt == at)
        let trail = try await store.read { try await $0.events(agentId: "agent-1", after: 0, limit: 100) }.map(\.event)
        #expect(trail.map { "\($0.deploymentId ?? "-") \($0.type.rawValue) \($0.message)" } == [
            "v2 Promoted promoted 'v2' to production (replacing 'v1')", "v1 Demoted 'v1' is no longer production; 'v2' is",
        ])
        #expect(trail.allSatisfy { $0.createdAt == at && $0.reason == "r" && $0.actor == "admin" })

        let afterPromotion = try await world()
        let again = try #require(try await promote("agent-1", "v2"))
        #expect(!again.changed && again.deployment == v2)
        #expect(try await world() == afterPromotion, "promoting production again writes nothing")

        let first = try #require(try await promote("agent-2", "x"))
        #expect(first.changed && first.deployment.isProduction)
        let firstTrail = try await store.read { try await $0.events(agentId: "agent-2", after: 0, limit: 100) }.map(\.event)
        #expect(firstTrail.map { "\($0.deploymentId ?? "-") \($0.type.rawValue) \($0.message)" } == [
            "x Promoted promoted 'x' to production",
        ], "no production before: nothing demoted")
    }

    /// A promotion that waited for the agent's turn demotes the production deployment as committed
    /// meanwhile, not the one of its snapshot, and takes no earlier time than the trail's newest.
    @Test(arguments: Backend.postgresOnly)
    func aPromotionThatWaitedDemotesTheProductionCommittedMeanwhile(_ backend: Backend) async throws {
        try await backend.withStore(Self.promoteAfterWaiting)
    }

    private static func promoteAfterWaiting(_ base: any Store) async throws {
        let t0 = Timestamp.now() + .seconds(-3600)
        try await base.transaction { tx in
            _ = try await tx.insertAgentIfAbsent(Agent(
                id: "agent-1", name: "app", description: "", status: .ready, acpType: .async, createdAt: t0,
                updatedAt: t0, productionDeploymentId: "v1", apiKey: String(repeating: "a", count: 64)))
            for id in ["v1", "v2", "v3"] {
                _ = try await tx.insertDeploymentIfAbsent(Deployment(
                    id: id, agentId: "agent-1", dockerImage: "img", status: .ready, isProduction: id == "v1",
                    createdAt: t0, promotedAt: id == "v1" ? t0 : nil))
            }
        }
        let t1 = Timestamp.now() + .seconds(3600)
        let gated = GatedStore(base, holding: 1)
        async let held: Void = gated.transaction { tx in
            // The promotion's transaction, at a time ahead of the clock.
            let locked = try await ControlPlane.lockWithProduction(tx, agentId: "agent-1", "v2")
            let plan = try Promotion.plan(
                agent: locked.agent, target: locked.requested!, current: locked.production, kind: .promote, reason: nil,
                now: t1)
            try await tx.replaceProductionAtFinish(demoted: plan.demoted!, promoted: plan.target)
            try await tx.updateAgentAtFinish(plan.agent)
            tx.appendEvents(agentId: "agent-1", plan.events, actor: .admin, at: t1)
        }
        await gated.held()
        let promoting = Task {
            try await ControlPlane.promoteInOneStatement(base, agentId: "agent-1", deploymentId: "v3", reason: nil, actor: .admin)
        }
        try await untilALockIsAwaited(in: base, "the promotion waits for the agent's turn")
        gated.release()
        try await held
        let promoted = try #require(try await promoting.value)
        #expect(promoted.changed && promoted.deployment.promotedAt! >= t1)
        let (agent, v1, v2) = try await base.read { tx in
            (try await tx.agent(id: "agent-1")!, try await tx.deployment(id: "v1")!, try await tx.deployment(id: "v2")!)
        }
        #expect(agent.productionDeploymentId == "v3")
        #expect(!v1.isProduction && v1.demotedAt == t1, "demoted once, by the held promotion")
        #expect(!v2.isProduction && v2.demotedAt == promoted.deployment.promotedAt, "the production committed meanwhile")
        let trail = try await base.read { try await $0.events(agentId: "agent-1", after: 0, limit: 100) }.map(\.event)
        #expect(trail.map { "\($0.deploymentId ?? "-") \($0.type.rawValue)" } == ["v2 Promoted", "v1 Demoted", "v3 Promoted", "v2 Demoted"])
        #expect(zip(trail, trail.dropFirst()).allSatisfy { $0.createdAt <= $1.createdAt }, "times in commit order")
    }

    /// Agent `agent-1` ("app") has deployment `old` (img:1). A transaction locks the agent, adds `new`
    /// (img:2) and its event at `t1`, and holds; `write` runs meanwhile and waits for the lock. Once the
    /// transaction commits, `write` must succeed, its events must come after `new`'s in time as in
    /// position, and `check` looks at the rest.
    private static func whileAnotherWriterHoldsTheAgent(
        _ backend: Backend, at t1: Timestamp,
        write: @escaping @Sendable (ControlPlane, RequestContext) async throws -> String,
        check: (any Store, Timestamp) async throws -> Void
    ) async throws {
        let base = try await backend.makeStore()
        let t0 = Timestamp.now() + .seconds(-3600)
        try await base.transaction { tx in
            _ = try await tx.insertAgentIfAbsent(Agent(
                id: "agent-1", name: "app", description: "", status: .ready, acpType: .async, createdAt: t0,
                updatedAt: t0, apiKey: String(repeating: "a", count: 64)))
            _ = try await tx.insertDeploymentIfAbsent(Deployment(id: "old", agentId: "agent-1", dockerImage: "img:1", createdAt: t0))
        }
        let gated = GatedStore(base, holding: 1)
        async let held: Void = gated.transaction { tx in
            _ = try await tx.agent(id: "agent-1", lock: true)
            _ = try await tx.insertDeploymentIfAbsent(Deployment(id: "new", agentId: "agent-1", dockerImage: "img:2", createdAt: t1))
            tx.appendEvents(
                agentId: "agent-1", [EventDraft(deploymentId: "new", type: .created, message: "ahead")], actor: .admin, at: t1)
        }
        await gated.held()
        let controlPlane = ControlPlane(store: base, settings: .init(), logger: Logger(label: "test"))
        let writing = Task { try await write(controlPlane, RequestContext(actor: .registration)) }
        try await untilALockIsAwaited(in: base, "the write waits for the agent's lock")
        gated.release()
        try await held
        _ = try await writing.value
        let trail = try await base.read { try await $0.events(agentId: "agent-1", after: 0, limit: 100) }.map(\.event)
        #expect(trail.first?.deploymentId == "new")
        #expect(trail.count > 1, "the write appended its events")
        #expect(zip(trail, trail.dropFirst()).allSatisfy { $0.createdAt <= $1.createdAt }, "times in commit order: \(trail)")
        try await check(base, t1)
        try await Backend.discard(base)
    }
}
