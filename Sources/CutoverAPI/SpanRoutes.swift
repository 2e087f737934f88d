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
            let f = SpanFields(&body, creating: true)
            try body.check()
            let span = try await deps.store.transaction { tx in
                if let taskId = f.taskId { _ = try await TaskAccess.task(tx, id: taskId, principal) }
                let span = Span(
                    id: id ?? Identifiers.uuid(), traceId: f.traceId!, parentId: f.parentId, name: f.name!,
                    startTime: f.start!, endTime: f.end, input: f.input, output: f.output, data: f.data,
                    taskId: f.taskId, agentId: principal.scopedAgentId)
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
            let f = SpanFields(&body, creating: false)
            try body.check()
            let span = try await deps.store.transaction { tx in
                var span = try await visibleSpan(tx, id: id, principal, lock: true)
                if let taskId = f.taskId, taskId != span.taskId { _ = try await TaskAccess.task(tx, id: taskId, principal) }
                if let traceId = f.traceId { span.traceId = traceId }
                if let parentId = f.parentId { span.parentId = parentId }
                if let name = f.name { span.name = name }
                if let start = f.start { span.startTime = start }
                if let end = f.end { span.endTime = end }
                if let input = f.input { span.input = input }
                if let output = f.output { span.output = output }
                if let data = f.data { span.data = data }
                if let taskId = f.taskId { span.taskId = taskId }
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

/// A span's fields in a body, with one set of rules for creating and for patching; creating requires
/// `trace_id`, `name` and `start_time`.
struct SpanFields {
    var traceId, parentId, name, taskId: String?
    var start, end: Timestamp?
    var input, output, data: JSONValue?

    init(_ body: inout BodyFields, creating: Bool) {
        traceId = body.string("trace_id", required: creating) { Rules.shortTextProblem($0) }
        parentId = body.string("parent_id") { Rules.shortTextProblem($0) }
        name = body.string("name", required: creating) { Rules.shortTextProblem($0, max: 1024) }
        start = body.timestamp("start_time", required: creating)
        end = body.timestamp("end_time")
        input = body.spanPayload("input")
        output = body.spanPayload("output")
        data = body.spanPayload("data")
        taskId = body.string("task_id") { Rules.shortTextProblem($0) }
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
