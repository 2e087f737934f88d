import CutoverCore
import CutoverStore
import Hummingbird

/// `/tracker`: how far the agent has processed each task's events. A task's tracker is made with it and
/// has the task's id.
struct TrackerRoutes {
    let deps: APIDependencies
    static let orderable = ["created_at", "updated_at"]

    func register(on router: Router<APIRequestContext>) {
        router.get("/tracker") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            let query = QueryInput(request)
            let page = try query.page(orderable: Self.orderable)
            let taskId = try query.text("task_id")
            guard let scope = principal.listFilter(try query.text("agent_id")) else { return Wire.response(.array([])) }
            let agentId = scope.agentId
            let trackers = try await deps.store.read {
                try await $0.listTaskTrackers(agentId: agentId, taskId: taskId, page: page)
            }
            return Wire.response(.array(trackers.map(TaskWire.tracker)))
        }
        router.get("/tracker/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            let tracker = try await deps.store.read { try await visibleTracker($0, id: id, principal) }
            return Wire.response(TaskWire.tracker(tracker))
        }
        router.put("/tracker/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            var body = try await BodyFields.read(request, allowEmpty: true)
            let cursor = body.string("last_processed_event_id") { Rules.shortTextProblem($0) }
            let status = body.string("status") { Rules.shortTextProblem($0) }
            let reason = body.string("status_reason") { Rules.shortTextProblem($0, max: Rules.maxDescriptionBytes) }
            try body.check()
            let tracker = try await deps.store.transaction { tx in
                var tracker = try await visibleTracker(tx, id: id, principal, lock: true)
                if let cursor {
                    guard let event = try await tx.taskEvent(id: cursor), event.taskId == tracker.taskId else {
                        throw CutoverError.invalid("last_processed_event_id", "is not an event of task '\(tracker.taskId)'")
                    }
                    if let current = tracker.lastProcessedEventId, current != cursor,
                        let previous = try await tx.taskEvent(id: current), previous.sequenceId > event.sequenceId
                    {
                        throw CutoverError.invalid(
                            "last_processed_event_id",
                            "must not move back: event \(event.sequenceId) is before the processed event \(previous.sequenceId)")
                    }
                    tracker.lastProcessedEventId = cursor
                }
                if let status { tracker.status = status }
                if let reason { tracker.statusReason = reason }
                tracker.updatedAt = Timestamp.now()
                try await tx.updateTaskTracker(tracker)
                return tracker
            }
            return Wire.response(TaskWire.tracker(tracker))
        }
    }

    /// Tracker `id` when the caller may see it (a tracker's agent is its task's agent).
    func visibleTracker(_ tx: StoreTransaction, id: String, _ principal: Principal, lock: Bool = false) async throws -> TaskTracker {
        guard let tracker = try await tx.taskTracker(id: id, lock: lock), principal.sees(agentId: tracker.agentId) else {
            throw TaskAccess.notFound("tracker", id)
        }
        return tracker
    }
}
