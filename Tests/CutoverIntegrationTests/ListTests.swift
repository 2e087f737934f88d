import CutoverCore
import Testing

@Suite("Lists: newest first, pagination, ordering")
struct ListTests {
    @Test(arguments: Backend.all)
    func deploymentsPageNewestFirstWithStableTies(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let agent = try #require(try await h.register("lists", url: "http://127.0.0.1:9")["id"]?.stringValue)
            for i in 1...7 {
                #expect(try await h.post("/agents/\(agent)/deployments", ["docker_image": .string("img:\(i)"), "id": .string("d\(i)")]).status == 200)
            }
            let ids = { (reply: Harness.Reply) in reply.array.compactMap { $0["id"]?.stringValue } }
            #expect(ids(try await h.get("/agents/\(agent)/deployments")) == ["d7", "d6", "d5", "d4", "d3", "d2", "d1"])
            #expect(ids(try await h.get("/agents/\(agent)/deployments?limit=3")) == ["d7", "d6", "d5"])
            #expect(ids(try await h.get("/agents/\(agent)/deployments?limit=3&page_number=3")) == ["d1"])
            #expect(ids(try await h.get("/agents/\(agent)/deployments?limit=3&page_number=4")) == [])
            #expect(ids(try await h.get("/agents/\(agent)/deployments?order_direction=asc&limit=2")) == ["d1", "d2"])
            #expect(ids(try await h.get("/agents/\(agent)/deployments?order_by=docker_image&order_direction=asc&limit=1")) == ["d1"])
        }
    }

    @Test(arguments: Backend.all)
    func deploymentsOfAnUnknownAgentAre404AndOfAnAgentWithoutAnyAreEmpty(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let agent = try #require(try await h.register("empty", url: "http://127.0.0.1:9")["id"]?.stringValue)
            let empty = try await h.get("/agents/\(agent)/deployments")
            #expect(empty.status == 200 && empty.array.isEmpty, "\(empty.json)")
            for path in ["/agents/nope/deployments", "/agents/nope/deployments?limit=0"] {
                let unknown = try await h.get(path)
                #expect(unknown.status == 404, "an unknown agent is 404 before its query is judged: \(path)")
                #expect(unknown.message.contains("nope"), "\(unknown.message)")
            }
            let bad = try await h.get("/agents/\(agent)/deployments?limit=0")
            #expect(bad.status == 422, "\(bad.json)")
            #expect(bad.message.contains("limit"), "\(bad.message)")
        }
    }

    @Test(arguments: Backend.all)
    func agentsListAndLookupByName(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            for name in ["one", "two", "three"] { try await h.register(name, url: "http://127.0.0.1:9") }
            let list = try await h.get("/agents?order_by=name&order_direction=asc")
            #expect(list.array.compactMap { $0["name"]?.stringValue } == ["one", "three", "two"])
            let agent = list.array[0]
            for key in ["id", "name", "description", "status", "status_reason", "acp_type", "agent_input_type",
                        "registration_metadata", "registered_at", "created_at", "updated_at", "production_deployment_id"] {
                #expect(agent[key] != nil, "\(key) is always present")
            }
            #expect(agent["acp_url"] == nil)
            let created = try #require(agent["created_at"]?.stringValue)
            #expect(created.hasSuffix("Z") && created.count == 27, "RFC 3339 with microseconds: \(created)")
            #expect(try await h.get("/agents/name/two")["name"] == "two")
            #expect(try await h.get("/agents/name/four").status == 404)
        }
    }
}

@Suite("Operations routes")
struct OperationsTests {
    @Test func openAPIDocumentListsEveryRoute() async throws {
        try await Harness.with(.sqlite, .init(runController: false, socket: false)) { h in
            let doc = try await h.get("/openapi.json")
            #expect(doc.status == 200)
            #expect(doc.json["openapi"] == "3.1.0")
            let paths = doc.json["paths"]?.objectValue ?? [:]
            for path in ["/agents/register", "/agents/{id}/deployments/{did}/promote", "/agents/{id}/rollback",
                         "/agents/{id}/rpc", "/agents/{id}/deployments/{did}/rpc", "/agents/{id}/events"] {
                #expect(paths[path] != nil, "\(path) is documented")
            }
            #expect(try await h.get("/healthz").status == 200)
            #expect(try await h.get("/readyz")["status"] == "ready")
        }
    }
}
