import CutoverCore

/// The task protocol's commonest calls as one PostgreSQL statement each, run outside a transaction: the
/// statement is its own unit of work, so the task's row lock is held for one statement rather than for a
/// transaction of six round trips, and the agent's row lock is not taken at all (calls on different tasks
/// of one agent run side by side). Each returns nil on SQLite, and where the statement matched nothing,
/// so that the caller's transaction handles the case with its full rules (and its errors).
extension StoreTransaction {
    /// What a call on an existing task wrote, and where it goes.
    public struct ContinuedTask: Sendable {
        public var agent: Agent
        public var task: AgentTask
        /// The event appended, for an `event/send`.
        public var event: TaskEvent?
        /// The task's owner's URL, for when it is not the route's deployment.
        public var ownerURL: String?
    }

    /// A call on task `taskId` of `agentId` (`message/send`, `event/send`) when the task stays where it is:
    /// the call is `pinned` to the route's deployment, the task already belongs to `routeDeploymentId`, or
    /// (with `affinity`) its owner is Ready, not deleted and reachable. Marks the task active (an
    /// INTERRUPTED one RUNNING again), replaces its params when `params` is given, stores `message`, and
    /// appends `event` with the task's next sequence id. A task that would move or be adopted, or that does
    /// not exist, gives nil and writes nothing.
    public func continueTaskInOneStatement(
        taskId: String, agentId: String, routeDeploymentId: String?, pinned: Bool, affinity: Bool,
        params: [String: JSONValue]?, message: TaskMessage?, event: (id: String, content: JSONValue?)?, at now: Timestamp
    ) async throws -> ContinuedTask? {
        guard dialect == .postgres else { return nil }
        let rows = try await connection.rows(Self.continueTask, [
            .text(taskId), .text(agentId), .time(now), .bool(pinned), .text(routeDeploymentId), .bool(affinity),
            .text(message?.id), .text(message.map { JSONCodec.string($0.content) }), .text(event?.id),
            .text(event?.content.map(JSONCodec.string)), .text(try Self.encode(params)),
        ])
        guard let row = rows.first else { return nil }
        var r = row.reader
        let task = try Self.readTask(&r)
        let sequence = try r.int()
        let ownerURL = try r.optionalText()
        let agent = try Self.readAgent(&r)
        return ContinuedTask(
            agent: agent, task: task,
            event: event.map { TaskEvent(id: $0.id, taskId: taskId, agentId: agentId, sequenceId: sequence, content: $0.content, createdAt: now) },
            ownerURL: ownerURL)
    }

    /// $9 (the event's id) set: an event is appended.
    ///
    /// Rows are found by id alone, the other conditions wrapped in `IS TRUE`, which no index can serve. A
    /// prepared statement runs a generic plan, made without the values: written as plain `agent_id = $2`,
    /// the plan for a young table found the task through `tasks_agent`, reading every task of the agent to
    /// update one (`event/send` fell from about 2,700 to 200/s once the agent had 25,000 tasks), and the
    /// owner's check as `EXISTS` became a hashed scan of every deployment.
    static let continueTask = Statement("""
        WITH t AS (
            UPDATE tasks SET updated_at = $3, params = COALESCE($11::text, params),
                event_count = event_count + CASE WHEN $9::text IS NULL THEN 0 ELSE 1 END,
                status = CASE WHEN status = 'INTERRUPTED' THEN 'RUNNING' ELSE status END
            WHERE id = $1 AND (agent_id = $2 AND ($4 = 1 OR deployment_id IS NOT DISTINCT FROM $5::text OR ($6 = 1 AND
                (SELECT d.agent_id = tasks.agent_id AND d.status = 'Ready' AND d.expires_at IS NULL
                    AND d.acp_url IS NOT NULL FROM deployments d WHERE d.id = tasks.deployment_id)))) IS TRUE
            RETURNING \(taskColumns), event_count
        ), m AS (
            INSERT INTO task_messages (\(taskMessageColumns))
            SELECT $7, t.id, $8::text, 'DONE', $3, $3 FROM t WHERE $8::text IS NOT NULL
        ), e AS (
            INSERT INTO task_events (\(taskEventColumns))
            SELECT $9, t.id, t.agent_id, t.event_count, $10, $3 FROM t WHERE $9::text IS NOT NULL
        )
        SELECT \(qualified(taskColumns, "t")), t.event_count, d.acp_url, \(qualified(agentColumns, "a"))
        FROM t JOIN agents a ON a.id = t.agent_id LEFT JOIN deployments d ON d.id = t.deployment_id
        """)

    /// Creates `task` (no name: nothing to look up) with its tracker; the agent, or nil when there is none.
    public func createTaskInOneStatement(_ task: AgentTask) async throws -> Agent? {
        guard dialect == .postgres, task.name == nil else { return nil }
        let rows = try await connection.rows(Self.createTask, [
            .text(task.agentId), .text(task.id), .text(task.deploymentId), .text(task.status.rawValue),
            .text(task.statusReason), .text(try Self.encode(task.params)), .text(try Self.encode(task.taskMetadata)),
            .time(task.createdAt), .time(task.updatedAt),
        ])
        return try rows.first.map(Self.decodeAgent)
    }

    private static let createTask = Statement("""
        WITH a AS (SELECT \(agentColumns) FROM agents WHERE id = $1), t AS (
            INSERT INTO tasks (\(taskColumns)) SELECT $2, a.id, $3, NULL, $4, $5, $6, $7, $8, $9 FROM a RETURNING id
        ), r AS (
            INSERT INTO task_trackers (id, agent_id, task_id, last_processed_event_id, status, status_reason, \
            created_at, updated_at) SELECT t.id, $1, t.id, NULL, NULL, NULL, $8, $8 FROM t
        )
        SELECT \(qualified(agentColumns, "a")) FROM a
        """)

    /// Sets task `id`'s status and reason when its status is one of `from` (any when nil); the task as it
    /// now is, nil when it does not exist. One statement on PostgreSQL; on SQLite, whose units of work run
    /// one at a time, the update and then the read.
    public func setTaskStatus(
        id: String, _ status: TaskStatus, reason: String?, from: Set<TaskStatus>?, at now: Timestamp
    ) async throws -> AgentTask? {
        // The statuses are the enum's own constants, so they are written into the text.
        let allowed = from.map { " AND status IN (" + $0.map { "'\($0.rawValue)'" }.sorted().joined(separator: ", ") + ")" } ?? ""
        let binds: [Bind] = [.text(id), .text(status.rawValue), .text(reason), .time(now)]
        let update = "UPDATE tasks SET status = $2, status_reason = $3, updated_at = $4 WHERE id = $1\(allowed)"
        guard dialect == .postgres else {
            try await connection.run(Statement(update), binds)
            return try await task(id: id)
        }
        let rows = try await connection.rows(Statement("""
            WITH u AS (\(update) RETURNING \(Self.taskColumns))
            SELECT \(Self.taskColumns) FROM u
            UNION ALL SELECT \(Self.taskColumns) FROM tasks WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM u)
            """), binds)
        return try rows.first.map(Self.decodeTask)
    }
}
