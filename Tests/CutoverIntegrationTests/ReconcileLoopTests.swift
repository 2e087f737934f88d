import CutoverCore
import Testing

@Suite("Reconcile loop with real agent stand-ins")
struct ReconcileLoopTests {
    static let shortDeadline = ReconcilePolicy(progressDeadline: .milliseconds(1500))

    @Test(arguments: Backend.all)
    func unhealthyPodFailsWithProbeFailedAtTheDeadline(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start(.unhealthy)
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: Self.shortDeadline)) { h in
            let reply = try await h.register("sick", url: pod.url, deploymentId: "v1")
            let agentId = try #require(reply["id"]?.stringValue)
            let pending = try await eventually("a pending hint") {
                try await h.deployment(agentId, "v1").flatMap { $0.statusReason?.hasPrefix("ProbePending") == true ? $0 : nil }
            }
            #expect(pending.status == .pending)
            let failed = try await h.waitFor(agentId, "v1", .failed, within: .seconds(5))
            #expect(failed.statusReason?.hasPrefix("ProbeFailed: ") == true)
            #expect(failed.statusReason?.contains("503") == true, "the last probe error is kept")
            #expect(try await h.agent(named: "sick")?.productionDeploymentId == nil)
            let events = try await h.get("/agents/\(agentId)/deployments/v1/events")
            #expect(events.array.first?["type"] == "Failed")
            #expect(events.array.first?["reason"] == "ProbeFailed")
        }
    }

    @Test(arguments: Backend.all)
    func deploymentThatNeverRegistersFailsAtTheDeadline(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(policy: Self.shortDeadline)) { h in
            let agent = try await h.post("/agents/register-build", ["name": "silent", "description": ""])
            let agentId = try #require(agent["id"]?.stringValue)
            let created = try await h.post("/agents/\(agentId)/deployments", ["docker_image": "img:1", "id": "quiet"])
            #expect(created.status == 200)
            #expect(created["status"] == "Pending")
            let failed = try await h.waitFor(agentId, "quiet", .failed, within: .seconds(5))
            #expect(failed.statusReason?.hasPrefix("NeverRegistered: ") == true)
            // Scheduled at the due time, not discovered by a 30 s resync.
            let late = Timestamp.now() - (failed.createdAt + Self.shortDeadline.progressDeadline)
            #expect(late < .seconds(2))
        }
    }

    @Test(arguments: Backend.all)
    func podThatRecoversBeforeTheDeadlineBecomesReady(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start(.unhealthy)
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(progressDeadline: .seconds(20)))) { h in
            let reply = try await h.register("flaky", url: pod.url, deploymentId: "v1")
            let agentId = try #require(reply["id"]?.stringValue)
            _ = try await eventually("a failed probe") {
                try await h.deployment(agentId, "v1").flatMap { $0.statusReason != nil ? $0 : nil }
            }
            pod.setHealth(.healthy)
            let ready = try await h.waitFor(agentId, "v1", .ready)
            #expect(ready.statusReason == nil)
            #expect(ready.isProduction)
        }
    }

    @Test(arguments: Backend.all)
    func probeNoneMarksRegisteredDeploymentsReady(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            let reply = try await h.register("noprobe", url: "http://127.0.0.1:9", deploymentId: "v1")
            let agentId = try #require(reply["id"]?.stringValue)
            #expect(try await h.waitFor(agentId, "v1", .ready).isProduction)
        }
    }

    @Test(arguments: Backend.all)
    func autoPromoteNeverLeavesProductionEmpty(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(autoPromote: .never))) { h in
            let (agentId, ready) = try await h.readyDeployment("manual", "v1", pod: pod)
            #expect(!ready.isProduction)
            #expect(try await h.agent(named: "manual")?.productionDeploymentId == nil)
            let promoted = try await h.post("/agents/\(agentId)/deployments/v1/promote")
            #expect(promoted["is_production"] == true)
        }
    }

    @Test(arguments: Backend.all)
    func resyncPicksUpPendingWorkTheFeedMissed(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(runController: false)) { h in
            let reply = try await h.register("missed", url: pod.url, deploymentId: "v1")
            let agentId = try #require(reply["id"]?.stringValue)
            // No controller was watching the write; a resync alone finds it.
            await h.controller.resync()
            let id = try #require(await h.controller.queue.next())
            #expect(id == "v1")
            #expect(try await h.controller.reconciler.reconcile(id) == .done)
            #expect(try await h.deployment(agentId, "v1")?.status == .ready)
        }
    }
}
