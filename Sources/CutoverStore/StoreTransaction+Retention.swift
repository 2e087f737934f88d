import CutoverCore
import SQLKit

extension StoreTransaction {
    /// Every agent id: the keys of a retention resync.
    public func agentIds() async throws -> [String] {
        try await rows("SELECT id FROM agents ORDER BY seq").map { try $0.text() }
    }

    /// How many live (not soft-deleted) deployments have each status.
    public func liveDeploymentCounts() async throws -> [DeploymentStatus: Int] {
        var counts: [DeploymentStatus: Int] = [:]
        for row in try await rows(
            "SELECT status, COUNT(*) AS n FROM deployments WHERE expires_at IS NULL GROUP BY status"
        ) {
            var r = row.reader
            if let status = DeploymentStatus(rawValue: try r.text()) { counts[status] = Int(try r.int()) }
        }
        return counts
    }

    /// An agent's deployments that are not soft-deleted.
    public func liveDeployments(agentId: String) async throws -> [Deployment] {
        let query: SQLQueryString = """
            SELECT \(unsafeRaw: Self.deploymentColumns) FROM deployments \
            WHERE agent_id = \(bind: agentId) AND expires_at IS NULL ORDER BY seq
            """
        return try await rows(query).map { try Self.decodeDeployment($0, withRunningTasks: false) }
    }

    /// The earliest `expires_at` of the agent's deployments still to come after `now`.
    public func nextExpiry(agentId: String, after now: Timestamp) async throws -> Timestamp? {
        try await rows("""
            SELECT MIN(expires_at) AS next FROM deployments \
            WHERE agent_id = \(bind: agentId) AND expires_at > \(bind: now.microseconds)
            """).first?.optionalInt().map(Timestamp.init(microseconds:))
    }

    /// Hard-deletes up to `limit` of the agent's deployments whose `expires_at` has passed (never a
    /// production one), remembers each id as collected from this agent, and writes a `GarbageCollected`
    /// event for each. The caller holds the agent's row lock, so a restore of the same agent either
    /// commits first (and the row no longer qualifies) or waits and finds the row gone.
    public func collectExpired(agentId: String, now: Timestamp, limit: Int) async throws -> [String] {
        let due: SQLQueryString = """
            SELECT id FROM deployments WHERE agent_id = \(bind: agentId) AND expires_at IS NOT NULL \
            AND expires_at <= \(bind: now.microseconds) AND is_production = 0 ORDER BY expires_at LIMIT \(bind: limit)
            """
        let remember = " ON CONFLICT (id) DO UPDATE SET collected_at = excluded.collected_at"
        let ids: [String]
        if dialect == .postgres {
            // One statement of one text for any batch: the delete, and the tombstones of the rows it
            // deleted. `id IN (subquery)` was planned as a semi-join over the whole table (20 ms a batch
            // at 100,000 rows); `= ANY(ARRAY(subquery))` probes the id index (3 ms).
            ids = try await rows("""
                WITH gone AS (DELETE FROM deployments WHERE id = ANY(ARRAY(\(due))) RETURNING id), \
                remembered AS (INSERT INTO collected_deployments (id, agent_id, collected_at) \
                SELECT id, \(bind: agentId), \(bind: now.microseconds) FROM gone\(unsafeRaw: remember)) \
                SELECT id FROM gone
                """).map { try $0.text() }
            guard !ids.isEmpty else { return [] }
        } else {
            ids = try await rows("DELETE FROM deployments WHERE id IN (\(due)) RETURNING id").map { try $0.text() }
            guard !ids.isEmpty else { return [] }
            var tombstones: SQLQueryString = "INSERT INTO collected_deployments (id, agent_id, collected_at) VALUES "
            for (i, id) in ids.enumerated() {
                if i > 0 { tombstones.appendLiteral(", ") }
                tombstones.appendInterpolation("(\(bind: id), \(bind: agentId), \(bind: now.microseconds))" as SQLQueryString)
            }
            tombstones.appendLiteral(remember)
            try await run(tombstones)
        }
        let events = ids.map {
            EventDraft(deploymentId: $0, type: .garbageCollected, message: "garbage-collected after its expiry")
        }
        appendEvents(agentId: agentId, events, actor: .controller, at: now)
        for id in ids { noteChange(agentId: agentId, deploymentId: id) }
        return ids
    }
}
