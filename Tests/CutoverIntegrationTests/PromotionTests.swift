import CutoverCore
import Testing

@Suite("Promotion, rollback, soft delete and restore")
struct PromotionTests {
    /// An agent with two Ready deployments, `v1` auto-promoted.
    static func twoReady(_ h: Harness, _ pod: AgentStandIn, name: String = "app") async throws -> String {
        let (agentId, _) = try await h.readyDeployment(name, "v1", pod: pod)
        try await h.readyDeployment(name, "v2", pod: pod)
        _ = try await eventually("v1 auto-promoted") { try await h.agent(named: name)?.productionDeploymentId }
        return agentId
    }

    @Test(arguments: Backend.all)
    func promoteDemotesTheCurrentProductionWithEvents(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let agentId = try await Self.twoReady(h, pod)
            try await h.post("/agents/\(agentId)/deployments", ["docker_image": "img", "id": "pending"])
            _ = try await eventually("the controller's pending hint") {
                try await h.deployment(agentId, "pending")?.statusReason
            }
            let pendingBefore = try await h.snapshot()
            let pending = try await h.post("/agents/\(agentId)/deployments/pending/promote")
            #expect(pending.status == 409)
            #expect(pending.message.contains("is Pending; only a Ready deployment can be promoted"))
            #expect(try await h.snapshot() == pendingBefore)
            let reply = try await h.post("/agents/\(agentId)/deployments/v2/promote", ["reason": "release 2"])
            #expect(reply.status == 200)
            #expect(reply["id"] == "v2")
            #expect(reply["is_production"] == true)
            #expect(reply["promoted_at"]?.stringValue != nil)
            #expect(try await h.deployment(agentId, "v1")?.isProduction == false)
            #expect(try await h.agent(named: "app")?.productionDeploymentId == "v2")
            let events = try await h.get("/agents/\(agentId)/events?limit=2")
            let pairs = events.array.map { ($0["type"]?.stringValue ?? "", $0["deployment_id"]?.stringValue ?? "") }
            #expect(pairs.contains { $0 == ("Promoted", "v2") })
            #expect(pairs.contains { $0 == ("Demoted", "v1") })
            #expect(events.array.allSatisfy { $0["reason"] == "release 2" && $0["actor"] == "admin" })
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test(arguments: Backend.all)
    func promotingProductionAgainIsANoop(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let agentId = try await Self.twoReady(h, pod)
            let before = try await h.snapshot()
            let reply = try await h.post("/agents/\(agentId)/deployments/v1/promote")
            #expect(reply.status == 200)
            #expect(reply["is_production"] == true)
            #expect(try await h.snapshot() == before)
        }
    }

    @Test(arguments: Backend.all)
    func promotionConflictsChangeNothing(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(progressDeadline: .milliseconds(300)))) { h in
            let agentId = try await Self.twoReady(h, pod)
            try await h.post("/agents/\(agentId)/deployments", ["docker_image": "img", "id": "doomed"])
            _ = try await h.waitFor(agentId, "doomed", .failed, within: .seconds(5))
            try await h.delete("/agents/\(agentId)/deployments/v2")
            let other = try await h.register("other", url: pod.url, deploymentId: "foreign")
            #expect(other.status == 200)
            _ = try await h.waitFor(try #require(other["id"]?.stringValue), "foreign", .ready)
            _ = try await eventually("foreign auto-promoted") { try await h.agent(named: "other")?.productionDeploymentId }
            let before = try await h.snapshot()
            for (target, status, fragment) in [
                ("doomed", 409, "Failed"), ("v2", 409, "deleted"), ("foreign", 404, "not found"),
                ("nope", 404, "not found"),
            ] {
                let reply = try await h.post("/agents/\(agentId)/deployments/\(target)/promote")
                #expect(reply.status == status, "promote \(target)")
                #expect(reply.message.contains(fragment), "promote \(target): \(reply.message)")
                #expect(reply["code"] == .number(Double(status)))
            }
            #expect(try await h.snapshot() == before)
        }
    }

    @Test(arguments: Backend.all)
    func rollbackReturnsToThePreviousProduction(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let agentId = try await Self.twoReady(h, pod)
            try await h.readyDeployment("app", "v3", pod: pod)
            #expect(try await h.post("/agents/\(agentId)/deployments/v2/promote").status == 200)
            #expect(try await h.post("/agents/\(agentId)/deployments/v3/promote").status == 200)
            let back = try await h.post("/agents/\(agentId)/rollback", ["reason": "v3 is broken"])
            #expect(back.status == 200)
            #expect(back["id"] == "v2", "the most recently demoted previous production")
            let events = try await h.get("/agents/\(agentId)/events?limit=2")
            let rolled = try #require(events.array.first { $0["type"] == "RolledBack" })
            #expect(rolled["reason"] == "v3 is broken")
            #expect(rolled["message"]?.stringValue?.contains("v3") == true, "names the deployment it replaced")
            let explicit = try await h.post("/agents/\(agentId)/rollback", ["to_deployment_id": "v1"])
            #expect(explicit["id"] == "v1")
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test(arguments: Backend.all)
    func rollbackRefusesTargetsThatWereNeverProduction(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let agentId = try await Self.twoReady(h, pod)
            let before = try await h.snapshot()
            let never = try await h.post("/agents/\(agentId)/rollback", ["to_deployment_id": "v2"])
            #expect(never.status == 409)
            #expect(never.message.contains("use promote"))
            let none = try await h.post("/agents/\(agentId)/rollback")
            #expect(none.status == 409)
            #expect(none.message.contains("no previous production"))
            let unknown = try await h.post("/agents/\(agentId)/rollback", ["to_deployment_id": "ghost"])
            #expect(unknown.status == 404)
            #expect(try await h.snapshot() == before)
        }
    }

    @Test(arguments: Backend.all)
    func rollbackSkipsDeletedPreviousProduction(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let agentId = try await Self.twoReady(h, pod)
            try await h.post("/agents/\(agentId)/deployments/v2/promote")
            #expect(try await h.delete("/agents/\(agentId)/deployments/v1").status == 200)
            let reply = try await h.post("/agents/\(agentId)/rollback")
            #expect(reply.status == 409)
            let explicit = try await h.post("/agents/\(agentId)/rollback", ["to_deployment_id": "v1"])
            #expect(explicit.status == 409)
            #expect(explicit.message.contains("deleted"))
        }
    }

    @Test(arguments: Backend.all)
    func softDeleteHidesAndRestoreBringsBack(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let agentId = try await Self.twoReady(h, pod)
            let production = try await h.delete("/agents/\(agentId)/deployments/v1")
            #expect(production.status == 409)
            #expect(production.message.contains("production"))
            let deleted = try await h.delete("/agents/\(agentId)/deployments/v2")
            #expect(deleted.status == 200)
            #expect(deleted["id"] == "v2")
            #expect(deleted.message.isEmpty == false)
            let list = try await h.get("/agents/\(agentId)/deployments")
            #expect(list.array.compactMap { $0["id"]?.stringValue } == ["v1"])
            let all = try await h.get("/agents/\(agentId)/deployments?include_deleted=true")
            #expect(all.array.count == 2)
            let one = try await h.get("/agents/\(agentId)/deployments/v2")
            #expect(one.status == 200)
            #expect(one["expires_at"]?.stringValue != nil)
            let restored = try await h.post("/agents/\(agentId)/deployments/v2/restore")
            #expect(restored.status == 200)
            #expect(restored["expires_at"] == .null)
            #expect(try await h.post("/agents/\(agentId)/deployments/v2/promote").status == 200)
            let types = try await h.get("/agents/\(agentId)/deployments/v2/events").array.compactMap { $0["type"]?.stringValue }
            #expect(Array(types.prefix(3)) == ["Promoted", "Restored", "Deleted"])
        }
    }

    @Test(arguments: Backend.all)
    func dryRunAnswersLikeTheRealRequestAndWritesNothing(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let agentId = try await Self.twoReady(h, pod)
            let before = try await h.snapshot()
            let dry = try await h.post("/agents/\(agentId)/deployments/v2/promote?dry_run=true")
            #expect(dry.status == 200)
            #expect(dry.headers.first(name: "x-cutover-dry-run") == "true")
            #expect(dry["is_production"] == true)
            let dryDelete = try await h.delete("/agents/\(agentId)/deployments/v1?dry_run=true")
            #expect(dryDelete.status == 409, "the same 4xx as the real request")
            #expect(try await h.post("/agents/\(agentId)/deployments?dry_run=true", ["docker_image": "x", "id": "dry"]).status == 200)
            #expect(try await h.register("newcomer", url: pod.url, deploymentId: "dry-reg").status == 200)
            let dryReg = try await h.post("/agents/register?dry_run=true", [
                "name": "ghost", "description": "", "acp_url": .string(pod.url), "acp_type": "async",
            ])
            #expect(dryReg.status == 200)
            #expect(dryReg["name"] == "ghost")
            #expect(try await h.delete("/agents/\(agentId)?dry_run=true").status == 200)
            let after = try await h.snapshot()
            #expect(after.agents.filter { $0.name != "newcomer" } == before.agents)
            #expect(after.deployments.filter { $0.agentId == agentId } == before.deployments.filter { $0.agentId == agentId })
            let real = try await h.post("/agents/\(agentId)/deployments/v2/promote")
            var expected = dry.json.objectValue ?? [:]
            var actual = real.json.objectValue ?? [:]
            expected["promoted_at"] = nil
            actual["promoted_at"] = nil
            #expect(expected == actual)
        }
    }

    @Test(arguments: Backend.all)
    func deletedAgentIsSoftDeleted(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let reply = try await h.register("doomed", url: "http://127.0.0.1:9")
            let agentId = try #require(reply["id"]?.stringValue)
            let deleted = try await h.delete("/agents/name/doomed")
            #expect(deleted.status == 200)
            #expect(deleted["id"] == .string(agentId))
            #expect(try await h.get("/agents/\(agentId)")["status"] == "Deleted")
            let create = try await h.post("/agents/\(agentId)/deployments", ["docker_image": "x"])
            #expect(create.status == 409)
        }
    }

    @Test(arguments: Backend.all)
    func createWithAnIdIsIdempotentPerAgentAndExclusiveAcrossAgents(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let a = try #require(try await h.register("a", url: "http://127.0.0.1:9")["id"]?.stringValue)
            let b = try #require(try await h.register("b", url: "http://127.0.0.1:9")["id"]?.stringValue)
            let first = try await h.post("/agents/\(a)/deployments", ["docker_image": "img:1", "id": "build-42"])
            #expect(first.status == 200)
            let again = try await h.post("/agents/\(a)/deployments", ["docker_image": "img:2", "id": "build-42"])
            #expect(again.status == 200)
            #expect(again["docker_image"] == "img:1", "re-creating returns the deployment unchanged")
            let before = try await h.snapshot()
            let stolen = try await h.post("/agents/\(b)/deployments", ["docker_image": "img:1", "id": "build-42"])
            #expect(stolen.status == 409)
            #expect(stolen.message.contains("another agent"))
            #expect(try await h.snapshot() == before)
            let other = try await h.get("/agents/\(b)/deployments/build-42")
            #expect(other.status == 404)
        }
    }
}
