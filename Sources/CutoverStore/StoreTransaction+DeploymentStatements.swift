import CutoverCore
import Foundation

/// The control plane's commonest writes, a create, a pod's registration and a promotion, as one
/// PostgreSQL statement each, run outside a transaction: the statement is its own unit of work, so it
/// costs one round trip where BEGIN, the agent's lock, the writes and COMMIT cost four. It still takes
/// the agent's row lock first (its first CTE; the promotion's function, its first statements), so
/// writers of one agent serialize and its events keep commit order; it writes the deployment, its
/// events and the change notification together or not at all.
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

    /// A pod's registration of one deployment, for `registerDeploymentsInOneStatement`.
    public struct DeploymentRegistration: Sendable {
        public var id: String
        /// Nil: the image of the agent's newest deployment, for a deployment the registration creates.
        public var image: String?
        public var metadata: [String: JSONValue]?
        public var acpURL: String
        public var created: EventDraft
        public var registered: EventDraft

        public init(
            id: String, image: String?, metadata: [String: JSONValue]?, acpURL: String, created: EventDraft,
            registered: EventDraft
        ) {
            self.id = id
            self.image = image
            self.metadata = metadata
            self.acpURL = acpURL
            self.created = created
            self.registered = registered
        }
    }

    /// Pods registered `registrations` (distinct deployment ids) of agent `agent` (an id, or a name when
    /// `byName`) at `now` (the caller's time), when the agent exists and is not deleted, in their order.
    /// Each either inserts its deployment, with its image (nil: the image of the agent's newest
    /// deployment) and metadata, then appends `created` and `registered`; or, when the agent already has
    /// that deployment, records the registration on it (URL, time and metadata, the probe error cleared: a
    /// new registration has not been probed), then appends `registered` alone. One that names an id of
    /// another agent, or one another agent's garbage collection took, writes nothing (an id collected
    /// while the statement waited for the agent fails the whole statement, with a conflict). The agent as
    /// it is now and the ids of the registrations written; nil when none was.
    ///
    /// With several registrations that name no image, each new deployment takes the image of the newest
    /// before the statement, which is what each would take in turn: the ones before it in the statement
    /// took that image too. A caller must not mix registrations with and without an image, since one that
    /// names an image would change the newest image for those after it.
    public func registerDeploymentsInOneStatement(
        _ registrations: [DeploymentRegistration], agent: String, byName: Bool, actor: Actor, at now: Timestamp
    ) async throws -> (agent: Agent, registered: Set<String>)? {
        guard dialect == .postgres, !registrations.isEmpty else { return nil }
        // One registration, the commonest case, binds its fields as they are: the statement over arrays
        // costs PostgreSQL more (measured under pgbench: 0.30–0.43 ms of CPU against 0.26–0.30).
        let one = registrations.count == 1
        func field(_ value: (DeploymentRegistration) throws -> String?) rethrows -> Bind {
            one ? .text(try value(registrations[0])) : .texts(TextColumn(try registrations.map(value)))
        }
        let statement = one ? (byName ? Self.registerOneByName : Self.registerOneById)
            : (byName ? Self.registerByName : Self.registerById)
        let rows = try await rows(statement, [
            field(\.id), .text(agent), field(\.image), try field { try Self.encode($0.metadata) }, field(\.acpURL),
            .time(now), field { _ in Identifiers.uuid() }, field(\.created.type.rawValue), field(\.created.message),
            field { _ in Identifiers.uuid() }, field(\.registered.type.rawValue), field(\.registered.message),
            .text(actor.description), .text(origin),
        ])
        var found: Agent?
        var registered: Set<String> = []
        for row in rows {
            var r = row.reader
            _ = try r.time()
            let id = try r.text()
            if found == nil { found = try Self.readAgent(&r) }
            registered.insert(id)
            // Whether it is still Pending is not known here: the controller looks, and finds nothing to do if not.
            noteChange(agentId: found!.id, deploymentId: id, needsReconcile: true)
        }
        return found.map { ($0, registered) }
    }

    /// Makes deployment `deploymentId` production for agent `agentId` at `now` (the caller's time), when
    /// the agent is not deleted and the deployment is its own, Ready and not deleted: demotes the agent's
    /// production deployment, points the agent at the new one (an agent of a status in `madeReady` becomes
    /// Ready), appends `events.alone`, or `events.replacing` when there was a production deployment to
    /// demote (`marker` in their deployment ids and messages stands for its id), and notifies the other
    /// replicas that the agent's routes changed. A deployment that is production already is answered as
    /// it is, with nothing written. The deployment as it is now and whether anything changed; nil, with
    /// nothing written, in every other case, for the caller's transaction to answer with its full rules
    /// and errors.
    ///
    /// It takes the agent's turn first, as a promotion's transaction does (`lockAgentsAndDeployments`),
    /// then the rows' locks, and reads them after the wait, so a production changed meanwhile is the one
    /// demoted. Its time is the later of `now` and the agent's newest event's.
    public func promoteInOneStatement(
        agentId: String, deploymentId: String, events: (alone: [EventDraft], replacing: [EventDraft]),
        marker: String, madeReady: [String], actor: Actor, at now: Timestamp
    ) async throws -> (deployment: Deployment, changed: Bool)? {
        guard dialect == .postgres else { return nil }
        let payload = ChangeNotifications.payloads([Change(agentId: agentId, deploymentId: nil)], origin: origin)[0]
        let drafts = events.alone.map { (1 as Int64, $0) } + events.replacing.map { (2 as Int64, $0) }
        let rows = try await rows(Self.promote, [
            .text(agentId), .text(deploymentId), .time(now), .text(marker), .text(drafts.first?.1.reason),
            .text(actor.description), .text(payload), .texts(TextColumn(drafts.map { _ in Identifiers.uuid() })),
            .ints(IntColumn(drafts.map(\.0))), .texts(TextColumn(drafts.map { $0.1.deploymentId ?? "" })),
            .texts(TextColumn(drafts.map(\.1.type.rawValue))), .texts(TextColumn(drafts.map(\.1.message))),
            .texts(TextColumn(madeReady)),
        ])
        guard let row = rows.first else { return nil }
        var r = row.reader
        let changed = try r.bool()
        let demoted = try r.optionalText()
        let deployment = try Self.readDeployment(&r, withRunningTasks: true)
        guard changed else { return (deployment, false) }
        if let demoted { noteChange(agentId: agentId, deploymentId: demoted) }
        noteChange(agentId: agentId, deploymentId: deploymentId)
        noteChange(agentId: agentId, deploymentId: nil)
        return (deployment, true)
    }

    /// The function of migration 11 (`promote_function`): the answer is whether it wrote, the demoted id,
    /// and the target as it is now.
    private static let promote = Statement("""
        SELECT * FROM cutover_promote($1, $2, $3, $4, $5::text, $6, $7, $8::text[], $9::bigint[], $10::text[], \
        $11::text[], $12::text[], $13::text[])
        """)

    /// The waiting hint around its deadline, which the create's statement writes from its own time.
    private static let waitingHint: (prefix: String, suffix: String) = {
        let marker = Timestamp(microseconds: 0)
        let hint = Reconcile.pendingHint(.awaitRegistration(deadline: marker))!
        let at = hint.range(of: marker.rfc3339)!
        return (String(hint[..<at.lowerBound]), String(hint[at.upperBound...]))
    }()

    /// `$2` finds the agent (`lookup` is its id or name column), whose row lock the statement takes first
    /// and whose id the rows take. `n.t` is the unit's time: `now` or, when later, the agent's newest
    /// event's, read once the lock is held by a volatile function, whose fresh snapshot (unlike the
    /// statement's, which predates its wait for the lock) sees what committed meanwhile. `items`, when
    /// given, is a CTE `r` of the rows to write. The answer is `n.t` and, with `extra`, columns of `a` or
    /// `d`, for each row `d` wrote; `deployment` is its deployment's id in the change notification. The
    /// casts give PostgreSQL the types of NULL parameters, which a SELECT list does not take from the
    /// target columns.
    private static func statement(
        lookup: String, now: String, items: String? = nil, insert: String, events: String, origin: String,
        deployment: String, extra: String = ""
    ) -> Statement {
        let payload = ChangeNotifications.reconcilePayloadSQL(origin: "\(origin)::text", agent: "a.id", deployment: deployment)
        return Statement("""
            WITH a AS (
                SELECT \(agentColumns) FROM agents WHERE \(lookup) = $2 AND status <> '\(AgentStatus.deleted.rawValue)' FOR UPDATE
            ), n AS (
                SELECT GREATEST(\(now)::bigint, cutover_newest_event_time(a.id)) AS t FROM a
            )\(items.map { ", r AS (\n    \($0)\n)" } ?? ""), d AS (
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
        origin: "$15", deployment: "$1")

    private static let registerOneById = registration(lookup: "id")
    private static let registerOneByName = registration(lookup: "name")
    private static let registerById = registrations(lookup: "id")
    private static let registerByName = registrations(lookup: "name")

    /// A registration of a deployment the agent has: its URL, time and metadata, the probe error cleared.
    /// (xmax = 0): the row was inserted by the statement, not updated here.
    private static let reRegistration = """
        ON CONFLICT (id) DO UPDATE SET acp_url = EXCLUDED.acp_url, registered_at = EXCLUDED.registered_at,
            last_probe_error = NULL,
            registration_metadata = COALESCE(EXCLUDED.registration_metadata, deployments.registration_metadata)
        WHERE deployments.agent_id = EXCLUDED.agent_id
        RETURNING (xmax = 0) AS inserted, agent_id, id
        """

    /// One registration: `registrations` below, with each field a parameter of its own.
    private static func registration(lookup: String) -> Statement {
        statement(
            lookup: lookup, now: "$6",
            insert: """
                SELECT $1, a.id, COALESCE($3::text, cutover_newest_image(a.id), 'unknown'), $4::text, \
                '\(DeploymentStatus.pending.rawValue)', NULL, $5, 0, NULL, NULL, n.t, n.t, NULL, NULL, NULL, NULL, \
                NULL, NULL
                FROM a, n WHERE NOT EXISTS (SELECT 1 FROM collected_deployments c WHERE c.id = $1 AND c.agent_id <> a.id)
                \(reRegistration)
                """,
            events: """
                SELECT $7, d.agent_id, $1, $8, NULL, $9, $13, n.t FROM d, n WHERE d.inserted
                UNION ALL SELECT $10, d.agent_id, $1, $11, NULL, $12, $13, n.t FROM d, n
                """,
            origin: "$14", deployment: "$1", extra: ", d.id, \(qualified(agentColumns, "a"))")
    }

    /// `$1`, `$3`–`$5`, `$7`–`$12`: a column per field of the registrations, in their order (`r.ord`). A
    /// NULL image: the image of the agent's newest deployment (or "unknown"), read like `n.t`. An id
    /// collected from another agent is refused, by the `NOT EXISTS` here or (for a collection this insert
    /// waited on) by the `cutover_refuse_collected_id` trigger; an id of another agent matches no row.
    /// Each registration's events follow the one before's, `created` (when inserted) before `registered`.
    private static func registrations(lookup: String) -> Statement {
        statement(
            lookup: lookup, now: "$6",
            items: """
                SELECT * FROM unnest($1::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::text[], \
                $9::text[], $10::text[], $11::text[], $12::text[]) WITH ORDINALITY AS r(id, image, metadata, acp_url, \
                created_id, created_type, created_message, registered_id, registered_type, registered_message, ord)
                """,
            insert: """
                SELECT r.id, a.id, COALESCE(r.image, cutover_newest_image(a.id), 'unknown'), r.metadata, \
                '\(DeploymentStatus.pending.rawValue)', NULL, r.acp_url, 0, NULL, NULL, n.t, n.t, NULL, NULL, NULL, NULL, \
                NULL, NULL
                FROM a, n, r WHERE NOT EXISTS (SELECT 1 FROM collected_deployments c WHERE c.id = r.id AND c.agent_id <> a.id)
                ORDER BY r.ord
                \(reRegistration)
                """,
            events: """
                SELECT v.id, d.agent_id, d.id, v.type, NULL, v.message, $13, n.t
                FROM d JOIN r ON r.id = d.id CROSS JOIN n
                CROSS JOIN LATERAL (VALUES (1, r.created_id, r.created_type, r.created_message),
                    (2, r.registered_id, r.registered_type, r.registered_message)) AS v(k, id, type, message)
                WHERE d.inserted OR v.k = 2 ORDER BY r.ord, v.k
                """,
            origin: "$14", deployment: "d.id", extra: ", d.id, \(qualified(agentColumns, "a"))")
    }
}
