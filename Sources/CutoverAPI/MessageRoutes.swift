import CutoverCore
import CutoverStore
import Hummingbird

/// `/messages`: a task's messages (create, batch create and update, update, list by task, get).
struct MessageRoutes {
    let deps: APIDependencies
    static let orderable = ["created_at", "updated_at"]
    static let maxBatch = 1000

    func register(on router: Router<APIRequestContext>) {
        router.post("/messages") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            var body = try await BodyFields.read(request)
            let taskId = body.string("task_id", required: true) { Rules.shortTextProblem($0) }
            let content = body.messageContent("content", value: body.object["content"])
            let status = body.streamingStatus()
            let createdAt = body.timestamp("created_at")
            try body.check()
            let message = try await deps.store.transaction { tx in
                _ = try await TaskAccess.task(tx, id: taskId!, principal)
                let now = Timestamp.now()
                let message = TaskMessage(
                    id: Identifiers.uuid(), taskId: taskId!, content: content!, streamingStatus: status,
                    createdAt: createdAt ?? now, updatedAt: now)
                try await tx.insertTaskMessage(message)
                return message
            }
            return Wire.response(TaskWire.message(message))
        }
        router.post("/messages/batch") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            var body = try await BodyFields.read(request)
            let taskId = body.string("task_id", required: true) { Rules.shortTextProblem($0) }
            var contents: [JSONValue] = []
            switch body.object["contents"] {
            case .array(let items)? where (1...Self.maxBatch).contains(items.count):
                for (i, item) in items.enumerated() {
                    if let content = body.messageContent("contents[\(i)]", value: item) { contents.append(content) }
                }
            case .array?: body.fail("contents", "must hold 1 to \(Self.maxBatch) message contents")
            case nil, .null?: body.fail("contents", "is required")
            case let other?: body.fail("contents", "must be an array, not \(other.typeName)")
            }
            try body.check()
            let messages = try await deps.store.transaction { [contents] tx in
                _ = try await TaskAccess.task(tx, id: taskId!, principal)
                let now = Timestamp.now()
                var messages: [TaskMessage] = []
                for content in contents {
                    let message = TaskMessage(
                        id: Identifiers.uuid(), taskId: taskId!, content: content, streamingStatus: nil, createdAt: now,
                        updatedAt: now)
                    try await tx.insertTaskMessage(message)
                    messages.append(message)
                }
                return messages
            }
            return Wire.response(.array(messages.map(TaskWire.message)))
        }
        router.put("/messages/batch") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            var body = try await BodyFields.read(request)
            let taskId = body.string("task_id", required: true) { Rules.shortTextProblem($0) }
            var updates: [(id: String, content: JSONValue)] = []
            switch body.object["updates"] {
            case .object(let items)? where (1...Self.maxBatch).contains(items.count):
                for (id, item) in items.sorted(by: { $0.key < $1.key }) {
                    if let problem = Rules.nulProblem(id) ?? Rules.shortTextProblem(id) {
                        body.fail("updates", "message id '\(id)' \(problem)")
                    } else if let content = body.messageContent("updates.\(id)", value: item) {
                        updates.append((id, content))
                    }
                }
            case .object?: body.fail("updates", "must map 1 to \(Self.maxBatch) message ids to their new content")
            case nil, .null?: body.fail("updates", "is required")
            case let other?: body.fail("updates", "must be an object, not \(other.typeName)")
            }
            try body.check()
            let messages = try await deps.store.transaction { [updates] tx in
                _ = try await TaskAccess.task(tx, id: taskId!, principal)
                let now = Timestamp.now()
                var messages: [TaskMessage] = []
                for update in updates {
                    guard var message = try await tx.taskMessage(id: update.id), message.taskId == taskId! else {
                        throw TaskAccess.notFound("message", update.id)
                    }
                    message.content = update.content
                    message.updatedAt = now
                    try await tx.updateTaskMessage(message)
                    messages.append(message)
                }
                return messages
            }
            return Wire.response(.array(messages.map(TaskWire.message)))
        }
        router.put("/messages/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            var body = try await BodyFields.read(request)
            let taskId = body.string("task_id") { Rules.shortTextProblem($0) }
            let content = body.messageContent("content", value: body.object["content"])
            let status = body.streamingStatus()
            try body.check()
            let message = try await deps.store.transaction { tx in
                var message = try await visibleMessage(tx, id: id, principal)
                if let taskId, taskId != message.taskId {
                    throw CutoverError.invalid("task_id", "message '\(id)' belongs to another task")
                }
                message.content = content!
                if let status { message.streamingStatus = status }
                message.updatedAt = Timestamp.now()
                try await tx.updateTaskMessage(message)
                return message
            }
            return Wire.response(TaskWire.message(message))
        }
        router.get("/messages") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            let query = QueryInput(request)
            let taskId = try query.text("task_id", required: true)!
            let page = try query.page(orderable: Self.orderable)
            if query.parameters["filters"] != nil {
                throw CutoverError.invalid("filters", "filtering messages is not supported")
            }
            let messages = try await deps.store.read { tx in
                _ = try await TaskAccess.task(tx, id: taskId, principal)
                return try await tx.taskMessages(taskId: taskId, page: page)
            }
            return Wire.response(.array(messages.map(TaskWire.message)))
        }
        router.get("/messages/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            let message = try await deps.store.read { try await visibleMessage($0, id: id, principal) }
            return Wire.response(TaskWire.message(message))
        }
    }

    /// Message `id` when its task is one the caller may see.
    func visibleMessage(_ tx: StoreTransaction, id: String, _ principal: Principal) async throws -> TaskMessage {
        guard let message = try await tx.taskMessage(id: id),
            let task = try await tx.task(id: message.taskId), principal.sees(agentId: task.agentId)
        else { throw TaskAccess.notFound("message", id) }
        return message
    }
}

extension BodyFields {
    /// `streaming_status`: IN_PROGRESS or DONE; nil when absent or null.
    mutating func streamingStatus() -> StreamingStatus? {
        guard let text = string("streaming_status") else { return nil }
        guard let status = StreamingStatus(rawValue: text) else {
            fail("streaming_status", "must be one of IN_PROGRESS, DONE")
            return nil
        }
        return status
    }
}
