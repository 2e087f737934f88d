import CutoverCore
import Testing

@testable import CutoverStore

/// The hot statements on PostgreSQL are prepared, and a prepared statement runs a generic plan, made once
/// without the values and kept for the connection's life. Such a plan must not depend on the values to be
/// cheap: a row named by id is found by id.
@Suite("Generic plans")
struct GenericPlanTests {
    /// The statement of every `event/send` finds its task by id, and the task's owner by id: a plan that
    /// found the task through the agent's index read every task of the agent to update one.
    @Test(arguments: Backend.postgresOnly)
    func theEventStatementFindsItsTaskAndOwnerById(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        let t0 = Timestamp.now()
        try await store.transaction { tx in
            _ = try await tx.insertAgentIfAbsent(Agent(
                id: "agent-1", name: "app", description: "", status: .ready, acpType: .async, createdAt: t0,
                updatedAt: t0, apiKey: String(repeating: "a", count: 64)))
            _ = try await tx.insertDeploymentIfAbsent(Deployment(id: "d1", agentId: "agent-1", dockerImage: "img:1", createdAt: t0))
            for i in 0..<3 {
                try await tx.insertTask(AgentTask(
                    id: "task-\(i)", agentId: "agent-1", deploymentId: "d1", name: nil, createdAt: t0, updatedAt: t0))
            }
        }
        // Not pinned, another route deployment, affinity on: every condition is in the plan.
        let plan: String
        do {
            plan = try await Self.genericPlan(
                store, StoreTransaction.continueTask,
                "'task-0', 'agent-1', 1, 0, 'd2', 1, ARRAY[NULL], ARRAY[NULL], ARRAY['e1'], ARRAY[NULL], NULL, 1, ARRAY[1], ARRAY[1]")
        } catch {
            try await Backend.discard(store)
            throw error
        }
        #expect(plan.contains("Index Scan using tasks_id_key on tasks"), "\(plan)")
        // The owner's check and the join that reads the owner's URL.
        #expect(plan.components(separatedBy: "Index Scan using deployments_id_key").count - 1 == 2, "\(plan)")
        #expect(!plan.contains("tasks_agent") && !plan.contains("Seq Scan on deployments"), "\(plan)")
        try await Backend.discard(store)
    }

    /// The controller's read of the deployments it reconciles finds each by id even when its generic plan
    /// is made on an empty table, as in a new database, where a scan looks cheap and the plan is then kept
    /// as the table grows.
    @Test(arguments: Backend.postgresOnly)
    func theControllersReadFindsDeploymentsByIdOnAnEmptyTable(_ backend: Backend) async throws {
        try await backend.withStore { store in
            let plan = try await Self.genericPlan(
                store, StoreTransaction.deploymentsAndAgentsStatement(count: 3), "'d1', 'd2', 'd3'")
            #expect(plan.contains("Index Scan using deployments_id_key on deployments"), "\(plan)")
            #expect(plan.contains("Index Scan using agents_id_key on agents"), "\(plan)")
            #expect(!plan.contains("Seq Scan"), "\(plan)")
        }
    }

    /// The lock of a reconcile batch, a promotion or a rollback finds each deployment by id even when its
    /// generic plan is made on an empty table.
    @Test(arguments: Backend.postgresOnly)
    func theLockFindsDeploymentsByIdOnAnEmptyTable(_ backend: Backend) async throws {
        try await backend.withStore { store in
            let plan = try await Self.genericPlan(
                store, StoreTransaction.lockAgentsAndDeploymentsStatement, "ARRAY['a1'], ARRAY['d1', 'd2'], 1")
            #expect(plan.contains("Index Scan using deployments_id_key on deployments"), "\(plan)")
            #expect(!plan.contains("Seq Scan on deployments"), "\(plan)")
        }
    }

    /// The generic plan of `statement` for `arguments` (SQL literals), as `EXPLAIN` prints it.
    static func genericPlan(_ store: any Store, _ statement: Statement, _ arguments: String) async throws -> String {
        try await store.transaction(dryRun: true) { tx in
            _ = try await tx.connection.rows(Statement("SET LOCAL plan_cache_mode = force_generic_plan"))
            _ = try await tx.connection.rows(Statement("PREPARE plan_under_test AS \(statement.postgres)"))
            let lines = try await tx.connection.rows(Statement("EXPLAIN EXECUTE plan_under_test(\(arguments))")).map {
                try $0.text()
            }
            _ = try await tx.connection.rows(Statement("DEALLOCATE plan_under_test"))
            return lines.joined(separator: "\n")
        }
    }
}
