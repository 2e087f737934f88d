import CutoverAPI
import CutoverController
import CutoverCore
import CutoverStore
import Foundation
import Hummingbird
import Logging
import NIOCore
import Testing

/// Hostile clients and failing dependencies: no 5xx for anything a client can send, nothing stored that
/// differs from what was acknowledged, and every wait bounded.
@Suite("Hardening")
struct HardeningTests {
    static func rpc(_ params: JSONValue = [:]) -> JSONValue {
        ["jsonrpc": "2.0", "id": 7, "method": "task/create", "params": params]
    }

    // MARK: Input that would be stored differently

    @Test(arguments: Backend.all)
    func nulCharactersAreRefusedNamingTheField(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let agent = try #require(try await h.register("nul", url: "http://127.0.0.1:9", deploymentId: "nul-1")["id"]?.stringValue)
            let before = try await h.snapshot()
            let register = #"{"name":"nul","acp_url":"http://127.0.0.1:9","acp_type":"async","#
            let cases: [(String, String, String)] = [
                ("/agents/register", register + #""description":"a\u0000b"}"#, "description"),
                ("/agents/register", #"{"name":"nul","acp_url":"http://127.0.0.1:9/a\u0000b"}"#, "acp_url"),
                ("/agents/register", register + #""agent_id":"a\u0000b"}"#, "agent_id"),
                ("/agents/register", register + #""registration_metadata":{"deployment_id":"nul-2","docker_image":"i\u0000"}}"#,
                 "registration_metadata.docker_image"),
                ("/agents/\(agent)/deployments", #"{"docker_image":"a\u0000b"}"#, "docker_image"),
                ("/agents/\(agent)/deployments", #"{"docker_image":"i","sgp_deploy_id":"a\u0000b"}"#, "sgp_deploy_id"),
                ("/agents/\(agent)/deployments", #"{"docker_image":"i","helm_release_name":"a\u0000b"}"#, "helm_release_name"),
            ]
            for (path, body, field) in cases {
                let reply = try await h.request(.POST, path, raw: body)
                #expect(reply.status == 422, "\(field): \(reply.text)")
                #expect(reply.errorFields == [field], "\(reply.text)")
                #expect(reply.message.contains("NUL"))
            }
            #expect(try await h.snapshot() == before, "nothing written")

            // Metadata is JSON: it keeps the character, escaped, and reads back exactly.
            let kept = try await h.request(
                .POST, "/agents/\(agent)/deployments",
                raw: #"{"docker_image":"i","id":"nul-meta","registration_metadata":{"note":"a\u0000b"}}"#)
            #expect(kept.status == 200, "\(kept.text)")
            let stored = try #require(try await h.deployment(agent, "nul-meta"))
            #expect(stored.registrationMetadata?["note"] == .string("a\u{0}b"))
        }
    }

    @Test(arguments: Backend.all)
    func numbersAreStoredExactlyOrRefused(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let agent = try #require(try await h.register("numbers", url: "http://127.0.0.1:9", deploymentId: "n-1")["id"]?.stringValue)
            let before = try await h.snapshot()
            for number in ["1e400", "9007199254740993", "-1e400", "1e-400", "3.14159265358979323846"] {
                let reply = try await h.request(
                    .POST, "/agents/\(agent)/deployments",
                    raw: #"{"docker_image":"i","registration_metadata":{"n":"# + number + "}}")
                #expect(reply.status == 422, "\(number): \(reply.text)")
                #expect(reply.errorFields == ["registration_metadata"], "\(reply.text)")
                #expect(reply.message.contains("send it as a string"))
            }
            #expect(try await h.snapshot() == before)
            let exact = try await h.request(
                .POST, "/agents/\(agent)/deployments",
                raw: #"{"docker_image":"i","id":"n-2","registration_metadata":{"a":9007199254740992,"b":0.1,"c":-2.5e-3,"d":1e300}}"#)
            #expect(exact.status == 200, "\(exact.text)")
            let stored = try #require(try await h.deployment(agent, "n-2")?.registrationMetadata)
            #expect(stored["a"] == .number(9_007_199_254_740_992) && stored["b"] == .number(0.1))
            #expect(stored["c"] == .number(-0.0025) && stored["d"] == .number(1e300))
            #expect(exact.text.contains("9007199254740992"))
        }
    }

    @Test(arguments: Backend.all)
    func duplicateKeysAreRefusedEverywhere(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("dupes", "d1", pod: pod)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "dupes")?.productionDeploymentId }
            let before = try await h.snapshot()
            let control = try await h.request(
                .POST, "/agents/\(agentId)/deployments", raw: #"{"docker_image":"a","docker_image":"b"}"#)
            #expect(control.status == 400)
            #expect(control.message.contains("duplicate key \"docker_image\""))
            let nested = try await h.request(
                .POST, "/agents/\(agentId)/deployments", raw: #"{"docker_image":"a","registration_metadata":{"k":1,"k":2}}"#)
            #expect(nested.status == 400)
            #expect(try await h.snapshot() == before)

            let calls = pod.calls.count
            let smuggled = try await h.request(
                .POST, "/agents/\(agentId)/rpc", raw: #"{"method":"message/send","method":"task/create","params":{}}"#)
            #expect(smuggled.status == 400)
            #expect(RPCRoutingTests.errorCode(smuggled) == -32700)
            #expect(pod.calls.count == calls, "never forwarded")
        }
    }

    // MARK: Broken HTTP

    @Test(arguments: Backend.all)
    func malformedChunkedBodiesAreTheClientsFault(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("chunks", "c1", pod: pod)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "chunks")?.productionDeploymentId }
            let before = try await h.snapshot()
            let calls = pod.calls.count
            let bodies = [
                "ZZ\r\n{}\r\n0\r\n\r\n",
                "FFFFFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n",
                "2\r\n{\"\r\nQQ\r\nxx\r\n0\r\n\r\n",
            ]
            for body in bodies {
                for path in ["/agents/register", "/agents/\(agentId)/rpc"] {
                    let request = "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + "Transfer-Encoding: chunked\r\n\r\n" + body
                    let answer = try await RawHTTP.exchange(port: h.port, request)
                    #expect(answer.status == 400, "\(path) \(body.debugDescription): \(answer.head) \(answer.body)")
                    if path.hasSuffix("/rpc"), !answer.body.isEmpty {
                        #expect(answer.json["error"]?["code"] != nil, "a JSON-RPC error: \(answer.body)")
                    } else if !answer.body.isEmpty {
                        #expect(answer.json["code"] == 400, "the error envelope: \(answer.body)")
                    }
                }
            }
            #expect(try await h.get("/healthz").status == 200)
            #expect(try await h.snapshot() == before)
            #expect(pod.calls.count == calls)
        }
    }

    @Test(arguments: [Backend.sqlite])
    func http10WithoutKeepAliveClosesTheConnection(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let plain = try await RawHTTP.exchange(port: h.port, "GET /healthz HTTP/1.0\r\n\r\n", timeout: .seconds(3))
            #expect(plain.status == 200)
            #expect(plain.closed, "HTTP/1.0 without keep-alive: the server closes the connection")
            let close = try await RawHTTP.exchange(
                port: h.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Close, TE\r\n\r\n", timeout: .seconds(3))
            #expect(close.status == 200 && close.closed)
            let keepAlive = try await RawHTTP.exchange(
                port: h.port, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", timeout: .seconds(1))
            #expect(keepAlive.status == 200 && !keepAlive.closed, "keep-alive is honoured")
        }
    }

    // MARK: Headers

    @Test(arguments: Backend.all)
    func hopByHopHeadersNamedInConnectionStayHere(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("hops", "h1", pod: pod)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "hops")?.productionDeploymentId }
            let request = "POST /agents/\(agentId)/rpc HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop-Secret\r\n"
                + "X-Hop-Secret: s3cret\r\nX-Kept: yes\r\nContent-Length: 40\r\n\r\n"
                + #"{"method":"task/create","params":{}}    "#
            let answer = try await RawHTTP.exchange(port: h.port, request, timeout: .seconds(2))
            #expect(answer.status == 200, "\(answer.head)")
            let sent = try #require(pod.calls.last?.headers)
            #expect(sent["x-hop-secret"] == nil, "named in Connection: hop-by-hop")
            #expect(sent["x-kept"] == "yes")

            let calls = pod.calls.count
            var bytes = Array("POST /agents/\(agentId)/rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Raw: a".utf8)
            bytes += [0xFF, 0xFE]
            bytes += Array("b\r\nContent-Length: 36\r\n\r\n{\"method\":\"task/create\",\"params\":{}}".utf8)
            let invalid = try await RawHTTP.exchange(port: h.port, bytes)
            #expect(invalid.status == 400, "\(invalid.head) \(invalid.body)")
            #expect(invalid.json["error"]?["message"]?.stringValue?.contains("x-raw") == true, "\(invalid.body)")
            #expect(pod.calls.count == calls, "not forwarded altered")
        }
    }

    // MARK: Outbound timeouts and failures

    @Test(arguments: Backend.all)
    func aStalledAnswerIsBoundedByTheRPCTimeout(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(rpcTimeout: .seconds(1))) { h in
            let (agentId, _) = try await h.readyDeployment("stall", "s1", pod: pod)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "stall")?.productionDeploymentId }
            let start = ContinuousClock.now
            let stalled = try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc(["params": ["stall": true]]))
            #expect(stalled.status == 504, "\(stalled.text)")
            #expect(RPCRoutingTests.errorCode(stalled) == -32005)
            #expect(ContinuousClock.now - start < .seconds(5))

            _ = try await h.readyDeployment("stall-sync", "s2", pod: pod, acpType: "sync")
            _ = try await eventually("auto-promotion") { try await h.agent(named: "stall-sync")?.productionDeploymentId }
            let streamStart = ContinuousClock.now
            let body = #"{"method":"message/send","params":{"stream":true,"content":{"type":"text","content":"x","stall_stream":true}}}"#
            let request = "POST /agents/name/stall-sync/rpc HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
            let stream = try await RawHTTP.exchange(port: h.port, request, timeout: .seconds(10))
            #expect(stream.status == 200)
            #expect(stream.body.contains(#""line":1"#), "the first line arrived: \(stream.body)")
            #expect(ContinuousClock.now - streamStart < .seconds(6), "a silent stream is cut, not held open")
        }
    }

    @Test(arguments: Backend.all)
    func aRefusedAgentFailsAtOnceAndReadably(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        // Bound but never listening, for the whole test: a stopped stand-in's port could be taken by
        // another test's server meanwhile.
        let refusing = try ServerSocketPort()
        defer { refusing.close() }
        let url = "http://127.0.0.1:\(refusing.port)"
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("refused", "r1", pod: pod)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "refused")?.productionDeploymentId }
            // The production deployment's pod moves to the refusing address (a Ready deployment stays Ready).
            #expect(try await h.register("refused", url: url, deploymentId: "r1").status == 200)
            let start = ContinuousClock.now
            let reply = try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc())
            #expect(reply.status == 502)
            #expect(RPCRoutingTests.errorCode(reply) == -32003)
            let message = reply.json["error"]?["message"]?.stringValue ?? ""
            #expect(message.contains("connection refused") && !message.contains("errno"), "\(message)")
            #expect(ContinuousClock.now - start < .seconds(2), "refused is 502 at once")

            let probed = try await h.register("refused", url: url, deploymentId: "r2")
            #expect(probed.status == 200)
            let pending = try await eventually(within: .seconds(3), "a probe error") {
                try await h.deployment(agentId, "r2")?.statusReason.flatMap { $0.contains("refused") ? $0 : nil }
            }
            #expect(pending.contains("connection refused by 127.0.0.1:"), "\(pending)")
        }
    }

    @Test(arguments: Backend.all)
    func slowProbesAreCutAndDoNotStarveOthers(_ backend: Backend) async throws {
        var started: [AgentStandIn] = []
        for _ in 0..<5 { started.append(try await AgentStandIn.start(.trickle)) }
        let tricklers = started
        let healthy = try await AgentStandIn.start()
        defer { Task { for pod in tricklers { await pod.stop() }; await healthy.stop() } }
        try await Harness.with(backend) { h in
            for (i, pod) in tricklers.enumerated() {
                #expect(try await h.register("trickle", url: pod.url, deploymentId: "t\(i)").status == 200)
            }
            let start = ContinuousClock.now
            let (agentId, _) = try await h.readyDeployment("healthy", "ok", pod: healthy)
            #expect(ContinuousClock.now - start < .seconds(6), "a healthy pod waits at most one round of slow probes")
            _ = agentId
            let trickleAgent = try #require(try await h.agent(named: "trickle"))
            let reason = try await eventually(within: .seconds(8), "a timed-out probe") {
                try await h.deployment(trickleAgent.id, "t0")?.statusReason.flatMap { $0.contains("timed out") ? $0 : nil }
            }
            #expect(reason.contains("after 2s"), "\(reason)")
        }
    }

    @Test(arguments: Backend.all)
    func aProbeCountsOnlyForTheRegistrationItProbed(_ backend: Backend) async throws {
        let slowA = try await AgentStandIn.start(.slow(.milliseconds(1500)))
        let sickB = try await AgentStandIn.start(.unhealthy)
        defer { Task { await slowA.stop(); await sickB.stop() } }
        try await Harness.with(backend) { h in
            let first = try await h.register("moved", url: slowA.url, deploymentId: "m1")
            let agentId = try #require(first["id"]?.stringValue)
            try await Task.sleep(for: .milliseconds(500))  // the probe of A is under way
            #expect(try await h.register("moved", url: sickB.url, deploymentId: "m1").status == 200)
            try await Task.sleep(for: .milliseconds(2000))  // A's probe answered healthy meanwhile
            let d = try #require(try await h.deployment(agentId, "m1"))
            #expect(d.status == .pending, "B was never healthy: \(d.status) \(d.statusReason ?? "")")
            #expect(d.acpURL == sickB.url)
            #expect(try await h.agent(named: "moved")?.productionDeploymentId == nil)
            let reason = try await eventually(within: .seconds(5), "B's probe error") {
                try await h.deployment(agentId, "m1")?.statusReason.flatMap { $0.contains("503") ? $0 : nil }
            }
            #expect(reason.hasPrefix("ProbePending"))
        }
    }

    // MARK: The database

    @Test
    func anUnreachableDatabaseAnswers503Quickly() async throws {
        // Bound but never listening: connections are refused, and no other test can take the port meanwhile.
        let refusing = try ServerSocketPort()
        defer { refusing.close() }
        let port = refusing.port
        let store = try await StoreFactory.open(
            .postgres(host: "127.0.0.1", port: port, user: "postgres", password: nil, database: "x", tls: .disable),
            logger: Logger(label: "test"))
        defer { Task { try? await store.close() } }
        let controlPlane = ControlPlane(store: store, settings: .init(), logger: Logger(label: "test"))
        let router = CutoverAPI.router(APIDependencies(controlPlane: controlPlane, auth: AuthSettings()))
        let server = try await RunningServer.start(router: router, server: CutoverAPI.httpServer)
        defer { Task { await server.stop() } }
        for (method, path, body) in [
            ("GET", "/readyz", nil), ("GET", "/agents", nil),
            ("POST", "/agents/register", #"{"name":"x","acp_url":"http://127.0.0.1:9"}"#),
        ] as [(String, String, String?)] {
            let start = ContinuousClock.now
            var request = "\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            if let body { request += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { request += "\r\n" }
            let answer = try await RawHTTP.exchange(port: server.port, request, timeout: .seconds(15))
            #expect(answer.status == 503, "\(path): \(answer.head) \(answer.body)")
            // The refusal is answered at once (tens of milliseconds alone), where PostgresNIO's own pool
            // kept a request waiting up to a minute. The bound is far from both: amid the whole suite on
            // two cores these requests took up to 3.6 s, in the server's busy event loops.
            #expect(ContinuousClock.now - start < .seconds(10), "\(path) answered without waiting for the database")
            #expect(answer.json["code"] == 503)
        }
        await #expect(throws: DatabaseUnavailable.self) { try await store.migrate() }
        do {
            try await store.migrate()
        } catch {
            let text = String(describing: error)
            #expect(text.contains("connection refused"), "\(text)")
            #expect(text.contains("127.0.0.1:\(port)"), "\(text)")
        }
    }

    // MARK: Time order and lifecycle rules

    @Test(arguments: Backend.all)
    func timestampsFollowCommitOrderUnderConcurrency(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            let pod = "http://127.0.0.1:9"
            for id in ["a", "b", "c"] { try await h.register("racing", url: pod, deploymentId: id) }
            let agent = try await eventually("three Ready deployments") { () -> Agent? in
                guard let agent = try await h.agent(named: "racing"), agent.productionDeploymentId != nil else { return nil }
                for id in ["a", "b", "c"] where try await h.deployment(agent.id, id)?.status != .ready { return nil }
                return agent
            }
            await withTaskGroup(of: Void.self) { group in
                for i in 0..<48 {
                    group.addTask {
                        if i % 4 == 3 {
                            _ = try? await h.post("/agents/\(agent.id)/rollback", ["reason": .string("r\(i)")])
                        } else {
                            _ = try? await h.post("/agents/\(agent.id)/deployments/\(["a", "b", "c"][i % 3])/promote")
                        }
                    }
                }
            }
            // Oldest first: replaying the trail must give the production history, and times never go back.
            let events = try await h.get("/agents/\(agent.id)/events?limit=1000&order_direction=asc").array
            // A promotion writes its Promoted (or RolledBack) event, then the Demoted one of the deployment it
            // replaced: that must be the one the trail says led until then.
            var production: String?
            var previous: String?
            var last = ""
            for event in events {
                let at = event["created_at"]?.stringValue ?? ""
                #expect(at >= last, "created_at goes back at \(event)")
                last = at
                let deployment = event["deployment_id"]?.stringValue
                switch event["type"]?.stringValue {
                case "Demoted":
                    #expect(deployment == previous, "demoted \(deployment ?? "-") while \(previous ?? "-") led")
                case "Promoted", "AutoPromoted", "RolledBack":
                    previous = production
                    production = deployment
                default: break
                }
            }
            let newestFirst = try await h.get("/agents/\(agent.id)/events?limit=1000").array
            #expect(newestFirst.compactMap { $0["id"]?.stringValue } == events.reversed().compactMap { $0["id"]?.stringValue })
            let final = try await h.agent(named: "racing")?.productionDeploymentId
            #expect(production == final)
            #expect(try await h.checkInvariants() == [])
        }
    }

    @Test(arguments: Backend.all)
    func aDeletedAgentTakesNoRegistrations(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let agentId = try #require(try await h.register("retired", url: "http://127.0.0.1:9", deploymentId: "r1")["id"]?.stringValue)
            #expect(try await h.delete("/agents/\(agentId)").status == 200)
            let before = try await h.snapshot()
            for id in ["r1", "r2"] {
                let reply = try await h.register("retired", url: "http://127.0.0.1:9", deploymentId: id)
                #expect(reply.status == 409, "\(reply.text)")
                #expect(reply.message.contains("deleted"))
            }
            let created = try await h.post("/agents/\(agentId)/deployments", ["docker_image": "i"])
            #expect(created.status == 409)
            #expect(try await h.snapshot() == before)
        }
    }

    @Test(arguments: Backend.all)
    func failedDryRunsSayTheyWereDryRuns(_ backend: Backend) async throws {
        try await Harness.with(backend, .init(runController: false)) { h in
            let agentId = try #require(try await h.register("dry", url: "http://127.0.0.1:9", deploymentId: "p1")["id"]?.stringValue)
            for (path, status) in [
                ("/agents/\(agentId)/deployments/p1/promote?dry_run=true", 409),
                ("/agents/\(agentId)/deployments/nope/promote?dry_run=true", 404),
                ("/agents/\(agentId)/rollback?dry_run=true", 409),
                ("/agents/nobody/deployments?dry_run=true", 404),
            ] {
                let reply = try await h.request(.POST, path, raw: path.contains("/deployments?") ? #"{"docker_image":"i"}"# : nil)
                #expect(reply.status == status, "\(path): \(reply.text)")
                #expect(reply.headers.first(name: "x-cutover-dry-run") == "true", "\(path)")
            }
            let invalid = try await h.request(.POST, "/agents/\(agentId)/deployments?dry_run=true", raw: "{}")
            #expect(invalid.status == 422 && invalid.headers.first(name: "x-cutover-dry-run") == "true")
            let real = try await h.request(.POST, "/agents/\(agentId)/deployments/p1/promote")
            #expect(real.status == 409 && real.headers.first(name: "x-cutover-dry-run") == nil)
        }
    }
}

/// A loopback port bound without listening: connections to it are refused for as long as it is open.
struct ServerSocketPort {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestFailure("cannot bind a loopback port") }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}
