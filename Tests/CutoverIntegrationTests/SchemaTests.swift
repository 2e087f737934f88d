import SQLKit
import Testing

@testable import CutoverStore

/// What the schema must keep for the hot paths.
@Suite struct SchemaTests {
    /// Every `event/send` and `message/send` updates its task's `updated_at` and, for an event, its
    /// counter. An index holding either would make each of those updates write every index of `tasks`
    /// again (on PostgreSQL: no heap-only update), which cost a third of PostgreSQL's throughput on one
    /// busy task.
    @Test(arguments: Backend.all)
    func noIndexOfTasksHoldsWhatAnEventUpdates(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        let query: SQLQueryString = backend == .postgres
            ? "SELECT indexdef FROM pg_indexes WHERE tablename = 'tasks'"
            : "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' AND sql IS NOT NULL"
        let definitions = try await store.read { tx in
            try await tx.rows(query).map { row in
                var reader = row.reader
                return try reader.text()
            }
        }
        try await Backend.discard(store)
        #expect(definitions.contains { $0.contains("tasks_owner_running") }, "\(definitions)")
        for column in ["updated_at", "event_count"] {
            #expect(!definitions.contains { $0.contains(column) }, "an index of tasks holds \(column): \(definitions)")
        }
    }
}
