import ArgumentParser
import AsyncHTTPClient
import CutoverAPI
import CutoverController
import CutoverCore
import CutoverRouting
import CutoverStore
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the API, the RPC router and the controller.")

    @OptionGroup var options: ServeOptions

    func run() async throws {
        let settings = try ServeSettings(options)
        try settings.checkExposure()
        let logger = Logging.bootstrap(json: settings.logJSON, level: settings.logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let url = try parseDatabaseURL(settings.databaseURL)
        let store = try await StoreFactory.open(url, logger: logger)
        let applied = try await store.migrate()
        logger.info("database ready", metadata: ["database": "\(url.redacted)", "migrations_applied": "\(applied)"])

        let httpClient = HTTPClient.forProxying()
        let controlPlane = ControlPlane(
            store: store,
            settings: ControlPlaneSettings(reconcile: settings.reconcile, deletionGrace: settings.deletionGrace),
            logger: logger)
        let controller = DeploymentController(
            controlPlane: controlPlane, prober: HTTPReadinessProber(client: httpClient),
            settings: ControllerSettings(workers: settings.workers, resyncInterval: settings.resyncInterval),
            logger: logger)
        // Single-process form: this replica always leads.
        Gauge(label: "cutover_leader").record(1)

        let router = CutoverAPI.router(
            APIDependencies(
                controlPlane: controlPlane,
                auth: AuthSettings(adminTokens: settings.adminTokens, registrationTokens: settings.registrationTokens),
                allowedHosts: settings.allowedHosts,
                metrics: {
                    var buffer: [UInt8] = []
                    registry.emit(into: &buffer)
                    return String(decoding: buffer, as: UTF8.self)
                },
                proxy: RPCProxy(client: httpClient, timeout: settings.rpcTimeout)))
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "cutover"),
            onServerRunning: { channel in
                logger.info("listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
            },
            logger: logger)

        var groupConfig = ServiceGroupConfiguration(
            services: [.init(service: app), .init(service: controller)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        groupConfig.maximumGracefulShutdownDuration = settings.shutdownGrace
        let group = ServiceGroup(configuration: groupConfig)
        do {
            try await group.run()
        } catch {
            logger.error("stopped with an error", metadata: ["error": "\(error)"])
        }
        try? await httpClient.shutdown()
        try? await store.close()
        logger.info("stopped")
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending database migrations and exit.")

    @Option(help: "sqlite://PATH or postgres://user:pw@host:port/db [CUTOVER_DATABASE_URL]")
    var databaseURL: String?

    func run() async throws {
        let logger = Logging.bootstrap(json: false, level: "info")
        let text = databaseURL ?? ProcessInfo.processInfo.environment["CUTOVER_DATABASE_URL"] ?? "sqlite://cutover.sqlite"
        let url = try parseDatabaseURL(text)
        let store = try await StoreFactory.open(url, logger: logger)
        let applied = try await store.migrate()
        try await store.close()
        print(applied.isEmpty ? "\(url.redacted): up to date" : "\(url.redacted): applied \(applied.map(String.init).joined(separator: ", "))")
    }
}

func parseDatabaseURL(_ text: String) throws -> DatabaseURL {
    do {
        return try DatabaseURL(parsing: text)
    } catch {
        throw ValidationError("--database-url: \(error.message)")
    }
}

extension HTTPClient {
    /// The one outbound client (RPC proxy and readiness probes): pooled keep-alive connections, no
    /// redirects, a pool large enough for many concurrent RPCs to one agent.
    static func forProxying() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 512)
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}
