import CutoverCore
import Foundation
import Testing

/// HTTP/1.1 on the RPC routes as clients use it, byte for byte: requests pipelined on one connection,
/// answers streamed in chunks between plain ones, `Connection: close` in the middle, and chunked request
/// bodies, which reach the agent with a Content-Length.
@Suite("HTTP/1.1 connections on the RPC routes")
struct HTTPConnectionTests {
    /// `close`: the request asks to end the connection with `close` among other options, as clients send it.
    static func post(_ path: String, _ body: JSONValue, close: Bool = false) -> String {
        let bytes = JSONCodec.string(body)
        return "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + (close ? "Connection: TE, close\r\nTE: trailers\r\n" : "") + "Content-Length: \(bytes.utf8.count)\r\n\r\n" + bytes
    }

    static func event(_ id: Int, task: String, _ text: String) -> JSONValue {
        ["jsonrpc": "2.0", "id": .number(Double(id)), "method": "event/send",
         "params": ["task_id": .string(task), "content": ["type": "text", "author": "user", "content": .string(text)]]]
    }

    /// An async agent with a task, and a sync agent with one, on one pod.
    func agents(_ h: Harness, _ pod: SDKPodStandIn) async throws -> (asyncTask: String, syncTask: String) {
        _ = try await h.register("pipes", url: pod.url, deploymentId: "p1")
        _ = try await h.register("pipes-sync", url: pod.url, deploymentId: "s1", acpType: "sync")
        for name in ["pipes", "pipes-sync"] {
            _ = try await eventually("\(name) in production") { try await h.agent(named: name)?.productionDeploymentId }
        }
        let created = try await h.request(
            .POST, "/agents/name/pipes/rpc", json: ["method": "task/create", "params": ["name": "job"]])
        let chat = try await h.request(
            .POST, "/agents/name/pipes-sync/rpc", json: ["method": "task/create", "params": ["name": "chat"]])
        return (try #require(created["result"]?["id"]?.stringValue), try #require(chat["result"]?["id"]?.stringValue))
    }

    func messages(_ h: Harness, _ taskId: String) async throws -> [String] {
        try await h.get("/messages?task_id=\(taskId)&order_direction=asc").array
            .compactMap { $0["content"]?["content"]?.stringValue }
    }

    /// Pipelined calls are answered one after the other, in order, a streamed answer's chunks included;
    /// the connection ends after the call that asked for `Connection: close`, and the call behind it is
    /// neither answered nor written nor forwarded.
    @Test(arguments: Backend.all)
    func pipelinedCallsAreAnsweredInOrderAndNothingAfterAClose(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            let (task, chat) = try await agents(h, pod)
            let forwarded = pod.calls.count
            let streamed: JSONValue = [
                "jsonrpc": "2.0", "id": "two", "method": "message/send",
                "params": ["task_id": .string(chat), "stream": true, "content": ["type": "text", "author": "user", "content": "a b"]],
            ]
            let requests = Self.post("/agents/name/pipes/rpc", Self.event(1, task: task, "first"))
                + Self.post("/agents/name/pipes-sync/rpc", streamed)
                + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                + Self.post("/agents/name/pipes/rpc", Self.event(3, task: task, "third"), close: true)
                + Self.post("/agents/name/pipes/rpc", Self.event(4, task: task, "after the close"))
            let answers = try await RawHTTP.pipeline(port: h.port, requests)

            #expect(answers.map(\.status) == [200, 200, 200, 200], "\(answers.map(\.head))")
            try #require(answers.count == 4)
            #expect(answers[0].json["id"] == 1)
            #expect(answers[0].json["result"]?["sequence_id"] == 1)
            #expect(answers[1].head.lowercased().contains("transfer-encoding: chunked"), "\(answers[1].head)")
            let lines = answers[1].body.split(separator: "\n").map { (try? JSONCodec.parse(String($0))) ?? .null }
            #expect(lines.count == 4, "a delta per word of \"echo: a b\" and the full message: \(answers[1].body)")
            #expect(lines.allSatisfy { $0["id"] == "two" })
            #expect(answers[2].json["status"] == "ok")
            #expect(answers[3].json["id"] == 3)
            #expect(answers[3].json["result"]?["sequence_id"] == 2)
            #expect(answers[3].closed, "the server closes the connection after the answer that said close")

            #expect(pod.calls.dropFirst(forwarded).map(\.method) == ["event/send", "message/send", "event/send"])
            #expect(try await messages(h, task) == ["first", "third"], "the call after the close is not written")
            #expect(try await messages(h, chat) == ["a b", "echo: a b"])
        }
    }

    /// A call whose body comes in chunks is answered as any other, and the agent receives the envelope
    /// with a Content-Length, never chunked.
    @Test(arguments: Backend.all)
    func aChunkedCallReachesTheAgentWithAContentLength(_ backend: Backend) async throws {
        let pod = try await SDKPodStandIn.start()
        defer { Task { await pod.stop() } }
        try await Harness.with(backend, .init(policy: .init(probe: .none))) { h in
            let (task, _) = try await agents(h, pod)
            let body = Array(JSONCodec.string(Self.event(9, task: task, "in three chunks")).utf8)
            let cuts = [0, body.count / 3, 2 * body.count / 3, body.count]
            var chunked = ""
            for (start, end) in zip(cuts, cuts.dropFirst()) {
                chunked += String(end - start, radix: 16) + "\r\n" + String(decoding: body[start..<end], as: UTF8.self) + "\r\n"
            }
            let request = "POST /agents/name/pipes/rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked + "0\r\n\r\n"
            let answers = try await RawHTTP.pipeline(port: h.port, request)

            try #require(answers.count == 1)
            #expect(answers[0].status == 200, "\(answers[0].head) \(answers[0].body)")
            #expect(answers[0].json["id"] == 9)
            #expect(answers[0].json["result"]?["sequence_id"] == 1)
            let call = try #require(pod.calls.last)
            #expect(call.method == "event/send")
            #expect(call.params["event"]?["content"]?["content"] == "in three chunks")
            #expect(call.headers["transfer-encoding"] == nil)
            #expect(call.headers["content-length"] == String(call.bodySize))
            #expect(try await messages(h, task) == ["in three chunks"])
        }
    }
}
