import CutoverCore
import CutoverRouting
import CutoverStore
import HTTPTypes
import Hummingbird
import NIOCore

/// The task methods around an RPC, as Agentex's platform does them: find or create the task and write
/// what the call records, pick the deployment (a task follows the deployment that owns it while that one
/// is Ready), send the pod the platform's envelope, and answer in Agentex's shapes. The proxy underneath
/// stays a byte pipe.
struct TaskProtocol: Sendable {
    let deps: APIDependencies
    let proxy: RPCProxy
    /// Calls naming an existing task go to the deployment that owns it while it can serve.
    var affinity: Bool = true
    /// The most a non-streamed answer of the pod may hold.
    static let answerLimit = 10 << 20

    /// Where a call goes: a deployment (nil for the agent's legacy URL) at `url`.
    struct Target: Sendable {
        var deploymentId: String?
        var url: String
        var label: String { deploymentId ?? "legacy" }
    }

    /// What a call on an existing task shares with the others written in its batch.
    struct WriteKey: Equatable, Sendable {
        var agentId: String
        var routeDeploymentId: String?
        var pinned: Bool
        var affinity: Bool
        /// `message/send`'s new params for the task.
        var params: [String: JSONValue]?
    }

    /// What the first unit of work found and wrote.
    private struct Prepared: Sendable {
        var agent: Agent
        var task: AgentTask
        var target: Target
        var event: TaskEvent?
        /// The call made the task (rather than finding one of that name).
        var isNew = false
    }

    /// `pinned`: the preview route, whose deployment the caller chose; affinity never overrides it.
    /// `bodySize`: the request body's length, what the call weighs in a batch of writes.
    func handle(
        _ call: TaskCall, clientId: JSONValue, route: AgentRoute, target: Target, pinned: Bool,
        headers: [(String, String)], data: [String: JSONValue], bodySize: Int
    ) async throws -> Response {
        let prepared = try await prepare(call, route: route, target: target, pinned: pinned, data: data, bodySize: bodySize)
        var data = data
        if let deployment = prepared.target.deploymentId { data["deployment"] = .string(deployment) }
        data["task"] = .string(prepared.task.id)
        switch call.method {
        case .create:
            // A sync agent's tasks are the platform's alone. A task of that name that already exists is
            // returned as it is: its agent saw it created once, and a second task/create would run the
            // pod's set-up again. Only a FAILED one is sent again, to retry.
            if route.acpType == .sync || (!prepared.isNew && prepared.task.status != .failed) {
                return answer(clientId, prepared.task, prepared.target)
            }
            do {
                _ = try await forward(call, prepared, headers: headers, data: data).single()
            } catch let failure as JSONRPC.Failure {
                try await setStatus(prepared.task.id, .failed, reason: failure.message, from: nil)
                throw failure
            }
            let task = try await setStatus(prepared.task.id, .running, reason: nil, from: [.failed]) ?? prepared.task
            return answer(clientId, task, prepared.target)
        case .eventSend:
            _ = try await forward(call, prepared, headers: headers, data: data).single()
            return answer(clientId, prepared.event!, prepared.target)
        case .cancel:
            _ = try await forward(call, prepared, headers: headers, data: data).single()
            let task = try await setStatus(
                prepared.task.id, .canceled, reason: "Task canceled by user", from: [.running, .interrupted])
            return answer(clientId, task ?? prepared.task, prepared.target)
        case .interrupt:
            _ = try await forward(call, prepared, headers: headers, data: data).single()
            let task = try await deps.store.read { try await $0.task(id: prepared.task.id) } ?? prepared.task
            return answer(clientId, task, prepared.target)
        case .messageSend:
            var stream = MessageStream()
            do {
                let upstream = try await forward(call, prepared, headers: headers, data: data)
                if call.stream { return streamMessages(upstream, clientId: clientId, prepared) }
                for line in try await upstream.lines() { _ = stream.consume(line) }
            } catch let failure as JSONRPC.Failure {
                // As Agentex does: a turn that failed leaves its task FAILED, with why.
                try await setStatus(prepared.task.id, .failed, reason: failure.message, from: nil)
                throw failure
            }
            _ = stream.finish()
            let messages = try await storeAgentMessages(stream.contents, taskId: prepared.task.id)
            return answer(clientId, prepared.target) { JSONCodec.write(.array(messages.map(TaskWire.message)), into: &$0) }
        }
    }

    // MARK: The first unit of work

    private func prepare(
        _ call: TaskCall, route: AgentRoute, target: Target, pinned: Bool, data: [String: JSONValue], bodySize: Int
    ) async throws -> Prepared {
        if let prepared = try await prepareCommonCall(call, route: route, target: target, pinned: pinned, bodySize: bodySize) {
            return prepared
        }
        let affinity = self.affinity
        return try await deps.store.transaction(dryRun: false) { tx in
            // The agent's row lock orders this call's task writes with the agent's deployment changes, which
            // decide whether the task stays, moves or is adopted.
            guard let agent = try await tx.agent(id: route.agentId, lock: true) else {
                throw JSONRPC.Failure(.notFound, 404, "agent '\(route.name)' not found", data: data)
            }
            let now = Timestamp.now()
            var existing: AgentTask?
            switch call.task {
            case .id(let id)?: existing = try await tx.task(id: id, lock: true)
            case .name(let name)?: existing = try await tx.task(name: name, lock: true)
            case nil: if let name = call.name { existing = try await tx.task(name: name, lock: true) }
            }
            if let task = existing, task.agentId != agent.id {
                // Task names are unique across agents, as Agentex's are.
                if case .id? = call.task {
                    existing = nil
                } else {
                    throw JSONRPC.Failure(
                        .invalidParams, 409, "the task name '\(task.name ?? "")' is used by another agent's task", data: data)
                }
            }
            if existing == nil, let ref = call.task, call.method != .messageSend || { if case .id = ref { true } else { false } }() {
                let text = switch ref { case .id(let id): id; case .name(let name): name }
                throw JSONRPC.Failure(.notFound, 404, "task '\(text)' not found for agent '\(route.name)'", data: data)
            }

            var target = target
            var task: AgentTask
            let isNew = existing == nil
            if var found = existing {
                if !pinned, found.deploymentId == nil || !affinity, let current = target.deploymentId,
                    found.deploymentId != current
                {
                    // Without affinity a task follows production; a task begun on the legacy URL is
                    // adopted by the first deployment that serves it.
                    found.deploymentId = current
                } else if affinity, !pinned, let owner = found.deploymentId, owner != target.deploymentId {
                    let owning = try await tx.deployment(id: owner)
                    if let d = owning, d.agentId == agent.id, d.status == .ready, !d.isDeleted, let url = d.acpURL {
                        target = Target(deploymentId: owner, url: url)
                    } else {
                        let why = owning.map { $0.isDeleted ? "deleted" : $0.status.rawValue } ?? "gone"
                        found.deploymentId = target.deploymentId
                        found.updatedAt = now
                        tx.appendEvents(
                            agentId: agent.id,
                            [EventDraft(
                                deploymentId: target.deploymentId, type: .taskMoved, reason: "OwnerUnavailable",
                                message: "task '\(found.id)' moved from '\(owner)' (\(why)) to '\(target.label)'")],
                            actor: .controller, at: now)
                    }
                }
                if call.method == .create || call.method == .messageSend, let params = call.params, params != found.params {
                    found.params = params
                    found.updatedAt = now
                }
                if call.method == .messageSend || call.method == .eventSend {
                    if found.status == .interrupted { found.status = .running }
                    // A conversation keeps its task active: retention's task drain counts from here.
                    found.updatedAt = now
                }
                if found != existing { try await tx.updateTask(found) }
                task = found
            } else {
                task = Self.newTask(call, route: route, deploymentId: target.deploymentId, at: now)
                try await tx.insertTask(task)
            }

            if let message = Self.message(of: call, taskId: task.id, at: now) { try await tx.insertTaskMessage(message) }
            var event: TaskEvent?
            switch call.method {
            case .eventSend:
                event = try await tx.appendTaskEvent(taskId: task.id, agentId: agent.id, content: call.content.map(JSONValue.object), at: now)
            case .create, .cancel, .interrupt, .messageSend:
                break
            }
            return Prepared(agent: agent, task: task, target: target, event: event, isNew: isNew)
        }
    }

    static func newTask(_ call: TaskCall, route: AgentRoute, deploymentId: String?, at now: Timestamp) -> AgentTask {
        AgentTask(
            id: Identifiers.uuid(), agentId: route.agentId, deploymentId: deploymentId,
            name: call.name ?? { if case .name(let n)? = call.task { n } else { nil } }(),
            statusReason: route.acpType == .sync || call.method != .create
                ? "Task created" : "Task created, forwarding to the agent",
            params: call.params, taskMetadata: call.taskMetadata, createdAt: now, updatedAt: now)
    }

    /// The message a call stores: a `message/send`'s content, and (as Agentex does: what the user says in an
    /// event is part of the conversation) an `event/send`'s content when its author is the user.
    static func message(of call: TaskCall, taskId: String, at now: Timestamp) -> TaskMessage? {
        guard let content = call.content else { return nil }
        switch call.method {
        case .messageSend: break
        case .eventSend: guard content["author"]?.stringValue == "user" else { return nil }
        case .create, .cancel, .interrupt: return nil
        }
        return TaskMessage(
            id: Identifiers.uuid(), taskId: taskId, content: .object(content), streamingStatus: .done, createdAt: now,
            updatedAt: now)
    }

    /// The commonest calls without the agent's lock: `event/send` and `message/send` on a task named by id
    /// that stays where it is, written in batches per task (each batch one statement on PostgreSQL, one
    /// transaction on SQLite), and `task/create` without a name as one statement (PostgreSQL). Nil when the
    /// call needs the transaction above (every other case, and every error, which the transaction then
    /// reports).
    private func prepareCommonCall(
        _ call: TaskCall, route: AgentRoute, target: Target, pinned: Bool, bodySize: Int
    ) async throws -> Prepared? {
        let now = Timestamp.now()
        switch call.method {
        case .eventSend, .messageSend:
            guard case .id(let taskId)? = call.task else { return nil }
            let message = Self.message(of: call, taskId: taskId, at: now)
            let event = call.method == .eventSend ? (id: Identifiers.uuid(), content: call.content.map(JSONValue.object)) : nil
            let key = WriteKey(
                agentId: route.agentId, routeDeploymentId: target.deploymentId, pinned: pinned, affinity: affinity,
                params: call.method == .messageSend ? call.params : nil)
            let write = StoreTransaction.TaskWrite(message: message, event: event, at: now)
            let store = deps.store
            guard let continued = try await deps.taskWrites.submit(write, on: taskId, key: key, size: bodySize, run: { key, writes in
                let unit: @Sendable (StoreTransaction) async throws -> [StoreTransaction.ContinuedTask?] = { tx in
                    try await tx.continueTask(
                        taskId: taskId, agentId: key.agentId, routeDeploymentId: key.routeDeploymentId, pinned: key.pinned,
                        affinity: key.affinity, params: key.params, writes: writes) ?? writes.map { _ in nil }
                }
                // PostgreSQL's is one statement, its own transaction.
                return try await store.runsOneStatementUnits ? store.autocommit(unit) : store.transaction(dryRun: false, unit)
            }) else { return nil }
            var target = target
            if !pinned, let owner = continued.task.deploymentId, owner != target.deploymentId, let url = continued.ownerURL {
                target = Target(deploymentId: owner, url: url)
            }
            return Prepared(agent: continued.agent, task: continued.task, target: target, event: continued.event, isNew: false)
        case .create:
            guard deps.store.runsOneStatementUnits, call.task == nil, call.name == nil else { return nil }
            let task = Self.newTask(call, route: route, deploymentId: target.deploymentId, at: now)
            guard let agent = try await deps.store.autocommit({ try await $0.createTaskInOneStatement(task) }) else {
                return nil
            }
            return Prepared(agent: agent, task: task, target: target, event: nil, isNew: true)
        case .cancel, .interrupt:
            return nil
        }
    }

    // MARK: Forwarding

    /// The pod's answer: one JSON-RPC response, or (message/send) one per line.
    struct Upstream: Sendable {
        var response: ProxiedResponse
        var data: [String: JSONValue]

        /// Every JSON-RPC response of the answer, in order; a JSON-RPC error in any of them fails the call.
        func lines() async throws -> [JSONValue] {
            var buffer: ByteBuffer
            switch response.body {
            case .complete(let whole): buffer = whole
            case .stream(var stream):
                stream.onStall = { RPCMetrics.streamsCut.increment() }
                buffer = ByteBuffer()
                do {
                    for try await chunk in stream {
                        guard buffer.readableBytes + chunk.readableBytes <= TaskProtocol.answerLimit else {
                            throw JSONRPC.Failure(.upstreamUnreachable, 502, "the agent's answer is larger than 10 MiB", data: data)
                        }
                        var chunk = chunk
                        buffer.writeBuffer(&chunk)
                    }
                } catch let failure as JSONRPC.Failure {
                    throw failure
                } catch where Outbound.isTimeout(error) {
                    throw JSONRPC.Failure(.upstreamTimeout, 504, "the agent fell silent in the middle of its answer", data: data)
                } catch {
                    throw JSONRPC.Failure(.upstreamUnreachable, 502, "the agent's answer broke off: \(error)", data: data)
                }
            }
            var results: [JSONValue] = []
            for line in buffer.readableBytesView.split(separator: UInt8(ascii: "\n")) where !line.allSatisfy({ $0 == 32 || $0 == 13 }) {
                results.append(try result(of: line))
            }
            guard !results.isEmpty else {
                throw JSONRPC.Failure(.upstreamUnreachable, 502, "the agent's answer is empty; expected a JSON-RPC response", data: data)
            }
            return results
        }

        func single() async throws -> JSONValue {
            try await lines().last ?? .null
        }

        /// The `result` of one JSON-RPC response line of the pod.
        func result<Bytes: Collection<UInt8>>(of line: Bytes) throws -> JSONValue {
            // A JSON-RPC response carries a result or an error (either may be null, but one is there).
            guard let object = (try? JSONCodec.parse(line))?.objectValue, object["result"] != nil || object["error"] != nil else {
                throw JSONRPC.Failure(.upstreamUnreachable, 502, "the agent's answer is not a JSON-RPC response", data: data)
            }
            if let error = object["error"]?.objectValue {
                var detail = data
                detail["agent_error"] = .object(error)
                throw JSONRPC.Failure(
                    .upstreamUnreachable, 502, "the agent answered with an error: \(error["message"]?.stringValue ?? "unknown")",
                    data: detail)
            }
            return object["result"] ?? .null
        }
    }

    private func forward(_ call: TaskCall, _ p: Prepared, headers: [(String, String)], data: [String: JSONValue]) async throws -> Upstream {
        // The platform's envelope, written straight to bytes (keys in order, as everywhere).
        let envelope = JSONObjectWriter.object { o in
            o.field("id", "\(call.method.rawValue)-\(p.task.id)")
            o.field("jsonrpc", "2.0")
            o.field("method", call.method.rawValue)
            o.field("params") { out in
                JSONObjectWriter.write(into: &out) { params in
                    params.field("agent") { p.agent.write(into: &$0) }
                    switch call.method {
                    case .create: params.field("params", call.params)
                    case .messageSend: params.field("content", call.content)
                    case .eventSend: params.field("event") { out in
                        if let event = p.event { event.write(into: &out) } else { out.append(contentsOf: "null".utf8) }
                    }
                    case .cancel, .interrupt: break
                    }
                    if call.method == .messageSend { params.field("stream", call.stream) }
                    params.field("task") { p.task.write(into: &$0) }
                }
            }
        }
        let response = try await proxy.forward(
            body: ByteBuffer(bytes: envelope), to: p.target.url, headers: headers, errorData: data)
        // Checked once here, before any answer is read or streamed: an HTTP error is never passed on as a 200.
        guard (200..<300).contains(response.status) else {
            throw JSONRPC.Failure(.upstreamUnreachable, 502, "the agent answered HTTP \(response.status)", data: data)
        }
        return Upstream(response: response, data: data)
    }

    // MARK: Answers and later writes

    private func answer(_ clientId: JSONValue, _ result: some WireRecord, _ target: Target) -> Response {
        answer(clientId, target) { result.write(into: &$0) }
    }

    /// A JSON-RPC response with the client's id, `result` written by `writeResult`.
    private func answer(_ clientId: JSONValue, _ target: Target, _ writeResult: (inout [UInt8]) -> Void) -> Response {
        let body = JSONObjectWriter.object { o in
            o.field("id", clientId)
            o.field("jsonrpc", "2.0")
            o.field("result", raw: writeResult)
        }
        var response = Wire.response(bytes: body)
        response.headers[.deploymentId] = target.label
        return response
    }

    /// Sets the task's status when it is one of `from` (any when nil); the task as it now is.
    @discardableResult
    private func setStatus(_ taskId: String, _ status: TaskStatus, reason: String?, from: Set<TaskStatus>?) async throws -> AgentTask? {
        try await deps.store.autocommit { tx in
            try await tx.setTaskStatus(id: taskId, status, reason: reason, from: from, at: .now())
        }
    }

    private func storeAgentMessages(_ contents: [JSONValue], taskId: String) async throws -> [TaskMessage] {
        let now = Timestamp.now()
        let messages = contents.map {
            TaskMessage(id: Identifiers.uuid(), taskId: taskId, content: $0, streamingStatus: .done, createdAt: now, updatedAt: now)
        }
        try await Self.write(messages.map { ($0, true) }, to: deps.store)
        return messages
    }

    /// Writes an agent's messages, each new (`isNew`) or updated. One write (the usual case: a message
    /// appearing or completing) is a statement on its own, two round trips fewer than a transaction around
    /// it; several are written together or not at all.
    private static func write(_ writes: [(message: TaskMessage, isNew: Bool)], to store: any Store) async throws {
        guard !writes.isEmpty else { return }
        let write: @Sendable (StoreTransaction) async throws -> Void = { tx in
            for (message, isNew) in writes {
                if isNew { try await tx.insertTaskMessage(message) } else { try await tx.updateTaskMessage(message) }
            }
        }
        if writes.count == 1 { try await store.autocommit(write) } else { try await store.transaction(write) }
    }

    /// A streamed `message/send`: each line of the pod reaches the client as it arrives, re-addressed to
    /// the client's id, with its message as its `parent_task_message`. Messages are written when they
    /// appear and when they complete, in order, behind the lines: a line does not wait for its write (a
    /// database round trip on the first line's path), and the stream ends only once every write is done,
    /// so a client that has read the whole stream reads the messages stored. A failed write cuts the
    /// stream at its end, instead of the clean end of a chunked body.
    private func streamMessages(_ upstream: Upstream, clientId: JSONValue, _ p: Prepared) -> Response {
        let store = deps.store
        let taskId = p.task.id
        let body = ResponseBody { writer in
            var stream = MessageStream()
            var stored: [Int: TaskMessage] = [:]
            // The latest write; each waits for the one before it.
            var writing: Task<Void, any Error>?
            func apply(_ actions: [MessageStream.Action]) {
                guard !actions.isEmpty else { return }
                let now = Timestamp.now()
                var writes: [(TaskMessage, Bool)] = []
                for action in actions {
                    switch action {
                    case .create(let index, let content, let done):
                        let message = TaskMessage(
                            id: Identifiers.uuid(), taskId: taskId, content: content,
                            streamingStatus: done ? .done : .inProgress, createdAt: now, updatedAt: now)
                        stored[index] = message
                        writes.append((message, true))
                    case .complete(let index, let content):
                        guard var message = stored[index] else { continue }
                        message.content = content
                        message.streamingStatus = .done
                        message.updatedAt = now
                        stored[index] = message
                        writes.append((message, false))
                    }
                }
                let previous = writing
                writing = Task { [writes] in
                    try await previous?.value
                    try await Self.write(writes, to: store)
                }
            }
            func send(_ value: JSONValue) async throws {
                var buffer = ByteBuffer(bytes: JSONCodec.serialize(value))
                buffer.writeInteger(UInt8(ascii: "\n"))
                try await writer.write(buffer)
            }
            var pending: [UInt8] = []
            func handle(_ line: ArraySlice<UInt8>) async throws {
                guard !line.allSatisfy({ $0 == 32 || $0 == 13 }) else { return }
                let update: JSONValue
                do {
                    update = try upstream.result(of: line)
                } catch let failure as JSONRPC.Failure {
                    try await send(failure.body(id: clientId))
                    return
                }
                apply(stream.consume(update))
                var result = update.objectValue ?? [:]
                let index = result["index"].flatMap { if case .number(let n) = $0 { Int(exactly: n) } else { nil } } ?? 0
                if let parent = stored[index] { result["parent_task_message"] = TaskWire.message(parent) }
                try await send(["jsonrpc": "2.0", "id": clientId, "result": .object(result)])
            }
            switch upstream.response.body {
            case .complete(let whole):
                pending = Array(whole.readableBytesView)
            case .stream(var chunks):
                chunks.onStall = { RPCMetrics.streamsCut.increment() }
                do {
                    for try await chunk in chunks {
                        pending += chunk.readableBytesView
                        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                            let line = pending[..<newline]
                            try await handle(line)
                            pending.removeSubrange(...newline)
                        }
                    }
                } catch {
                    // Cut (the agent fell silent, or the client left): what was said so far is kept, complete.
                    apply(stream.finish())
                    throw error
                }
            }
            for line in pending.split(separator: UInt8(ascii: "\n")) { try await handle(line) }
            apply(stream.finish())
            try await writing?.value
            try await writer.finish(nil)
        }
        var headers: HTTPFields = [.contentType: "application/x-ndjson"]
        headers[.deploymentId] = p.target.label
        return Response(status: .ok, headers: headers, body: body)
    }
}
