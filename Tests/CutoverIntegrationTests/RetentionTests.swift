import CutoverController
import CutoverCore
import CutoverRuntime
import CutoverStore
import Logging
import Synchronization
import Testing

/// Retention and garbage collection against a real server: what expires, what is collected and when, what
/// a restore can still undo, and what stays of a collected deployment.
@Suite("Retention and garbage collection")
struct RetentionTests {
    static let noProbe = ReconcilePolicy(probe: .none)
    static let pod = "http://127.0.0.1:9"

    /// Registers a pod of deployment `id` (probe: none) and waits until it is Ready; returns the agent id.
    @discardableResult
    static func ready(_ h: Harness, _ name: String, _ id: String) async throws -> String {
        let reply = try await h.register(name, url: pod, deploymentId: id)
        guard reply.status == 200, let agentId = reply["id"]?.stringValue else {
            throw TestFailure("registration of \(id) failed: \(reply.status) \(reply.text)")
        }
        _ = try await h.waitFor(agentId, id, .ready)
        return agentId
    }

    /// An agent with the Ready deployment `id` in production.
    static func production(_ h: Harness, _ name: String, _ id: String) async throws -> String {
        let agentId = try await ready(h, name, id)
        _ = try await eventually("\(id) auto-promoted") {
            try await h.agent(named: name)?.productionDeploymentId == id ? true : nil
        }
        return agentId
    }

    /// Registers a pod of deployment `id` and runs one reconcile of it by hand (for a server whose loops do
    /// not run, so no retention pass can come between the registration and the auto-promotion).
    @discardableResult
    static func readyByHand(_ h: Harness, _ name: String, _ id: String) async throws -> String {
        let reply = try await h.register(name, url: pod, deploymentId: id)
        guard reply.status == 200, let agentId = reply["id"]?.stringValue else {
            throw TestFailure("registration of \(id) failed: \(reply.status) \(reply.text)")
        }
        #expect(try await h.controller.reconciler.reconcile(id) == .done)
        guard try await h.deployment(agentId, id)?.status == .ready else { throw TestFailure("\(id) is not Ready") }
        return agentId
    }

    /// The agent's audit trail over HTTP, oldest first, as (type, deployment id, reason, actor).
    static func trail(_ h: Harness, _ agentId: String) async throws -> [Entry] {
        let reply = try await h.get("/agents/\(agentId)/events?limit=1000&order_direction=asc")
        guard reply.status == 200 else { throw TestFailure("events: \(reply.status) \(reply.text)") }
        return reply.array.map {
            Entry(
                type: $0["type"]?.stringValue ?? "", deployment: $0["deployment_id"]?.stringValue,
                reason: $0["reason"]?.stringValue, actor: $0["actor"]?.stringValue ?? "")
        }
    }

    struct Entry: Equatable, CustomStringConvertible {
        var type: String
        var deployment: String?
        var reason: String?
        var actor: String
        var description: String { "\(type)(\(deployment ?? "-"), \(reason ?? "-"), \(actor))" }
    }

    /// The stored events of one deployment, oldest first.
    static func storedEvents(_ h: Harness, _ agentId: String, _ id: String) async throws -> [Event] {
        try await h.store.read {
            try await $0.listEvents(
                agentId: agentId, deploymentId: id, page: Page(limit: 1000, orderBy: "created_at", direction: .asc))
        }
    }

    /// Runs retention passes of the agent directly until `done` holds (bounded).
    static func passUntil(
        _ h: Harness, _ agentId: String, _ what: String, _ done: @escaping () async throws -> Bool
    ) async throws {
        _ = try await eventually(what) {
            _ = try await h.retention.reconciler.reconcile(agentId)
            return try await done() ? true : nil
        }
    }

    // MARK: Production

    @Test(arguments: Backend.all)
    func productionIsNeverExpiredNorCollected(_ backend: Backend) async throws {
        // Keep nothing and let everything go at once; the passes run here, one after another.
        let retention = RetentionPolicy(
            retainPreviousProduction: 0, retainInactive: 0, failedTTL: .microseconds(1), deletionGrace: .microseconds(1))
        try await Harness.with(backend, .init(policy: Self.noProbe, retention: retention, runController: false)) { h in
            let agentId = try await Self.readyByHand(h, "keeper", "v1")
            #expect(try await h.agent(named: "keeper")?.productionDeploymentId == "v1")
            try await Self.readyByHand(h, "keeper", "v2")
            try await Self.readyByHand(h, "keeper", "v3")
            #expect(try await h.post("/agents/\(agentId)/deployments/v2/promote").status == 200)
            #expect(try await h.post("/agents/\(agentId)/deployments/v3/promote").status == 200)
            // v3 is production, v1 (the oldest) and v2 are previous productions beyond a count of 0.
            try await Self.passUntil(h, agentId, "v1 and v2 collected") {
                let (v1, v2) = (try await h.deployment(agentId, "v1"), try await h.deployment(agentId, "v2"))
                return v1 == nil && v2 == nil
            }
            for _ in 0..<3 { _ = try await h.retention.reconciler.reconcile(agentId) }
            let v3 = try #require(try await h.deployment(agentId, "v3"))
            #expect(v3.isProduction)
            #expect(v3.expiresAt == nil)
            #expect(try await h.agent(named: "keeper")?.productionDeploymentId == "v3")
            let trail = try await Self.trail(h, agentId)
            #expect(!trail.contains { $0.deployment == "v3" && ["Expired", "GarbageCollected"].contains($0.type) })
            #expect(trail.filter { $0.type == "GarbageCollected" }.compactMap(\.deployment).sorted() == ["v1", "v2"])
            #expect(try await h.checkInvariants() == [])

            // The oldest deployment, when it is production, is kept just the same.
            let first = try await Self.readyByHand(h, "oldest", "o1")
            try await Self.readyByHand(h, "oldest", "o2")
            try await Self.passUntil(h, first, "o2 collected") { try await h.deployment(first, "o2") == nil }
            let o1 = try #require(try await h.deployment(first, "o1"))
            #expect(o1.isProduction && o1.expiresAt == nil)
            let all = try await h.get("/agents/\(first)/deployments?include_deleted=true")
            #expect(all.array.compactMap { $0["id"]?.stringValue } == ["o1"])
            #expect(try await h.checkInvariants() == [])
        }
    }

    // MARK: Counts and TTL

    @Test(arguments: Backend.all)
    func beyondEachCountTheOldestExpireRestorably(_ backend: Backend) async throws {
        let retention = RetentionPolicy(retainPreviousProduction: 1, retainInactive: 1, deletionGrace: .seconds(3_600))
        try await Harness.with(backend, .init(policy: Self.noProbe, retention: retention, runController: false)) { h in
            let agentId = try await Self.readyByHand(h, "counted", "p1")
            try await Self.readyByHand(h, "counted", "p2")
            try await Self.readyByHand(h, "counted", "p3")
            // Demotion order p2 (when p1 came back), then p1 (when p3 came): p1, the oldest, is the most
            // recent previous production.
            for target in ["p2", "p1", "p3"] {
                #expect(try await h.post("/agents/\(agentId)/deployments/\(target)/promote").status == 200)
            }
            for id in ["i1", "i2", "i3"] { try await Self.readyByHand(h, "counted", id) }
            let before = Timestamp.now()

            let requeue = try await h.retention.reconciler.reconcile(agentId)
            guard case .at(let due) = requeue else {
                Issue.record("expected a requeue at the end of the grace, got \(requeue)")
                return
            }
            #expect(due >= before + .seconds(3_600) && due <= Timestamp.now() + .seconds(3_600))

            let listed = try await h.get("/agents/\(agentId)/deployments")
            #expect(Set(listed.array.compactMap { $0["id"]?.stringValue }) == ["p3", "p1", "i3"])
            for id in ["p2", "i1", "i2"] {
                let d = try await h.get("/agents/\(agentId)/deployments/\(id)")
                #expect(d.status == 200, "an expired deployment is still there during the grace")
                #expect(d["expires_at"]?.stringValue != nil, "\(id) expired")
            }
            let expired = try await Self.trail(h, agentId).filter { $0.type == "Expired" }
            #expect(expired == [
                Entry(type: "Expired", deployment: "p2", reason: "PreviousProductionLimit", actor: "controller"),
                Entry(type: "Expired", deployment: "i1", reason: "InactiveLimit", actor: "controller"),
                Entry(type: "Expired", deployment: "i2", reason: "InactiveLimit", actor: "controller"),
            ])

            // Restorable during the grace.
            for id in ["p2", "i1"] {
                let restored = try await h.post("/agents/\(agentId)/deployments/\(id)/restore")
                #expect(restored.status == 200, "\(restored.text)")
                #expect(restored["expires_at"] == .null)
                #expect(try await h.deployment(agentId, id)?.expiresAt == nil)
            }
            let back = try await h.post("/agents/\(agentId)/rollback", ["to_deployment_id": "p2"])
            #expect(back.status == 200, "a restored previous production is a rollback target again: \(back.text)")
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test(arguments: Backend.all)
    func failedDeploymentsExpireAfterTheirTTL(_ backend: Backend) async throws {
        let ttl = Duration.seconds(4)
        let retention = RetentionPolicy(failedTTL: ttl, deletionGrace: .seconds(3_600))
        let policy = ReconcilePolicy(probe: .none, progressDeadline: .seconds(1))
        try await Harness.with(backend, .init(policy: policy, retention: retention, gcInterval: .seconds(3_600))) { h in
            let agentId = try await Self.production(h, "flaky", "good")
            #expect(try await h.post("/agents/\(agentId)/deployments", ["docker_image": "img:bad", "id": "bad"]).status == 200)
            let failed = try await h.waitFor(agentId, "bad", .failed, within: .seconds(10))
            let failedAt = try #require(failed.failedAt)

            // Younger than the TTL: kept, and the agent is due when the TTL runs out.
            let requeue = try await h.retention.reconciler.reconcile(agentId)
            if Timestamp.now() < failedAt + ttl {
                #expect(requeue == .at(failedAt + ttl))
                #expect(try await h.deployment(agentId, "bad")?.expiresAt == nil)
            }

            try await Self.passUntil(h, agentId, "the Failed deployment expired") {
                try await h.deployment(agentId, "bad")?.expiresAt != nil
            }
            let expired = try #require(try await Self.storedEvents(h, agentId, "bad").last)
            #expect(expired.type == .expired)
            #expect(expired.reason == "FailedTTL")
            #expect(expired.createdAt >= failedAt + ttl, "not before its TTL")
            #expect(try await h.deployment(agentId, "good")?.expiresAt == nil)
            let restored = try await h.post("/agents/\(agentId)/deployments/bad/restore")
            #expect(restored.status == 200)
            #expect(restored["status"] == "Failed")
        }
    }

    // MARK: Collection

    @Test(arguments: Backend.all)
    func collectedWithinTwoIntervalsOfItsExpiry(_ backend: Backend) async throws {
        let interval = Duration.seconds(1)
        let retention = RetentionPolicy(deletionGrace: .seconds(1))
        try await Harness.with(backend, .init(policy: Self.noProbe, retention: retention, gcInterval: interval)) { h in
            let agentId = try await Self.production(h, "tidy", "v1")
            try await Self.ready(h, "tidy", "v2")
            let deleted = try await h.delete("/agents/\(agentId)/deployments/v2")
            #expect(deleted.status == 200)
            let expiresAt = try #require(try await h.deployment(agentId, "v2")?.expiresAt)
            _ = try await eventually(within: .seconds(15), "v2 collected by the loop") {
                try await h.deployment(agentId, "v2") == nil ? true : nil
            }
            let collected = try #require(try await Self.storedEvents(h, agentId, "v2").last)
            #expect(collected.type == .garbageCollected)
            #expect(collected.actor == "controller")
            #expect(collected.createdAt >= expiresAt, "never before its expiry")
            #expect(collected.createdAt - expiresAt <= interval * 2, "collected \(collected.createdAt - expiresAt) after its expiry")
            #expect(try await h.get("/agents/\(agentId)/deployments/v2").status == 404)
            #expect(try await h.deployment(agentId, "v1")?.isProduction == true)
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test(arguments: Backend.all)
    func restoreBeforeCollectionWins(_ backend: Backend) async throws {
        let interval = Duration.seconds(1)
        let retention = RetentionPolicy(deletionGrace: .seconds(2))
        try await Harness.with(backend, .init(policy: Self.noProbe, retention: retention, gcInterval: interval)) { h in
            let agentId = try await Self.production(h, "undo", "v1")
            try await Self.ready(h, "undo", "v2")
            #expect(try await h.delete("/agents/\(agentId)/deployments/v2").status == 200)
            let expiresAt = try #require(try await h.deployment(agentId, "v2")?.expiresAt)
            let restored = try await h.post("/agents/\(agentId)/deployments/v2/restore")
            #expect(restored.status == 200)
            #expect(restored["expires_at"] == .null)
            // Past the old expiry by two intervals of the loop, and two more passes of our own.
            _ = try await eventually(within: .seconds(15), "two GC intervals past the old expiry") {
                Timestamp.now() >= expiresAt + interval * 2 ? true : nil
            }
            for _ in 0..<2 { _ = try await h.retention.reconciler.reconcile(agentId) }
            let v2 = try #require(try await h.deployment(agentId, "v2"), "the restored deployment survives")
            #expect(v2.expiresAt == nil)
            #expect(v2.status == .ready)
            let types = try await Self.storedEvents(h, agentId, "v2").map(\.type)
            #expect(types.suffix(2) == [.deleted, .restored])
            #expect(!types.contains(.garbageCollected) && !types.contains(.expired))
        }
    }

    @Test("a restore racing a collection ends restored or collected, never half", arguments: Backend.all)
    func restoreRacingCollection(_ backend: Backend) async throws {
        // A grace that has run out by the time anything looks; only the race decides.
        let retention = RetentionPolicy(
            retainPreviousProduction: 1_000, retainInactive: 1_000, deletionGrace: .microseconds(1))
        try await Harness.with(backend, .init(retention: retention, runController: false)) { h in
            let agent = try await h.post("/agents/register-build", ["name": "racer", "description": ""])
            let agentId = try #require(agent["id"]?.stringValue)
            var restored = 0
            var collected = 0
            for round in 0..<20 {
                let id = "r\(round)"
                #expect(try await h.post("/agents/\(agentId)/deployments", ["docker_image": "img", "id": .string(id)]).status == 200)
                #expect(try await h.delete("/agents/\(agentId)/deployments/\(id)").status == 200)
                // Who starts first, and whether the restore comes over HTTP or straight into the control plane
                // (so both sides start within microseconds), varies from round to round.
                let restoreFirst = round % 2 == 0
                let overHTTP = round % 4 < 2
                let restore: @Sendable () async throws -> Bool? = {
                    if overHTTP {
                        let reply = try await h.post("/agents/\(agentId)/deployments/\(id)/restore")
                        #expect([200, 404].contains(reply.status), "\(id): \(reply.status) \(reply.text)")
                        return reply.status == 200
                    }
                    do {
                        _ = try await h.controlPlane.restoreDeployment(
                            agentId: agentId, deploymentId: id, RequestContext(actor: .admin))
                        return true
                    } catch let error as CutoverError where error.status == 404 {
                        return false
                    }
                }
                let pass: @Sendable () async throws -> Bool? = {
                    _ = try await h.retention.reconciler.reconcile(agentId)
                    return nil
                }
                let wonRestore = try await withThrowingTaskGroup(of: Bool?.self) { group in
                    for side in restoreFirst ? [restore, pass] : [pass, restore] { group.addTask(operation: side) }
                    var won: Bool?
                    for try await result in group where result != nil { won = result }
                    guard let won else { throw TestFailure("\(id): the restore gave no answer") }
                    return won
                }
                let row = try await h.deployment(agentId, id)
                let types = try await Self.storedEvents(h, agentId, id).map(\.type)
                if wonRestore {
                    restored += 1
                    #expect(row != nil && row?.expiresAt == nil, "\(id) restored: \(String(describing: row))")
                    #expect(types.last == .restored && !types.contains(.garbageCollected), "\(id): \(types)")
                } else {
                    collected += 1
                    #expect(row == nil, "\(id) collected")
                    #expect(types.last == .garbageCollected && !types.contains(.restored), "\(id): \(types)")
                }
                #expect(try await h.checkInvariants() == [])
            }
            // Later passes leave the restored ones alone.
            _ = try await h.retention.reconciler.reconcile(agentId)
            let left = try await h.get("/agents/\(agentId)/deployments?include_deleted=true&limit=100")
            #expect(left.array.count == restored)
            #expect(left.array.allSatisfy { $0["expires_at"] == .null })
            #expect(restored + collected == 20)
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test(arguments: Backend.all)
    func auditTrailOfACollectedDeploymentStaysReadable(_ backend: Backend) async throws {
        let retention = RetentionPolicy(deletionGrace: .microseconds(1))
        try await Harness.with(backend, .init(policy: Self.noProbe, retention: retention, gcInterval: .seconds(3_600))) { h in
            let agentId = try await Self.production(h, "history", "v1")
            try await Self.ready(h, "history", "v2")
            #expect(try await h.delete("/agents/\(agentId)/deployments/v2").status == 200)
            try await Self.passUntil(h, agentId, "v2 collected") { try await h.deployment(agentId, "v2") == nil }
            #expect(try await h.get("/agents/\(agentId)/deployments/v2").status == 404)
            let v2 = try await Self.trail(h, agentId).filter { $0.deployment == "v2" }
            #expect(v2.map(\.type) == ["Created", "Registered", "Ready", "Deleted", "GarbageCollected"])
            #expect(v2.map(\.actor) == ["registration", "registration", "controller", "admin", "controller"])
            // Newest first by default: the collection leads.
            let newest = try await h.get("/agents/\(agentId)/events?limit=1")
            #expect(newest.array.first?["type"] == "GarbageCollected")
            #expect(newest.array.first?["deployment_id"] == "v2")
        }
    }

    @Test(arguments: Backend.all)
    func aCollectedIdCanComeBackOnlyToItsAgent(_ backend: Backend) async throws {
        let retention = RetentionPolicy(deletionGrace: .microseconds(1))
        try await Harness.with(backend, .init(retention: retention, runController: false)) { h in
            let owner = try #require(try await h.post("/agents/register-build", ["name": "owner", "description": ""])["id"]?.stringValue)
            let stranger = try #require(try await h.post("/agents/register-build", ["name": "stranger", "description": ""])["id"]?.stringValue)
            for id in ["x1", "x2"] {
                #expect(try await h.post("/agents/\(owner)/deployments", ["docker_image": "img:1", "id": .string(id)]).status == 200)
                #expect(try await h.delete("/agents/\(owner)/deployments/\(id)").status == 200)
            }
            try await Self.passUntil(h, owner, "x1 and x2 collected") {
                let (x1, x2) = (try await h.deployment(owner, "x1"), try await h.deployment(owner, "x2"))
                return x1 == nil && x2 == nil
            }

            func strangerIsRefused() async throws {
                let before = try await h.snapshot()
                let create = try await h.post("/agents/\(stranger)/deployments", ["docker_image": "img:2", "id": "x1"])
                #expect(create.status == 409, "\(create.text)")
                let register = try await h.register("stranger", url: Self.pod, deploymentId: "x2")
                #expect(register.status == 409, "\(register.text)")
                #expect(register.message.contains("another agent"), "\(register.message)")
                #expect(try await h.snapshot() == before, "nothing written")
            }
            try await strangerIsRefused()

            let created = try await h.post("/agents/\(owner)/deployments", ["docker_image": "img:3", "id": "x1"])
            #expect(created.status == 200, "\(created.text)")
            #expect(created["status"] == "Pending")
            #expect(created["expires_at"] == .null)
            #expect(created["docker_image"] == "img:3")
            let registered = try await h.register("owner", url: Self.pod, deploymentId: "x2", image: "img:4")
            #expect(registered.status == 200, "\(registered.text)")
            let x2 = try #require(try await h.deployment(owner, "x2"))
            #expect(x2.status == .pending)
            #expect(x2.acpURL == Self.pod)
            #expect(x2.dockerImage == "img:4")
            #expect(x2.expiresAt == nil)
            let types = try await Self.storedEvents(h, owner, "x2").map(\.type)
            #expect(types == [.created, .deleted, .garbageCollected, .created, .registered])

            try await strangerIsRefused()
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test("another agent creating an id while it is being collected gets 409, not the id", arguments: Backend.all)
    func anIdBeingCollectedCannotBeTakenByAnotherAgent(_ backend: Backend) async throws {
        let retention = RetentionPolicy(deletionGrace: .microseconds(1))
        try await Harness.with(backend, .init(retention: retention, runController: false)) { h in
            let owner = try #require(try await h.post("/agents/register-build", ["name": "owner", "description": ""])["id"]?.stringValue)
            let stranger = try #require(try await h.post("/agents/register-build", ["name": "stranger", "description": ""])["id"]?.stringValue)
            #expect(try await h.post("/agents/\(owner)/deployments", ["docker_image": "img:1", "id": "x"]).status == 200)
            #expect(try await h.delete("/agents/\(owner)/deployments/x").status == 200)

            // A retention pass whose collection transaction (its second) has run its statements but waits to
            // commit until told to.
            let gated = GatedStore(h.store, holding: 2)
            var logger = Logger(label: "gated-retention")
            logger.logLevel = .warning
            let reconciler = RetentionReconciler(store: gated, policy: retention, clock: SystemClock(), logger: logger)
            async let pass = reconciler.reconcile(owner)
            await gated.held()
            async let take = h.post("/agents/\(stranger)/deployments", ["docker_image": "img:2", "id": "x"])
            // Time for the request to reach the database and wait there on the row being deleted.
            try await Task.sleep(for: .milliseconds(300))
            gated.release()
            let reply = try await take
            _ = try await pass
            #expect(reply.status == 409, "\(reply.status) \(reply.text)")
            #expect(try await h.deployment(owner, "x") == nil, "collected")
            #expect(try await h.deployment(stranger, "x") == nil, "not taken over")
            #expect(try await h.snapshot().deployments.filter { $0.id == "x" }.isEmpty)
        }
    }

    @Test(arguments: Backend.all)
    func aDeletedAgentsDeploymentsAreExpiredAndCollected(_ backend: Backend) async throws {
        let retention = RetentionPolicy(deletionGrace: .seconds(1))
        try await Harness.with(backend, .init(policy: Self.noProbe, retention: retention, gcInterval: .seconds(1))) { h in
            let agentId = try await Self.production(h, "sunset", "v1")
            try await Self.ready(h, "sunset", "v2")
            #expect(try await h.post("/agents/\(agentId)/deployments", ["docker_image": "img", "id": "v3"]).status == 200)
            try await Self.ready(h, "sunset", "v4")
            #expect(try await h.delete("/agents/\(agentId)/deployments/v4").status == 200)
            #expect(try await h.delete("/agents/\(agentId)").status == 200)

            _ = try await eventually(within: .seconds(20), "v2, v3 and v4 collected") {
                let left = try await h.snapshot().deployments.filter { $0.agentId == agentId }.map(\.id)
                return left == ["v1"] ? true : nil
            }
            let v1 = try #require(try await h.deployment(agentId, "v1"))
            #expect(v1.isProduction, "the production record stays")
            #expect(v1.expiresAt == nil)
            let trail = try await Self.trail(h, agentId)
            let expired = trail.filter { $0.type == "Expired" }
            #expect(expired.map(\.deployment) == ["v2", "v3"], "v4 was deleted already")
            #expect(expired.allSatisfy { $0.reason == "AgentDeleted" && $0.actor == "controller" })
            #expect(trail.filter { $0.type == "GarbageCollected" }.compactMap(\.deployment).sorted() == ["v2", "v3", "v4"])
            #expect(!trail.contains { $0.deployment == "v1" && ["Expired", "GarbageCollected"].contains($0.type) })
            #expect(try await h.checkInvariants() == [])
        }
    }
}

/// A store that holds its `holding`-th transaction open after its statements have run, before it commits,
/// until `release()`: a window in which another writer can be made to meet it.
final class GatedStore: Store {
    let base: any Store
    let holding: Int
    private let count = Atomic<Int>(0)
    private let heldSignal = AsyncStream<Void>.makeStream()
    private let releaseSignal = AsyncStream<Void>.makeStream()

    init(_ base: any Store, holding: Int) {
        self.base = base
        self.holding = holding
    }

    /// Returns once the held transaction is waiting to commit.
    func held() async {
        for await _ in heldSignal.stream { return }
    }

    func release() {
        releaseSignal.continuation.yield()
        releaseSignal.continuation.finish()
    }

    func transaction<T: Sendable>(
        dryRun: Bool, _ body: @escaping @Sendable (StoreTransaction) async throws -> T
    ) async throws -> T {
        guard count.add(1, ordering: .relaxed).newValue == holding else {
            return try await base.transaction(dryRun: dryRun, body)
        }
        let (held, release) = (heldSignal.continuation, releaseSignal.stream)
        return try await base.transaction(dryRun: dryRun) { tx in
            let value = try await body(tx)
            held.yield()
            for await _ in release { break }
            return value
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        try await base.read(body)
    }

    func autocommit<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        try await base.autocommit(body)
    }

    var changes: ChangeFeed { base.changes }
    var runsOneStatementUnits: Bool { base.runsOneStatementUnits }
    func migrate() async throws -> [Int] { try await base.migrate() }
    func isReady() async -> Bool { await base.isReady() }
    func close() async throws { try await base.close() }
    func isUnavailable(_ error: any Error) -> Bool { base.isUnavailable(error) }
}
