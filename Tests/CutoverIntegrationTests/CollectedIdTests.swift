import CutoverCore
import Testing

@testable import CutoverStore

@Suite("A collected id stays its agent's")
struct CollectedIdTests {
    /// Another agent's insert of an id being collected waits on the collection's delete of the row, then
    /// finds no row; its own check of the collected ids ran on a snapshot from before the collection
    /// committed. The trigger that guards inserts looks again on a fresh snapshot and refuses it.
    @Test(arguments: Backend.postgresOnly)
    func anIdCollectedWhileAnotherAgentsInsertWaitedIsRefused(_ backend: Backend) async throws {
        let base = try await backend.makeStore()
        let t0 = Timestamp(microseconds: 1_800_000_000_000_000)
        let owner = Agent(
            id: "agent-1", name: "app", description: "", status: .ready, acpType: .async, createdAt: t0,
            updatedAt: t0, apiKey: String(repeating: "a", count: 64))
        let other = Agent(
            id: "agent-2", name: "other", description: "", status: .ready, acpType: .async, createdAt: t0,
            updatedAt: t0, apiKey: String(repeating: "b", count: 64))
        try await base.transaction { tx in
            _ = try await tx.insertAgentIfAbsent(owner)
            _ = try await tx.insertAgentIfAbsent(other)
            _ = try await tx.insertDeploymentIfAbsent(
                Deployment(id: "x", agentId: owner.id, dockerImage: "img:1", createdAt: t0, expiresAt: t0))
        }

        let gated = GatedStore(base, holding: 1)
        async let collected = gated.transaction { tx in
            try await tx.collectExpired(agentId: owner.id, now: t0 + .seconds(1), limit: 10)
        }
        await gated.held()
        let insert = Task {
            try await base.transaction { tx in
                try await tx.insertDeploymentIfAbsent(Deployment(id: "x", agentId: other.id, dockerImage: "img:2", createdAt: t0))
            }
        }
        try await untilALockIsAwaited(in: base, "the other agent's insert waits on the collection")
        gated.release()
        #expect(try await collected == ["x"])
        let error = await #expect(throws: CutoverError.self) { try await insert.value }
        #expect(error?.message == "deployment id 'x' belongs to another agent")
        #expect(try await base.read { try await $0.deployment(id: "x") } == nil, "nothing of the refused insert is left")
        try await Backend.discard(base)
    }
}

/// Returns once a session of `store`'s PostgreSQL database waits for a lock (`what` names it on failure).
func untilALockIsAwaited(in store: any Store, _ what: String) async throws {
    _ = try await eventually(what) {
        let waiting = try await store.read { tx in
            try await tx.connection.rows(Statement("""
                SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
                """)).first?.int()
        }
        return (waiting ?? 0) > 0 ? true : nil
    }
}
