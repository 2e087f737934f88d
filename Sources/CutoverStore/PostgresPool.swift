import DequeModule
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// The database could not be reached: answered 503, never retried behind the caller's back.
public struct DatabaseUnavailable: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Connections to one PostgreSQL server, opened on demand and reused.
///
/// PostgresNIO's own pool retries failed connection attempts with a backoff that grows to a minute and
/// keeps each lease waiting meanwhile: while the database is down a request waited up to a minute for
/// its 503, and after it came back the pool could still be sleeping. Here nothing waits on a schedule: a
/// request that needs a connection and finds none idle opens one itself, so while the database is down
/// every request fails as fast as the connect does (refused at once, or `connectTimeout`), and the first
/// request after it is back succeeds.
final class PostgresPool: Sendable {
    private struct Idle {
        var connection: PostgresConnection
        var since: ContinuousClock.Instant
    }

    private struct Waiter {
        var id: Int
        /// Resumed with a connection handed over, or nil: a slot is free, open a connection yourself.
        var continuation: CheckedContinuation<PostgresConnection?, any Error>
    }

    private struct State {
        var idle: [Idle] = []
        /// Connections open or being opened, idle ones included.
        var open = 0
        var waiters: Deque<Waiter> = []
        var nextId = 0
        var closed = false

        /// A slot no connection holds any more: to the first waiter (which then opens a connection
        /// itself), else back to the pool.
        mutating func freeSlot() -> Waiter? {
            if let waiter = waiters.popFirst() { return waiter }
            open -= 1
            return nil
        }

        /// Takes every idle connection out of the pool, their slots with them: the server went away.
        mutating func dropIdle() -> [PostgresConnection] {
            defer {
                open -= idle.count
                idle = []
            }
            return idle.map(\.connection)
        }
    }

    private enum Grant {
        case reuse(PostgresConnection)
        case connect(id: Int)
        case wait(id: Int)
    }

    let configuration: PostgresConnection.Configuration
    let maxConnections: Int
    /// How long a request waits for a connection when all `maxConnections` are busy.
    let leaseTimeout: Duration
    let idleTimeout: Duration
    private let state = Mutex(State())
    private let logger: Logger

    init(
        configuration: PostgresConnection.Configuration, maxConnections: Int, leaseTimeout: Duration = .seconds(10),
        idleTimeout: Duration = .seconds(60), logger: Logger
    ) {
        self.configuration = configuration
        self.maxConnections = max(1, maxConnections)
        self.leaseTimeout = leaseTimeout
        self.idleTimeout = idleTimeout
        self.logger = logger
    }

    func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await lease()
        let value: T
        do {
            value = try await body(connection)
        } catch {
            release(connection, broken: Self.isConnectionFailure(error))
            throw error
        }
        release(connection, broken: false)
        return value
    }

    /// Closes every idle connection and fails every waiter; connections in use close when released.
    func close() async {
        let (idle, waiters) = state.withLock { s in
            s.closed = true
            defer { s.waiters = [] }
            return (s.dropIdle(), s.waiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: DatabaseUnavailable(description: "the store is closed")) }
        for connection in idle { try? await connection.close() }
    }

    /// Whether `error` means the connection itself failed (refused, closed, reset), as opposed to an error
    /// PostgreSQL returned for a statement.
    static func isConnectionFailure(_ error: any Error) -> Bool {
        if error is DatabaseUnavailable { return true }
        if let error = error as? PSQLError { return error.code != .server && error.code != .queryCancelled }
        return false
    }

    // MARK: Leasing

    private func lease() async throws -> PostgresConnection {
        let now = ContinuousClock.now
        // The caller's event loop, when it runs on one (as `serve`'s requests do): a connection on that loop
        // answers on the thread the request already runs on, where one on another loop costs two thread
        // wake-ups per statement (the query handed to its loop, the answer handed back).
        let here = Self.currentSingletonLoop()
        var stale: [PostgresConnection] = []
        let grant = try state.withLock { s throws(DatabaseUnavailable) -> Grant in
            guard !s.closed else { throw DatabaseUnavailable(description: "the store is closed") }
            for index in s.idle.indices.reversed()
            where s.idle[index].connection.isClosed || now - s.idle[index].since > idleTimeout {
                stale.append(s.idle.remove(at: index).connection)
                s.open -= 1
            }
            if let here {
                if let local = s.idle.lastIndex(where: { $0.connection.eventLoop === here }) {
                    return .reuse(s.idle.remove(at: local).connection)
                }
                // None idle on this loop: open one here while there is room, so that each loop gets its own.
            } else if let entry = s.idle.popLast() {
                return .reuse(entry.connection)
            }
            s.nextId += 1
            if s.open < maxConnections {
                s.open += 1
                return .connect(id: s.nextId)
            }
            if let entry = s.idle.popLast() { return .reuse(entry.connection) }
            return .wait(id: s.nextId)
        }
        closeInBackground(stale)
        switch grant {
        case .reuse(let connection):
            return connection
        case .connect(let id):
            return try await connect(id: id, on: here)
        case .wait(let id):
            if let handedOver = try await wait(id: id) { return handedOver }
            return try await connect(id: id, on: here)
        }
    }

    /// The loops connections are opened on, which outlive every pool.
    private static let singletonLoops = Set(
        MultiThreadedEventLoopGroup.singleton.makeIterator().map { ObjectIdentifier($0) })

    private static func currentSingletonLoop() -> (any EventLoop)? {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop,
            singletonLoops.contains(ObjectIdentifier(loop))
        else { return nil }
        return loop
    }

    /// Opens a connection for a slot already counted in `open`; gives the slot back if it fails.
    private func connect(id: Int, on here: (any EventLoop)?) async throws -> PostgresConnection {
        let connection: PostgresConnection
        do {
            // On the caller's loop; from elsewhere (a test, the command line) round robin over the loops,
            // not PostgresNIO's default `any()`, which would put them all on one.
            connection = try await PostgresConnection.connect(
                on: here ?? MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: id,
                logger: logger)
        } catch {
            if Task.isCancelled {
                // The caller left (a shutdown, a lost leadership): nothing says the server is gone.
                giveBack()
                throw CancellationError()
            }
            // A failed connect likely means the idle connections are dead too (the server restarted).
            let (waiter, idle) = state.withLock { s in (s.freeSlot(), s.dropIdle()) }
            waiter?.continuation.resume(returning: nil)
            closeInBackground(idle)
            throw DatabaseUnavailable(description: Self.describe(error, configuration))
        }
        // A connect cancelled just as it completes is closed by PostgresNIO and can still be returned. A
        // query written to a closed connection is never answered (the write, and the query's promise with
        // it, are dropped), so its caller would wait forever: a shutdown early in a leadership term hung so.
        guard !Task.isCancelled, !connection.isClosed else {
            let cancelled = Task.isCancelled
            closeInBackground([connection])
            giveBack()
            if cancelled { throw CancellationError() }
            throw DatabaseUnavailable(description: "the connection to PostgreSQL closed as it opened")
        }
        return connection
    }

    /// Returns the slot of a connect that gave no connection.
    private func giveBack() {
        state.withLock { $0.freeSlot() }?.continuation.resume(returning: nil)
    }

    private func wait(id: Int) async throws -> PostgresConnection? {
        let timeout = Task { [leaseTimeout] in
            try await Task.sleep(for: leaseTimeout)
            self.expire(id)
        }
        defer { timeout.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let added = state.withLock { s -> Bool in
                    guard !s.closed else { return false }
                    s.waiters.append(Waiter(id: id, continuation: continuation))
                    return true
                }
                if !added { continuation.resume(throwing: DatabaseUnavailable(description: "the store is closed")) }
            }
        } onCancel: {
            self.expire(id, error: CancellationError())
        }
    }

    private func expire(_ id: Int, error: any Error = DatabaseUnavailable(
        description: "every database connection stayed busy; retry shortly")
    ) {
        let waiter = state.withLock { s -> Waiter? in
            guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return s.waiters.remove(at: index)
        }
        waiter?.continuation.resume(throwing: error)
    }

    private func release(_ connection: PostgresConnection, broken: Bool) {
        enum Next {
            case handOver(Waiter)
            case freeSlot(Waiter?)
            case keep
        }
        var dead: [PostgresConnection] = []
        let next = state.withLock { s -> Next in
            if broken || connection.isClosed || s.closed {
                dead.append(connection)
                // The server went away: its other connections are as dead as this one.
                if broken { dead += s.dropIdle() }
                return .freeSlot(s.freeSlot())
            }
            if let waiter = s.waiters.popFirst() { return .handOver(waiter) }
            s.idle.append(Idle(connection: connection, since: .now))
            return .keep
        }
        closeInBackground(dead)
        switch next {
        case .handOver(let waiter): waiter.continuation.resume(returning: connection)
        case .freeSlot(let waiter): waiter?.continuation.resume(returning: nil)
        case .keep: break
        }
    }

    private func closeInBackground(_ connections: [PostgresConnection]) {
        guard !connections.isEmpty else { return }
        Task { for connection in connections { try? await connection.close() } }
    }

    /// "cannot connect to PostgreSQL at host:port: connection refused", from PostgresNIO's deliberately
    /// vague error.
    static func describe(_ error: any Error, _ configuration: PostgresConnection.Configuration) -> String {
        let target = "\(configuration.host ?? "?"):\(configuration.port ?? 5432)"
        var cause: any Error = error
        if let psql = error as? PSQLError {
            if let underlying = psql.underlying {
                cause = underlying
            } else if let server = psql.serverInfo?[.message] {
                return "PostgreSQL at \(target) refused the connection: \(server)"
            } else {
                return "cannot connect to PostgreSQL at \(target) (\(psql.code))"
            }
        }
        if let io = cause as? IOError, io.errnoCode == ECONNREFUSED {
            return "cannot connect to PostgreSQL at \(target): connection refused"
        }
        if let connect = cause as? NIOConnectionError,
            connect.connectionErrors.contains(where: { ($0.error as? IOError)?.errnoCode == ECONNREFUSED })
        {
            return "cannot connect to PostgreSQL at \(target): connection refused"
        }
        return "cannot connect to PostgreSQL at \(target): \(cause)"
    }
}
