import CutoverCore
import Logging
import PostgresNIO

/// Cutover's storage: every unit of work runs in one transaction (every state change and its event commit together).
public protocol Store: Sendable {
    /// Runs `body` in one transaction and commits it. With `dryRun`, runs it to the end and rolls back
    /// instead, so the caller gets the very answer the real request would give and nothing is written.
    func transaction<T: Sendable>(
        dryRun: Bool, _ body: @escaping @Sendable (StoreTransaction) async throws -> T
    ) async throws -> T

    /// Runs reads that need no lock.
    func read<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T

    /// Runs `body` on one session without a transaction: each statement commits on its own. For the units
    /// of work that are one statement (`StoreTransaction+TaskStatements`, `+DeploymentStatements`); the
    /// changes such a statement notes once it has written are published when `body` returns (a statement
    /// that writes sends its own notifications to the other replicas).
    func autocommit<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T

    /// Whether the one-statement units of work (`StoreTransaction+TaskStatements`,
    /// `+DeploymentStatements`) run here (PostgreSQL); elsewhere callers go straight to their transaction.
    var runsOneStatementUnits: Bool { get }

    /// Change notifications of committed writes.
    var changes: ChangeFeed { get }

    /// Applies pending migrations; returns the versions applied.
    @discardableResult func migrate() async throws -> [Int]

    /// Whether the database answers and every migration is applied (for `/readyz`).
    func isReady() async -> Bool

    func close() async throws

    /// Whether `error` means the database cannot be reached (answered 503) rather than a bug (500).
    func isUnavailable(_ error: any Error) -> Bool

    /// On PostgreSQL, the service that hears the other replicas' commits and publishes them on `changes`;
    /// nil where there are no other replicas (SQLite). `onReconnect` runs after every reconnection.
    func changeListener(logger: Logger, onReconnect: @escaping @Sendable () -> Void) -> ChangeListener?

    /// Where a PostgreSQL store connects (for connections of their own: leader election); nil on SQLite.
    var postgresConfiguration: PostgresConnection.Configuration? { get }
}

extension Store {
    public func changeListener(logger: Logger, onReconnect: @escaping @Sendable () -> Void) -> ChangeListener? { nil }
    public var postgresConfiguration: PostgresConnection.Configuration? { nil }

    public func transaction<T: Sendable>(
        _ body: @escaping @Sendable (StoreTransaction) async throws -> T
    ) async throws -> T {
        try await transaction(dryRun: false, body)
    }
}
