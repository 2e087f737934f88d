import CutoverCore
import Foundation

/// The control plane's commonest writes, a create and a pod's registration, as one PostgreSQL statement
/// each, run outside a transaction: the statement is its own unit of work, so it costs one round trip
/// where BEGIN, the agent's lock, the writes and COMMIT cost four. It still takes the agent's row lock
/// first (its first CTE), so writers of one agent serialize and its events keep commit order; it writes
/// the deployment, its events and the change notification together or not at all.
///
/// An agent's times follow commit order too. The caller's clock is read before the statement is sent,
/// and writers that read theirs later can take the lock first (PostgreSQL's row locks are not granted
/// in arrival order: a benchmark of 16 concurrent creates of one agent found most of them behind). So
/// once the lock is held, the statement writes the later of the caller's time and the time of the
/// agent's newest event, and answers with the time it wrote.
///
/// Each returns nil on SQLite, and whenever the statement wrote nothing (no such agent, a deleted agent,
/// an id of another agent), so that the caller's transaction handles the case with its full rules and
/// its errors.
extension StoreTransaction {
    /// Creates a Pending deployment like `d` (an id Cutover just made, so nothing can conflict with it)
    /// and appends `created`, when its agent exists and is not deleted. `d.createdAt` is the caller's
    /// time; the deployment as stored has the statement's, and the hint that it waits for a registration
    /// until `deadlineAfter` past it.
    public func createDeploymentInOneStatement(
        _ d: Deployment, deadlineAfter: Duration, created: EventDraft, actor: Actor
    ) async throws -> Deployment? {
        guard dialect == .postgres else { return nil }
        let hint = Self.waitingHint
        let rows = try await rows(Self.createDeployment, [
            .text(d.id), .text(d.agentId), .text(d.dockerImage), .text(try Self.encode(d.registrationMetadata)),
            .text(hint.prefix), .text(hint.suffix), .int(deadlineAfter.microseconds), .text(d.sgpDeployId),
            .text(d.helmReleaseName), .time(d.createdAt), .text(Identifiers.uuid()), .text(created.type.rawValue),
            .text(created.message), .text(actor.description), .text(origin),
        ])
        guard let row = rows.first else { return nil }
        var r = row.reader
        var stored = d
        stored.createdAt = try r.time()
        stored.statusReason = Reconcile.pendingHint(.awaitRegistration(deadline: stored.createdAt + deadlineAfter))
        noteChange(agentId: d.agentId, deploymentId: d.id, needsReconcile: true)
        return stored
    }

    /// A pod at `acpURL` registered deployment `id` of agent `agent` (an id, or a name when `byName`) at
    /// `now` (the caller's time), when the agent exists and is not deleted. Either inserts the deployment
    /// with `image` (nil: the image of the agent's newest deployment) and `metadata`, then appends
    /// `created` and `registered`; or, when the agent already has that deployment, records the
    /// registration on it (URL, time and metadata, the probe error cleared: a new registration has not
    /// been probed), then appends `registered` alone. The agent as it is now.
    public func registerDeploymentInOneStatement(
        id: String, agent: String, byName: Bool, image: String?, metadata: [String: JSONValue]?, acpURL: String,
        created: EventDraft, registered: EventDraft, actor: Actor, at now: Timestamp
    ) async throws -> Agent? {
        guard dialect == .postgres else { return nil }
        let rows = try await rows(byName ? Self.registerByName : Self.registerById, [
            .text(id), .text(agent), .text(image), .text(try Self.encode(metadata)), .text(acpURL), .time(now),
            .text(Identifiers.uuid()), .text(created.type.rawValue), .text(created.message),
            .text(Identifiers.uuid()), .text(registered.type.rawValue), .text(registered.message),
            .text(actor.description), .text(origin),
        ])
        guard let row = rows.first else { return nil }
        var r = row.reader
        _ = try r.time()
        let found = try Self.readAgent(&r)
        // Whether it is still Pending is not known here: the controller looks, and finds nothing to do if not.
        noteChange(agentId: found.id, deploymentId: id, needsReconcile: true)
        return found
    }

    /// The waiting hint around its deadline, which the create's statement writes from its own time.
    private static let waitingHint: (prefix: String, suffix: String) = {
        let marker = Timestamp(microseconds: 0)
        let hint = Reconcile.pendingHint(.awaitRegistration(deadline: marker))!
        let at = hint.range(of: marker.rfc3339)!
        return (String(hint[..<at.lowerBound]), String(hint[at.upperBound...]))
    }()

    /// `$1` is the deployment's id; `$2` finds the agent (`lookup` is its id or name column), whose row
    /// lock the statement takes first and whose id the rows take. `n.t` is the unit's time: `now` or,
    /// when later, the agent's newest event's, read once the lock is held by a volatile function, whose
    /// fresh snapshot (unlike the statement's, which predates its wait for the lock) sees what committed
    /// meanwhile. The answer is `n.t` and, with `extra`, columns of `a`; nothing when `d` wrote nothing.
    /// The casts give PostgreSQL the types of NULL parameters, which a SELECT list does not take from the
    /// target columns.
    private static func statement(
        lookup: String, now: String, insert: String, events: String, origin: String, extra: String = ""
    ) -> Statement {
        let payload = ChangeNotifications.reconcilePayloadSQL(origin: "\(origin)::text", agent: "a.id", deployment: "$1")
        return Statement("""
            WITH a AS (
                SELECT \(agentColumns) FROM agents WHERE \(lookup) = $2 AND status <> '\(AgentStatus.deleted.rawValue)' FOR UPDATE
            ), n AS (
                SELECT GREATEST(\(now)::bigint, cutover_newest_event_time(a.id)) AS t FROM a
            ), d AS (
                INSERT INTO deployments (\(deploymentColumns)) \(insert)
            ), e AS (
                \(eventInsert) \(events)
            )
            SELECT n.t\(extra), pg_notify('\(ChangeNotifications.channel)', \(payload)) FROM a, n, d
            """)
    }

    private static let createDeployment = statement(
        lookup: "id", now: "$10",
        insert: """
            SELECT $1, a.id, $3, $4::text, '\(DeploymentStatus.pending.rawValue)', \
            $5 || cutover_rfc3339(n.t + $7::bigint) || $6, NULL, 0, $8::text, $9::text, n.t, NULL, NULL, NULL, NULL, \
            NULL, NULL, NULL
            FROM a, n RETURNING agent_id
            """,
        events: "SELECT $11, d.agent_id, $1, $12, NULL, $13, $14, n.t FROM d, n",
        origin: "$15")

    private static let registerById = registration(lookup: "id")
    private static let registerByName = registration(lookup: "name")

    /// `$3` NULL: the image of the agent's newest deployment (or "unknown"), read like `n.t`. (xmax = 0):
    /// the row was inserted by this statement, not updated by its ON CONFLICT branch. An id collected from
    /// another agent is refused, by the `NOT EXISTS` here or (for a collection this insert waited on) by
    /// the `cutover_refuse_collected_id` trigger; an id of another agent matches no row.
    private static func registration(lookup: String) -> Statement {
        statement(
            lookup: lookup, now: "$6",
            insert: """
                SELECT $1, a.id, COALESCE($3::text, cutover_newest_image(a.id), 'unknown'), $4::text, \
                '\(DeploymentStatus.pending.rawValue)', NULL, $5, 0, NULL, NULL, n.t, n.t, NULL, NULL, NULL, NULL, \
                NULL, NULL
                FROM a, n WHERE NOT EXISTS (SELECT 1 FROM collected_deployments c WHERE c.id = $1 AND c.agent_id <> a.id)
                ON CONFLICT (id) DO UPDATE SET acp_url = EXCLUDED.acp_url, registered_at = EXCLUDED.registered_at,
                    last_probe_error = NULL,
                    registration_metadata = COALESCE(EXCLUDED.registration_metadata, deployments.registration_metadata)
                WHERE deployments.agent_id = EXCLUDED.agent_id
                RETURNING (xmax = 0) AS inserted, agent_id
                """,
            events: """
                SELECT $7, d.agent_id, $1, $8, NULL, $9, $13, n.t FROM d, n WHERE d.inserted
                UNION ALL SELECT $10, d.agent_id, $1, $11, NULL, $12, $13, n.t FROM d, n
                """,
            origin: "$14", extra: ", \(qualified(agentColumns, "a"))")
    }
}
