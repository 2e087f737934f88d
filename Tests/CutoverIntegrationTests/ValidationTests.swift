import CutoverCore
import Testing

/// Every validation rule: the status, the message or field, and that nothing changed.
@Suite("Bad input gets a clear error and loses nothing")
struct ValidationTests {
    struct Case: Sendable, CustomStringConvertible {
        var description: String
        var method: String
        var path: String
        var body: String?
        var status: Int
        /// A field listed in `data.errors`, or a fragment of the message.
        var expect: String
    }

    static let longName = String(repeating: "a", count: 64)
    static let longDescription = String(repeating: "d", count: 4097)
    static let bigMetadata = String(repeating: "x", count: 70_000)

    static func register(_ fields: String) -> String {
        #"{"name":"valid","description":"d","acp_url":"http://127.0.0.1:9","acp_type":"async","# + fields + "}"
    }

    /// `{agent}` is replaced with the fixture agent's id, `{did}` with its deployment.
    static let cases: [Case] = [
        Case(description: "register: malformed JSON", method: "POST", path: "/agents/register", body: "{nope", status: 400, expect: "not valid JSON"),
        Case(description: "register: empty body", method: "POST", path: "/agents/register", body: "", status: 400, expect: "empty"),
        Case(description: "register: array body", method: "POST", path: "/agents/register", body: "[]", status: 422, expect: "body"),
        Case(description: "register: missing name", method: "POST", path: "/agents/register", body: #"{"acp_url":"http://h:1","acp_type":"async"}"#, status: 422, expect: "name"),
        Case(description: "register: upper-case name", method: "POST", path: "/agents/register", body: #"{"name":"Bad_Name","acp_url":"http://h:1"}"#, status: 422, expect: "name"),
        Case(description: "register: 64-char name", method: "POST", path: "/agents/register", body: #"{"name":"\#(longName)","acp_url":"http://h:1"}"#, status: 422, expect: "name"),
        Case(description: "register: name not a string", method: "POST", path: "/agents/register", body: #"{"name":5,"acp_url":"http://h:1"}"#, status: 422, expect: "name"),
        Case(description: "register: missing acp_url", method: "POST", path: "/agents/register", body: #"{"name":"ok"}"#, status: 422, expect: "acp_url"),
        Case(description: "register: ftp acp_url", method: "POST", path: "/agents/register", body: #"{"name":"ok","acp_url":"ftp://h/x"}"#, status: 422, expect: "acp_url"),
        Case(description: "register: acp_url without host", method: "POST", path: "/agents/register", body: #"{"name":"ok","acp_url":"http://"}"#, status: 422, expect: "acp_url"),
        Case(description: "register: unknown acp_type", method: "POST", path: "/agents/register", body: #"{"name":"ok","acp_url":"http://h:1","acp_type":"grpc"}"#, status: 422, expect: "acp_type"),
        Case(description: "register: bad agent_input_type", method: "POST", path: "/agents/register", body: register(#""agent_input_type":"xml""#), status: 422, expect: "agent_input_type"),
        Case(description: "register: description over 4 KiB", method: "POST", path: "/agents/register", body: #"{"name":"ok","acp_url":"http://h:1","description":"\#(longDescription)"}"#, status: 422, expect: "description"),
        Case(description: "register: metadata not an object", method: "POST", path: "/agents/register", body: register(#""registration_metadata":"x""#), status: 422, expect: "registration_metadata"),
        Case(description: "register: metadata over 64 KiB", method: "POST", path: "/agents/register", body: register(#""registration_metadata":{"x":"\#(bigMetadata)"}"#), status: 422, expect: "registration_metadata"),
        Case(description: "register: bad deployment_id", method: "POST", path: "/agents/register", body: register(#""registration_metadata":{"deployment_id":"has space"}"#), status: 422, expect: "registration_metadata.deployment_id"),
        Case(description: "register: numeric deployment_id", method: "POST", path: "/agents/register", body: register(#""registration_metadata":{"deployment_id":7}"#), status: 422, expect: "registration_metadata.deployment_id"),
        Case(description: "register-build: bad name", method: "POST", path: "/agents/register-build", body: #"{"name":"NO"}"#, status: 422, expect: "name"),
        Case(description: "create: missing docker_image", method: "POST", path: "/agents/{agent}/deployments", body: "{}", status: 422, expect: "docker_image"),
        Case(description: "create: docker_image not a string", method: "POST", path: "/agents/{agent}/deployments", body: #"{"docker_image":["a"]}"#, status: 422, expect: "docker_image"),
        Case(description: "create: bad id", method: "POST", path: "/agents/{agent}/deployments", body: #"{"docker_image":"i","id":"a/b"}"#, status: 422, expect: "id"),
        Case(description: "create: 129-char id", method: "POST", path: "/agents/{agent}/deployments", body: #"{"docker_image":"i","id":"\#(String(repeating: "x", count: 129))"}"#, status: 422, expect: "id"),
        Case(description: "create: metadata an array", method: "POST", path: "/agents/{agent}/deployments", body: #"{"docker_image":"i","registration_metadata":[]}"#, status: 422, expect: "registration_metadata"),
        Case(description: "create: malformed JSON", method: "POST", path: "/agents/{agent}/deployments", body: #"{"docker_image":"#, status: 400, expect: "not valid JSON"),
        Case(description: "create: unknown agent", method: "POST", path: "/agents/nobody/deployments", body: #"{"docker_image":"i"}"#, status: 404, expect: "nobody"),
        Case(description: "promote: reason not a string", method: "POST", path: "/agents/{agent}/deployments/{did}/promote", body: #"{"reason":1}"#, status: 422, expect: "reason"),
        Case(description: "rollback: bad target id", method: "POST", path: "/agents/{agent}/rollback", body: #"{"to_deployment_id":"a b"}"#, status: 422, expect: "to_deployment_id"),
        Case(description: "list: limit 0", method: "GET", path: "/agents/{agent}/deployments?limit=0", status: 422, expect: "limit"),
        Case(description: "list: limit 1001", method: "GET", path: "/agents?limit=1001", status: 422, expect: "limit"),
        Case(description: "list: limit not a number", method: "GET", path: "/agents?limit=ten", status: 422, expect: "limit"),
        Case(description: "list: page_number 0", method: "GET", path: "/agents/{agent}/events?page_number=0", status: 422, expect: "page_number"),
        Case(description: "list: unknown order_by", method: "GET", path: "/agents/{agent}/deployments?order_by=acp_url;drop", status: 422, expect: "order_by"),
        Case(description: "list: bad order_direction", method: "GET", path: "/agents?order_direction=up", status: 422, expect: "order_direction"),
        Case(description: "list: bad include_deleted", method: "GET", path: "/agents/{agent}/deployments?include_deleted=maybe", status: 422, expect: "include_deleted"),
        Case(description: "mutation: bad dry_run", method: "POST", path: "/agents/{agent}/deployments/{did}/promote?dry_run=perhaps", status: 422, expect: "dry_run"),
        Case(description: "unknown route", method: "GET", path: "/nowhere", status: 404, expect: "no route"),
        Case(description: "deployment of unknown agent", method: "GET", path: "/agents/nobody/deployments/{did}", status: 404, expect: "nobody"),
    ]

    @Test(arguments: Backend.all, cases)
    func rejectedWithoutChange(_ backend: Backend, _ c: Case) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let agent = try #require(try await h.register("fixture", url: "http://127.0.0.1:9", deploymentId: "fixture-d")["id"]?.stringValue)
            let before = try await h.snapshot()
            let path = c.path.replacingOccurrences(of: "{agent}", with: agent).replacingOccurrences(of: "{did}", with: "fixture-d")
            let reply = try await h.request(.init(rawValue: c.method), path, raw: c.body)
            #expect(reply.status == c.status, "\(c.description): \(reply.text.prefix(300))")
            #expect(reply["code"] == .number(Double(c.status)))
            #expect(reply.json["data"] != nil, "the envelope always has data")
            if c.status == 422 {
                #expect(reply.errorFields.contains(c.expect), "\(c.description): \(reply.text.prefix(300))")
                #expect(reply.message.contains(c.expect))
            } else {
                #expect(reply.message.contains(c.expect), "\(c.description): \(reply.message)")
            }
            #expect(try await h.snapshot() == before, "\(c.description) changed state")
        }
    }

    @Test(arguments: Backend.all)
    func allProblemsAreListedAtOnce(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let reply = try await h.request(.POST, "/agents/register", raw: #"{"name":"BAD","acp_url":"gopher://x","acp_type":"x"}"#)
            #expect(reply.status == 422)
            #expect(Set(reply.errorFields) == ["name", "acp_url", "acp_type"])
        }
    }

    @Test(arguments: Backend.all)
    func oversizedBodyIs413(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let before = try await h.snapshot()
            let huge = #"{"name":"big","acp_url":"http://h:1","description":""# + String(repeating: "x", count: 1_100_000) + #""}"#
            let reply = try await h.request(.POST, "/agents/register", raw: huge)
            #expect(reply.status == 413)
            #expect(reply.message.contains("larger than"))
            #expect(try await h.snapshot() == before)
        }
    }

    @Test(arguments: Backend.all)
    func acpURLOutsideTheAllowlistIsRejected(_ backend: Backend) async throws {
        let allow = try HostAllowlist(parsing: ["*.svc.cluster.local", "127.0.0.0/8"])
        try await Harness.with(backend, .init(allowedHosts: allow, runController: false, socket: false)) { h in
            #expect(try await h.register("inside", url: "http://agent.ns.svc.cluster.local:8000").status == 200)
            #expect(try await h.register("loop", url: "http://127.0.0.5:8000").status == 200)
            let before = try await h.snapshot()
            let reply = try await h.register("outside", url: "http://169.254.169.254/latest")
            #expect(reply.status == 422)
            #expect(reply.errorFields == ["acp_url"])
            #expect(reply.message.contains("not in the allowed hosts"))
            #expect(try await h.snapshot() == before)
        }
    }

    @Test(arguments: Backend.all)
    func errorsTellStainlessClientsNotToRetry(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let reply = try await h.get("/agents/unknown")
            #expect(reply.status == 404)
            #expect(reply.headers.first(name: "x-should-retry") == "false")
        }
    }
}
