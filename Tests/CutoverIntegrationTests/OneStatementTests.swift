import CutoverController
import CutoverCore
import Logging
import Testing

@testable import CutoverStore

/// On PostgreSQL a create and a pod's registration are each one statement, whose snapshot is taken before
/// it waits for the agent's lock. What another writer of the agent committed meanwhile must still count:
/// the agent's times stay in commit order, and a registration without an image takes the newest one.
@Suite("Creates and registrations in one statement")
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
        try await base.close()
    }
}
