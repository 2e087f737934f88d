import CutoverCore

/// A route index of the API for `/openapi.json`: paths, methods and summaries.
enum OpenAPIDocument {
    static let routes: [(path: String, method: String, summary: String)] = [
        ("/agents/register", "post", "Register an agent pod (deployment-scoped with registration_metadata.deployment_id, else legacy)"),
        ("/agents/register-build", "post", "Register a BuildOnly agent, idempotent by name"),
        ("/agents", "get", "List agents"),
        ("/agents/{id}", "get", "Get an agent"),
        ("/agents/{id}", "delete", "Soft-delete an agent"),
        ("/agents/name/{name}", "get", "Get an agent by name"),
        ("/agents/name/{name}", "delete", "Soft-delete an agent by name"),
        ("/agents/{id}/rollback", "post", "Roll production back to a previous production deployment"),
        ("/agents/{id}/events", "get", "The agent's audit trail"),
        ("/agents/{id}/deployments", "post", "Create a Pending deployment"),
        ("/agents/{id}/deployments", "get", "List deployments"),
        ("/agents/{id}/deployments/{did}", "get", "Get a deployment"),
        ("/agents/{id}/deployments/{did}", "delete", "Soft-delete a deployment"),
        ("/agents/{id}/deployments/{did}/promote", "post", "Promote a Ready deployment to production"),
        ("/agents/{id}/deployments/{did}/restore", "post", "Undo a soft delete"),
        ("/agents/{id}/deployments/{did}/events", "get", "The deployment's audit trail"),
        ("/agents/{id}/rpc", "post", "JSON-RPC to the production deployment, else the legacy URL"),
        ("/agents/name/{name}/rpc", "post", "JSON-RPC by agent name"),
        ("/agents/{id}/deployments/{did}/rpc", "post", "Preview JSON-RPC to one Ready deployment"),
        ("/healthz", "get", "Liveness"),
        ("/readyz", "get", "Readiness: database reachable and migrated"),
        ("/metrics", "get", "Prometheus metrics"),
    ]

    static let document: JSONValue = {
        var paths: [String: JSONValue] = [:]
        for route in routes {
            var operations = paths[route.path]?.objectValue ?? [:]
            operations[route.method] = [
                "summary": .string(route.summary),
                "responses": ["200": ["description": "OK"], "default": ["description": "Error envelope {message, code, data}"]],
            ]
            paths[route.path] = .object(operations)
        }
        return ["openapi": "3.1.0", "info": ["title": "Cutover", "version": "0.1.0"], "paths": .object(paths)]
    }()
}
