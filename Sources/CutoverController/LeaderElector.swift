import CutoverCore
import CutoverRouting
import CutoverRuntime
import CutoverStore
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Leader election on PostgreSQL: the replica holding a session advisory lock leads. The lock lives on a
/// connection of its own, tuned so that PostgreSQL notices a dead leader within seconds (TCP keepalives)
/// and releases the lock; standbys try again every second. A leader checks its connection every second
/// and steps down the moment that check fails, before the server can have handed the lock to another.
/// On graceful shutdown it stops its terms and releases the lock at once, before the server drains.
public final class LeaderElector: Service, LeaderGate {
    /// The advisory lock key, the same on every replica of one database.
    static let lockKey: Int64 = 7_243_830_002

    let configuration: PostgresConnection.Configuration
    let leadership = Leadership()
    let logger: Logger
    let retry: Duration
    private let gauge = Gauge(label: "cutover_leader")
    /// Whether this replica holds the lock (leadership may already be given up during a shutdown).
    private let holding = Atomic<Bool>(false)

    public init(configuration: PostgresConnection.Configuration, logger: Logger, retry: Duration = .seconds(1)) {
        var configuration = configuration
        // The server drops a silent leader after about 1 + 1 × 3 s, which frees the lock for a standby.
        configuration.options.additionalStartupParameters += [
            ("tcp_keepalives_idle", "1"), ("tcp_keepalives_interval", "1"), ("tcp_keepalives_count", "3"),
        ]
        configuration.options.connectTimeout = .seconds(2)
        self.configuration = configuration
        self.logger = logger
        self.retry = retry
        gauge.record(0)
    }

    public var isLeader: Bool { leadership.isLeading }

    public func whileLeading(_ term: @escaping @Sendable () async -> Void) async {
        await leadership.whileLeading(term)
    }

    public func run() async {
        var connection: PostgresConnection?
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                do {
                    if connection == nil || connection!.isClosed {
                        connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
                    }
                    let held = try await Self.check(connection!, leading: leadership.isLeading)
                    if held != leadership.isLeading { changed(to: held) }
                } catch {
                    if leadership.isLeading {
                        changed(to: false, because: "\(error)")
                    }
                    if let stale = connection { Task { try? await stale.close() } }
                    connection = nil
                }
                // Until the next check, or at once when shutdown begins: the lock must go before the drain.
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { [retry] in try? await Task.sleep(for: retry) }
                    group.addTask { try? await gracefulShutdown() }
                    await group.next()
                    group.cancelAll()
                }
            }
        } onGracefulShutdown: {
            // Stop leading here and now; the lock goes with the connection below.
            self.leadership.set(leading: false)
        }
        await stepDown(connection)
    }

    /// Takes the lock if free (`leading` false), or checks that the connection holding it still answers.
    private static func check(_ connection: PostgresConnection, leading: Bool) async throws -> Bool {
        let query: PostgresQuery = leading ? "SELECT true" : "SELECT pg_try_advisory_lock(\(lockKey))"
        let answered = await withDeadline(.seconds(2)) { () -> Bool? in
            guard let rows = try? await connection.query(query, logger: Logger(label: "cutover.elector")),
                let row = try? await rows.collect().first
            else { return nil }
            return try? row.decode(Bool.self)
        }
        guard let held = answered ?? nil else { throw DatabaseUnavailable(description: "the lock connection stopped answering") }
        return held
    }

    private func changed(to leading: Bool, because reason: String? = nil) {
        holding.store(leading, ordering: .relaxed)
        leadership.set(leading: leading)
        gauge.record(leading ? 1 : 0)
        var metadata: Logger.Metadata = ["leader": "\(leading)"]
        if let reason { metadata["reason"] = "\(reason)" }
        logger.notice(leading ? "became the leader" : "stopped leading", metadata: metadata)
    }

    /// Waits (bounded) for running terms to stop, then releases the lock by closing its connection.
    private func stepDown(_ connection: PostgresConnection?) async {
        let wasLeading = holding.exchange(false, ordering: .relaxed)
        leadership.set(leading: false)
        let deadline = ContinuousClock.now + .seconds(5)
        while leadership.activeTerms > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if let connection { try? await connection.close() }
        gauge.record(0)
        if wasLeading { logger.notice("released leadership") }
    }
}
