import CutoverCore
import Hummingbird
import NIOCore
import Synchronization

/// An agent pod that answers `POST /api` the way an agentex-sdk 0.28.4 pod does (see docs/tasks.md):
/// it validates the platform's envelope as the SDK's models do (an `id`; `params.agent` with id, name,
/// description, acp_type, created_at, updated_at; `params.task` with an id; each method's own fields),
/// answers a JSON-RPC error inside an HTTP 200 when they are missing, answers `message/send` as NDJSON
/// TaskMessageUpdates whether or not `stream` is set, acknowledges `event/send` and `task/cancel` with
/// `{"status": "processing"}`, and has no `task/interrupt` handler (−32601), like a default pod.
final class SDKPodStandIn: Sendable {
    struct Received: Sendable {
        var envelope: [String: JSONValue]
        var headers: [String: String]
        /// The body's length as it arrived.
        var bodySize: Int
        var method: String { envelope["method"]?.stringValue ?? "" }
        var params: [String: JSONValue] { envelope["params"]?.objectValue ?? [:] }
        var taskId: String? { params["task"]?.objectValue?["id"]?.stringValue }
    }

    private let received = Mutex<[Received]>([])
    private let server: Mutex<RunningServer?> = Mutex(nil)
    /// Words of a streamed answer are sent this far apart.
    let wordGap: Duration
    let port: Mutex<Int> = Mutex(0)
    var url: String { "http://127.0.0.1:\(port.withLock { $0 })" }
    var calls: [Received] { received.withLock { $0 } }

    private init(wordGap: Duration) { self.wordGap = wordGap }

    static func start(wordGap: Duration = .milliseconds(1)) async throws -> SDKPodStandIn {
        let pod = SDKPodStandIn(wordGap: wordGap)
        let router = Router()
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"healthy"}"#)))
        }
        router.post("/api") { request, _ in try await pod.answer(request) }
        let running = try await RunningServer.start(router: router)
        pod.server.withLock { $0 = running }
        pod.port.withLock { $0 = running.port }
        return pod
    }

    func stop() async {
        if let running = server.withLock({ $0 }) { await running.stop() }
    }

    private func answer(_ request: Request) async throws -> Response {
        let bytes = try await request.body.collect(upTo: 16 << 20)
        let envelope = (try? JSONCodec.parse(bytes.readableBytesView))?.objectValue ?? [:]
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        received.withLock { $0.append(Received(envelope: envelope, headers: headers, bodySize: bytes.readableBytes)) }

        // Without an id the SDK treats the request as a notification and answers a bare null.
        guard let id = envelope["id"], id != .null else { return json("null") }
        let method = envelope["method"]?.stringValue ?? ""
        let params = envelope["params"]?.objectValue ?? [:]
        if let problem = Self.problem(method: method, params: params) {
            return reply(id, error: (-32603, problem))
        }
        switch method {
        case "task/create":
            return reply(id, result: .null)
        case "event/send", "task/cancel":
            return reply(id, result: ["status": "processing"])
        case "message/send":
            let text = params["content"]?.objectValue?["content"]?.stringValue ?? ""
            let echo = "echo: \(text)"
            let full: JSONValue = [
                "type": "full", "index": 0, "parent_task_message": nil,
                "content": ["type": "text", "author": "agent", "content": .string(echo), "format": "plain", "style": "static"],
            ]
            let stream = params["stream"] == .bool(true)
            let gap = wordGap
            return Response(
                status: .ok, headers: [.contentType: "application/x-ndjson"],
                body: .init { writer in
                    if stream {
                        for (i, word) in echo.split(separator: " ").enumerated() {
                            let delta: JSONValue = [
                                "type": "delta", "index": 0, "parent_task_message": nil,
                                "delta": ["type": "text", "text_delta": .string((i == 0 ? "" : " ") + word)],
                            ]
                            try await writer.write(Self.line(["jsonrpc": "2.0", "id": id, "result": delta, "error": nil]))
                            try await Task.sleep(for: gap)
                        }
                    }
                    try await writer.write(Self.line(["jsonrpc": "2.0", "id": id, "result": full, "error": nil]))
                    try await writer.finish(nil)
                })
        default:
            return reply(id, error: (-32601, "Method \(method) not found"))
        }
    }

    /// What the SDK's models would refuse, as their validation message would say it.
    static func problem(method: String, params: [String: JSONValue]) -> String? {
        guard let agent = params["agent"]?.objectValue else { return "agent: Field required" }
        for field in ["id", "name", "description", "acp_type", "created_at", "updated_at"] where agent[field] == nil || agent[field] == .null {
            return "agent.\(field): Field required"
        }
        guard params["task"]?.objectValue?["id"]?.stringValue != nil else { return "task.id: Field required" }
        switch method {
        case "message/send":
            guard let content = params["content"]?.objectValue, content["type"]?.stringValue != nil else {
                return "content: Field required"
            }
        case "event/send":
            guard let event = params["event"]?.objectValue else { return "event: Field required" }
            for field in ["id", "agent_id", "task_id"] where event[field]?.stringValue == nil { return "event.\(field): Field required" }
            guard case .number? = event["sequence_id"] else { return "event.sequence_id: Field required" }
        default:
            break
        }
        return nil
    }

    private static func line(_ value: JSONValue) -> ByteBuffer {
        ByteBuffer(string: JSONCodec.string(value) + "\n")
    }

    private func json(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    private func reply(_ id: JSONValue, result: JSONValue) -> Response {
        json(JSONCodec.string(["jsonrpc": "2.0", "id": id, "result": result, "error": nil]))
    }

    private func reply(_ id: JSONValue, error: (Int, String)) -> Response {
        json(JSONCodec.string([
            "jsonrpc": "2.0", "id": id, "result": nil,
            "error": ["code": .number(Double(error.0)), "message": .string(error.1), "data": nil],
        ]))
    }
}
