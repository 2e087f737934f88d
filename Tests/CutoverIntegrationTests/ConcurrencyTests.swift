import CutoverCore
import Logging
import PostgresNIO
import Testing

@testable import CutoverStore

/// The record invariants asserted after storms of concurrent requests.
@Suite("Concurrency storms")
struct ConcurrencyTests {
    @Test(arguments: Backend.all)
    func concurrentPromotesAndRollbacksOnlyAnswer200Or409(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("storm", "blue", pod: pod)
            try await h.readyDeployment("storm", "green", pod: pod)
            _ = try await eventually("blue auto-promoted") { try await h.agent(named: "storm")?.productionDeploymentId }
            let eventsBefore = try await h.snapshot().eventCount
            let statuses = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                for i in 0..<50 {
                    group.addTask {
                        let reply: Harness.Reply
                        switch i % 3 {
                        case 0: reply = try await h.post("/agents/\(agentId)/deployments/green/promote")
                        case 1: reply = try await h.post("/agents/\(agentId)/deployments/blue/promote")
                        default: reply = try await h.post("/agents/\(agentId)/rollback")
                        }
                        return (reply.status, reply["is_production"] == true)
                    }
                }
                var all: [(Int, Bool)] = []
                for try await s in group { all.append(s) }
                return all
            }
            #expect(statuses.allSatisfy { $0.0 == 200 || $0.0 == 409 }, "\(statuses.map(\.0))")
            #expect(statuses.filter { $0.0 == 200 }.allSatisfy { $0.1 })
            #expect(try await h.checkInvariants() == [])
            let after = try await h.snapshot()
            let production = after.deployments.filter(\.isProduction)
            #expect(production.count == 1)
            // Every change of production wrote its events: one per promotion/rollback, one per demotion.
            let events = try await h.get("/agents/\(agentId)/events?limit=1000").array
            let changes = events.filter { ["Promoted", "RolledBack"].contains($0["type"]?.stringValue ?? "") }.count
            let demotions = events.filter { $0["type"] == "Demoted" }.count
            #expect(changes == demotions, "every change of production demoted the previous one")
            #expect(after.eventCount - eventsBefore == changes + demotions)
        }
    }

    @Test(arguments: Backend.all)
    func concurrentFirstRegistrationsCreateOneAgent(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let replies = try await withThrowingTaskGroup(of: Harness.Reply.self) { group in
                for _ in 0..<20 {
                    group.addTask { try await h.register("racer", url: "http://127.0.0.1:9") }
                }
                var all: [Harness.Reply] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(replies.allSatisfy { $0.status == 200 }, "\(replies.map(\.status)) \(replies.first { $0.status != 200 }?.text ?? "")")
            #expect(Set(replies.compactMap { $0["id"]?.stringValue }).count == 1)
            #expect(Set(replies.compactMap { $0["agent_api_key"]?.stringValue }).count == 1)
            #expect(try await h.snapshot().agents.count == 1)
        }
    }

    @Test(arguments: Backend.all)
    func concurrentFirstDeploymentsAutoPromoteExactlyOne(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let replies = try await withThrowingTaskGroup(of: Harness.Reply.self) { group in
                for i in 0..<10 {
                    group.addTask { try await h.register("fresh", url: pod.url, deploymentId: "d\(i)") }
                }
                var all: [Harness.Reply] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(replies.allSatisfy { $0.status == 200 })
            let agentId = try #require(replies.first?["id"]?.stringValue)
            for i in 0..<10 { _ = try await h.waitFor(agentId, "d\(i)", .ready) }
            let snapshot = try await h.snapshot()
            #expect(snapshot.agents.count == 1)
            #expect(snapshot.deployments.filter(\.isProduction).count == 1)
            let events = try await h.get("/agents/\(agentId)/events?limit=1000").array
            #expect(events.filter { $0["type"] == "AutoPromoted" }.count == 1)
            #expect(events.filter { $0["type"] == "Ready" }.count == 10)
            #expect(try await h.checkInvariants() == [])
        }
    }

    /// A storm of one agent's registrations, new deployments with and without an image and repeats of an
    /// existing one (on PostgreSQL they go in batches): each is written with its own events, and each new
    /// deployment without an image has the image of the deployment created just before it.
    @Test(arguments: Backend.all)
    func concurrentRegistrationsOfOneAgentEachTakeTheNewestImage(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let first = try await h.register("storm", url: "http://127.0.0.1:9", deploymentId: "d0", image: "img:0")
            let agentId = try #require(first["id"]?.stringValue)
            let registrations: [(id: String, image: String?)] =
                (1...30).map { ("d\($0)", nil) } + (1...6).map { ("e\($0)", "img:e\($0)") } + (1...6).map { _ in ("d0", nil) }
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for r in registrations.shuffled() {
                    group.addTask {
                        try await h.register("storm", url: "http://127.0.0.1:9", deploymentId: r.id, image: r.image).status
                    }
                }
                var all: [Int] = []
                for try await s in group { all.append(s) }
                return all
            }
            #expect(statuses.allSatisfy { $0 == 200 }, "\(statuses)")
            let images = Dictionary(uniqueKeysWithValues: try await h.snapshot().deployments.map { ($0.id, $0.dockerImage) })
            #expect(images.count == 37)
            let events = try await h.get("/agents/\(agentId)/events?limit=1000&order_direction=asc").array
            let created = events.filter { $0["type"] == "Created" }.compactMap { $0["deployment_id"]?.stringValue }
            #expect(created.count == 37 && Set(created).count == 37, "\(created)")
            for (previous, id) in zip(created, created.dropFirst()) where id.hasPrefix("d") {
                #expect(images[id] == images[previous], "\(id) took \(images[id] ?? "-"), \(previous) before it has \(images[previous] ?? "-")")
            }
            for id in created {
                let own = events.compactMap { $0["deployment_id"]?.stringValue == id ? $0["type"]?.stringValue : nil }
                #expect(own == ["Created", "Registered"] + Array(repeating: "Registered", count: id == "d0" ? 6 : 0), "\(id): \(own)")
            }
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test(arguments: Backend.all)
    func concurrentRegistrationsOfOneNewDeploymentCreateItOnce(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let replies = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<10 {
                    group.addTask { try await h.register("dup", url: "http://127.0.0.1:9", deploymentId: "same").status }
                }
                var all: [Int] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(replies.allSatisfy { $0 == 200 })
            let agentId = try #require(try await h.agent(named: "dup")?.id)
            let events = try await h.get("/agents/\(agentId)/deployments/same/events?limit=100").array
            #expect(events.filter { $0["type"] == "Created" }.count == 1)
            #expect(events.filter { $0["type"] == "Registered" }.count == 10)
        }
    }
}

/// Promotes of one agent take turns in the order they asked (PostgreSQL, where a row lock alone is not a
/// queue: a newcomer can take a row its first waiter has not yet woken up to take).
@Suite("Turns on PostgreSQL")
struct AgentTurnTests {
    @Test(arguments: Backend.postgresOnly)
    func promotesOfOneAgentTakeTurnsInTheOrderTheyAsked(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("turns", "blue", pod: pod)
            try await h.readyDeployment("turns", "green", pod: pod)
            _ = try await eventually("blue auto-promoted") { try await h.agent(named: "turns")?.productionDeploymentId }
            let configuration = try #require(h.store.postgresConfiguration)
            let logger = Logger(label: "test")
            let session = try await PostgresConnection.connect(configuration: configuration, id: 99, logger: logger)
            defer { Task { try? await session.close() } }
            // Another session holds the agent's turn; each promote then waits in line before the next is sent.
            // pg_locks is the whole server's: the tests running beside this one wait in databases of their own.
            let turn = "SELECT pg_advisory_lock(\(StoreTransaction.agentTurnLockClass), hashtext('\(agentId)'))"
            _ = try await session.query(PostgresQuery(unsafeSQL: turn), logger: logger).collect()
            let order = ["green", "blue", "green", "blue", "green"]
            try await withThrowingTaskGroup(of: Int.self) { group in
                for (i, target) in order.enumerated() {
                    group.addTask { try await h.post("/agents/\(agentId)/deployments/\(target)/promote").status }
                    _ = try await eventually("promote \(i + 1) waiting for its turn") { () -> Bool? in
                        let waiting = try await session.query(PostgresQuery(unsafeSQL: """
                            SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = \
                            \(StoreTransaction.agentTurnLockClass) AND NOT granted AND database = \
                            (SELECT oid FROM pg_database WHERE datname = current_database())
                            """), logger: logger).collect().first?.decode(Int.self)
                        return waiting == i + 1 ? true : nil
                    }
                }
                let release = turn.replacingOccurrences(of: "pg_advisory_lock", with: "pg_advisory_unlock")
                _ = try await session.query(PostgresQuery(unsafeSQL: release), logger: logger).collect()
                for try await status in group { #expect(status == 200) }
            }
            let events = try await h.get("/agents/\(agentId)/events?order_direction=asc&limit=1000").array
            let promoted = events.filter { $0["type"] == "Promoted" }.suffix(order.count).compactMap { $0["deployment_id"]?.stringValue }
            #expect(promoted == order, "promoted in the order asked")
            #expect(try await h.checkInvariants() == [])
        }
    }
}
