import CutoverCore
import Testing

/// What fuzzing the published OpenAPI document turned up in the server, kept fixed.
@Suite("Fuzz findings")
struct FuzzFindingsTests {
    /// A path parameter is the value it encodes: a client that percent-encodes a deployment id's `:` (as
    /// `urllib.parse.quote(id, safe="")` does) reaches the same deployment as one that does not. The router
    /// used to hand parameters over as sent, so such a request answered 404 for a deployment that exists.
    @Test(arguments: Backend.all)
    func percentEncodedPathParametersNameTheSameRecords(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let agent = try #require(
                try await h.register("encoded", url: "http://127.0.0.1:9", deploymentId: "build:42")["id"]?.stringValue)
            let before = try await h.snapshot()

            let read = try await h.get("/agents/\(agent)/deployments/build%3A42")
            #expect(read.status == 200, "\(read.text)")
            #expect(read["id"] == "build:42")
            let events = try await h.get("/agents/\(agent)/deployments/build%3a42/events")
            #expect(events.status == 200, "lower-case escapes too: \(events.text)")
            #expect(events.array.count == 2, "Created and Registered")
            let byName = try await h.get("/agents/name/%65ncoded")
            #expect(byName.status == 200, "\(byName.text)")
            #expect(byName["id"] == .string(agent))

            let delete = try await h.request(.DELETE, "/agents/\(agent)/deployments/build%3A42?dry_run=true")
            #expect(delete.status == 200, "\(delete.text)")
            #expect(delete["id"] == "build:42")
            #expect(delete.message.hasPrefix("deployment 'build:42' deleted"), "\(delete.message)")
            #expect(delete.headers.first(name: "x-cutover-dry-run") == "true")

            // The preview route finds it too: Pending (no controller here), so a JSON-RPC 409, not a 404.
            let rpc = try await h.post(
                "/agents/\(agent)/deployments/build%3A42/rpc", ["method": "task/create", "params": [:]])
            #expect(rpc.status == 409, "\(rpc.text)")
            #expect(rpc["error"]?["message"] == "deployment 'build:42' is Pending, not Ready")
            #expect(try await h.snapshot() == before, "nothing changed")
        }
    }

    /// A parameter whose escapes do not decode to text (a NUL, bytes that are not UTF-8, a stray `%`) names
    /// nothing: 404, as sent, and it never reaches the database (PostgreSQL cannot take a NUL in text).
    @Test(arguments: Backend.all)
    func undecodablePathParametersAnswer404AndChangeNothing(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let agent = try #require(
                try await h.register("raw", url: "http://127.0.0.1:9", deploymentId: "raw-1")["id"]?.stringValue)
            let before = try await h.snapshot()
            for raw in ["a%00b", "%FF", "a%zz", "a%2", "%C3%28"] {
                let read = try await h.get("/agents/\(agent)/deployments/\(raw)")
                #expect(read.status == 404, "\(raw): \(read.text)")
                #expect(read.message == "deployment '\(raw)' not found for agent '\(agent)'")
                let delete = try await h.request(.DELETE, "/agents/\(agent)/deployments/\(raw)")
                #expect(delete.status == 404, "\(raw): \(delete.text)")
                #expect(delete.message == "deployment '\(raw)' not found for agent '\(agent)'")
                let byName = try await h.request(.DELETE, "/agents/name/\(raw)")
                #expect(byName.status == 404, "\(raw): \(byName.text)")
                #expect(byName.message == "agent '\(raw)' not found")
                let rpc = try await h.post("/agents/\(raw)/rpc", ["method": "task/create", "params": [:]])
                #expect(rpc.status == 404, "\(raw): \(rpc.text)")
                #expect(rpc["error"]?["message"] == .string("agent '\(raw)' not found"))
            }
            #expect(try await h.snapshot() == before, "nothing changed")
        }
    }
}
