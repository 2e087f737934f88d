import CutoverCore

/// The JSON shapes of the task records, with Agentex's field names; every optional field present (null
/// when unset), timestamps RFC 3339 with microseconds.
enum TaskWire {
    /// A Task. `agents` (the `?relationships=agents` expansion) is added only when given; `includeParams`
    /// is false for list items, which, as in Agentex, leave out `params` (it may carry a caller's secrets).
    static func task(_ t: AgentTask, agents: [Agent]? = nil, includeParams: Bool = true, into out: inout [UInt8]) {
        JSONObjectWriter.write(into: &out) { o in
            o.field("agent_id", t.agentId)
            if let agents {
                o.field("agents") { out in out.append(contentsOf: JSONObjectWriter.array(agents) { $0.write(into: &$1) }) }
            }
            o.field("cleaned_at", String?.none)
            o.field("created_at", t.createdAt)
            o.field("deployment_id", t.deploymentId)
            o.field("id", t.id)
            o.field("name", t.name)
            if includeParams { o.field("params", t.params) }
            o.field("status", t.status.rawValue)
            o.field("status_reason", t.statusReason)
            o.field("task_metadata", t.taskMetadata)
            o.field("updated_at", t.updatedAt)
        }
    }

    static func event(_ e: TaskEvent, into out: inout [UInt8]) {
        JSONObjectWriter.write(into: &out) { o in
            o.field("agent_id", e.agentId)
            o.field("content", e.content ?? .null)
            o.field("created_at", e.createdAt)
            o.field("id", e.id)
            o.field("sequence_id", e.sequenceId)
            o.field("task_id", e.taskId)
        }
    }

    static func message(_ m: TaskMessage) -> JSONValue {
        [
            "id": .string(m.id),
            "task_id": .string(m.taskId),
            "content": m.content,
            "streaming_status": JSONValue(m.streamingStatus?.rawValue),
            "created_at": .string(m.createdAt.rfc3339),
            "updated_at": .string(m.updatedAt.rfc3339),
        ]
    }

    static func state(_ s: TaskState) -> JSONValue {
        [
            "id": .string(s.id),
            "task_id": .string(s.taskId),
            "agent_id": .string(s.agentId),
            "state": .object(s.state),
            "created_at": .string(s.createdAt.rfc3339),
            "updated_at": .string(s.updatedAt.rfc3339),
        ]
    }

    static func tracker(_ t: TaskTracker) -> JSONValue {
        [
            "id": .string(t.id),
            "agent_id": .string(t.agentId),
            "task_id": .string(t.taskId),
            "last_processed_event_id": JSONValue(t.lastProcessedEventId),
            "status": JSONValue(t.status),
            "status_reason": JSONValue(t.statusReason),
            "created_at": .string(t.createdAt.rfc3339),
            "updated_at": .string(t.updatedAt.rfc3339),
        ]
    }

    static func span(_ s: Span) -> JSONValue {
        [
            "id": .string(s.id),
            "trace_id": .string(s.traceId),
            "parent_id": JSONValue(s.parentId),
            "name": .string(s.name),
            "start_time": .string(s.startTime.rfc3339),
            "end_time": JSONValue(s.endTime),
            "input": s.input ?? .null,
            "output": s.output ?? .null,
            "data": s.data ?? .null,
            "task_id": JSONValue(s.taskId),
        ]
    }
}

extension AgentTask: WireRecord {
    func write(into out: inout [UInt8]) { TaskWire.task(self, into: &out) }
}

extension TaskEvent: WireRecord {
    func write(into out: inout [UInt8]) { TaskWire.event(self, into: &out) }
}

/// Parses the RFC 3339 / ISO 8601 date-times clients send (`2026-11-29T15:16:13.912345Z`, `…+02:00`, or
/// without an offset, read as UTC, as Python writes a naive datetime). Digits past microseconds are cut.
enum TimestampParser {
    static func parse(_ text: String) -> Timestamp? {
        let b = Array(text.utf8)
        var i = 0
        func number(_ width: Int) -> Int? {
            guard i + width <= b.count else { return nil }
            var n = 0
            for k in i..<(i + width) {
                guard b[k] >= 48, b[k] <= 57 else { return nil }
                n = n * 10 + Int(b[k] - 48)
            }
            i += width
            return n
        }
        func expect(_ c: UInt8...) -> Bool {
            guard i < b.count, c.contains(b[i]) else { return false }
            i += 1
            return true
        }
        guard let year = number(4), expect(45), let month = number(2), expect(45), let day = number(2),
            expect(84, 116, 32), let hour = number(2), expect(58), let minute = number(2), expect(58),
            let second = number(2)
        else { return nil }
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var micros = 0
        if i < b.count, b[i] == 46 {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 6 { micros = micros * 10 + Int(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in min(digits, 6)..<6 { micros *= 10 }
        }
        var offset = 0
        if i < b.count {
            if b[i] == 90 || b[i] == 122 {
                i += 1
            } else if b[i] == 43 || b[i] == 45 {
                let sign = b[i] == 45 ? -1 : 1
                i += 1
                guard let oh = number(2), expect(58), let om = number(2), oh < 24, om < 60 else { return nil }
                offset = sign * (oh * 3600 + om * 60)
            } else {
                return nil
            }
        }
        guard i == b.count else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        let seconds = Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second - offset)
        return Timestamp(microseconds: seconds * 1_000_000 + Int64(micros))
    }
}
