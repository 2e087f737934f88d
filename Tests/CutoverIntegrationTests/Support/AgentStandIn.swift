import CutoverCore
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real agent pod on a loopback port: `GET /healthz` answers as configured, `POST /api` echoes.
final class AgentStandIn: Sendable {
    enum Health: Sendable {
        case healthy
        case unhealthy
        /// Healthy, but the answer takes this long.
        case slow(Duration)
        /// A 200 head promising 100 bytes, then one byte every 300 ms.
        case trickle
    }

    struct RecordedCall: Sendable {
        var body: ByteBuffer
        var headers: [String: JSONValue]
        var method: String
    }

    final class HealthBox: Sendable {
        let value: Mutex<Health>
        let calls = Mutex<[RecordedCall]>([])
        let dripped = Mutex(0)
        let releases = Mutex<(count: Int, waiters: [CheckedContinuation<Void, Never>])>((0, []))
        init(_ h: Health) { value = Mutex(h) }

        /// A streaming reply waits here between its lines until the test calls `release()`.
        func waitForRelease() async {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = releases.withLock { r -> Bool in
                    if r.count > 0 { r.count -= 1; return true }
                    r.waiters.append(c)
                    return false
                }
                if ready { c.resume() }
            }
        }

        func release() {
            let waiter = releases.withLock { r -> CheckedContinuation<Void, Never>? in
                if r.waiters.isEmpty { r.count += 1; return nil }
                return r.waiters.removeFirst()
            }
            waiter?.resume()
        }
    }

    private let health: HealthBox
    private let server: RunningServer
    let port: Int
    var url: String { "http://127.0.0.1:\(port)" }

    private init(health: HealthBox, server: RunningServer) {
        self.health = health
        self.server = server
        self.port = server.port
    }

    static func start(_ health: Health = .healthy) async throws -> AgentStandIn {
        let state = HealthBox(health)
        let router = Router()
        router.get("/healthz") { _, _ -> Response in
            switch state.value.withLock({ $0 }) {
            case .healthy:
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: #"{"status":"healthy"}"#)))
            case .unhealthy:
                return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: "starting")))
            case .slow(let delay):
                try await Task.sleep(for: delay)
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: #"{"status":"healthy"}"#)))
            case .trickle:
                return Response(
                    status: .ok, headers: [.contentLength: "100"],
                    body: .init { writer in
                        for _ in 0..<100 {
                            try await writer.write(ByteBuffer(string: " "))
                            try await Task.sleep(for: .milliseconds(300))
                        }
                        try await writer.finish(nil)
                    })
            }
        }
        router.post("/api") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 16 << 20)
            let rpc = (try? JSONCodec.parse(body.readableBytesView))?.objectValue ?? [:]
            var headers: [String: JSONValue] = [:]
            for field in request.headers { headers[field.name.canonicalName] = .string(field.value) }
            let call = RecordedCall(body: body, headers: headers, method: rpc["method"]?.stringValue ?? "")
            state.calls.withLock { $0.append(call) }
            // Knobs come in the client's params when a body is passed through, and inside the platform's
            // envelope otherwise: task/create's task params, or message/send's content object.
            let outer = rpc["params"]?.objectValue ?? [:]
            let params = outer.merging(outer["params"]?.objectValue ?? [:]) { a, _ in a }
                .merging(outer["content"]?.objectValue ?? [:]) { a, _ in a }
            if case .number(let ms)? = params["sleep_ms"] { try await Task.sleep(for: .milliseconds(Int(ms))) }
            let id = rpc["id"] ?? .null
            if params["drip"] == .bool(true) {
                // A long stream: a line every 20 ms, counting the lines that were written before the
                // connection went away.
                return Response(
                    status: .ok, headers: [.contentType: "application/x-ndjson"],
                    body: .init { writer in
                        for n in 0..<200 {
                            try await writer.write(ByteBuffer(string: JSONCodec.string(["id": id, "result": ["drip": .number(Double(n))]]) + "\n"))
                            state.dripped.withLock { $0 = n + 1 }
                            try await Task.sleep(for: .milliseconds(20))
                        }
                        try await writer.finish(nil)
                    })
            }
            if params["stall"] == .bool(true) {
                // Promises 100 bytes, sends 11, then falls silent.
                return Response(
                    status: .ok, headers: [.contentType: "application/json", .contentLength: "100"],
                    body: .init { writer in
                        try await writer.write(ByteBuffer(string: #"{"result":1"#))
                        try await Task.sleep(for: .seconds(30))
                        try await writer.finish(nil)
                    })
            }
            if params["stall_stream"] == .bool(true) {
                // One line of a stream, then silence.
                return Response(
                    status: .ok, headers: [.contentType: "application/x-ndjson"],
                    body: .init { writer in
                        try await writer.write(ByteBuffer(string: JSONCodec.string(["id": id, "result": ["line": 1]]) + "\n"))
                        try await Task.sleep(for: .seconds(30))
                        try await writer.finish(nil)
                    })
            }
            if params["stream"] == .bool(true) {
                return Response(
                    status: .ok, headers: [.contentType: "application/x-ndjson"],
                    body: .init { writer in
                        try await writer.write(ByteBuffer(string: JSONCodec.string(["id": id, "result": ["line": 1]]) + "\n"))
                        await state.waitForRelease()
                        try await writer.write(ByteBuffer(string: JSONCodec.string(["id": id, "result": ["line": 2]]) + "\n"))
                        try await writer.finish(nil)
                    })
            }
            let reply: JSONValue = ["jsonrpc": "2.0", "id": id, "result": ["echo": .object(rpc), "headers": .object(headers)]]
            return Response(status: .ok, headers: [.contentType: "application/json", .init("x-agent-says")!: "hello"],
                            body: .init(byteBuffer: ByteBuffer(bytes: JSONCodec.serialize(reply))))
        }
        return AgentStandIn(health: state, server: try await RunningServer.start(router: router))
    }

    func setHealth(_ h: Health) { health.value.withLock { $0 = h } }
    var calls: [RecordedCall] { health.calls.withLock { $0 } }
    func releaseStream() { health.release() }
    /// Lines of the current drip stream written so far.
    var dripped: Int { health.dripped.withLock { $0 } }

    func stop() async { await server.stop() }
}

/// A Hummingbird application on an ephemeral loopback port, shut down gracefully by `stop()`.
struct RunningServer: Sendable {
    let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    static func start<R: HTTPResponderBuilder>(router: R, server: HTTPServerBuilder = .http1()) async throws -> RunningServer
    where R.Responder.Context: RequestContext, R.Responder.Context.Source == ApplicationRequestContextSource {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "test-server")
        logger.logLevel = .warning
        let app = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger)
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw TestFailure("server did not start") }
        return RunningServer(port: port, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}
