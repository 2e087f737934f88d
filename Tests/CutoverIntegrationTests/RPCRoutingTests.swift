import AsyncHTTPClient
import CutoverCore
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@Suite("RPC routing")
struct RPCRoutingTests {
    static func rpc(_ method: String = "task/create", id: JSONValue = 1, params: JSONValue = [:]) -> JSONValue {
        ["jsonrpc": "2.0", "id": id, "method": .string(method), "params": params]
    }

    /// A streamed `message/send`; `knobs` (the stand-in's behaviour) travel inside the content object.
    static func streamedMessage(_ knobs: [String: JSONValue] = [:]) -> JSONValue {
        let content: [String: JSONValue] = ["type": "text", "author": "user", "content": "hi"]
        return rpc("message/send", params: ["stream": true, "content": .object(content.merging(knobs) { $1 })])
    }

    static func errorCode(_ reply: Harness.Reply) -> Int? {
        if case .number(let n)? = reply.json["error"]?["code"] { return Int(n) }
        return nil
    }

    @Test(arguments: Backend.all)
    func routesToProductionPreviewAndLegacy(_ backend: Backend) async throws {
        let blue = try await AgentStandIn.start()
        let green = try await AgentStandIn.start()
        let legacyPod = try await AgentStandIn.start()
        defer { Task { await blue.stop(); await green.stop(); await legacyPod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("router", "blue", pod: blue)
            try await h.readyDeployment("router", "green", pod: green)
            _ = try await eventually("blue auto-promoted") { try await h.agent(named: "router")?.productionDeploymentId }

            let byId = try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc(id: "abc"))
            #expect(byId.status == 200)
            #expect(byId.headers.first(name: "x-cutover-deployment-id") == "blue")
            #expect(byId.json["id"] == "abc", "the JSON-RPC id is preserved")
            let byName = try await h.request(.POST, "/agents/name/router/rpc", json: Self.rpc())
            #expect(byName.headers.first(name: "x-cutover-deployment-id") == "blue")
            #expect(blue.calls.count == 2)

            let preview = try await h.request(.POST, "/agents/\(agentId)/deployments/green/rpc", json: Self.rpc())
            #expect(preview.status == 200)
            #expect(preview.headers.first(name: "x-cutover-deployment-id") == "green")
            #expect(green.calls.count == 1)

            try await h.register("oldstyle", url: legacyPod.url)
            let legacy = try await h.request(.POST, "/agents/name/oldstyle/rpc", json: Self.rpc())
            #expect(legacy.status == 200)
            #expect(legacy.headers.first(name: "x-cutover-deployment-id") == "legacy")
            #expect(legacyPod.calls.count == 1)
        }
    }

    @Test(arguments: Backend.all)
    func rejectionsNeverReachTheAgent(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        let otherPod = try await AgentStandIn.start()
        defer { Task { await pod.stop(); await otherPod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("guarded", "live", pod: pod)
            try await h.readyDeployment("guarded", "old", pod: pod)
            _ = try await eventually("live auto-promoted") { try await h.agent(named: "guarded")?.productionDeploymentId }
            try await h.delete("/agents/\(agentId)/deployments/old")
            try await h.post("/agents/\(agentId)/deployments", ["docker_image": "i", "id": "waiting"])
            try await h.readyDeployment("stranger", "theirs", pod: otherPod)
            let buildOnly = try #require(try await h.post("/agents/register-build", ["name": "noroute", "description": ""])["id"]?.stringValue)
            let gone = try #require(try await h.register("gone", url: pod.url)["id"]?.stringValue)
            try await h.delete("/agents/\(gone)")
            let before = pod.calls.count

            let cases: [(String, String?, Int, Int)] = [
                ("/agents/\(agentId)/deployments/waiting/rpc", nil, 409, -32001),
                ("/agents/\(agentId)/deployments/old/rpc", nil, 410, -32002),
                ("/agents/\(agentId)/deployments/theirs/rpc", nil, 404, -32004),
                ("/agents/\(agentId)/deployments/ghost/rpc", nil, 404, -32004),
                ("/agents/\(buildOnly)/rpc", nil, 409, -32001),
                ("/agents/\(gone)/rpc", nil, 404, -32004),
                ("/agents/nobody/rpc", nil, 404, -32004),
                ("/agents/name/nobody/rpc", nil, 404, -32004),
                ("/agents/\(agentId)/rpc", "{not json", 400, -32700),
                ("/agents/\(agentId)/rpc", "[1]", 400, -32600),
                ("/agents/\(agentId)/rpc", #"{"params":{},"id":5}"#, 400, -32600),
                ("/agents/\(agentId)/rpc", #"{"method":"task/create","params":[],"id":5}"#, 400, -32600),
                ("/agents/\(agentId)/rpc", #"{"jsonrpc":"1.0","method":"task/create","params":{}}"#, 400, -32600),
                ("/agents/\(agentId)/rpc", #"{"method":"message/send","params":{},"id":"m"}"#, 400, -32601),
            ]
            for (path, raw, status, code) in cases {
                let reply = raw.map { r in { try await h.request(.POST, path, raw: r) } }
                    ?? { try await h.request(.POST, path, json: Self.rpc()) }
                let r = try await reply()
                #expect(r.status == status, "\(path) \(raw ?? ""): \(r.text)")
                #expect(Self.errorCode(r) == code, "\(path) \(raw ?? ""): \(r.text)")
                #expect(r.json["jsonrpc"] == "2.0")
                #expect(r.json["error"]?["message"]?.stringValue?.isEmpty == false)
            }
            let notAllowed = try await h.request(.POST, "/agents/\(agentId)/rpc", raw: #"{"method":"message/send","params":{},"id":"m"}"#)
            #expect(notAllowed.json["id"] == "m", "errors echo the request id")
            #expect(notAllowed.json["error"]?["data"]?["deployment"] == "live")
            #expect(notAllowed.json["error"]?["message"]?.stringValue?.contains("task/create, task/cancel, task/interrupt, event/send") == true)
            let deleted = try await h.request(.POST, "/agents/\(agentId)/deployments/old/rpc", json: Self.rpc())
            #expect(deleted.json["error"]?["data"]?["deployment"] == "old")
            #expect(deleted.json["error"]?["data"]?["agent"] == .string(agentId))
            let huge = #"{"method":"task/create","params":{"x":""# + String(repeating: "x", count: 10_500_000) + #""}}"#
            let tooBig = try await h.request(.POST, "/agents/\(agentId)/rpc", raw: huge)
            #expect(tooBig.status == 413)
            #expect(pod.calls.count == before, "a rejected RPC never reaches the agent")
            let noId = try await h.request(.POST, "/agents/\(agentId)/rpc", raw: #"{"method":"task/create","params":{}}"#)
            #expect(noId.status == 200, "a request without id or jsonrpc is answered like any other")
        }
    }

    @Test(arguments: Backend.all)
    func headerPolicyStripsCredentialsAndInjectsTheAgentKey(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let reply = try await h.register("headers", url: pod.url, deploymentId: "h1")
            let agentId = try #require(reply["id"]?.stringValue)
            let key = try #require(reply["agent_api_key"]?.stringValue)
            _ = try await h.waitFor(agentId, "h1", .ready)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "headers")?.productionDeploymentId }
            try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc(), headers: [
                ("authorization", "Bearer secret"), ("cookie", "session=1"), ("x-api-key", "k"),
                ("x-agent-api-key", "forged"), ("x-custom", "kept"), ("traceparent", "00-abc-def-01"),
                ("tracestate", "v=1"), ("accept-language", "fr"),
            ])
            let sent = try #require(pod.calls.last?.headers)
            #expect(sent["x-agent-api-key"] == .string(key), "Cutover's own key replaces the client's")
            #expect(sent["authorization"] == nil && sent["cookie"] == nil && sent["x-api-key"] == nil)
            #expect(sent["x-custom"] == "kept")
            #expect(sent["traceparent"] == "00-abc-def-01" && sent["tracestate"] == "v=1")
            #expect(sent["accept-language"] == nil)
            #expect(sent["x-request-id"]?.stringValue?.isEmpty == false, "added when the caller sent none")
            #expect(sent["content-length"] != nil)
            try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc(), headers: [("x-request-id", "mine")])
            #expect(pod.calls.last?.headers["x-request-id"] == "mine")
            let body = try #require(pod.calls.last?.body)
            let envelope = try JSONCodec.parse(body.readableBytesView).objectValue ?? [:]
            #expect(envelope["id"]?.stringValue?.hasPrefix("task/create-") == true, "the platform's envelope: \(envelope)")
            #expect(envelope["params"]?.objectValue?["agent"]?.objectValue?["id"] == .string(agentId))
        }
    }

    @Test(arguments: Backend.all)
    func streamsLineByLine(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("streamer", "s1", pod: pod, acpType: "sync")
            _ = try await eventually("auto-promotion") { try await h.agent(named: "streamer")?.productionDeploymentId }
            var request = HTTPClientRequest(url: h.baseURL + "/agents/\(agentId)/rpc")
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: JSONCodec.serialize(Self.streamedMessage())))
            let response = try await Harness.http.execute(request, timeout: .seconds(10))
            #expect(response.headers.first(name: "content-type") == "application/x-ndjson")
            var received = ""
            var iterator = response.body.makeAsyncIterator()
            while !received.contains("\n"), let chunk = try await iterator.next() { received += String(buffer: chunk) }
            #expect(received.contains(#""line":1"#), "the first line arrives while the agent still holds the last")
            #expect(!received.contains(#""line":2"#))
            pod.releaseStream()
            while let chunk = try await iterator.next() { received += String(buffer: chunk) }
            #expect(received.contains(#""line":2"#))
        }
    }

    @Test(arguments: Backend.all)
    func clientDisconnectCancelsTheUpstreamStream(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("dripper", "d1", pod: pod, acpType: "sync")
            _ = try await eventually("auto-promotion") { try await h.agent(named: "dripper")?.productionDeploymentId }
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            var request = HTTPClientRequest(url: h.baseURL + "/agents/\(agentId)/rpc")
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: JSONCodec.serialize(Self.streamedMessage(["drip": true]))))
            let response = try await client.execute(request, timeout: .seconds(10))
            #expect(response.headers.first(name: "content-type") == "application/x-ndjson")
            var iterator = response.body.makeAsyncIterator()
            let first = try await iterator.next()
            #expect(first.map { String(buffer: $0) }?.contains(#""drip":0"#) == true)
            try await client.shutdown()  // the caller goes away mid-stream
            // The agent's stream stops soon after, well before its 200 lines (4 s).
            let stopped = try await eventually(within: .seconds(3), "the upstream stream to be cancelled") { () -> Int? in
                let before = pod.dripped
                try await Task.sleep(for: .milliseconds(200))
                return pod.dripped == before ? before : nil
            }
            #expect(stopped < 100)
        }
    }

    @Test(arguments: Backend.all)
    func unreachableAndSlowAgentsAre502And504(_ backend: Backend) async throws {
        let slow = try await AgentStandIn.start()
        let dead = try await AgentStandIn.start()
        defer { Task { await slow.stop() } }
        try await Harness.with(backend, .init(rpcTimeout: .milliseconds(300))) { h in
            let (slowAgent, _) = try await h.readyDeployment("slowpoke", "slow", pod: slow)
            let (deadAgent, _) = try await h.readyDeployment("corpse", "dead", pod: dead)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "corpse")?.productionDeploymentId }
            _ = try await eventually("auto-promotion") { try await h.agent(named: "slowpoke")?.productionDeploymentId }
            await dead.stop()
            let unreachable = try await h.request(.POST, "/agents/\(deadAgent)/rpc", json: Self.rpc(id: 9))
            #expect(unreachable.status == 502)
            #expect(Self.errorCode(unreachable) == -32003)
            #expect(unreachable.json["id"] == 9)
            #expect(unreachable.json["error"]?["data"]?["deployment"] == "dead")
            let timeout = try await h.request(.POST, "/agents/\(slowAgent)/rpc", json: Self.rpc(params: ["params": ["sleep_ms": 2000]]))
            #expect(timeout.status == 504)
            #expect(Self.errorCode(timeout) == -32005)
            #expect(timeout.json["error"]?["data"]?["deployment"] == "slow")
        }
    }

    @Test(arguments: Backend.all)
    func routesComeFromTheCacheUntilAChangeInvalidatesThem(_ backend: Backend) async throws {
        let pod = try await AgentStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("cached", "c1", pod: pod)
            try await h.readyDeployment("cached", "c2", pod: pod)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "cached")?.productionDeploymentId }
            try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc())
            let loads = h.routes.loads
            for _ in 0..<5 { try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc()) }
            #expect(h.routes.loads == loads, "hits make no database query")
            try await h.post("/agents/\(agentId)/deployments/c2/promote")
            let after = try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc())
            #expect(after.headers.first(name: "x-cutover-deployment-id") == "c2")
            #expect(h.routes.loads == loads + 1)
        }
    }

    @Test(arguments: Backend.all)
    func noRPCIssuedAfterAPromotionReachesTheOldDeployment(_ backend: Backend) async throws {
        let blue = try await AgentStandIn.start()
        let green = try await AgentStandIn.start()
        defer { Task { await blue.stop(); await green.stop() } }
        try await Harness.with(backend) { h in
            let (agentId, _) = try await h.readyDeployment("cutover", "blue", pod: blue)
            try await h.readyDeployment("cutover", "green", pod: green)
            _ = try await eventually("auto-promotion") { try await h.agent(named: "cutover")?.productionDeploymentId }
            // Background traffic keeps the route cache hot while production flips.
            let background = Task {
                var served = 0
                while !Task.isCancelled {
                    let r = try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc())
                    if r.status == 200 { served += 1 }
                }
                return served
            }
            var misrouted: [String] = []
            for round in 0..<20 {
                let (target, pod) = round % 2 == 0 ? ("green", green) : ("blue", blue)
                let change = round % 2 == 0
                    ? try await h.post("/agents/\(agentId)/deployments/green/promote")
                    : try await h.post("/agents/\(agentId)/rollback")
                #expect(change.status == 200)
                #expect(change["id"] == .string(target))
                let marker = "round-\(round)"
                let reply = try await h.request(.POST, "/agents/\(agentId)/rpc", json: Self.rpc(params: ["params": ["marker": .string(marker)]]))
                if reply.headers.first(name: "x-cutover-deployment-id") != target { misrouted.append(marker) }
                let reached = pod.calls.contains {
                    (try? JSONCodec.parse($0.body.readableBytesView))?["params"]?["params"]?["marker"] == .string(marker)
                }
                if !reached { misrouted.append("\(marker) did not reach \(target)") }
            }
            background.cancel()
            _ = try? await background.value
            #expect(misrouted == [])
            #expect(try await h.checkInvariants() == [])
        }
    }
}
