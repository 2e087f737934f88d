import ArgumentParser
import AsyncHTTPClient
import CutoverAPI
import CutoverController
import CutoverCore
import CutoverRouting
import CutoverServer
import CutoverRuntime
import CutoverStore
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO
import Prometheus
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the API, the RPC router and the controller.")

    @OptionGroup var options: ServeOptions

    /// Settings are checked here rather than in `run()` so that a bad one is reported with `serve`'s usage,
    /// not the root command's.
    func validate() throws {
        let settings = try options.settings()
        do { try settings.checkExposure() } catch { throw ValidationError(error.description) }
    }

    func run() async throws {
        let settings = try options.settings()
        let logger = Logging.bootstrap(json: settings.logJSON, level: settings.logLevel)
        if let warning = settings.openRegistrationWarning { logger.warning("\(warning)") }
        if Cutover.prefersEventLoopExecutor(self), !EventLoopExecutor.isInstalled {
            logger.warning(
                "the event-loop executor is not installed (another enqueue hook was set first): async code runs on Swift's own thread pool, two more thread switches per database round trip")
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let url = settings.database
        let (store, applied) = try await openDatabase(url, logger: logger)
        logger.info(
            "database ready",
            metadata: ["database": "\(url.redacted)", "migrations_applied": "\(applied.map(String.init).joined(separator: ","))"])

        var options = CutoverApp.Options(settings)
        options.metrics = {
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return String(decoding: buffer, as: UTF8.self)
        }
        let cutover = CutoverApp(store: store, options: options, logger: logger)

        let listening = Latch()
        // Hummingbird announces its own "Server started and listening" at info; ours below says the same
        // in our format, so the server's logger starts at notice (request warnings and errors still show).
        var serverLogger = logger
        if serverLogger.logLevel == .info { serverLogger.logLevel = .notice }
        let server = cutover.application(
            address: .hostname(settings.host, port: settings.port), serverName: "cutover", logger: serverLogger
        ) { [host = settings.host, port = settings.port] channel in
            listening.set()
            let address = ServerSettings.address(host: host, port: channel.localAddress?.port ?? port)
            logger.info(
                "listening",
                metadata: [
                    "address": "\(address)",
                    // Where async code runs: says whether the event-loop executor took, in any build.
                    "executor": "\(EventLoopExecutor.isInstalled ? "event loops" : "concurrency pool")",
                ])
        }

        var groupConfig = ServiceGroupConfiguration(
            services: cutover.services(server: server).map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        groupConfig.maximumGracefulShutdownDuration = settings.shutdownGrace
        let group = ServiceGroup(configuration: groupConfig)
        do {
            try await group.run()
        } catch {
            let bindFailed = !listening.isSet && (error is IOError || error is SocketAddressError)
            logger.error(
                "\(bindFailed ? "cannot listen on \(settings.address)" : "stopped with an error"): \(describe(error))")
            throw ExitCode.failure
        }
        logger.info("stopped")
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending database migrations and exit.")

    @Option(help: .setting(
        "sqlite://PATH or postgres://user:pw@host:port/db", default: "sqlite://cutover.sqlite",
        env: "CUTOVER_DATABASE_URL", value: "url"))
    var databaseURL: String?

    func validate() throws {
        _ = try database()
    }

    func run() async throws {
        let logger = Logging.bootstrap(json: false, level: "info")
        let url = try database()
        let (store, applied) = try await openDatabase(url, logger: logger)
        try await store.close()
        print(applied.isEmpty ? "\(url.redacted): up to date" : "\(url.redacted): applied \(applied.map(String.init).joined(separator: ", "))")
    }

    func database() throws -> DatabaseURL {
        if let databaseURL { return try parseDatabaseURL(databaseURL, name: "--database-url") }
        guard let text = ProcessInfo.processInfo.environment["CUTOVER_DATABASE_URL"], !text.isEmpty else {
            return .sqliteFile("cutover.sqlite")
        }
        return try parseDatabaseURL(text, name: "CUTOVER_DATABASE_URL")
    }
}

/// Opens the database and applies pending migrations. A failure is logged as one line naming the
/// database and the cause, and the process exits 1: a stack trace or a retry loop tells an operator less.
func openDatabase(_ url: DatabaseURL, logger: Logger) async throws -> (any Store, [Int]) {
    if case .sqliteFile(let path) = url {
        // SQLite creates the file but not its directory; `sqlite://data/cutover.sqlite` should just work.
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                logger.error("cannot create the directory \(directory) for the database at \(url.redacted): \(describe(error))")
                throw ExitCode.failure
            }
        }
    }
    let store: any Store
    do {
        store = try await StoreFactory.open(url, logger: logger)
    } catch {
        let what = if case .postgres = url { "cannot reach" } else { "cannot open" }
        logger.error("\(what) the database at \(url.redacted): \(describe(error))")
        throw ExitCode.failure
    }
    do {
        return (store, try await store.migrate())
    } catch {
        // A pool that connects lazily reports an unreachable server only here, at the first statement.
        let what = store.isUnavailable(error) ? "cannot reach the database at" : "cannot apply migrations to the database at"
        try? await store.close()
        logger.error("\(what) \(url.redacted): \(describe(error))")
        throw ExitCode.failure
    }
}

/// The cause of `error` in a few words a person can act on. Several of the errors that reach here
/// describe themselves poorly: PostgresNIO's on purpose ("Database error", so no query text leaks into
/// logs), NIO's with the system call that failed, Foundation's with a generic sentence.
func describe(_ error: any Error) -> String {
    switch error {
    case let error as CutoverError:
        return error.problem
    case let error as PSQLError:
        if let underlying = error.underlying { return describe(underlying) }
        if let message = error.serverInfo?[.message] {
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        return "PostgreSQL error \(error.code)"
    case let error as NIOConnectionError:
        if let dns = error.dnsAError ?? error.dnsAAAAError { return "cannot resolve \(error.host): \(describe(dns))" }
        if let first = error.connectionErrors.first { return describe(first.error) }
        return "\(error)"
    case let error as IOError:
        return systemMessage(error.errnoCode)
    case let error as SocketAddressError:
        if case .unknown(let host, _) = error { return "cannot resolve \(host)" }
        return "\(error)"
    case let error as NSError where error.domain == NSCocoaErrorDomain || error.domain == NSPOSIXErrorDomain:
        if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return systemMessage(Int32(underlying.code))
        }
        if error.domain == NSPOSIXErrorDomain { return systemMessage(Int32(error.code)) }
        var text = Substring(error.localizedDescription)
        if let range = text.range(of: "The operation could not be completed. ") { text = text[range.upperBound...] }
        if text.hasSuffix(".") { text = text.dropLast() }
        return text.prefix(1).lowercased() + text.dropFirst()
    default:
        return "\(error)"
    }
}

/// `strerror`, lower-cased to sit after a colon: "address already in use".
private func systemMessage(_ code: Int32) -> String {
    let text = String(cString: strerror(code))
    return text.prefix(1).lowercased() + text.dropFirst()
}

/// Set once, read from another task: whether the server got as far as listening.
private final class Latch: Sendable {
    private let state = NIOLockedValueBox(false)
    var isSet: Bool { state.withLockedValue { $0 } }
    func set() { state.withLockedValue { $0 = true } }
}
