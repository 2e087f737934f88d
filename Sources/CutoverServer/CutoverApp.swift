import AsyncHTTPClient
import CutoverAPI
import CutoverController
import CutoverCore
import CutoverRouting
import CutoverRuntime
import CutoverStore
import Hummingbird
import HummingbirdCore
import Logging
import Metrics
import NIOCore
import ServiceLifecycle

/// Cutover assembled: the store, the outbound HTTP client, the route cache, the controllers and the
/// router, wired the same way for `cutover serve` and for the tests.
public struct CutoverApp {
    /// What the wiring needs beyond the store: the parts of `ServerSettings` that shape behaviour, with
    /// seams for tests (a clock, a faster backoff, a shorter probe timeout).
    public struct Options: Sendable {
        public var reconcile = ReconcilePolicy()
        public var retention = RetentionPolicy()
        public var auth = AuthSettings()
        public var allowedHosts = HostAllowlist.any
        public var rpcTimeout: Duration = .seconds(60)
        public var taskAffinity = true
        public var probeTimeout: Duration = .seconds(2)
        public var workers = 4
        public var resyncInterval: Duration = .seconds(30)
        public var gcInterval: Duration = .seconds(60)
        public var backoff = Backoff()
        public var clock: any ControllerClock = SystemClock()
        /// Who may reconcile: by default the PostgreSQL leader election, or always this process on SQLite.
        public var gate: (any LeaderGate)?
        /// Renders `/metrics`; nil serves an empty page.
        public var metrics: (@Sendable () -> String)?

        public init() {}

        public init(_ settings: ServerSettings) {
            reconcile = settings.reconcile
            retention = settings.retention
            auth = AuthSettings(adminTokens: settings.adminTokens, registrationTokens: settings.registrationTokens)
            allowedHosts = settings.allowedHosts
            rpcTimeout = settings.rpcTimeout
            taskAffinity = settings.taskAffinity
            workers = settings.workers
            resyncInterval = settings.resyncInterval
            gcInterval = settings.gcInterval
        }
    }

    public let store: any Store
    public let controlPlane: ControlPlane
    public let routes: RouteTable
    public let httpClient: HTTPClient
    /// The RPC path's own connections to `http` agents.
    let upstream = UpstreamClient()
    public let deployments: ControllerLoop<DeploymentReconciler>
    public let retention: ControllerLoop<RetentionReconciler>
    public let router: Router<APIRequestContext>
    /// On PostgreSQL: hears the other replicas' commits.
    public let listener: ChangeListener?
    /// On PostgreSQL: decides which replica reconciles.
    public let elector: LeaderElector?

    public init(store: any Store, options: Options, logger: Logger) {
        self.store = store
        httpClient = Outbound.makeClient(idleRead: options.rpcTimeout)
        controlPlane = ControlPlane(
            store: store,
            settings: ControlPlaneSettings(reconcile: options.reconcile, deletionGrace: options.retention.deletionGrace),
            logger: logger)
        routes = RouteTable(store: store)
        elector = options.gate == nil ? store.postgresConfiguration.map { LeaderElector(configuration: $0, logger: logger) } : nil
        let gate: any LeaderGate = options.gate ?? elector ?? AlwaysLeader()
        if elector == nil { Gauge(label: "cutover_leader").record(1) }
        deployments = ControllerLoop(
            DeploymentReconciler(
                store: store, policy: options.reconcile,
                prober: HTTPReadinessProber(client: httpClient, timeout: options.probeTimeout), clock: options.clock,
                logger: logger),
            settings: LoopSettings(workers: options.workers, resyncInterval: options.resyncInterval, backoff: options.backoff),
            clock: options.clock, gate: gate, logger: logger)
        retention = ControllerLoop(
            RetentionReconciler(store: store, policy: options.retention, clock: options.clock, logger: logger),
            settings: LoopSettings(workers: 1, resyncInterval: options.gcInterval, backoff: options.backoff),
            clock: options.clock, gate: gate, logger: logger)
        listener = store.changeListener(logger: logger) { [routes, deployments, retention] in
            routes.invalidateAll()
            Task {
                await deployments.resync()
                await retention.resync()
            }
        }
        var dependencies = APIDependencies(
            controlPlane: controlPlane, auth: options.auth, allowedHosts: options.allowedHosts,
            metrics: options.metrics.map { render in
                { @Sendable in
                    await ControllerMetrics.refreshDeploymentCounts(store)
                    return render()
                }
            },
            proxy: RPCProxy(client: httpClient, upstream: upstream, timeout: options.rpcTimeout),
            routes: routes)
        if let listener { dependencies.hearsChanges = { listener.isListening } }
        dependencies.taskAffinity = options.taskAffinity
        router = CutoverAPI.router(dependencies)
    }

    /// The HTTP server on `address`, with Cutover's connection handling.
    public func application(
        address: BindAddress, serverName: String? = nil, logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: router, server: CutoverAPI.httpServer,
            configuration: .init(address: address, serverName: serverName), onServerRunning: onServerRunning,
            logger: logger)
    }

    /// Every part as a service of one group, in start order; the group stops them in reverse: the HTTP
    /// server drains first, then the controllers stop, then the outbound client and the store close.
    public func services(server: some Service, controllers: Bool = true) -> [any Service] {
        var services: [any Service] = [
            Closing { [store] in try? await store.close() },
            Closing { [httpClient] in try? await httpClient.shutdown() },
            Closing { [upstream] in upstream.shutdown() },
        ]
        if let listener { services.append(listener) }
        if controllers { services += [deployments, retention] as [any Service] }
        services.append(server)
        // Last, so that a graceful shutdown reaches it first: leadership goes before the server drains.
        if controllers, let elector { services.append(elector) }
        return services
    }
}

/// A service that holds a resource open until the group shuts it down, then closes it.
struct Closing: Service {
    let close: @Sendable () async -> Void

    func run() async {
        try? await gracefulShutdown()
        await close()
    }
}
