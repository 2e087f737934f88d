import CutoverCore
import CutoverStore
import Hummingbird

/// `/states`: the agent's working state of a task, one JSON object per task and agent.
struct StateRoutes {
    let deps: APIDependencies
    static let orderable = ["created_at", "updated_at"]

    func register(on router: Router<APIRequestContext>) {
        router.post("/states") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            var body = try await BodyFields.read(request)
            let taskId = body.string("task_id", required: true) { Rules.shortTextProblem($0) }
            let agentId = body.string("agent_id", required: true) { Rules.shortTextProblem($0) }
            let state = body.jsonObject("state", required: true)
            try body.check()
            let created = try await deps.store.transaction { tx in
                let task = try await TaskAccess.task(tx, id: taskId!, principal, lock: true)
                guard agentId == task.agentId else {
                    throw CutoverError.invalid("agent_id", "must be the agent of task '\(task.id)'")
                }
                let now = Timestamp.now()
                let record = TaskState(
                    id: Identifiers.uuid(), taskId: task.id, agentId: task.agentId, state: state!, createdAt: now,
                    updatedAt: now)
                guard try await tx.insertTaskStateIfAbsent(record) else {
                    throw CutoverError.conflict(
                        "task '\(task.id)' already has a state for agent '\(task.agentId)'; update it with PUT /states/{id}")
                }
                return record
            }
            return Wire.response(TaskWire.state(created))
        }
        router.get("/states") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            let query = QueryInput(request)
            let page = try query.page(orderable: Self.orderable)
            let taskId = try query.text("task_id")
            guard let scope = principal.listFilter(try query.text("agent_id")) else { return Wire.response(.array([])) }
            let agentId = scope.agentId
            let states = try await deps.store.read {
                try await $0.listTaskStates(taskId: taskId, agentId: agentId, page: page)
            }
            return Wire.response(.array(states.map(TaskWire.state)))
        }
        router.get("/states/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            let state = try await deps.store.read { try await visibleState($0, id: id, principal) }
            return Wire.response(TaskWire.state(state))
        }
        router.put("/states/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            var body = try await BodyFields.read(request)
            let state = body.jsonObject("state", required: true)
            let taskId = body.string("task_id") { Rules.shortTextProblem($0) }
            let agentId = body.string("agent_id") { Rules.shortTextProblem($0) }
            try body.check()
            let updated = try await deps.store.transaction { tx in
                var record = try await visibleState(tx, id: id, principal, lock: true)
                if let taskId, taskId != record.taskId {
                    throw CutoverError.invalid("task_id", "state '\(id)' belongs to another task")
                }
                if let agentId, agentId != record.agentId {
                    throw CutoverError.invalid("agent_id", "state '\(id)' belongs to another agent")
                }
                record.state = state!
                record.updatedAt = Timestamp.now()
                try await tx.updateTaskState(record)
                return record
            }
            return Wire.response(TaskWire.state(updated))
        }
        router.delete("/states/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            let deleted = try await deps.store.transaction { tx in
                let record = try await visibleState(tx, id: id, principal, lock: true)
                try await tx.deleteTaskState(id: id)
                return record
            }
            return Wire.response(TaskWire.state(deleted))
        }
    }

    /// State `id` when the caller may see it (a state's agent is always its task's agent).
    func visibleState(_ tx: StoreTransaction, id: String, _ principal: Principal, lock: Bool = false) async throws -> TaskState {
        guard let state = try await tx.taskState(id: id, lock: lock), principal.sees(agentId: state.agentId) else {
            throw TaskAccess.notFound("state", id)
        }
        return state
    }
}
