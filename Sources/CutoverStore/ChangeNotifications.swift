import CutoverCore
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// How committed changes cross replicas on PostgreSQL: each write transaction sends its changes with
/// `NOTIFY` before it commits (PostgreSQL delivers them only if it does), and every replica listens.
enum ChangeNotifications {
    static let channel = "cutover_changes"

    /// One payload per distinct change: a deployment that needs reconciling is named; other changes of an
    /// agent (promotions, deletes, collections) only invalidate its routes, which every payload naming the
    /// agent does, so an agent gets one of those only when no deployment of it is named.
    static func payloads(_ changes: [Change], origin: String) -> [String] {
        var seen = Set<Change>()
        var invalidatedAgents = Set(changes.filter(\.needsReconcile).map(\.agentId))
        var out: [String] = []
        for change in changes {
            let key = change.needsReconcile ? change : Change(agentId: change.agentId, deploymentId: nil)
            if !change.needsReconcile, !invalidatedAgents.insert(change.agentId).inserted { continue }
            guard seen.insert(key).inserted else { continue }
            var object: [String: JSONValue] = ["o": .string(origin), "a": .string(change.agentId)]
            if change.needsReconcile, let deployment = change.deploymentId {
                object["d"] = .string(deployment)
                object["r"] = true
            }
            out.append(JSONCodec.string(.object(object)))
        }
        return out
    }

    /// A payload naming deployment `deployment` of agent `agent` as needing reconciling, built by the
    /// statement that writes it (the arguments are SQL expressions): for statements that learn the agent
    /// only as they run. `decode` reads it like the payloads above.
    static func reconcilePayloadSQL(origin: String, agent: String, deployment: String) -> String {
        "json_build_object('o', \(origin), 'a', \(agent), 'd', \(deployment), 'r', true)::text"
    }

    /// The change a payload carries and the process that committed it.
    static func decode(_ payload: String) -> (origin: String, change: Change)? {
        guard let object = try? JSONCodec.parse(payload).objectValue, let agent = object["a"]?.stringValue else {
            return nil
        }
        let change = Change(
            agentId: agent, deploymentId: object["d"]?.stringValue, needsReconcile: object["r"] == .bool(true))
        return (object["o"]?.stringValue ?? "", change)
    }
}

/// A replica's ear on the other replicas' commits: a dedicated connection that `LISTEN`s and publishes
/// what it hears on the local change feed (its own commits it already published itself). When the
/// connection drops it reconnects with capped backoff, and after every reconnect calls `onReconnect`,
/// because whatever was notified meanwhile is lost: the caller drops its caches and resyncs.
public final class ChangeListener: Service, Sendable {
    let configuration: PostgresConnection.Configuration
    let feed: ChangeFeed
    let origin: String
    let logger: Logger
    private let onReconnect: @Sendable () -> Void
    private let connected = Atomic<Bool>(false)

    init(
        configuration: PostgresConnection.Configuration, feed: ChangeFeed, origin: String, logger: Logger,
        onReconnect: @escaping @Sendable () -> Void
    ) {
        self.configuration = configuration
        self.feed = feed
        self.origin = origin
        self.logger = logger
        self.onReconnect = onReconnect
    }

    /// Whether notifications are being heard now (`/readyz` says no while they are not).
    public var isListening: Bool { connected.load(ordering: .relaxed) }

    public func run() async {
        await cancelWhenGracefulShutdown {
            await self.listenUntilCancelled()
        }
    }

    private func listenUntilCancelled() async {
        var failures = 0
        var everConnected = false
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: configuration, id: 0, logger: logger)
                defer { Task { try? await connection.close() } }
                try await connection.listen(on: ChangeNotifications.channel) { notifications in
                    connected.store(true, ordering: .relaxed)
                    if everConnected {
                        logger.notice("listening for changes again; dropping caches and resyncing")
                        onReconnect()
                    }
                    everConnected = true
                    failures = 0
                    for try await notification in notifications {
                        guard let (origin, change) = ChangeNotifications.decode(notification.payload),
                            origin != self.origin
                        else { continue }
                        feed.publish([change])
                    }
                }
            } catch is CancellationError {
                break
            } catch {
                if connected.load(ordering: .relaxed) || failures == 0 {
                    logger.warning("change notifications interrupted; reconnecting", metadata: ["error": "\(error)"])
                }
            }
            connected.store(false, ordering: .relaxed)
            failures += 1
            let backoff = Backoff(base: .milliseconds(100), cap: .seconds(1)).delay(afterFailures: failures)
            do { try await Task.sleep(for: backoff) } catch { break }
        }
        connected.store(false, ordering: .relaxed)
    }
}
