/// Versioned schema changes, one list per dialect. Never edit an applied migration: append a new one.
struct Migration: Sendable {
    var version: Int
    var name: String
    var postgres: [String]
    var sqlite: [String]

    func statements(for dialect: SQLDialectKind) -> [String] {
        dialect == .postgres ? postgres : sqlite
    }
}

enum Migrations {
    static var latest: Int { all.last!.version }

    static let all: [Migration] = [
        Migration(
            version: 1, name: "records",
            postgres: tables(serial: "BIGSERIAL PRIMARY KEY") + indexes,
            sqlite: tables(serial: "INTEGER PRIMARY KEY AUTOINCREMENT") + indexes),
        Migration(version: 2, name: "retention", postgres: retention, sqlite: retention),
        // Event lists and watches read an agent's trail in insertion order.
        Migration(version: 3, name: "event_order", postgres: eventOrder, sqlite: eventOrder),
        Migration(
            version: 4, name: "tasks",
            postgres: tasks(serial: "BIGSERIAL PRIMARY KEY"), sqlite: tasks(serial: "INTEGER PRIMARY KEY AUTOINCREMENT")),
        // SQLite has one writer at a time, so the insert's own check of the collected ids suffices there.
        Migration(version: 5, name: "collected_id_guard", postgres: collectedIdGuard, sqlite: []),
        Migration(version: 6, name: "deployment_order", postgres: deploymentOrder, sqlite: deploymentOrder),
        // SQLite's units of work are transactions, whose statements after the lock see what committed before.
        Migration(version: 7, name: "newest_of_agent", postgres: newestOfAgent, sqlite: []),
        // Every read of events by agent goes by `seq` (events_agent_seq, migration 3), `created_at` order
        // included; the (agent_id, created_at) index only cost an insert per event.
        Migration(version: 8, name: "drop_events_agent", postgres: dropEventsAgent, sqlite: dropEventsAgent),
        // Every event or message on a task updates its `updated_at`; with that column in an index, each such
        // update wrote every index of `tasks` again (on PostgreSQL it could not be a heap-only update). The
        // task drain, the one reader of `updated_at` by owner, reads it from the rows.
        Migration(
            version: 9, name: "running_tasks_by_owner", postgres: runningTasksByOwner, sqlite: runningTasksByOwner),
        Migration(version: 10, name: "rfc3339_inlined", postgres: rfc3339Inlined, sqlite: []),
        // SQLite's promotions are transactions, which cost no round trips there.
        Migration(version: 11, name: "promote_function", postgres: promoteFunction, sqlite: []),
    ]

    /// A promotion as one call (`StoreTransaction.promoteInOneStatement` says what it does and answers).
    /// A function, not one statement of CTEs: a statement's snapshot is taken before it waits for the
    /// agent's turn, and each row the promotion before it changed (the agent, both deployments) then went
    /// through PostgreSQL's re-check of a row updated since the snapshot, which sets up the statement's
    /// whole plan again; under alternating promotes that was most of PostgreSQL's CPU. Each statement of a
    /// function takes a fresh snapshot, after the wait. Its name is its contract: a change of its
    /// parameters or answer is a new function, so that replicas of either version work during a rollout.
    private static let promoteFunction = [
        """
        CREATE FUNCTION cutover_promote(
            p_agent TEXT, p_deployment TEXT, p_now BIGINT, p_marker TEXT, p_reason TEXT, p_actor TEXT, p_payload TEXT,
            p_event_ids TEXT[], p_event_sets BIGINT[], p_event_deployments TEXT[], p_event_types TEXT[],
            p_event_messages TEXT[], p_made_ready TEXT[]
        ) RETURNS TABLE (
            changed INTEGER, demoted TEXT, id TEXT, agent_id TEXT, docker_image TEXT,
            registration_metadata TEXT, status TEXT, status_reason TEXT, acp_url TEXT, is_production INTEGER,
            sgp_deploy_id TEXT, helm_release_name TEXT, created_at BIGINT, registered_at BIGINT, ready_at BIGINT,
            promoted_at BIGINT, demoted_at BIGINT, expires_at BIGINT, failed_at BIGINT, last_probe_error TEXT,
            running_tasks BIGINT
        ) LANGUAGE plpgsql VOLATILE AS $$
        #variable_conflict use_column
        DECLARE
            production TEXT;
            target deployments%ROWTYPE;
            t BIGINT;
            gone TEXT;
            wrote INTEGER := 0;
        BEGIN
            PERFORM pg_advisory_xact_lock(\(StoreTransaction.agentTurnLockClass), hashtext(p_agent));
            SELECT a.production_deployment_id INTO production FROM agents a
            WHERE a.id = p_agent AND a.status <> 'Deleted' FOR UPDATE;
            IF NOT FOUND THEN
                RETURN;
            END IF;
            SELECT * INTO target FROM deployments d WHERE d.id = p_deployment FOR UPDATE;
            IF NOT FOUND OR target.agent_id <> p_agent OR target.status <> 'Ready' OR target.expires_at IS NOT NULL THEN
                RETURN;
            END IF;
            t := GREATEST(p_now, cutover_newest_event_time(p_agent));
            IF target.is_production <> 1 OR production IS DISTINCT FROM p_deployment THEN
                wrote := 1;
                UPDATE deployments d SET is_production = 0, demoted_at = t
                WHERE d.id = production AND d.agent_id = p_agent AND d.id <> p_deployment RETURNING d.id INTO gone;
                UPDATE deployments d SET is_production = 1, promoted_at = t WHERE d.id = p_deployment;
                UPDATE agents a SET production_deployment_id = p_deployment, updated_at = t,
                    status = CASE WHEN a.status = ANY(p_made_ready) THEN 'Ready' ELSE a.status END
                WHERE a.id = p_agent;
                INSERT INTO events (id, agent_id, deployment_id, type, reason, message, actor, created_at)
                SELECT v.id, p_agent, NULLIF(replace(v.deployment, p_marker, COALESCE(gone, '')), ''), v.type,
                    p_reason, replace(v.message, p_marker, COALESCE(gone, '')), p_actor, t
                FROM unnest(p_event_ids, p_event_sets, p_event_deployments, p_event_types, p_event_messages)
                    WITH ORDINALITY AS v(id, kind, deployment, type, message, ord)
                WHERE v.kind = CASE WHEN gone IS NULL THEN 1 ELSE 2 END
                ORDER BY v.ord;
                PERFORM pg_notify('\(ChangeNotifications.channel)', p_payload);
            END IF;
            RETURN QUERY
            SELECT wrote, gone, d.id, d.agent_id, d.docker_image, d.registration_metadata, d.status, d.status_reason,
                d.acp_url, d.is_production, d.sgp_deploy_id, d.helm_release_name, d.created_at, d.registered_at,
                d.ready_at, d.promoted_at, d.demoted_at, d.expires_at, d.failed_at, d.last_probe_error,
                (SELECT COUNT(*) FROM tasks k WHERE k.deployment_id = d.id AND k.status = 'RUNNING')
            FROM deployments d WHERE d.id = p_deployment;
        END
        $$
        """,
    ]

    private static let dropEventsAgent = ["DROP INDEX events_agent"]

    /// `cutover_rfc3339` (migration 7) was declared IMMUTABLE, but `to_char`, which it calls, is STABLE,
    /// and PostgreSQL inlines a SQL function only when its body is no more volatile than its declaration.
    /// Not inlined, it ran as a call of its own in every create, whose query PostgreSQL parsed and
    /// planned again for each statement: 15 % of PostgreSQL's CPU per create (`perf`, under `pgbench`).
    /// Declared STABLE, as its body is, it becomes part of the create's own plan; its answers are the same.
    private static let rfc3339Inlined = ["ALTER FUNCTION cutover_rfc3339(BIGINT) STABLE"]

    private static let runningTasksByOwner = [
        "DROP INDEX tasks_owner_running",
        "CREATE INDEX tasks_owner_running ON tasks (deployment_id) WHERE status = 'RUNNING'",
    ]

    /// What a create or registration that is one statement (`StoreTransaction+DeploymentStatements`)
    /// reads once it holds its agent's lock: the time of the agent's newest event, and the image of its
    /// newest deployment (for a registration that names none). That statement's own snapshot predates its
    /// wait for the lock; a volatile function's query takes a fresh one, which sees what committed
    /// meanwhile. And a time as Cutover writes it in text (RFC 3339, UTC, six fractional digits), for the
    /// waiting hint a create writes from the statement's time.
    private static let newestOfAgent = [
        """
        CREATE FUNCTION cutover_newest_event_time(agent TEXT) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            RETURN (SELECT created_at FROM events WHERE agent_id = agent ORDER BY seq DESC LIMIT 1);
        END
        $$
        """,
        """
        CREATE FUNCTION cutover_newest_image(agent TEXT) RETURNS TEXT LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            RETURN (SELECT docker_image FROM deployments WHERE agent_id = agent ORDER BY created_at DESC, seq DESC LIMIT 1);
        END
        $$
        """,
        """
        CREATE FUNCTION cutover_rfc3339(microseconds BIGINT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
            SELECT to_char(TIMESTAMP '1970-01-01' + microseconds * INTERVAL '1 microsecond', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        $$
        """,
    ]

    /// An agent's deployments newest first (`created_at DESC, seq DESC`: lists, and a registration's
    /// inherited image) read straight off an index rather than sorting all of the agent's rows: a page of
    /// 50 of an agent with 20,000 deployments took 22.5 ms on PostgreSQL with the old index, 0.12 ms with
    /// this one. It covers the old index's columns, which it replaces.
    private static let deploymentOrder = [
        "CREATE INDEX deployments_agent_order ON deployments (agent_id, created_at, seq)",
        "DROP INDEX deployments_agent_created",
    ]

    /// A deployment inserted with an id another agent's garbage collection took is refused when the
    /// statement ends. The insert's own `NOT EXISTS` check reads the snapshot from the statement's start;
    /// an insert that waited on a collection deleting the row committed meanwhile would pass it. A
    /// trigger's query, in a volatile function, takes a fresh snapshot, which sees that collection. The
    /// SQLSTATE is Cutover's own, so the store maps it back to the conflict it means.
    private static let collectedIdGuard = [
        """
        CREATE FUNCTION cutover_refuse_collected_id() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM collected_deployments WHERE id = NEW.id AND agent_id <> NEW.agent_id) THEN
                RAISE EXCEPTION 'deployment id ''%'' belongs to another agent', NEW.id
                    USING ERRCODE = '\(collectedIdState)';
            END IF;
            RETURN NULL;
        END
        $$
        """,
        """
        CREATE TRIGGER deployments_refuse_collected_id AFTER INSERT ON deployments
            FOR EACH ROW EXECUTE FUNCTION cutover_refuse_collected_id()
        """,
    ]

    /// The SQLSTATE of `cutover_refuse_collected_id`'s refusal.
    static let collectedIdState = "CU409"

    /// What retention and garbage collection need: when a deployment failed, its last probe error as a
    /// field rather than text inside `status_reason`, and the ids already collected, which stay owned by
    /// their agent so no other agent can take one over.
    private static let retention = [
        "ALTER TABLE deployments ADD COLUMN failed_at BIGINT",
        "ALTER TABLE deployments ADD COLUMN last_probe_error TEXT",
        "CREATE TABLE collected_deployments (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, collected_at BIGINT NOT NULL)",
        "CREATE INDEX deployments_agent_failed ON deployments (agent_id, failed_at) WHERE failed_at IS NOT NULL",
    ]

    private static let eventOrder = ["CREATE INDEX events_agent_seq ON events (agent_id, seq)"]

    /// The task protocol's records. JSON columns are text; `seq` is insertion order, which lists of
    /// messages, events and spans follow; a task's events are numbered by `sequence_id` from its own
    /// counter (`tasks.event_count`), bumped under the task's row lock.
    private static func tasks(serial: String) -> [String] {
        [
            """
            CREATE TABLE tasks (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                agent_id TEXT NOT NULL,
                deployment_id TEXT,
                name TEXT UNIQUE,
                status TEXT NOT NULL,
                status_reason TEXT,
                params TEXT,
                task_metadata TEXT,
                event_count BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX tasks_agent ON tasks (agent_id, seq)",
            "CREATE INDEX tasks_owner_running ON tasks (deployment_id, updated_at) WHERE status = 'RUNNING'",
            """
            CREATE TABLE task_events (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                task_id TEXT NOT NULL,
                agent_id TEXT NOT NULL,
                sequence_id BIGINT NOT NULL,
                content TEXT,
                created_at BIGINT NOT NULL,
                UNIQUE (task_id, sequence_id)
            )
            """,
            """
            CREATE TABLE task_messages (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                task_id TEXT NOT NULL,
                content TEXT NOT NULL,
                streaming_status TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX task_messages_task ON task_messages (task_id, seq)",
            """
            CREATE TABLE task_states (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                task_id TEXT NOT NULL,
                agent_id TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (task_id, agent_id)
            )
            """,
            """
            CREATE TABLE task_trackers (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                agent_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                last_processed_event_id TEXT,
                status TEXT,
                status_reason TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (agent_id, task_id)
            )
            """,
            """
            CREATE TABLE spans (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                trace_id TEXT NOT NULL,
                parent_id TEXT,
                name TEXT NOT NULL,
                start_time BIGINT NOT NULL,
                end_time BIGINT,
                input TEXT,
                output TEXT,
                data TEXT,
                task_id TEXT,
                agent_id TEXT
            )
            """,
            "CREATE INDEX spans_trace ON spans (trace_id, seq)",
            "CREATE INDEX spans_task ON spans (task_id, seq)",
        ]
    }

    /// Both dialects share these tables but for the insertion-order column. Timestamps are integer
    /// microseconds since the epoch; flags are 0/1 integers; JSON is text.
    private static func tables(serial: String) -> [String] {
        [
            """
            CREATE TABLE agents (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL UNIQUE,
                description TEXT NOT NULL,
                status TEXT NOT NULL,
                status_reason TEXT,
                acp_type TEXT NOT NULL,
                agent_input_type TEXT,
                registration_metadata TEXT,
                registered_at BIGINT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                production_deployment_id TEXT,
                acp_url TEXT,
                api_key TEXT NOT NULL,
                api_key_lookup TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE deployments (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                agent_id TEXT NOT NULL REFERENCES agents (id),
                docker_image TEXT NOT NULL,
                registration_metadata TEXT,
                status TEXT NOT NULL,
                status_reason TEXT,
                acp_url TEXT,
                is_production INTEGER NOT NULL DEFAULT 0,
                sgp_deploy_id TEXT,
                helm_release_name TEXT,
                created_at BIGINT NOT NULL,
                registered_at BIGINT,
                ready_at BIGINT,
                promoted_at BIGINT,
                demoted_at BIGINT,
                expires_at BIGINT
            )
            """,
            """
            CREATE TABLE events (
                seq \(serial),
                id TEXT NOT NULL UNIQUE,
                agent_id TEXT NOT NULL,
                deployment_id TEXT,
                type TEXT NOT NULL,
                reason TEXT,
                message TEXT NOT NULL,
                actor TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )
            """,
        ]
    }

    private static let indexes = [
        "CREATE INDEX agents_api_key_lookup ON agents (api_key_lookup)",
        // Invariant 1, enforced by the database itself.
        "CREATE UNIQUE INDEX deployments_one_production ON deployments (agent_id) WHERE is_production = 1",
        "CREATE INDEX deployments_agent_created ON deployments (agent_id, created_at)",
        "CREATE INDEX deployments_pending ON deployments (status) WHERE status = 'Pending'",
        "CREATE INDEX deployments_expires ON deployments (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE INDEX events_agent ON events (agent_id, created_at)",
        "CREATE INDEX events_deployment ON events (deployment_id, created_at)",
    ]
}
