import CutoverCore

/// The task protocol's commonest calls as one PostgreSQL statement each, run outside a transaction: the
/// statement is its own unit of work, so the task's row lock is held for one statement rather than for a
/// transaction of six round trips, and the agent's row lock is not taken at all (calls on different tasks
/// of one agent run side by side). `createTaskInOneStatement` returns nil on SQLite; `continueTask` runs
/// there as several statements in one transaction. Each returns nil where it matched nothing, so that the
/// caller's transaction handles the case with its full rules (and its errors).
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

    /// One call's writes on an existing task: the message it stores and the event it appends (either may
    /// be absent), at its own time.
    public struct TaskWrite: Sendable {
        public var message: TaskMessage?
        public var event: (id: String, content: JSONValue?)?
        public var at: Timestamp

        public init(message: TaskMessage?, event: (id: String, content: JSONValue?)?, at: Timestamp) {
            self.message = message
            self.event = event
            self.at = at
        }
    }

    /// Calls on task `taskId` of `agentId` (`message/send`, `event/send`) when the task stays where it is:
    /// the calls are `pinned` to the route's deployment, the task already belongs to `routeDeploymentId`,
    /// or (with `affinity`) its owner is Ready, not deleted and reachable. Marks the task active (an
    /// INTERRUPTED one RUNNING again), replaces its params when `params` is given, and stores each write's
    /// message and appends its event, in the order given: the events take the task's next sequence ids.
    /// One result per write, in that order. A task that would move or be adopted, or that does not exist,
    /// gives nil and writes nothing. One statement on PostgreSQL, outside a transaction; on SQLite, whose
    /// units of work run one at a time, the task's update and then each insert, in the caller's
    /// transaction.
    public func continueTask(
        taskId: String, agentId: String, routeDeploymentId: String?, pinned: Bool, affinity: Bool,
        params: [String: JSONValue]?, writes: [TaskWrite]
    ) async throws -> [ContinuedTask]? {
        guard let latest = writes.map(\.at).max() else { return nil }
        // Each event's place among the events written here, 1 up (NULL for a write without one).
        var eventCount: Int64 = 0
        let places = writes.map { write -> Int64? in
            guard write.event != nil else { return nil }
            eventCount += 1
            return eventCount
        }
        guard dialect == .postgres else {
            return try await continueTaskOnSQLite(
                taskId: taskId, agentId: agentId, routeDeploymentId: routeDeploymentId, pinned: pinned, affinity: affinity,
                params: params, writes: writes, latest: latest, eventCount: eventCount, places: places)
        }
        let rows = try await connection.rows(Self.continueTask, [
            .text(taskId), .text(agentId), .time(latest), .bool(pinned), .text(routeDeploymentId),
            .bool(affinity), .texts(TextColumn(writes.map { $0.message?.id })),
            .texts(TextColumn(writes.map { $0.message.map { JSONCodec.string($0.content) } })),
            .texts(TextColumn(writes.map { $0.event?.id })),
            .texts(TextColumn(writes.map { $0.event?.content.map(JSONCodec.string) })),
            .text(try Self.encode(params)), .int(eventCount), .ints(IntColumn(places)),
            .ints(IntColumn(writes.map { $0.at.microseconds })),
        ])
        guard let row = rows.first else { return nil }
        var r = row.reader
        let task = try Self.readTask(&r)
        let lastSequence = try r.int()
        let ownerURL = try r.optionalText()
        let agent = try Self.readAgent(&r)
        return Self.continued(
            taskId: taskId, agentId: agentId, agent: agent, task: task, ownerURL: ownerURL, writes: writes,
            places: places, eventCount: eventCount, lastSequence: lastSequence)
    }

    private func continueTaskOnSQLite(
        taskId: String, agentId: String, routeDeploymentId: String?, pinned: Bool, affinity: Bool,
        params: [String: JSONValue]?, writes: [TaskWrite], latest: Timestamp, eventCount: Int64, places: [Int64?]
    ) async throws -> [ContinuedTask]? {
        // The agent first: nothing is written for a call the caller's transaction then handles.
        guard let agent = try await agent(id: agentId) else { return nil }
        let updated = try await connection.rows(Self.continueTaskOnSQLite, [
            .text(taskId), .text(agentId), .time(latest), .bool(pinned), .text(routeDeploymentId),
            .bool(affinity), .text(try Self.encode(params)), .int(eventCount),
        ])
        guard let row = updated.first else { return nil }
        var r = row.reader
        let task = try Self.readTask(&r)
        let lastSequence = try r.int()
        var ownerURL: String?
        if let owner = task.deploymentId { ownerURL = try await deployment(id: owner)?.acpURL }
        let continued = Self.continued(
            taskId: taskId, agentId: agentId, agent: agent, task: task, ownerURL: ownerURL, writes: writes,
            places: places, eventCount: eventCount, lastSequence: lastSequence)
        for (write, result) in zip(writes, continued) {
            if let message = write.message { try await insertTaskMessage(message) }
            if let event = result.event { try await insertTaskEvent(event) }
        }
        return continued
    }

    private static func continued(
        taskId: String, agentId: String, agent: Agent, task: AgentTask, ownerURL: String?, writes: [TaskWrite],
        places: [Int64?], eventCount: Int64, lastSequence: Int64
    ) -> [ContinuedTask] {
        zip(writes, places).map { write, place in
            ContinuedTask(
                agent: agent, task: task,
                event: write.event.map { event in
                    TaskEvent(
                        id: event.id, taskId: taskId, agentId: agentId, sequenceId: lastSequence - eventCount + place!,
                        content: event.content, createdAt: write.at)
                },
                ownerURL: ownerURL)
        }
    }

    /// $7–$10, $13 and $14 are one array each, an element per write: message ids and contents, event ids
    /// and contents, the event's place among this statement's events ($12 of them), and the write's time.
    ///
    /// Rows are found by id alone, the other conditions wrapped in `IS TRUE`, which no index can serve. A
    /// prepared statement runs a generic plan, made without the values: written as plain `agent_id = $2`,
    /// the plan for a young table found the task through `tasks_agent`, reading every task of the agent to
    /// update one (`event/send` fell from about 2,700 to 200/s once the agent had 25,000 tasks), and the
    /// owner's check as `EXISTS` became a hashed scan of every deployment.
    static let continueTask = Statement("""
        WITH w AS (
            SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $13::bigint[], $14::bigint[])
                WITH ORDINALITY AS w(message_id, message, event_id, event, place, at, n)
        ), t AS (
            UPDATE tasks SET updated_at = $3, params = COALESCE($11::text, params), event_count = event_count + $12,
                status = CASE WHEN status = 'INTERRUPTED' THEN 'RUNNING' ELSE status END
            WHERE id = $1 AND (agent_id = $2 AND ($4 = 1 OR deployment_id IS NOT DISTINCT FROM $5::text OR ($6 = 1 AND
                (SELECT d.agent_id = tasks.agent_id AND d.status = 'Ready' AND d.expires_at IS NULL
                    AND d.acp_url IS NOT NULL FROM deployments d WHERE d.id = tasks.deployment_id)))) IS TRUE
            RETURNING \(taskColumns), event_count
        ), m AS (
            INSERT INTO task_messages (\(taskMessageColumns))
            SELECT w.message_id, t.id, w.message, 'DONE', w.at, w.at FROM t, w WHERE w.message IS NOT NULL ORDER BY w.n
        ), e AS (
            INSERT INTO task_events (\(taskEventColumns))
            SELECT w.event_id, t.id, t.agent_id, t.event_count - $12 + w.place, w.event, w.at FROM t, w
            WHERE w.event_id IS NOT NULL ORDER BY w.n
        )
        SELECT \(qualified(taskColumns, "t")), t.event_count, d.acp_url, \(qualified(agentColumns, "a"))
        FROM t JOIN agents a ON a.id = t.agent_id LEFT JOIN deployments d ON d.id = t.deployment_id
        """)

    /// SQLite's form of the task's update above: its rows are found by id whatever the plan.
    static let continueTaskOnSQLite = Statement("""
        UPDATE tasks SET updated_at = $3, params = COALESCE($7, params), event_count = event_count + $8,
            status = CASE WHEN status = 'INTERRUPTED' THEN 'RUNNING' ELSE status END
        WHERE id = $1 AND agent_id = $2 AND ($4 = 1 OR deployment_id IS $5 OR ($6 = 1 AND
            (SELECT d.agent_id = tasks.agent_id AND d.status = 'Ready' AND d.expires_at IS NULL
                AND d.acp_url IS NOT NULL FROM deployments d WHERE d.id = tasks.deployment_id)))
        RETURNING \(taskColumns), event_count
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
