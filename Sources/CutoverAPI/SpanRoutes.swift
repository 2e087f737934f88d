import CutoverCore
import CutoverStore
import Hummingbird

/// `/spans`: tracing spans agents record (create, update, get, list by trace and task).
struct SpanRoutes {
    let deps: APIDependencies
    static let orderable = ["start_time", "end_time", "name"]

    func register(on router: Router<APIRequestContext>) {
        router.post("/spans") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            var body = try await BodyFields.read(request)
            let id = body.string("id") { Rules.shortTextProblem($0) }
            let traceId = body.string("trace_id", required: true) { Rules.shortTextProblem($0) }
            let parentId = body.string("parent_id") { Rules.shortTextProblem($0) }
            let name = body.string("name", required: true) { Rules.shortTextProblem($0, max: 1024) }
            let start = body.timestamp("start_time", required: true)
            let end = body.timestamp("end_time")
            let input = body.spanPayload("input")
            let output = body.spanPayload("output")
            let data = body.spanPayload("data")
            let taskId = body.string("task_id") { Rules.shortTextProblem($0) }
            try body.check()
            let span = try await deps.store.transaction { tx in
                if let taskId { _ = try await TaskAccess.task(tx, id: taskId, principal) }
                let span = Span(
                    id: id ?? Identifiers.uuid(), traceId: traceId!, parentId: parentId, name: name!, startTime: start!,
                    endTime: end, input: input, output: output, data: data, taskId: taskId,
                    agentId: principal.scopedAgentId)
                guard try await tx.insertSpanIfAbsent(span) else {
                    throw CutoverError.conflict("span '\(span.id)' already exists")
                }
                return span
            }
            return Wire.response(TaskWire.span(span))
        }
        router.patch("/spans/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            var body = try await BodyFields.read(request, allowEmpty: true)
            let traceId = body.string("trace_id") { Rules.shortTextProblem($0) }
            let parentId = body.string("parent_id") { Rules.shortTextProblem($0) }
            let name = body.string("name") { Rules.shortTextProblem($0, max: 1024) }
            let start = body.timestamp("start_time")
            let end = body.timestamp("end_time")
            let input = body.spanPayload("input")
            let output = body.spanPayload("output")
            let data = body.spanPayload("data")
            let taskId = body.string("task_id") { Rules.shortTextProblem($0) }
            try body.check()
            let span = try await deps.store.transaction { tx in
                var span = try await visibleSpan(tx, id: id, principal, lock: true)
                if let taskId, taskId != span.taskId { _ = try await TaskAccess.task(tx, id: taskId, principal) }
                if let traceId { span.traceId = traceId }
                if let parentId { span.parentId = parentId }
                if let name { span.name = name }
                if let start { span.startTime = start }
                if let end { span.endTime = end }
                if let input { span.input = input }
                if let output { span.output = output }
                if let data { span.data = data }
                if let taskId { span.taskId = taskId }
                try await tx.updateSpan(span)
                return span
            }
            return Wire.response(TaskWire.span(span))
        }
        router.get("/spans/:id") { request, context in
            let principal = try await deps.authenticator.principal(request)
            let id = try context.parameters.require("id")
            let span = try await deps.store.read { try await visibleSpan($0, id: id, principal) }
            return Wire.response(TaskWire.span(span))
        }
        router.get("/spans") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            let query = QueryInput(request)
            let page = try query.page(orderable: Self.orderable, defaultOrder: "start_time")
            let traceId = try query.text("trace_id")
            let taskId = try query.text("task_id")
            let spans = try await deps.store.read {
                try await $0.listSpans(traceId: traceId, taskId: taskId, visibleTo: principal.scopedAgentId, page: page)
            }
            return Wire.response(.array(spans.map(TaskWire.span)))
        }
    }

    /// Span `id` when the caller wrote it or may see its task.
    func visibleSpan(_ tx: StoreTransaction, id: String, _ principal: Principal, lock: Bool = false) async throws -> Span {
        guard let span = try await tx.span(id: id, lock: lock) else { throw TaskAccess.notFound("span", id) }
        guard let own = principal.scopedAgentId, span.agentId != own else { return span }
        if let taskId = span.taskId, let task = try await tx.task(id: taskId), task.agentId == own { return span }
        throw TaskAccess.notFound("span", id)
    }
}

extension BodyFields {
    /// A span's `input`, `output` or `data`: a JSON object or an array (of objects); nil when absent or null.
    mutating func spanPayload(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        switch value {
        case .object, .array: return value
        default:
            fail(key, "must be a JSON object or array, not \(value.typeName)")
            return nil
        }
    }
}
