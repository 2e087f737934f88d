import CutoverCore
import Testing

@Suite("Registration")
struct RegistrationTests {
    @Test(arguments: Backend.all)
    func deploymentScopedRegistrationBecomesReadyAndAutoPromotes(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let reply = try await h.register("alpha", url: pod.url, deploymentId: "v1", image: "img:1")
            #expect(reply.status == 200)
            #expect(reply["name"] == "alpha")
            #expect(reply["agent_api_key"]?.stringValue?.count == 64)
            #expect(reply["acp_url"] == nil, "the legacy URL is internal")
            let agentId = try #require(reply["id"]?.stringValue)
            let ready = try await h.waitFor(agentId, "v1", .ready)
            #expect(ready.dockerImage == "img:1")
            let agent = try #require(try await h.agent(named: "alpha"))
            #expect(agent.acpURL == nil, "a deployment-scoped registration never sets the legacy URL")
            let production = try await eventually("auto-promotion") {
                try await h.agent(named: "alpha")?.productionDeploymentId
            }
            #expect(production == "v1")
            let events = try await h.get("/agents/\(agentId)/deployments/v1/events?order_direction=asc")
            #expect(events.array.compactMap { $0["type"]?.stringValue } == ["Created", "Registered", "Ready", "AutoPromoted"])
        }
    }

    @Test(arguments: Backend.all)
    func apiKeyIsStableAcrossRegistrations(_ backend: Backend) async throws {
        try await Harness.with(backend) { h in
            let first = try await h.register("stable", url: "http://127.0.0.1:9", deploymentId: "a")
            let second = try await h.register("stable", url: "http://127.0.0.1:9", deploymentId: "b")
            let legacy = try await h.register("stable", url: "http://127.0.0.1:9")
            #expect(first["id"] == second["id"])
            #expect(first["agent_api_key"] == second["agent_api_key"])
            #expect(first["agent_api_key"] == legacy["agent_api_key"])
        }
    }

    @Test(arguments: Backend.all)
    func legacyRegistrationClearsProduction(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("legacy", "v1", pod: pod)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "legacy")?.productionDeploymentId }
            let reply = try await h.register("legacy", url: "http://127.0.0.1:7777", acpType: "sync")
            #expect(reply.status == 200)
            #expect(reply["production_deployment_id"] == .null)
            #expect(reply["status"] == "Ready")
            #expect(reply["acp_type"] == "sync")
            let agent = try #require(try await h.agent(named: "legacy"))
            #expect(agent.acpURL == "http://127.0.0.1:7777")
            #expect(agent.productionDeploymentId == nil)
            let v1 = try #require(try await h.deployment(agentId, "v1"))
            #expect(!v1.isProduction)
            let events = try await h.get("/agents/\(agentId)/events")
            #expect(events.array.contains { $0["type"] == "ProductionCleared" && $0["deployment_id"] == "v1" })
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test(arguments: Backend.all)
    func previewPodOfLegacyAgentDoesNotTakeProduction(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            try await h.register("old", url: "http://127.0.0.1:7777")
            let (agentId, _) = try await h.readyDeployment("old", "preview", pod: pod)
            let agent = try #require(try await h.agent(named: "old"))
            #expect(agent.productionDeploymentId == nil)
            #expect(agent.acpURL == "http://127.0.0.1:7777", "the preview pod must not move the legacy route")
            #expect(try await h.deployment(agentId, "preview")?.isProduction == false)
        }
    }

    @Test(arguments: Backend.all)
    func hijackingAnotherAgentsDeploymentIdIsRejectedAndWritesNothing(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            try await h.register("owner", url: "http://127.0.0.1:9", deploymentId: "shared-id")
            let before = try await h.snapshot()
            let reply = try await h.register("thief", url: "http://127.0.0.1:10", deploymentId: "shared-id")
            #expect(reply.status == 409)
            #expect(reply.message.contains("shared-id"))
            #expect(reply.message.contains("another agent"))
            #expect(try await h.snapshot() == before, "the thief agent must not even be created")
        }
    }

    @Test(arguments: Backend.all)
    func unknownAgentIdIsNotFound(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let before = try await h.snapshot()
            let reply = try await h.post("/agents/register", [
                "name": "x", "description": "", "acp_url": "http://127.0.0.1:9", "acp_type": "async",
                "agent_id": "00000000-0000-4000-8000-000000000000",
            ])
            #expect(reply.status == 404)
            #expect(reply.message.contains("00000000-0000-4000-8000-000000000000"))
            #expect(try await h.snapshot() == before)
        }
    }

    @Test(arguments: Backend.all)
    func aPodRegisteringAnExistingDeploymentRecordsItsURLAndTimeOnly(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let first = try await h.register("again", url: "http://127.0.0.1:9", deploymentId: "d1", image: "repo/agent:1")
            let agentId = try #require(first["id"]?.stringValue)
            // A probe error of the first registration, as the controller would have recorded it.
            try await h.store.transaction { tx in
                var d = try #require(try await tx.deployment(id: "d1"))
                d.lastProbeError = "connection refused"
                try await tx.updateDeployment(d)
            }
            let before = try #require(try await h.deployment(agentId, "d1"))

            let again = try await h.post("/agents/register", [
                "name": "again", "description": "test agent", "acp_url": "http://127.0.0.1:10", "acp_type": "async",
                "registration_metadata": ["deployment_id": "d1"],
            ])
            #expect(again.status == 200)
            #expect(again["id"]?.stringValue == agentId)
            let after = try #require(try await h.deployment(agentId, "d1"))
            #expect(after.acpURL == "http://127.0.0.1:10")
            #expect(try #require(after.registeredAt) > before.registeredAt!)
            #expect(after.lastProbeError == nil, "a new registration has not been probed")
            #expect(after.registrationMetadata == ["deployment_id": "d1"], "the new registration's metadata replaces the old")
            #expect(after.dockerImage == "repo/agent:1")
            #expect(after.createdAt == before.createdAt && after.status == before.status)

            try await h.register("again", url: "http://127.0.0.1:11", deploymentId: "d1", image: "repo/agent:2")
            let third = try #require(try await h.deployment(agentId, "d1"))
            #expect(third.registrationMetadata?["docker_image"] == "repo/agent:2")
            #expect(third.dockerImage == "repo/agent:1", "a deployment's image never changes")

            let events = try await h.get("/agents/\(agentId)/deployments/d1/events?order_direction=asc")
            #expect(events.array.compactMap { $0["type"]?.stringValue } == ["Created", "Registered", "Registered", "Registered"])
            #expect(try await h.snapshot().deployments.count == 1)
        }
    }

    @Test(arguments: Backend.all)
    func registrationUsesTheAgentsLastImageWhenNoneIsGiven(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let reply = try await h.register("imgs", url: "http://127.0.0.1:9", deploymentId: "d1", image: "repo/agent:7")
            let agentId = try #require(reply["id"]?.stringValue)
            try await h.register("imgs", url: "http://127.0.0.1:9", deploymentId: "d2")
            #expect(try await h.deployment(agentId, "d2")?.dockerImage == "repo/agent:7")
        }
    }

    @Test(arguments: Backend.all)
    func registerBuildIsIdempotentByName(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let first = try await h.post("/agents/register-build", ["name": "built", "description": "from CI"])
            #expect(first.status == 200)
            #expect(first["status"] == "BuildOnly")
            let again = try await h.post("/agents/register-build", ["name": "built", "description": "changed"])
            #expect(again["id"] == first["id"])
            #expect(again["description"] == "from CI")
            #expect(try await h.snapshot().agents.count == 1)
        }
    }
}
