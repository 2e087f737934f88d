import AsyncHTTPClient
import CutoverAPI
import CutoverController
import CutoverCore
import CutoverRouting
import CutoverServer
import ServiceLifecycle
import CutoverRuntime
import CutoverStore
import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1

/// Cutover as `cutover serve` runs it (the same `CutoverApp` wiring and service group, an HTTP server on
/// a loopback port), with an HTTP client to drive it.
final class Harness: Sendable {
    let backend: Backend
    let store: any Store
    private let httpClient: HTTPClient
    let controlPlane: ControlPlane
    let controller: ControllerLoop<DeploymentReconciler>
    let retention: ControllerLoop<RetentionReconciler>
    /// On PostgreSQL: this replica's leader election.
    let elector: LeaderElector?
    let baseURL: String
    let port: Int
    let adminToken: String?
    let routes: RouteTable
    /// How requests reach Cutover: a real socket, or Hummingbird's router test client (no socket at all,
    /// for tests of the API alone).
    private let transport: Transport
    /// Whether the store is the harness's own (a fresh database it drops once stopped), not another
    /// replica's that the test shares.
    private let ownsStore: Bool
    static let http = HTTPClient(eventLoopGroupProvider: .singleton)

    enum Transport: Sendable {
        case socket(group: ServiceGroup, task: Task<Void, any Error>)
        case router(any TestClientProtocol, done: AsyncStream<Void>.Continuation, runner: Task<Void, any Error>)
    }
    struct Options: Sendable {
        var policy = ReconcilePolicy()
        var retention = RetentionPolicy(deletionGrace: .seconds(3600))
        var auth = AuthSettings()
        var allowedHosts = HostAllowlist.any
        var runController = true
        var rpcTimeout: Duration = .seconds(10)
        var taskAffinity = true
        var gcInterval: Duration = .seconds(60)
        var clock: any ControllerClock = SystemClock()
        /// false: no server socket; requests go through the router directly (controllers do not run).
        var socket = true
        /// A store to use instead of a fresh one (another replica on the same database).
        var store: (any Store)?
    }

    private init(
        backend: Backend, app: CutoverApp, ownsStore: Bool, port: Int, adminToken: String?, transport: Transport
    ) {
        self.backend = backend
        self.ownsStore = ownsStore
        store = app.store
        controlPlane = app.controlPlane
        httpClient = app.httpClient
        controller = app.deployments
        retention = app.retention
        elector = app.elector
        routes = app.routes
        self.port = port
        baseURL = "http://127.0.0.1:\(port)"
        self.adminToken = adminToken
        self.transport = transport
    }

    static func start(_ backend: Backend, _ options: Options = .init()) async throws -> Harness {
        var logger = Logger(label: "cutover-test")
        logger.logLevel = .warning
        let cutover = try await build(backend, options, logger: logger)
        if !options.socket {
            let app = cutover.application(address: .hostname("127.0.0.1", port: 0), logger: logger)
            let (clients, handOver) = AsyncStream<any TestClientProtocol>.makeStream()
            let (done, finish) = AsyncStream<Void>.makeStream()
            let runner = Task {
                try await app.test(.router) { client in
                    handOver.yield(client)
                    for await _ in done {}
                }
            }
            var iterator = clients.makeAsyncIterator()
            guard let client = await iterator.next() else { throw TestFailure("the router test client did not start") }
            return Harness(
                backend: backend, app: cutover, ownsStore: options.store == nil, port: 0, adminToken: options.auth.adminTokens.first,
                transport: .router(client, done: finish, runner: runner))
        }
        return try await startServer(cutover, backend, options, logger: logger)
    }

    private static func build(_ backend: Backend, _ options: Options, logger: Logger) async throws -> CutoverApp {
        let store: any Store
        if let given = options.store { store = given } else { store = try await backend.makeStore() }
        var app = CutoverApp.Options()
        app.reconcile = options.policy
        app.retention = options.retention
        app.auth = options.auth
        app.allowedHosts = options.allowedHosts
        app.rpcTimeout = options.rpcTimeout
        app.taskAffinity = options.taskAffinity
        app.gcInterval = options.gcInterval
        app.backoff = Backoff(base: .milliseconds(20), cap: .milliseconds(200))
        app.clock = options.clock
        return CutoverApp(store: store, options: app, logger: logger)
    }

    private static func startServer(_ cutover: CutoverApp, _ backend: Backend, _ options: Options, logger: Logger)
        async throws -> Harness
    {
        let (ports, announce) = AsyncStream<Int>.makeStream()
        let server = cutover.application(address: .hostname("127.0.0.1", port: 0), logger: logger) { channel in
            announce.yield(channel.localAddress?.port ?? 0)
        }
        let group = ServiceGroup(
            services: cutover.services(server: server, controllers: options.runController),
            gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw TestFailure("server did not start") }
        if let listener = cutover.listener {
            _ = try await eventually("listening for other replicas' changes") { listener.isListening ? true : nil }
        }
        return Harness(
            backend: backend, app: cutover, ownsStore: options.store == nil, port: port, adminToken: options.auth.adminTokens.first,
            transport: .socket(group: group, task: task))
    }

    func stop() async {
        switch transport {
        case .socket(let group, let task):
            await group.triggerGracefulShutdown()
            _ = try? await task.value
        case .router(_, let done, let runner):
            done.finish()
            _ = try? await runner.value
            try? await store.close()
            try? await httpClient.shutdown()
        }
        if ownsStore { await Backend.dropDatabase(of: store) }
    }

    /// Runs `body` against a fresh harness and always tears it down.
    static func with(
        _ backend: Backend, _ options: Options = .init(), _ body: (Harness) async throws -> Void
    ) async throws {
        await harnessSlots.acquire()
        defer { Task { await harnessSlots.release() } }
        let harness = try await start(backend, options)
        do {
            try await body(harness)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
    }

    /// Bounds how many harnesses run at once, so parallel tests stay within PostgreSQL's connections.
    static let harnessSlots = Slots(8)

    // MARK: HTTP

    struct Reply: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var json: JSONValue
        var text: String

        subscript(key: String) -> JSONValue? { json.objectValue?[key] }
        var array: [JSONValue] { if case .array(let a) = json { a } else { [] } }
        var message: String { json.objectValue?["message"]?.stringValue ?? "" }
        /// The `field` names of a 422's `data.errors`.
        var errorFields: [String] {
            guard case .array(let errors)? = json.objectValue?["data"]?.objectValue?["errors"] else { return [] }
            return errors.compactMap { $0.objectValue?["field"]?.stringValue }
        }
    }

    @discardableResult
    func request(
        _ method: HTTPMethod, _ path: String, json: JSONValue? = nil, raw: String? = nil,
        headers: [(String, String)]? = nil
    ) async throws -> Reply {
        if case .router(let client, _, _) = transport {
            return try await routerRequest(client, method, path, json: json, raw: raw, headers: headers)
        }
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let headers {
            for (k, v) in headers { request.headers.add(name: k, value: v) }
        } else if let adminToken {
            request.headers.add(name: "authorization", value: "Bearer \(adminToken)")
        }
        if let json {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: JSONCodec.serialize(json)))
        } else if let raw {
            request.body = .bytes(ByteBuffer(string: raw))
        }
        let response = try await Self.http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 << 20)
        let text = String(buffer: body)
        let parsed = (try? JSONCodec.parse(text)) ?? .null
        return Reply(status: Int(response.status.code), headers: response.headers, json: parsed, text: text)
    }

    private func routerRequest(
        _ client: any TestClientProtocol, _ method: HTTPMethod, _ path: String, json: JSONValue?, raw: String?,
        headers: [(String, String)]?
    ) async throws -> Reply {
        var fields = HTTPFields()
        let sent = headers ?? adminToken.map { [("authorization", "Bearer \($0)")] } ?? []
        for (name, value) in sent {
            if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
        }
        var body: ByteBuffer?
        if let json {
            fields[.contentType] = "application/json"
            body = ByteBuffer(bytes: JSONCodec.serialize(json))
        } else if let raw {
            body = ByteBuffer(string: raw)
        }
        let response = try await client.executeRequest(
            uri: path, method: HTTPRequest.Method(method.rawValue)!, headers: fields, body: body)
        var responseHeaders = HTTPHeaders()
        for field in response.headers { responseHeaders.add(name: field.name.canonicalName, value: field.value) }
        let text = String(buffer: response.body)
        let parsed = (try? JSONCodec.parse(text)) ?? .null
        return Reply(status: Int(response.status.code), headers: responseHeaders, json: parsed, text: text)
    }

    @discardableResult func get(_ path: String) async throws -> Reply { try await request(.GET, path) }
    @discardableResult func post(_ path: String, _ json: JSONValue? = nil) async throws -> Reply { try await request(.POST, path, json: json) }
    @discardableResult func delete(_ path: String) async throws -> Reply { try await request(.DELETE, path) }

    // MARK: Scenario helpers

    /// Registers a pod; with `deploymentId` it is deployment-scoped.
    @discardableResult
    func register(
        _ name: String, url: String, deploymentId: String? = nil, acpType: String = "async", image: String? = nil
    ) async throws -> Reply {
        var metadata: [String: JSONValue] = [:]
        if let deploymentId { metadata["deployment_id"] = .string(deploymentId) }
        if let image { metadata["docker_image"] = .string(image) }
        return try await post("/agents/register", [
            "name": .string(name), "description": "test agent", "acp_url": .string(url), "acp_type": .string(acpType),
            "registration_metadata": metadata.isEmpty ? .null : .object(metadata),
        ])
    }

    func deployment(_ agentId: String, _ id: String) async throws -> Deployment? {
        try await store.read { try await $0.deployment(id: id) }.flatMap { $0.agentId == agentId ? $0 : nil }
    }

    func agent(named name: String) async throws -> Agent? {
        try await store.read { try await $0.agent(name: name) }
    }

    /// Waits (bounded) until the deployment reaches `status`.
    func waitFor(
        _ agentId: String, _ id: String, _ status: DeploymentStatus, within limit: Duration = .seconds(10)
    ) async throws -> Deployment {
        try await eventually(within: limit, "deployment \(id) to become \(status.rawValue)") {
            if let d = try await deployment(agentId, id), d.status == status { return d }
            return nil
        }
    }

    /// A deployment registered to a healthy stand-in and waited to `Ready`.
    @discardableResult
    func readyDeployment(
        _ name: String, _ id: String, pod: AgentStandIn, acpType: String = "async"
    ) async throws -> (agentId: String, Deployment) {
        let reply = try await register(name, url: pod.url, deploymentId: id, acpType: acpType)
        guard reply.status == 200, let agentId = reply["id"]?.stringValue else {
            throw TestFailure("registration failed: \(reply.status) \(reply.text)")
        }
        return (agentId, try await waitFor(agentId, id, .ready))
    }

    /// Everything the invariant checks and the "nothing changed" assertions compare.
    struct Snapshot: Equatable, Sendable {
        var agents: [Agent]
        var deployments: [Deployment]
        var eventCount: Int
    }

    func snapshot() async throws -> Snapshot {
        try await store.read { tx in
            let all = Page(limit: 1000, orderBy: "created_at", direction: .asc)
            let agents = try await tx.listAgents(page: all)
            var deployments: [Deployment] = []
            var events = 0
            for agent in agents {
                deployments += try await tx.listDeployments(agentId: agent.id, includeDeleted: true, page: all) ?? []
                events += try await tx.listEvents(agentId: agent.id, deploymentId: nil, page: all).count
            }
            return Snapshot(agents: agents, deployments: deployments, eventCount: events)
        }
    }

    /// The record invariants (one production per agent, a pointer to a Ready, live production, no deleted production) over the whole database.
    func checkInvariants() async throws -> [String] {
        let s = try await snapshot()
        var violations: [String] = []
        for agent in s.agents {
            let mine = s.deployments.filter { $0.agentId == agent.id }
            let production = mine.filter(\.isProduction)
            if production.count > 1 { violations.append("agent \(agent.name) has \(production.count) production deployments") }
            if let pointer = agent.productionDeploymentId {
                guard let target = mine.first(where: { $0.id == pointer }) else {
                    violations.append("agent \(agent.name) points at unknown deployment \(pointer)")
                    continue
                }
                if !target.isProduction { violations.append("agent \(agent.name) points at non-production \(pointer)") }
                if target.status != .ready { violations.append("production \(pointer) is \(target.status)") }
                if target.isDeleted { violations.append("production \(pointer) is soft-deleted") }
            } else if !production.isEmpty {
                violations.append("agent \(agent.name) has production \(production[0].id) but a null pointer")
            }
        }
        return violations
    }
}

/// Polls `probe` until it returns a value, failing after `limit`: a bounded wait, never a bare sleep.
func eventually<T: Sendable>(
    within limit: Duration = .seconds(10), _ what: String, _ probe: () async throws -> T?
) async throws -> T {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if let value = try await probe() { return value }
        try await Task.sleep(for: .milliseconds(20))
    }
    if let value = try await probe() { return value }
    throw TestFailure("timed out after \(limit) waiting for \(what)")
}

extension JSONValue {
    subscript(key: String) -> JSONValue? { objectValue?[key] }
}

/// A counting semaphore for async code.
actor Slots {
    private var free: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { free = count }

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { free += 1 } else { waiters.removeFirst().resume() }
    }
}
