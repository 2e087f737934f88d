import CutoverCore
import CutoverStore
import Foundation
import Testing

/// Several replicas on one PostgreSQL database, in one process: what one commits, the others hear.
@Suite("Replicas on PostgreSQL")
struct ReplicaTests {
    @Test(arguments: Backend.postgresOnly)
    func aPromotionThroughOneReplicaReroutesTheOthers(_ backend: Backend) async throws {
        let blue = try await AgentStandIn.start()
        let green = try await AgentStandIn.start()
        defer { Task { await blue.stop(); await green.stop() } }
        try await Backend.withFreshPostgresDatabase { database in
            try await Harness.with(backend, .init(store: try await Backend.openPostgres(database))) { a in
                try await Harness.with(backend, .init(runController: false, store: try await Backend.openPostgres(database))) { b in
                    let (agentId, _) = try await a.readyDeployment("replicated", "blue", pod: blue)
                    try await a.readyDeployment("replicated", "green", pod: green)
                    _ = try await eventually("blue auto-promoted") { try await a.agent(named: "replicated")?.productionDeploymentId }
                    let rpc: JSONValue = ["method": "task/create", "params": [:]]
                    let before = try await b.request(.POST, "/agents/\(agentId)/rpc", json: rpc)
                    #expect(before.headers.first(name: "x-cutover-deployment-id") == "blue", "b cached the route to blue")

                    #expect(try await a.post("/agents/\(agentId)/deployments/green/promote").status == 200)
                    let start = ContinuousClock.now
                    _ = try await eventually(within: .seconds(2), "b routes to green") { () -> Bool? in
                        let reply = try await b.request(.POST, "/agents/\(agentId)/rpc", json: rpc)
                        return reply.headers.first(name: "x-cutover-deployment-id") == "green" ? true : nil
                    }
                    #expect(ContinuousClock.now - start < .seconds(1), "within a second of the commit")
                    #expect(try await b.get("/readyz").status == 200)
                }
            }
        }
    }

    @Test(arguments: Backend.postgresOnly)
    func aRegistrationThroughOneReplicaIsReconciledByTheOther(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Backend.withFreshPostgresDatabase { database in
            // a serves the API only; b runs the controllers (as the leader would).
            try await Harness.with(backend, .init(runController: false, store: try await Backend.openPostgres(database))) { a in
                try await Harness.with(backend, .init(store: try await Backend.openPostgres(database))) { b in
                    let reply = try await a.register("elsewhere", url: pod.url, deploymentId: "e1")
                    let agentId = try #require(reply["id"]?.stringValue)
                    let ready = try await a.waitFor(agentId, "e1", .ready, within: .seconds(5))
                    #expect(ready.readyAt != nil)
                    // The agent exists now: this registration is the one-statement kind, which notifies itself.
                    try await a.register("elsewhere", url: pod.url, deploymentId: "e2")
                    #expect(try await a.waitFor(agentId, "e2", .ready, within: .seconds(5)).readyAt != nil)
                }
            }
        }
    }

    @Test(arguments: Backend.postgresOnly)
    func exactlyOneReplicaLeadsAndAStandbyTakesOver(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Backend.withFreshPostgresDatabase { database in
            let first = try await Harness.start(backend, .init(store: try await Backend.openPostgres(database)))
            let second = try await Harness.start(backend, .init(store: try await Backend.openPostgres(database)))
            func leaders() -> Int { [first, second].filter { $0.elector?.isLeader == true }.count }
            _ = try await eventually(within: .seconds(5), "a leader") { leaders() == 1 ? true : nil }
            for _ in 0..<20 {
                #expect(leaders() == 1, "exactly one leader at all times")
                try await Task.sleep(for: .milliseconds(50))
            }
            let (leader, standby) = first.elector?.isLeader == true ? (first, second) : (second, first)

            await leader.stop()  // graceful: the lock is released before anything else
            let start = ContinuousClock.now
            _ = try await eventually(within: .seconds(5), "the standby takes over") {
                standby.elector?.isLeader == true ? true : nil
            }
            #expect(ContinuousClock.now - start < .seconds(3))
            let reply = try await standby.register("failover", url: pod.url, deploymentId: "f1")
            let agentId = try #require(reply["id"]?.stringValue)
            _ = try await standby.waitFor(agentId, "f1", .ready, within: .seconds(5))
            await standby.stop()
        }
    }
}
