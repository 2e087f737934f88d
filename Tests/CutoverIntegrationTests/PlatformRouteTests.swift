import CutoverAPI
import CutoverCore
import CutoverStore
import NIOHTTP1
import Testing

/// The platform API agentex-sdk pods call back (tasks, messages, events, states, trackers, spans): the
/// shapes agentex-client 0.28.4 parses, the agent-key scope, validation.
@Suite("Platform routes")
struct PlatformRouteTests {
    static let tokens = AuthSettings(adminTokens: ["admin-secret"], registrationTokens: ["reg-secret"])
    static let options = Harness.Options(auth: tokens, runController: false, socket: false)

    static let taskKeys: Set<String> = [
        "id", "name", "status", "status_reason", "params", "task_metadata", "created_at", "updated_at", "cleaned_at",
        "agent_id", "deployment_id",
    ]
    static let messageKeys: Set<String> = ["id", "task_id", "content", "streaming_status", "created_at", "updated_at"]
    static let eventKeys: Set<String> = ["id", "task_id", "agent_id", "sequence_id", "content", "created_at"]
    static let stateKeys: Set<String> = ["id", "task_id", "agent_id", "state", "created_at", "updated_at"]
    static let trackerKeys: Set<String> = [
        "id", "agent_id", "task_id", "last_processed_event_id", "status", "status_reason", "created_at", "updated_at",
    ]
    static let spanKeys: Set<String> = [
        "id", "trace_id", "parent_id", "name", "start_time", "end_time", "input", "output", "data", "task_id",
    ]
    static let text: JSONValue = ["type": "text", "author": "agent", "content": "hello", "format": "plain", "style": "static"]

    static func keys(_ value: JSONValue?) -> Set<String> { Set(value?.objectValue?.keys.map { $0 } ?? []) }

    static func isTimestamp(_ value: JSONValue?) -> Bool {
        guard let text = value?.stringValue else { return false }
        return text.count == 27 && text.hasSuffix("Z") && TimestampFormat.matches(text)
    }

    /// Registers agent `name` and returns its id and key headers.
    static func agent(_ h: Harness, _ name: String) async throws -> (id: String, key: [(String, String)]) {
        let reply = try await h.register(name, url: "http://127.0.0.1:9")
        #expect(reply.status == 200, "\(reply.text)")
        return (
            try #require(reply["id"]?.stringValue),
            [("x-agent-api-key", try #require(reply["agent_api_key"]?.stringValue))]
        )
    }

    @discardableResult
    static func task(_ h: Harness, agentId: String, name: String? = nil) async throws -> AgentTask {
        let now = Timestamp.now()
        let task = AgentTask(
            id: Identifiers.uuid(), agentId: agentId, deploymentId: nil, name: name, params: ["model": "m1"],
            taskMetadata: ["user": "u1"], createdAt: now, updatedAt: now)
        try await h.store.transaction { try await $0.insertTask(task) }
        return task
    }

    static func event(_ h: Harness, _ task: AgentTask, _ n: Int = 0) async throws -> TaskEvent {
        try await h.store.transaction { tx in
            _ = try await tx.task(id: task.id, lock: true)
            return try await tx.appendTaskEvent(
                taskId: task.id, agentId: task.agentId,
                content: ["type": "text", "author": "user", "content": .string("event \(n)")], at: Timestamp.now())
        }
    }

    // MARK: Tasks

    @Test(arguments: Backend.all)
    func tasksRoundTrip(_ backend: Backend) async throws {
        try await Harness.with(backend, Self.options) { h in
            let (agentId, _) = try await Self.agent(h, "tasker")
            let task = try await Self.task(h, agentId: agentId, name: "job-1")
            let other = try await Self.task(h, agentId: agentId)

            let got = try await h.get("/tasks/\(task.id)")
            #expect(got.status == 200)
            #expect(Self.keys(got.json) == Self.taskKeys)
            #expect(got["status"] == "RUNNING")
            #expect(got["name"] == "job-1")
            #expect(got["params"] == ["model": "m1"])
            #expect(got["task_metadata"] == ["user": "u1"])
            #expect(got["status_reason"] == .null)
            #expect(got["cleaned_at"] == .null)
            #expect(Self.isTimestamp(got["created_at"]))
            let withAgents = try await h.get("/tasks/\(task.id)?relationships=agents")
            #expect(withAgents["agents"]?[0]?["id"] == .string(agentId))
            #expect(withAgents["agents"]?[0]?["name"] == "tasker")
            #expect(try await h.get("/tasks/\(task.id)?relationships=owners").status == 422)
            #expect(try await h.get("/tasks/name/job-1")["id"] == .string(task.id))
            #expect(try await h.get("/tasks/name/nope").status == 404)
            #expect(try await h.get("/tasks/nope").status == 404)

            let list = try await h.get("/tasks?agent_id=\(agentId)&order_direction=asc")
            #expect(list.array.compactMap { $0["id"]?.stringValue } == [task.id, other.id])
            #expect(Self.keys(list.array.first) == Self.taskKeys.subtracting(["params"]), "list items leave out params")
            #expect(try await h.get("/tasks?agent_name=tasker").array.count == 2)
            #expect(try await h.get("/tasks?agent_name=nobody").array.isEmpty)
            #expect(try await h.get("/tasks?status=COMPLETED").array.isEmpty)
            #expect(try await h.get("/tasks?limit=1").array.count == 1)
            #expect(try await h.get("/tasks?relationships=agents").array.first?["agents"]?[0]?["id"] == .string(agentId))

            let updated = try await h.request(
                .PUT, "/tasks/\(task.id)", json: ["task_metadata": ["user": "u2"], "merge_params": ["temperature": 1]])
            #expect(updated.status == 200)
            #expect(updated["task_metadata"] == ["user": "u2"])
            #expect(updated["params"] == ["model": "m1", "temperature": 1])
            let byName = try await h.request(.PUT, "/tasks/name/job-1", json: ["merge_params": ["model": "m2"]])
            #expect(byName["task_metadata"] == ["user": "u2"], "an absent task_metadata stays")
            #expect(byName["params"] == ["model": "m2", "temperature": 1])

            let completed = try await h.post("/tasks/\(task.id)/complete", ["reason": "all done"])
            #expect(completed.status == 200)
            #expect(completed["status"] == "COMPLETED")
            #expect(completed["status_reason"] == "all done")
            let again = try await h.post("/tasks/\(task.id)/fail")
            #expect(again.status == 409)
            #expect(again.message.contains("COMPLETED"))
            let interrupted = try await h.post("/tasks/\(other.id)/interrupt")
            #expect(interrupted["status"] == "INTERRUPTED")
            #expect(interrupted["status_reason"] == "Task interrupted")
            #expect(try await h.post("/tasks/\(other.id)/timeout")["status"] == "TIMED_OUT")

            let deleted = try await h.delete("/tasks/name/job-1")
            #expect(deleted.status == 200)
            #expect(Self.keys(deleted.json) == ["id", "message"])
            #expect(deleted["id"] == .string(task.id))
            #expect(try await h.get("/tasks/\(task.id)")["status"] == "DELETED")
            #expect(try await h.get("/tasks").array.compactMap { $0["id"]?.stringValue } == [other.id])
            #expect(try await h.get("/tasks?status=DELETED").array.count == 1)
            #expect(try await h.delete("/tasks/\(other.id)").status == 200)
        }
    }

    // MARK: Messages

    @Test(arguments: Backend.all)
    func messagesRoundTrip(_ backend: Backend) async throws {
        try await Harness.with(backend, Self.options) { h in
            let (agentId, key) = try await Self.agent(h, "talker")
            let task = try await Self.task(h, agentId: agentId)

            let created = try await h.request(.POST, "/messages", json: ["task_id": .string(task.id), "content": Self.text], headers: key)
            #expect(created.status == 200, "\(created.text)")
            #expect(Self.keys(created.json) == Self.messageKeys)
            #expect(created["content"] == Self.text)
            #expect(created["streaming_status"] == .null)
            let id = try #require(created["id"]?.stringValue)
            let stamped = try await h.post("/messages", [
                "task_id": .string(task.id), "content": Self.text, "streaming_status": "DONE",
                "created_at": "2026-01-02T03:04:05.123456+01:00",
            ])
            #expect(stamped["created_at"] == "2026-01-02T02:04:05.123456Z")
            #expect(stamped["streaming_status"] == "DONE")

            let batch = try await h.post("/messages/batch", [
                "task_id": .string(task.id),
                "contents": [["type": "text", "author": "user", "content": "a"], ["type": "data", "author": "agent", "data": ["k": 1]]],
            ])
            #expect(batch.status == 200)
            #expect(batch.array.count == 2)
            let batchIds = batch.array.compactMap { $0["id"]?.stringValue }
            let batchUpdate = try await h.request(.PUT, "/messages/batch", json: [
                "task_id": .string(task.id),
                "updates": [batchIds[0]: ["type": "text", "author": "user", "content": "a2"]],
            ])
            #expect(batchUpdate.status == 200)
            #expect(batchUpdate.array.first?["content"]?["content"] == "a2")

            let edited = try await h.request(.PUT, "/messages/\(id)", json: [
                "task_id": .string(task.id), "content": ["type": "text", "author": "agent", "content": "bye"],
                "streaming_status": "IN_PROGRESS",
            ], headers: key)
            #expect(edited.status == 200)
            #expect(edited["content"]?["content"] == "bye")
            #expect(edited["streaming_status"] == "IN_PROGRESS")
            #expect(try await h.get("/messages/\(id)")["content"]?["content"] == "bye")

            let asc = try await h.get("/messages?task_id=\(task.id)&order_by=created_at&order_direction=asc")
            #expect(asc.status == 200)
            #expect(asc.array.count == 4)
            #expect(asc.array.first?["id"] == stamped["id"], "the oldest created_at first")
            #expect(try await h.get("/messages?task_id=\(task.id)&limit=2&page_number=2").array.count == 2)
            #expect(try await h.get("/messages/nope").status == 404)

            let stored = try await h.store.read { try await $0.taskMessages(taskId: task.id) }
            #expect(stored.map(\.id) == [id, try #require(stamped["id"]?.stringValue)] + batchIds, "insertion order")
        }
    }

    // MARK: Events and the tracker

    @Test(arguments: Backend.all)
    func eventsAfterTheProcessedOneAndTheTrackerByTaskId(_ backend: Backend) async throws {
        try await Harness.with(backend, Self.options) { h in
            let (agentId, key) = try await Self.agent(h, "eventful")
            let task = try await Self.task(h, agentId: agentId)
            let otherTask = try await Self.task(h, agentId: agentId)
            var events: [TaskEvent] = []
            for n in 0..<3 { events.append(try await Self.event(h, task, n)) }
            let foreign = try await Self.event(h, otherTask)
            #expect(events.map(\.sequenceId) == [1, 2, 3])
            #expect(foreign.sequenceId == 1, "sequence ids count per task")

            let all = try await h.request(.GET, "/events?task_id=\(task.id)&agent_id=\(agentId)", headers: key)
            #expect(all.status == 200)
            #expect(all.array.compactMap { $0["sequence_id"] } == [1, 2, 3])
            #expect(Self.keys(all.array.first) == Self.eventKeys)
            #expect(all.array.first?["content"]?["content"] == "event 0")
            let after = try await h.get("/events?task_id=\(task.id)&agent_id=\(agentId)&last_processed_event_id=\(events[0].id)")
            #expect(after.array.compactMap { $0["id"]?.stringValue } == [events[1].id, events[2].id])
            let limited = try await h.get("/events?task_id=\(task.id)&agent_id=\(agentId)&last_processed_event_id=\(events[0].id)&limit=1")
            #expect(limited.array.compactMap { $0["sequence_id"] } == [2])
            let wrong = try await h.get("/events?task_id=\(task.id)&last_processed_event_id=\(foreign.id)")
            #expect(wrong.status == 422)
            #expect(wrong.errorFields == ["last_processed_event_id"])
            #expect(try await h.get("/events?agent_id=\(agentId)").errorFields == ["task_id"])
            let one = try await h.get("/events/\(events[1].id)")
            #expect(one["sequence_id"] == 2)
            #expect(one["task_id"] == .string(task.id))

            // The SDK's default handler commits its cursor with tracker_id = the task id.
            let tracker = try await h.request(.GET, "/tracker/\(task.id)", headers: key)
            #expect(tracker.status == 200)
            #expect(Self.keys(tracker.json) == Self.trackerKeys)
            #expect(tracker["last_processed_event_id"] == .null)
            let moved = try await h.request(
                .PUT, "/tracker/\(task.id)",
                json: ["last_processed_event_id": .string(events[1].id), "status": .null, "status_reason": .null], headers: key)
            #expect(moved.status == 200, "\(moved.text)")
            #expect(moved["last_processed_event_id"] == .string(events[1].id))
            let status = try await h.request(.PUT, "/tracker/\(task.id)", json: ["status": "PROCESSING", "status_reason": "busy"])
            #expect(status["last_processed_event_id"] == .string(events[1].id), "null leaves the cursor")
            #expect(status["status"] == "PROCESSING")
            let listed = try await h.request(.GET, "/tracker?agent_id=\(agentId)&task_id=\(task.id)", headers: key)
            #expect(listed.array.count == 1)
            #expect(listed.array.first?["id"] == .string(task.id))
            #expect(listed.array.first?["status_reason"] == "busy")

            let before = try await h.get("/tracker/\(task.id)")
            let foreignCursor = try await h.request(.PUT, "/tracker/\(task.id)", json: ["last_processed_event_id": .string(foreign.id)])
            #expect(foreignCursor.status == 422)
            #expect(foreignCursor.errorFields == ["last_processed_event_id"])
            let backwards = try await h.request(.PUT, "/tracker/\(task.id)", json: ["last_processed_event_id": .string(events[0].id)])
            #expect(backwards.status == 422)
            #expect(try await h.get("/tracker/\(task.id)").json == before.json, "refused updates change nothing")
        }
    }

    /// Concurrent `event/send`s on one task: sequence ids are exactly 1…n, no gap, no duplicate.
    @Test(arguments: Backend.all)
    func concurrentAppendsNumberEventsWithoutGaps(_ backend: Backend) async throws {
        try await Harness.with(backend, Self.options) { h in
            let (agentId, _) = try await Self.agent(h, "stormy")
            let task = try await Self.task(h, agentId: agentId)
            let n = 60
            let sequences = try await withThrowingTaskGroup(of: Int64.self) { group in
                for i in 0..<n { group.addTask { try await Self.event(h, task, i).sequenceId } }
                var all: [Int64] = []
                for try await s in group { all.append(s) }
                return all
            }
            #expect(sequences.sorted() == Array(1...Int64(n)))
            let listed = try await h.get("/events?task_id=\(task.id)&limit=1000")
            #expect(listed.array.compactMap { $0["sequence_id"] } == (1...n).map { .number(Double($0)) })
        }
    }

    // MARK: States

    @Test(arguments: Backend.all)
    func statesRoundTrip(_ backend: Backend) async throws {
        try await Harness.with(backend, Self.options) { h in
            let (agentId, key) = try await Self.agent(h, "stateful")
            let task = try await Self.task(h, agentId: agentId)
            let body: JSONValue = ["task_id": .string(task.id), "agent_id": .string(agentId), "state": ["turn": 1]]
            let created = try await h.request(.POST, "/states", json: body, headers: key)
            #expect(created.status == 200, "\(created.text)")
            #expect(Self.keys(created.json) == Self.stateKeys)
            #expect(created["state"] == ["turn": 1])
            let id = try #require(created["id"]?.stringValue)
            let second = try await h.request(.POST, "/states", json: body, headers: key)
            #expect(second.status == 409)

            let listed = try await h.request(.GET, "/states?agent_id=\(agentId)&task_id=\(task.id)", headers: key)
            #expect(listed.array.compactMap { $0["id"]?.stringValue } == [id])
            let updated = try await h.request(
                .PUT, "/states/\(id)", json: ["state": ["turn": 2], "task_id": .string(task.id), "agent_id": .string(agentId)],
                headers: key)
            #expect(updated["state"] == ["turn": 2])
            #expect(try await h.get("/states/\(id)")["state"] == ["turn": 2])
            let mismatch = try await h.request(.PUT, "/states/\(id)", json: ["state": ["turn": 3], "task_id": "other"])
            #expect(mismatch.status == 422)
            #expect(mismatch.errorFields == ["task_id"])
            let deleted = try await h.request(.DELETE, "/states/\(id)", headers: key)
            #expect(deleted.status == 200)
            #expect(deleted["state"] == ["turn": 2], "the deleted state")
            #expect(try await h.get("/states/\(id)").status == 404)
        }
    }

    // MARK: Spans

    @Test(arguments: Backend.all)
    func spansRoundTrip(_ backend: Backend) async throws {
        try await Harness.with(backend, Self.options) { h in
            let (agentId, key) = try await Self.agent(h, "tracer")
            let task = try await Self.task(h, agentId: agentId)
            let created = try await h.request(.POST, "/spans", json: [
                "id": "span-1", "trace_id": "trace-1", "name": "llm", "start_time": "2026-11-29T15:16:13.912345",
                "task_id": .string(task.id), "input": ["prompt": "hi"], "data": [["k": 1]], "parent_id": .null,
            ], headers: key)
            #expect(created.status == 200, "\(created.text)")
            #expect(Self.keys(created.json) == Self.spanKeys)
            #expect(created["start_time"] == "2026-11-29T15:16:13.912345Z")
            #expect(created["end_time"] == .null)
            #expect(created["data"] == [["k": 1]])
            #expect(try await h.request(.POST, "/spans", json: ["id": "span-1", "trace_id": "t", "name": "n", "start_time": "2026-11-29T15:16:13Z"]).status == 409)
            let patched = try await h.request(
                .PATCH, "/spans/span-1", json: ["end_time": "2026-11-29T15:16:14Z", "output": ["answer": "yo"], "name": .null],
                headers: key)
            #expect(patched.status == 200)
            #expect(patched["end_time"] == "2026-11-29T15:16:14.000000Z")
            #expect(patched["name"] == "llm", "null leaves a field")
            #expect(try await h.get("/spans/span-1")["output"] == ["answer": "yo"])
            _ = try await h.post("/spans", ["trace_id": "trace-2", "name": "other", "start_time": "2026-11-29T15:16:13Z"])
            let byTrace = try await h.request(.GET, "/spans?trace_id=trace-1", headers: key)
            #expect(byTrace.array.compactMap { $0["id"]?.stringValue } == ["span-1"])
            #expect(try await h.get("/spans?task_id=\(task.id)").array.count == 1)
            #expect(try await h.get("/spans").array.count == 2)
        }
    }

    // MARK: Scope

    @Test(arguments: Backend.all)
    func agentKeysSeeOnlyTheirOwnAgentsRecords(_ backend: Backend) async throws {
        try await Harness.with(backend, Self.options) { h in
            let (mine, myKey) = try await Self.agent(h, "mine")
            let (theirs, theirKey) = try await Self.agent(h, "theirs")
            let task = try await Self.task(h, agentId: theirs, name: "their-task")
            let myTask = try await Self.task(h, agentId: mine)
            let event = try await Self.event(h, task)
            let message = try await h.request(.POST, "/messages", json: ["task_id": .string(task.id), "content": Self.text], headers: theirKey)
            let state = try await h.request(
                .POST, "/states", json: ["task_id": .string(task.id), "agent_id": .string(theirs), "state": [:]], headers: theirKey)
            let span = try await h.request(
                .POST, "/spans", json: ["trace_id": "t", "name": "n", "start_time": "2026-11-29T15:16:13Z", "task_id": .string(task.id)],
                headers: theirKey)
            let messageId = try #require(message["id"]?.stringValue)
            let stateId = try #require(state["id"]?.stringValue)
            let spanId = try #require(span["id"]?.stringValue)

            let reads = [
                "/tasks/\(task.id)", "/tasks/name/their-task", "/messages/\(messageId)", "/messages?task_id=\(task.id)",
                "/events/\(event.id)", "/events?task_id=\(task.id)&agent_id=\(theirs)", "/states/\(stateId)",
                "/tracker/\(task.id)", "/spans/\(spanId)",
            ]
            for path in reads {
                #expect(try await h.request(.GET, path, headers: theirKey).status == 200, "own key: \(path)")
                #expect(try await h.get(path).status == 200, "admin: \(path)")
                let refused = try await h.request(.GET, path, headers: myKey)
                #expect(refused.status == 404, "another agent's key: \(path)")
            }
            let writes: [(HTTPMethodName, String, JSONValue?)] = [
                (.PUT, "/tasks/\(task.id)", ["task_metadata": [:]]), (.DELETE, "/tasks/\(task.id)", nil),
                (.DELETE, "/tasks/name/their-task", nil), (.POST, "/tasks/\(task.id)/cancel", nil),
                (.POST, "/messages", ["task_id": .string(task.id), "content": Self.text]),
                (.PUT, "/messages/\(messageId)", ["task_id": .string(task.id), "content": Self.text]),
                (.POST, "/states", ["task_id": .string(task.id), "agent_id": .string(theirs), "state": [:]]),
                (.PUT, "/states/\(stateId)", ["state": ["x": 1]]), (.DELETE, "/states/\(stateId)", nil),
                (.PUT, "/tracker/\(task.id)", ["status": "x"]), (.PATCH, "/spans/\(spanId)", ["name": "x"]),
                (.POST, "/spans", ["trace_id": "t", "name": "n", "start_time": "2026-11-29T15:16:13Z", "task_id": .string(task.id)]),
            ]
            for (method, path, body) in writes {
                let reply = try await h.request(method.method, path, json: body, headers: myKey)
                #expect(reply.status == 404, "another agent's key: \(method) \(path)")
            }
            #expect(try await h.get("/tasks/\(task.id)")["status"] == "RUNNING", "refused writes change nothing")
            #expect(try await h.get("/states/\(stateId)")["state"] == [:])

            let myList = try await h.request(.GET, "/tasks", headers: myKey)
            #expect(myList.array.compactMap { $0["id"]?.stringValue } == [myTask.id])
            #expect(try await h.request(.GET, "/tasks?agent_id=\(theirs)", headers: myKey).array.isEmpty)
            #expect(try await h.request(.GET, "/tasks?agent_name=theirs", headers: myKey).array.isEmpty)
            #expect(try await h.get("/tasks").array.count == 2, "an admin sees every task")
            #expect(try await h.request(.GET, "/states?task_id=\(task.id)", headers: myKey).array.isEmpty)
            #expect(try await h.request(.GET, "/tracker", headers: myKey).array.compactMap { $0["id"]?.stringValue } == [myTask.id])
            #expect(try await h.request(.GET, "/spans", headers: myKey).array.isEmpty)
            #expect(try await h.request(.GET, "/spans", headers: theirKey).array.count == 1)
            #expect(try await h.request(.GET, "/tasks", headers: []).status == 401)
            #expect(try await h.request(.GET, "/tracker/\(task.id)", headers: []).status == 401)
        }
    }

    // MARK: Validation

    @Test(arguments: Backend.all)
    func invalidInputIsRefusedAndChangesNothing(_ backend: Backend) async throws {
        try await Harness.with(backend, Self.options) { h in
            let (agentId, _) = try await Self.agent(h, "strict")
            let task = try await Self.task(h, agentId: agentId, name: "strict-task")
            let cases: [(HTTPMethodName, String, JSONValue, [String])] = [
                (.POST, "/messages", ["content": Self.text], ["task_id"]),
                (.POST, "/messages", ["task_id": .string(task.id), "content": ["type": "video", "author": "agent"]], ["content.type"]),
                (.POST, "/messages", ["task_id": .string(task.id), "content": "hi"], ["content"]),
                (.POST, "/messages", ["task_id": "a\u{0}b", "content": Self.text], ["task_id"]),
                (.POST, "/messages", ["task_id": .string(task.id), "content": Self.text, "streaming_status": "LATER"], ["streaming_status"]),
                (.POST, "/messages", ["task_id": .string(task.id), "content": Self.text, "created_at": "yesterday"], ["created_at"]),
                (.POST, "/messages/batch", ["task_id": .string(task.id), "contents": []], ["contents"]),
                (.PUT, "/tasks/\(task.id)", ["task_metadata": "x"], ["task_metadata"]),
                (.PUT, "/tasks/\(task.id)", ["task_metadata": ["big": .string(String(repeating: "x", count: 70_000))]], ["task_metadata"]),
                (.POST, "/states", ["task_id": .string(task.id), "agent_id": .string(agentId), "state": [1]], ["state"]),
                (.POST, "/states", ["task_id": .string(task.id), "agent_id": "someone-else", "state": [:]], ["agent_id"]),
                (.POST, "/spans", ["trace_id": "t", "name": "n"], ["start_time"]),
                (.POST, "/spans", ["trace_id": "t", "name": "n", "start_time": "2026-13-01T00:00:00Z", "input": "x"], ["start_time", "input"]),
                (.POST, "/tasks/\(task.id)/cancel", ["reason": 5], ["reason"]),
            ]
            let before = try await h.get("/tasks/\(task.id)")
            for (method, path, body, fields) in cases {
                let reply = try await h.request(method.method, path, json: body)
                #expect(reply.status == 422, "\(method) \(path) \(body): \(reply.text)")
                #expect(reply.errorFields == fields, "\(method) \(path): \(reply.text)")
                #expect(reply["code"] == 422)
                #expect(reply.message.hasPrefix("invalid request: "))
            }
            for path in ["/tasks?order_by=secret", "/tasks?status=DONE", "/tasks?limit=0", "/messages?task_id=\(task.id)&order_by=content",
                         "/spans?order_by=created_at", "/events?task_id=\(task.id)&limit=1001", "/tasks?agent_id=a%00b"] {
                let reply = try await h.get(path)
                #expect(reply.status == 422, "\(path): \(reply.text)")
            }
            #expect(try await h.get("/tasks/\(task.id)").json == before.json, "the task is unchanged")
            #expect(try await h.store.read { try await $0.taskMessages(taskId: task.id) }.isEmpty)
            #expect(try await h.get("/states?task_id=\(task.id)").array.isEmpty)
            #expect(try await h.get("/spans").array.isEmpty)
            let inexact = try await h.request(.PUT, "/tasks/\(task.id)", raw: #"{"merge_params": {"n": 9007199254740993}}"#)
            #expect(inexact.status == 422, "\(inexact.text)")
            let malformed = try await h.request(.POST, "/messages", raw: "{not json")
            #expect(malformed.status == 400)
            #expect(try await h.request(.POST, "/messages", json: ["task_id": "nope", "content": Self.text]).status == 404)
        }
    }
}

/// The methods the tests send, by name.
enum HTTPMethodName: String, CustomStringConvertible {
    case GET, POST, PUT, PATCH, DELETE
    var description: String { rawValue }
    var method: HTTPMethod { HTTPMethod(rawValue: rawValue) }
}

enum TimestampFormat {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    static func matches(_ text: String) -> Bool {
        let pattern = Array("dddd-dd-ddTdd:dd:dd.ddddddZ")
        let chars = Array(text)
        guard chars.count == pattern.count else { return false }
        return zip(chars, pattern).allSatisfy { c, p in p == "d" ? c.isNumber : c == p }
    }
}

extension JSONValue {
    /// Item `index` of an array.
    fileprivate subscript(index: Int) -> JSONValue? {
        if case .array(let items) = self, items.indices.contains(index) { return items[index] }
        return nil
    }
}
