import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real agent pod on a loopback port: `GET /healthz` answers as configured, `POST /api` echoes.
final class AgentStandIn: Sendable {
    enum Health: Sendable {
        case healthy
        case unhealthy
    }

    final class HealthBox: Sendable {
        let value: Mutex<Health>
        init(_ h: Health) { value = Mutex(h) }
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
            }
        }
        router.post("/api") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
        return AgentStandIn(health: state, server: try await RunningServer.start(router: router))
    }

    func setHealth(_ h: Health) { health.value.withLock { $0 = h } }

    func stop() async { await server.stop() }
}

/// A Hummingbird application on an ephemeral loopback port, shut down gracefully by `stop()`.
struct RunningServer: Sendable {
    let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    static func start<R: HTTPResponderBuilder>(router: R) async throws -> RunningServer
    where R.Responder.Context: RequestContext, R.Responder.Context.Source == ApplicationRequestContextSource {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "test-server")
        logger.logLevel = .warning
        let app = Application(
            router: router,
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
