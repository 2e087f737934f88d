import CutoverAPI
import CutoverCore
import Testing

@Suite("Security")
struct SecurityTests {
    static let tokens = AuthSettings(adminTokens: ["admin-secret"], registrationTokens: ["reg-secret"])

    @Test(arguments: Backend.all)
    func controlRoutesNeedCredentials(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(auth: Self.tokens, runController: false)) { h in
            let anonymous = try await h.request(.GET, "/agents", headers: [])
            #expect(anonymous.status == 401)
            #expect(anonymous.message.contains("Authorization: Bearer"))
            let wrong = try await h.request(.GET, "/agents", headers: [("authorization", "Bearer nope")])
            #expect(wrong.status == 401)
            let registrationTokenIsNotAdmin = try await h.request(.GET, "/agents", headers: [("authorization", "Bearer reg-secret")])
            #expect(registrationTokenIsNotAdmin.status == 401)
            #expect(try await h.get("/agents").status == 200, "the admin token")
            for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
                #expect(try await h.request(.GET, open, headers: []).status == 200, "\(open) needs no credentials")
            }
        }
    }

    @Test(arguments: Backend.all)
    func registrationNeedsARegistrationOrAdminToken(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(auth: Self.tokens, runController: false)) { h in
            let body: JSONValue = ["name": "pod", "description": "", "acp_url": "http://127.0.0.1:9", "acp_type": "async"]
            let before = try await h.snapshot()
            let anonymous = try await h.request(.POST, "/agents/register", json: body, headers: [])
            #expect(anonymous.status == 401)
            #expect(anonymous.message.contains("registration token"))
            #expect(try await h.snapshot() == before)
            let withToken = try await h.request(.POST, "/agents/register", json: body, headers: [("authorization", "Bearer reg-secret")])
            #expect(withToken.status == 200)
            let withAdmin = try await h.request(.POST, "/agents/register", json: body, headers: [("authorization", "Bearer admin-secret")])
            #expect(withAdmin.status == 200)
            // A stock agentex-sdk pod sends its AGENT_API_KEY as x-agent-api-key and no Authorization.
            let asAgentKey = try await h.request(.POST, "/agents/register", json: body, headers: [("x-agent-api-key", "reg-secret")])
            #expect(asAgentKey.status == 200)
            let adminAsAgentKey = try await h.request(.POST, "/agents/register", json: body, headers: [("x-agent-api-key", "admin-secret")])
            #expect(adminAsAgentKey.status == 200)
            let afterAccepted = try await h.snapshot()
            let wrongKey = try await h.request(.POST, "/agents/register", json: body, headers: [("x-agent-api-key", "reg-secreT")])
            #expect(wrongKey.status == 401)
            #expect(wrongKey.message.contains("x-agent-api-key"))
            // An agent's own key is not a registration token.
            let agentKey = try #require(asAgentKey["agent_api_key"]?.stringValue)
            let ownKey = try await h.request(.POST, "/agents/register", json: body, headers: [("x-agent-api-key", agentKey)])
            #expect(ownKey.status == 401)
            #expect(try await h.snapshot() == afterAccepted, "refused registrations change nothing")
        }
    }

    @Test(arguments: Backend.all)
    func agentKeysAreScopedToTheirAgent(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none), auth: Self.tokens)) { h in
            let mine = try await h.register("mine", url: pod.url, deploymentId: "m1")
            let theirs = try await h.register("theirs", url: pod.url, deploymentId: "t1")
            let myId = try #require(mine["id"]?.stringValue)
            let theirId = try #require(theirs["id"]?.stringValue)
            let key = [("x-agent-api-key", try #require(mine["agent_api_key"]?.stringValue))]
            _ = try await h.waitFor(myId, "m1", .ready)
            _ = try await h.waitFor(theirId, "t1", .ready)

            #expect(try await h.request(.GET, "/agents/\(myId)", headers: key).status == 200)
            #expect(try await h.request(.GET, "/agents/name/mine", headers: key).status == 200)
            #expect(try await h.request(.GET, "/agents/\(myId)/deployments", headers: key).status == 200)
            #expect(try await h.request(.GET, "/agents/\(myId)/events", headers: key).status == 200)
            let listed = try await h.request(.GET, "/agents", headers: key)
            #expect(listed.array.compactMap { $0["id"]?.stringValue } == [myId])
            let created = try await h.request(.POST, "/agents/\(myId)/deployments", json: ["docker_image": "i", "id": "m2"], headers: key)
            #expect(created.status == 200)
            let events = try await h.get("/agents/\(myId)/deployments/m2/events")
            #expect(events.array.first?["actor"] == .string("agent:\(myId)"))

            let before = try await h.snapshot()
            for (method, path) in [
                ("GET", "/agents/\(theirId)"), ("GET", "/agents/name/theirs"), ("GET", "/agents/\(theirId)/deployments"),
                ("POST", "/agents/\(theirId)/deployments/t1/promote"), ("DELETE", "/agents/\(theirId)"),
                ("DELETE", "/agents/name/theirs"), ("GET", "/agents/name/theirs/deployments"),
            ] {
                let reply = try await h.request(.init(rawValue: method), path, headers: key)
                #expect(reply.status == 404, "\(method) \(path) must not reveal another agent")
                if !path.contains(theirId) {
                    #expect(!reply.text.contains(theirId), "a 404 names only what the caller sent: \(reply.text)")
                }
            }
            for (method, path) in [
                ("POST", "/agents/\(myId)/deployments/m1/promote"), ("DELETE", "/agents/\(myId)/deployments/m2"),
                ("POST", "/agents/\(myId)/rollback"), ("DELETE", "/agents/\(myId)"),
            ] {
                let reply = try await h.request(.init(rawValue: method), path, headers: key)
                #expect(reply.status == 403, "\(method) \(path) is admin-only")
                #expect(reply.message.contains("admin token"))
            }
            #expect(try await h.snapshot() == before)
            let forged = [("x-agent-api-key", String(repeating: "0", count: 64))]
            #expect(try await h.request(.GET, "/agents/\(myId)", headers: forged).status == 401)
        }
    }

    @Test(arguments: Backend.all)
    func openModeTreatsEveryCallerAsAdmin(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let reply = try await h.request(.GET, "/agents", headers: [])
            #expect(reply.status == 200)
        }
    }
}
