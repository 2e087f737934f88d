import CutoverCore
import Foundation
import PostgresNIO
import SQLKit
import Synchronization

/// One unit of work on either backend: the only code that writes SQL for records.
public final class StoreTransaction: Sendable {
    /// The backend's syntax, which renders the statements built at run time (filters, orderings, batches).
    let db: any SQLDatabase
    /// The driver connection itself, for the static statements of the hot paths.
    let connection: DriverConnection
    public let dialect: SQLDialectKind
    /// The store's name in change notifications, for the one-statement units that send their own.
    let origin: String
    private let pendingChanges = Mutex<[Change]>([])
    private let pendingEvents = Mutex<[PendingEvent]>([])
    /// Updates `finish` runs (PostgreSQL only), each a data-modifying CTE of its statement.
    private let pendingWrites = Mutex<[SQLQueryString]>([])

    init(connection: DriverConnection, dialect: SQLDialectKind, origin: String) {
        self.connection = connection
        self.db = connection.syntax
        self.dialect = dialect
        self.origin = origin
    }

    /// Records that `agentId`'s route or one of its deployments changed; published when the transaction commits.
    public func noteChange(agentId: String, deploymentId: String?, needsReconcile: Bool = false) {
        pendingChanges.withLock {
            $0.append(Change(agentId: agentId, deploymentId: deploymentId, needsReconcile: needsReconcile))
        }
    }

    private func noteChange(_ d: Deployment) {
        noteChange(agentId: d.agentId, deploymentId: d.id, needsReconcile: d.status == .pending && !d.isDeleted)
    }

    var changes: [Change] { pendingChanges.withLock { $0 } }

    /// Runs `query` on the driver connection: SQLKit only renders its text and parameters, and the rows
    /// are read by position with the driver's typed decoding.
    func rows(_ query: SQLQueryString) async throws -> [Row] {
        var serializer = SQLSerializer(database: db)
        query.serialize(to: &serializer)
        let binds = try serializer.binds.map(Bind.init)
        return try await Self.mappingRefusals { try await self.connection.rows(sql: serializer.sql, binds) }
    }

    /// Runs static `statement`, like `rows(_:)` above.
    func rows(_ statement: Statement, _ binds: [Bind]) async throws -> [Row] {
        try await Self.mappingRefusals { try await self.connection.rows(statement, binds) }
    }

    /// The database's own refusals as the errors they mean: the collected-id guard's is a conflict.
    private static func mappingRefusals(_ body: () async throws -> [Row]) async throws -> [Row] {
        do {
            return try await body()
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == Migrations.collectedIdState {
            throw CutoverError.conflict(error.serverInfo?[.message] ?? "deployment id belongs to another agent")
        }
    }

    func run(_ query: SQLQueryString) async throws {
        _ = try await rows(query)
    }

    // MARK: Agents

    static let agentColumns = """
        id, name, description, status, status_reason, acp_type, agent_input_type, registration_metadata, \
        registered_at, created_at, updated_at, production_deployment_id, acp_url, api_key
        """

    public func agent(id: String, lock: Bool = false) async throws -> Agent? {
        try await agents(where: "id = \(bind: id)", lock: lock).first
    }

    public func agent(name: String, lock: Bool = false) async throws -> Agent? {
        try await agents(where: "name = \(bind: name)", lock: lock).first
    }

    /// The agents whose API key starts like `key`; the caller compares the whole key in constant time.
    public func agents(apiKeyLookup lookup: String) async throws -> [Agent] {
        try await agents(where: "api_key_lookup = \(bind: lookup)", lock: false)
    }

    private func agents(where condition: SQLQueryString, lock: Bool) async throws -> [Agent] {
        let query: SQLQueryString = "SELECT \(unsafeRaw: Self.agentColumns) FROM agents WHERE \(condition)\(unsafeRaw: lock ? dialect.forUpdate : "")"
        return try await rows(query).map(Self.decodeAgent)
    }

    public func listAgents(page: Page) async throws -> [Agent] {
        let query: SQLQueryString = "SELECT \(unsafeRaw: Self.agentColumns) FROM agents \(unsafeRaw: orderClause(page)) LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)"
        return try await rows(query).map(Self.decodeAgent)
    }

    /// Inserts `agent` unless its name is taken; returns whether it was inserted.
    public func insertAgentIfAbsent(_ a: Agent) async throws -> Bool {
        let inserted = try await rows("""
            INSERT INTO agents (\(unsafeRaw: Self.agentColumns), api_key_lookup) VALUES (\(bind: a.id), \(bind: a.name), \
            \(bind: a.description), \(bind: a.status.rawValue), \(bind: a.statusReason), \(bind: a.acpType.rawValue), \
            \(bind: a.agentInputType?.rawValue), \(bind: try Self.encode(a.registrationMetadata)), \
            \(bind: a.registeredAt?.microseconds), \(bind: a.createdAt.microseconds), \(bind: a.updatedAt.microseconds), \
            \(bind: a.productionDeploymentId), \(bind: a.acpURL), \(bind: a.apiKey), \
            \(bind: Identifiers.apiKeyLookup(a.apiKey))) ON CONFLICT (name) DO NOTHING RETURNING id
            """)
        return !inserted.isEmpty
    }

    public func updateAgent(_ a: Agent) async throws {
        try await run(try Self.agentUpdate(a))
        noteChange(agentId: a.id, deploymentId: nil)
    }

    private static func agentUpdate(_ a: Agent) throws -> SQLQueryString {
        """
            UPDATE agents SET description = \(bind: a.description), status = \(bind: a.status.rawValue), \
            status_reason = \(bind: a.statusReason), acp_type = \(bind: a.acpType.rawValue), \
            agent_input_type = \(bind: a.agentInputType?.rawValue), \
            registration_metadata = \(bind: try Self.encode(a.registrationMetadata)), \
            registered_at = \(bind: a.registeredAt?.microseconds), updated_at = \(bind: a.updatedAt.microseconds), \
            production_deployment_id = \(bind: a.productionDeploymentId), acp_url = \(bind: a.acpURL) \
            WHERE id = \(bind: a.id)
            """
    }

    // MARK: Deployments

    static let deploymentColumns = """
        id, agent_id, docker_image, registration_metadata, status, status_reason, acp_url, is_production, \
        sgp_deploy_id, helm_release_name, created_at, registered_at, ready_at, promoted_at, demoted_at, expires_at, \
        failed_at, last_probe_error
        """

    public func deployment(id: String, lock: Bool = false) async throws -> Deployment? {
        try await deployments(where: "id = \(bind: id)", lock: lock).first
    }

    /// Deployments `ids` and their agents, by deployment id, in one unlocked read (the controller's look
    /// before it probes); unknown ids are absent. `runningTasks` is not counted.
    public func deploymentsAndAgents(ids: [String]) async throws -> [String: (Deployment, Agent)] {
        guard !ids.isEmpty else { return [:] }
        let rows = dialect == .postgres
            ? try await rows(Self.deploymentsAndAgentsStatement(count: ids.count), ids.map { .text($0) })
            : try await rows("""
                SELECT \(unsafeRaw: Self.deploymentAndAgentColumns) FROM deployments d JOIN agents a ON a.id = d.agent_id \
                WHERE d.id IN (\(binds: ids))
                """)
        var found: [String: (Deployment, Agent)] = [:]
        for row in rows {
            var r = row.reader
            let deployment = try Self.readDeployment(&r, withRunningTasks: false)
            found[deployment.id] = (deployment, try Self.readAgent(&r))
        }
        return found
    }

    private static let deploymentAndAgentColumns =
        "\(qualified(deploymentColumns, "d")), \(qualified(agentColumns, "a"))"

    /// `deploymentsAndAgents` on PostgreSQL for `count` ids (`$1`…): each deployment, then its agent, looked
    /// up by id on its own. The plain join (`d.id IN (…)`) got a generic plan that read every deployment
    /// into a hash whenever it was first planned on a nearly empty table (a new database), and PostgreSQL
    /// keeps a generic plan until the table's statistics change: in a benchmark's ten seconds of
    /// registrations, PostgreSQL counted 682 sequential scans of `deployments`, which read 3.5 million
    /// rows. A lookup of one id by a unique index is cheaper than a scan even by an empty table's
    /// estimates; the `LIMIT 1` keeps each lookup a subquery of its own, which the planner would otherwise
    /// merge into a join it is again free to hash.
    static func deploymentsAndAgentsStatement(count: Int) -> Statement {
        let keys = (1...count).map { "($\($0))" }.joined(separator: ", ")
        return Statement("""
            SELECT \(deploymentAndAgentColumns) FROM (VALUES \(keys)) k(id)
            CROSS JOIN LATERAL (SELECT * FROM deployments WHERE deployments.id = k.id LIMIT 1) d
            CROSS JOIN LATERAL (SELECT * FROM agents WHERE agents.id = d.agent_id LIMIT 1) a
            """)
    }

    /// Agents `ids`, by id, locked in id order: units of work that lock several agents this way cannot
    /// deadlock on each other. Unknown ids are absent.
    private func lockAgents(ids: Set<String>) async throws -> [String: Agent] {
        guard !ids.isEmpty else { return [:] }
        let agents = try await agents(where: "id IN (\(binds: ids.sorted())) ORDER BY id", lock: true)
        return Dictionary(agents.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Deployments `ids`, by id, locked in id order (after their agents: see `lockAgents`). Unknown ids
    /// are absent.
    private func lockDeployments(ids: Set<String>) async throws -> [String: Deployment] {
        guard !ids.isEmpty else { return [:] }
        let deployments = try await deployments(where: "id IN (\(binds: ids.sorted())) ORDER BY id", lock: true)
        return Dictionary(deployments.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Agents `agentIds` and their deployments among `deploymentIds` (plus, with `production`, each
    /// agent's production deployment), locked agents first, then deployments, each in id order: the order
    /// `lockAgents` and `lockDeployments` keep, so units of work locking this way cannot deadlock on each
    /// other. A deployment of an agent not asked for is absent from the answer (though locked, like any id
    /// asked for). One statement on PostgreSQL, where a round trip is a write to a socket and a wake-up on
    /// each side; on SQLite, whose units of work run one at a time, the two reads.
    public func lockAgentsAndDeployments(
        agentIds: Set<String>, deploymentIds: Set<String>, production: Bool
    ) async throws -> (agents: [String: Agent], deployments: [String: Deployment]) {
        guard !agentIds.isEmpty else { return ([:], [:]) }
        guard dialect == .postgres else {
            let agents = try await lockAgents(ids: agentIds)
            let productionIds = production ? agents.values.compactMap(\.productionDeploymentId) : []
            let deployments = try await lockDeployments(ids: deploymentIds.union(productionIds))
            return (agents, deployments.filter { agents[$0.value.agentId] != nil })
        }
        let rows = try await rows(Self.lockAgentsAndDeploymentsStatement, [
            .texts(TextColumn(agentIds.sorted())), .texts(TextColumn(deploymentIds.sorted())), .bool(production),
        ])
        var agents: [String: Agent] = [:]
        var deployments: [String: Deployment] = [:]
        for row in rows {
            var r = row.reader
            let hasDeployment = try r.optionalText() != nil
            let agent = try Self.readAgent(&r)
            agents[agent.id] = agent
            if hasDeployment {
                let deployment = try Self.readDeployment(&r, withRunningTasks: true)
                deployments[deployment.id] = deployment
            }
        }
        return (agents, deployments)
    }

    /// The units of work that lock this way (promotes, rollbacks, reconcile batches) take their turns on
    /// an agent in the order they asked: each first waits for the agent's advisory lock, which PostgreSQL
    /// hands to its first waiter as the holder commits. A row lock
    /// alone is not a queue: between a commit and the moment the first waiter runs again the row is free,
    /// and a newcomer can take it first, again and again on a busy machine (promotes of one agent at c=16
    /// had their p99 at 4× their median). The keys are taken in key order, so two units cannot wait for
    /// each other's; a key shared by two agents (hashtext) only makes them take turns too.
    ///
    /// The counts are conditions on no column, which PostgreSQL evaluates once before reading a row: `q`
    /// runs whole before `a` locks an agent, and `a` before `d` reads a deployment. `d` finds deployments
    /// by id alone: a condition on `agent_id` there let the planner read the agent's whole index (8,000
    /// entries for a busy agent) to intersect it with two ids. It looks each id up on its own, in id order
    /// (a lateral subquery that locks is not merged into a join): one condition over all the ids got a
    /// generic plan that scanned the whole table whenever it was first planned on a nearly empty one, as
    /// in a new database, and kept it as the table grew. The join drops a deployment of an agent not asked
    /// for; one row per agent and deployment, the deployment's columns NULL for an agent with none.
    static let lockAgentsAndDeploymentsStatement = Statement("""
        WITH q AS (
            SELECT pg_advisory_xact_lock(\(agentTurnLockClass), k)
            FROM (SELECT DISTINCT hashtext(x) AS k FROM unnest($1::text[]) x ORDER BY k) keys
        ), a AS (
            SELECT \(agentColumns) FROM agents WHERE id = ANY($1) AND (SELECT COUNT(*) FROM q) >= 0 ORDER BY id FOR UPDATE
        ), d AS (
            SELECT l.* FROM (
                SELECT DISTINCT x FROM unnest($2::text[] || CASE WHEN $3 = 1 AND (SELECT COUNT(*) FROM a) >= 0
                    THEN ARRAY(SELECT production_deployment_id FROM a) ELSE '{}'::text[] END) x
                WHERE x IS NOT NULL ORDER BY x
            ) k CROSS JOIN LATERAL (
                SELECT \(deploymentColumns), \(runningTasksColumn) FROM deployments WHERE id = k.x FOR UPDATE
            ) l
        )
        SELECT d.id, \(qualified(agentColumns, "a")), \(qualified(deploymentColumns, "d")), d.running_tasks
        FROM a LEFT JOIN d ON d.agent_id = a.id
        """)

    /// The first key of the agents' advisory locks (the two-key form, a space apart from the one-key
    /// locks of migrations and leader election).
    static let agentTurnLockClass: Int32 = 7243

    /// `a, b` → `t.a, t.b`.
    static func qualified(_ columns: String, _ table: String) -> String {
        columns.split(separator: ",").map { "\(table).\($0.trimmingCharacters(in: .whitespacesAndNewlines))" }
            .joined(separator: ", ")
    }

    public func productionDeployment(agentId: String) async throws -> Deployment? {
        try await deployments(where: "agent_id = \(bind: agentId) AND is_production = 1", lock: false).first
    }

    /// The agent's deployments that were production at some time: the rollback candidates.
    public func formerProductionDeployments(agentId: String) async throws -> [Deployment] {
        try await deployments(where: "agent_id = \(bind: agentId) AND promoted_at IS NOT NULL", lock: false)
    }

    /// Ids of every deployment the controller may still have work on.
    public func pendingDeploymentIds() async throws -> [String] {
        try await rows("SELECT id FROM deployments WHERE status = 'Pending' AND expires_at IS NULL")
            .map { try $0.text() }
    }

    /// A page of agent `agentId`'s deployments; nil when there is no such agent. On PostgreSQL one
    /// statement answers both, so a list costs one round trip: the agent's row joined to the page, with
    /// one row of NULLs when the page is empty and none when the agent does not exist. SQLite, where a
    /// statement is a function call rather than a round trip, runs the two plain queries instead (the
    /// join measured slower there).
    public func listDeployments(agentId: String, includeDeleted: Bool, page: Page) async throws -> [Deployment]? {
        let deleted: SQLQueryString = includeDeleted ? "" : " AND expires_at IS NULL"
        let order = orderClause(page)
        let list: SQLQueryString = """
            SELECT \(unsafeRaw: Self.deploymentColumns), \(unsafeRaw: Self.runningTasksColumn), seq FROM deployments \
            WHERE agent_id = \(bind: agentId)\(deleted) \(unsafeRaw: order) LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
            """
        guard dialect == .postgres else {
            guard try await !rows("SELECT 1 FROM agents WHERE id = \(bind: agentId)").isEmpty else { return nil }
            return try await rows(list).map(Self.decodeDeployment)
        }
        let rows = try await rows("""
            SELECT * FROM (SELECT CASE WHEN d.id IS NULL THEN 0 ELSE 1 END AS found, d.* FROM agents a \
            LEFT JOIN (\(list)) d ON 1 = 1 WHERE a.id = \(bind: agentId)) page \(unsafeRaw: order)
            """)
        guard !rows.isEmpty else { return nil }
        return try rows.compactMap { row in
            var r = row.reader
            guard try r.bool() else { return nil }
            return try Self.readDeployment(&r, withRunningTasks: true)
        }
    }

    private func deployments(where condition: SQLQueryString, lock: Bool) async throws -> [Deployment] {
        let query: SQLQueryString = """
            SELECT \(unsafeRaw: Self.deploymentColumns), \(unsafeRaw: Self.runningTasksColumn) FROM deployments \
            WHERE \(condition)\(unsafeRaw: lock ? dialect.forUpdate : "")
            """
        return try await rows(query).map(Self.decodeDeployment)
    }

    /// Inserts `d` unless its id exists, or was collected from another agent (a collected id stays its
    /// agent's); returns whether it was inserted. With `generatedId` (a UUID Cutover made for `d`, which
    /// no row and no collected id can already have), the collected ids are not consulted. With
    /// `inheritImage`, `d` takes the image of its agent's newest deployment when there is one (a
    /// registration that names none), read by the insert itself. The casts give PostgreSQL the types of
    /// NULL parameters, which a SELECT list (unlike VALUES) does not take from the target columns. On
    /// PostgreSQL an insert that waited on another agent's collection of this id is refused by the
    /// `cutover_refuse_collected_id` trigger (its check reads a fresh snapshot, which this one does not).
    public func insertDeploymentIfAbsent(
        _ d: Deployment, generatedId: Bool = false, inheritImage: Bool = false
    ) async throws -> Bool {
        let unclaimed: SQLQueryString = generatedId ? "" : """
             WHERE NOT EXISTS (SELECT 1 FROM collected_deployments c WHERE c.id = \(bind: d.id) AND c.agent_id <> \(bind: d.agentId))
            """
        let image: SQLQueryString = inheritImage ? """
            COALESCE((SELECT docker_image FROM deployments WHERE agent_id = \(bind: d.agentId) \
            ORDER BY created_at DESC, seq DESC LIMIT 1), \(bind: d.dockerImage))
            """ : "\(bind: d.dockerImage)"
        let inserted = try await rows("""
            INSERT INTO deployments (\(unsafeRaw: Self.deploymentColumns)) SELECT \(bind: d.id), \(bind: d.agentId), \
            \(image), CAST(\(bind: try Self.encode(d.registrationMetadata)) AS TEXT), \(bind: d.status.rawValue), \
            CAST(\(bind: d.statusReason) AS TEXT), CAST(\(bind: d.acpURL) AS TEXT), CAST(\(bind: d.isProduction ? 1 : 0) AS INTEGER), \
            CAST(\(bind: d.sgpDeployId) AS TEXT), CAST(\(bind: d.helmReleaseName) AS TEXT), \
            CAST(\(bind: d.createdAt.microseconds) AS BIGINT), CAST(\(bind: d.registeredAt?.microseconds) AS BIGINT), \
            CAST(\(bind: d.readyAt?.microseconds) AS BIGINT), CAST(\(bind: d.promotedAt?.microseconds) AS BIGINT), \
            CAST(\(bind: d.demotedAt?.microseconds) AS BIGINT), CAST(\(bind: d.expiresAt?.microseconds) AS BIGINT), \
            CAST(\(bind: d.failedAt?.microseconds) AS BIGINT), CAST(\(bind: d.lastProbeError) AS TEXT)\(unclaimed) \
            ON CONFLICT (id) DO NOTHING RETURNING id
            """)
        guard !inserted.isEmpty else { return false }
        noteChange(d)
        return true
    }

    /// Writes every mutable field of `d`; `agent_id` is never written (invariant 3). `notify: false` is for
    /// writes nobody needs to react to (the controller's own pending hints).
    public func updateDeployment(_ d: Deployment, notify: Bool = true) async throws {
        try await run(try Self.deploymentUpdate(d))
        if notify { noteChange(d) }
    }

    private static func deploymentUpdate(_ d: Deployment) throws -> SQLQueryString {
        """
            UPDATE deployments SET docker_image = \(bind: d.dockerImage), \
            registration_metadata = \(bind: try Self.encode(d.registrationMetadata)), status = \(bind: d.status.rawValue), \
            status_reason = \(bind: d.statusReason), acp_url = \(bind: d.acpURL), is_production = \(bind: d.isProduction ? 1 : 0), \
            sgp_deploy_id = \(bind: d.sgpDeployId), helm_release_name = \(bind: d.helmReleaseName), \
            registered_at = \(bind: d.registeredAt?.microseconds), ready_at = \(bind: d.readyAt?.microseconds), \
            promoted_at = \(bind: d.promotedAt?.microseconds), demoted_at = \(bind: d.demotedAt?.microseconds), \
            expires_at = \(bind: d.expiresAt?.microseconds), failed_at = \(bind: d.failedAt?.microseconds), \
            last_probe_error = \(bind: d.lastProbeError) WHERE id = \(bind: d.id)
            """
    }

    /// Updates `a` as one of the unit of work's last writes: on PostgreSQL inside the statement that ends
    /// it (`finish`), a round trip fewer; elsewhere at once. For callers that read nothing back afterwards
    /// and whose deferred updates may run in any order (data-modifying CTEs have none).
    public func updateAgentAtFinish(_ a: Agent) async throws {
        try await updateAtFinish(Self.agentUpdate(a))
        noteChange(agentId: a.id, deploymentId: nil)
    }

    /// `updateDeployment` as one of the unit of work's last writes; see `updateAgentAtFinish`.
    public func updateDeploymentAtFinish(_ d: Deployment, notify: Bool = true) async throws {
        try await updateAtFinish(Self.deploymentUpdate(d))
        if notify { noteChange(d) }
    }

    private func updateAtFinish(_ update: SQLQueryString) async throws {
        guard dialect == .postgres else { return try await run(update) }
        pendingWrites.withLock { $0.append(update) }
    }

    /// A promotion's two deployment writes as the unit of work's last: `demoted`, the production
    /// deployment it replaces, then `promoted`. On PostgreSQL both join the statement that ends the unit
    /// of work, and the promotion's update waits for the demotion: it counts the rows the demotion returns,
    /// a condition on no column of its own, which PostgreSQL evaluates once before it reads a row. So the
    /// one-production index never holds two (the demoted row's old entry is dead to the transaction that
    /// updated it). Without that dependency the order is PostgreSQL's to choose, and it ran the later
    /// one first. Elsewhere both at once, in that order.
    public func replaceProductionAtFinish(demoted: Deployment, promoted: Deployment) async throws {
        guard dialect == .postgres else {
            try await updateDeployment(demoted)
            return try await updateDeployment(promoted)
        }
        var demotion = try Self.deploymentUpdate(demoted)
        demotion.appendLiteral(" RETURNING id")
        var promotion = try Self.deploymentUpdate(promoted)
        pendingWrites.withLock { writes in
            promotion.appendLiteral(" AND (SELECT COUNT(*) FROM \(Self.finishingWrite(writes.count))) >= 0")
            writes.append(demotion)
            writes.append(promotion)
        }
        noteChange(demoted)
        noteChange(promoted)
    }

    /// The name of the `index`th queued update in the statement `finish` writes.
    private static func finishingWrite(_ index: Int) -> String { "w\(index)" }

    /// Writes a reconcile plan: the agent (an auto-promotion repoints it), the deployment and the events,
    /// as the unit of work's last writes. The two updates may run in either order: an auto-promotion is of
    /// an agent without a production deployment, so neither can meet the one-production index.
    public func write(_ plan: ReconcilePlan, agentId: String, actor: Actor, at now: Timestamp) async throws {
        if let agent = plan.agent { try await updateAgentAtFinish(agent) }
        if let deployment = plan.deployment { try await updateDeploymentAtFinish(deployment, notify: plan.notifies) }
        appendEvents(agentId: agentId, plan.events, actor: actor, at: now)
    }

    // MARK: Events

    /// Appends `drafts` in order. They are written when the unit of work ends, in the one statement that
    /// also sends its change notifications (`finish`): nothing in a unit of work reads events back, and on
    /// PostgreSQL this saves a round trip in every unit that writes. They still precede the commit, under
    /// the same locks, so an agent's events keep commit order.
    public func appendEvents(agentId: String, _ drafts: [EventDraft], actor: Actor, at now: Timestamp) {
        guard !drafts.isEmpty else { return }
        // Event watchers follow the change feed, so every appended event is a change of its agent.
        noteChange(agentId: agentId, deploymentId: nil)
        pendingEvents.withLock { pending in
            for draft in drafts { pending.append(PendingEvent(agentId: agentId, draft: draft, actor: actor, at: now)) }
        }
    }

    struct PendingEvent {
        var agentId: String
        var draft: EventDraft
        var actor: Actor
        var at: Timestamp
    }

    /// The statement that ends a unit of work, still under its locks and before COMMIT: runs the queued
    /// updates (`updateAgentAtFinish`, `updateDeploymentAtFinish`), writes the pending events, and on
    /// PostgreSQL sends `notifications` (payloads on the change channel). One statement for all of them,
    /// none when there is nothing to do.
    func finish(notifications: [String]) async throws {
        let events = pendingEvents.take()
        var ctes = pendingWrites.take()
        if !events.isEmpty {
            let insert = Self.eventsInsert(events, dialect: dialect)
            // Alone (SQLite, or nothing else to do) the insert is the statement.
            guard !ctes.isEmpty || !notifications.isEmpty else { return try await run(insert) }
            ctes.append(insert)
        }
        guard !ctes.isEmpty || !notifications.isEmpty else { return }
        var statement: SQLQueryString = ctes.isEmpty ? "" : "WITH "
        for (i, cte) in ctes.enumerated() {
            statement.appendInterpolation("\(unsafeRaw: i > 0 ? ", " : "")\(unsafeRaw: Self.finishingWrite(i)) AS (\(cte)) " as SQLQueryString)
        }
        if notifications.isEmpty {
            statement.appendLiteral("SELECT 1")
        } else {
            statement.appendInterpolation("""
                SELECT pg_notify(\(bind: ChangeNotifications.channel), payload) \
                FROM unnest(\(bind: TextColumn(notifications))) payload
                """ as SQLQueryString)
        }
        try await run(statement)
    }

    /// The insert of `events`. On PostgreSQL each column is one array parameter, so the statement's text
    /// (and its prepared plan) is the same for any number of events; unnest yields the rows in array
    /// order, which the insert keeps for `seq`.
    private static func eventsInsert(_ events: [PendingEvent], dialect: SQLDialectKind) -> SQLQueryString {
        guard dialect == .postgres else {
            var insert: SQLQueryString = "\(unsafeRaw: eventInsert) VALUES "
            for (i, e) in events.enumerated() {
                if i > 0 { insert.appendLiteral(", ") }
                insert.appendInterpolation("""
                    (\(bind: Identifiers.uuid()), \(bind: e.agentId), \(bind: e.draft.deploymentId), \(bind: e.draft.type.rawValue), \
                    \(bind: e.draft.reason), \(bind: e.draft.message), \(bind: e.actor.description), \(bind: e.at.microseconds))
                    """ as SQLQueryString)
            }
            return insert
        }
        return """
            \(unsafeRaw: eventInsert) SELECT * FROM unnest(\(bind: TextColumn(events.map { _ in Identifiers.uuid() })), \
            \(bind: TextColumn(events.map(\.agentId))), \(bind: TextColumn(events.map(\.draft.deploymentId))), \
            \(bind: TextColumn(events.map(\.draft.type.rawValue))), \(bind: TextColumn(events.map(\.draft.reason))), \
            \(bind: TextColumn(events.map(\.draft.message))), \(bind: TextColumn(events.map(\.actor.description))), \
            \(bind: IntColumn(events.map(\.at.microseconds))))
            """
    }

    public func listEvents(agentId: String, deploymentId: String?, page: Page) async throws -> [Event] {
        let filter: SQLQueryString = deploymentId.map { " AND deployment_id = \(bind: $0)" } ?? ""
        let query: SQLQueryString = """
            SELECT \(unsafeRaw: Self.eventColumns) FROM events \
            WHERE agent_id = \(bind: agentId)\(filter) \(unsafeRaw: orderClause(page, timeColumnInCommitOrder: true)) \
            LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)
            """
        return try await rows(query).map { try Self.event($0).event }
    }

    /// The position of event `id` in its agent's trail, nil when the agent has no such event.
    public func eventPosition(agentId: String, id: String) async throws -> Int64? {
        try await rows("SELECT seq FROM events WHERE agent_id = \(bind: agentId) AND id = \(bind: id)").first?.int()
    }

    /// Up to `limit` of the agent's events after position `after`, oldest first, each with its position:
    /// per agent, positions follow commit order, so a reader that resumes after the last one it saw
    /// misses nothing.
    public func events(agentId: String, after: Int64, limit: Int) async throws -> [(position: Int64, event: Event)] {
        let query: SQLQueryString = """
            SELECT \(unsafeRaw: Self.eventColumns) FROM events \
            WHERE agent_id = \(bind: agentId) AND seq > \(bind: after) ORDER BY seq LIMIT \(bind: limit)
            """
        return try await rows(query).map(Self.event)
    }

    static let eventColumns = "seq, id, agent_id, deployment_id, type, reason, message, actor, created_at"

    /// The head of an events insert, the columns in the order `finish` and the one-statement units give.
    static let eventInsert =
        "INSERT INTO events (id, agent_id, deployment_id, type, reason, message, actor, created_at)"

    private static func event(_ row: Row) throws -> (position: Int64, event: Event) {
        var r = row.reader
        let position = try r.int()
        let event = Event(
            id: try r.text(), agentId: try r.text(), deploymentId: try r.optionalText(),
            type: EventType(rawValue: try r.text()) ?? .created, reason: try r.optionalText(), message: try r.text(),
            actor: try r.text(), createdAt: try r.time())
        return (position, event)
    }

    // MARK: Helpers

    /// `page.orderBy` is checked against the known columns by the API; nulls sort last either way, and
    /// insertion order breaks ties. With `timeColumnInCommitOrder` (events, which are only ever inserted
    /// under their agent's row lock), `created_at` order is insertion order itself: per agent that is the
    /// commit order, which a clock cannot promise.
    private func orderClause(_ page: Page, timeColumnInCommitOrder: Bool = false) -> String {
        let dir = page.direction == .asc ? "ASC" : "DESC"
        let column = page.orderBy.allSatisfy { $0.isLetter || $0 == "_" } ? page.orderBy : "created_at"
        if timeColumnInCommitOrder, column == "created_at" { return "ORDER BY seq \(dir)" }
        // Every table's created_at and updated_at are NOT NULL; without the NULLs-last term an index on
        // (…, column, seq) can give the order (the planner does not fold the term away by itself).
        if column == "created_at" || column == "updated_at" { return "ORDER BY \(column) \(dir), seq \(dir)" }
        return "ORDER BY CASE WHEN \(column) IS NULL THEN 1 ELSE 0 END, \(column) \(dir), seq \(dir)"
    }

    static func encode(_ object: [String: JSONValue]?) throws -> String? {
        guard let object else { return nil }
        return JSONCodec.string(.object(object))
    }

    static func decodeObject(_ text: String?) throws -> [String: JSONValue]? {
        guard let text else { return nil }
        guard let object = try JSONCodec.parse(text).objectValue else {
            throw JSONCodec.ParseError(offset: 0, reason: "stored metadata is not a JSON object")
        }
        return object
    }

    /// Reads `agentColumns`, in their order.
    static func decodeAgent(_ row: Row) throws -> Agent {
        var r = row.reader
        return try readAgent(&r)
    }

    static func readAgent(_ r: inout RowReader) throws -> Agent {
        Agent(
            id: try r.text(), name: try r.text(), description: try r.text(),
            status: AgentStatus(rawValue: try r.text()) ?? .unknown, statusReason: try r.optionalText(),
            acpType: ACPType(rawValue: try r.text()) ?? .async,
            agentInputType: try r.optionalText().flatMap(AgentInputType.init),
            registrationMetadata: try decodeObject(r.optionalText()), registeredAt: try r.optionalTime(),
            createdAt: try r.time(), updatedAt: try r.time(), productionDeploymentId: try r.optionalText(),
            acpURL: try r.optionalText(), apiKey: try r.text())
    }

    /// The count a deployment record shows as `running_tasks`, read with it (the partial index on RUNNING
    /// tasks by owner answers it).
    static let runningTasksColumn =
        "(SELECT COUNT(*) FROM tasks WHERE tasks.deployment_id = deployments.id AND tasks.status = 'RUNNING') AS running_tasks"

    /// Reads `deploymentColumns`, in their order, then `runningTasksColumn` when `withRunningTasks`.
    static func decodeDeployment(_ row: Row, withRunningTasks: Bool) throws -> Deployment {
        var r = row.reader
        return try readDeployment(&r, withRunningTasks: withRunningTasks)
    }

    static func readDeployment(_ r: inout RowReader, withRunningTasks: Bool) throws -> Deployment {
        var d = Deployment(
            id: try r.text(), agentId: try r.text(), dockerImage: try r.text(),
            registrationMetadata: try decodeObject(r.optionalText()),
            status: DeploymentStatus(rawValue: try r.text()) ?? .pending, statusReason: try r.optionalText(),
            acpURL: try r.optionalText(), isProduction: try r.bool(), sgpDeployId: try r.optionalText(),
            helmReleaseName: try r.optionalText(), createdAt: try r.time(), registeredAt: try r.optionalTime(),
            readyAt: try r.optionalTime(), promotedAt: try r.optionalTime(), demotedAt: try r.optionalTime(),
            expiresAt: try r.optionalTime(), failedAt: try r.optionalTime(), lastProbeError: try r.optionalText())
        if withRunningTasks { d.runningTasks = Int(try r.int()) }
        return d
    }

    static func decodeDeployment(_ row: Row) throws -> Deployment { try decodeDeployment(row, withRunningTasks: true) }
}

extension Mutex where Value: RangeReplaceableCollection & Sendable {
    /// The elements queued so far, leaving none.
    fileprivate func take() -> Value {
        withLock { queued in
            defer { queued.removeAll() }
            return queued
        }
    }
}
