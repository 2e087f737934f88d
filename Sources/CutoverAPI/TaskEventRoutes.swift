import CutoverCore
import CutoverStore
import Hummingbird

/// `/events`: a task's events, read by the agent that processes them (written by `event/send`).
struct TaskEventRoutes {
    let deps: APIDependencies

    func register(on router: Router<APIRequestContext>) {
        router.get("/events") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            let query = QueryInput(request)
            let taskId = try query.text("task_id", required: true)!
            let agentId = try query.text("agent_id")
            let after = try query.text("last_processed_event_id")
            var limit = 1000
            if let text = query.parameters["limit"] {
                guard let n = Int(text), (1...1000).contains(n) else {
                    throw CutoverError.invalid("limit", "must be an integer from 1 to 1000")
                }
                limit = n
            }
            let events = try await deps.store.read { [limit] tx in
                _ = try await TaskAccess.task(tx, id: taskId, principal)
                var sequence: Int64 = 0
                if let after {
                    guard let event = try await tx.taskEvent(id: after), event.taskId == taskId else {
                        throw CutoverError.invalid("last_processed_event_id", "is not an event of task '\(taskId)'")
                    }
                    sequence = event.sequenceId
                }
                return try await tx.taskEvents(taskId: taskId, agentId: agentId, afterSequence: sequence, limit: limit)
            }
            return Wire.response(events)
        }
        router.get("/events/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            let event = try await deps.store.read { tx -> TaskEvent in
                guard let event = try await tx.taskEvent(id: id),
                    let task = try await tx.task(id: event.taskId), principal.sees(agentId: task.agentId)
                else { throw TaskAccess.notFound("event", id) }
                return event
            }
            return Wire.response(event)
        }
    }
}
