import CutoverController
import CutoverCore
import Hummingbird

/// `/agents`, `/agents/{id}`, `/agents/name/{name}`, `/agents/{id}/rollback`, `/agents/{id}/events`.
struct AgentRoutes {
    let deps: APIDependencies
    static let orderable = ["created_at", "updated_at", "name", "status", "registered_at"]
    static let eventOrderable = ["created_at", "type"]

    func register(on router: Router<APIRequestContext>) {
        router.get("/agents") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            let page = try QueryInput(request).page(orderable: Self.orderable)
            let agents: [Agent]
            if case .agent(let id) = principal {
                let own = try await deps.store.read { try await $0.agent(id: id) }
                agents = page.number == 1 ? own.map { [$0] } ?? [] : []
            } else {
                agents = try await deps.store.read { try await $0.listAgents(page: page) }
            }
            return Wire.response(agents)
        }
        router.get("/agents/name/:name") { request, context in
            let agent = try await visibleAgent(request, byName: try context.parameters.require("name"))
            return Wire.response(agent)
        }
        router.get("/agents/:id") { request, context in
            let agent = try await visibleAgent(request, id: try context.parameters.require("id"))
            return Wire.response(agent)
        }
        router.delete("/agents/name/:name") { request, context in
            try await deleteAgent(request, id: try await visibleAgent(request, byName: try context.parameters.require("name")).id)
        }
        router.delete("/agents/:id") { request, context in
            try await deleteAgent(request, id: try context.parameters.require("id"))
        }
        router.post("/agents/:id/rollback") { request, context in
            let agentId = try context.parameters.require("id")
            let principal = try await deps.authorize(request, agentId: agentId)
            try principal.requireAdmin(action: "roll back")
            let dryRun = try QueryInput(request).dryRun
            var body = try await BodyFields.read(request, allowEmpty: true)
            let target = body.string("to_deployment_id", rule: Rules.deploymentIdProblem)
            let reason = body.string("reason") { Rules.shortTextProblem($0, max: 1024) }
            try body.check()
            let deployment = try await deps.controlPlane.rollback(
                agentId: agentId, to: target, reason: reason, RequestContext(actor: principal.actor, dryRun: dryRun))
            return Wire.response(deployment, dryRun: dryRun)
        }
        router.get("/agents/:id/events") { request, context in
            let (agent, _) = try await authorizedAgent(request, context)
            let query = QueryInput(request)
            if try query.flag("watch") {
                return try await EventWatch(store: deps.store, agentId: agent.id).response(after: query.parameters["after"])
            }
            let page = try query.page(orderable: Self.eventOrderable)
            let events = try await deps.store.read { try await $0.listEvents(agentId: agent.id, deploymentId: nil, page: page) }
            return Wire.response(events)
        }
    }

    func deleteAgent(_ request: Request, id: String) async throws -> Response {
        let principal = try await deps.authorize(request, agentId: id)
        try principal.requireAdmin(action: "delete an agent")
        let dryRun = try QueryInput(request).dryRun
        let agent = try await deps.controlPlane.deleteAgent(id: id, RequestContext(actor: principal.actor, dryRun: dryRun))
        return Wire.response(
            ["id": .string(agent.id), "message": .string("agent '\(agent.name)' deleted")], dryRun: dryRun)
    }

    func visibleAgent(_ request: Request, id: String) async throws -> Agent {
        try await deps.resolveAgent(request, id: id).0
    }

    func visibleAgent(_ request: Request, byName name: String) async throws -> Agent {
        let principal = try await deps.authenticator.principal(request)
        guard let agent = try await deps.store.read({ try await $0.agent(name: name) }) else {
            throw CutoverError.agentNotFound(name)
        }
        try principal.requireVisible(agent, ref: name)
        return agent
    }

    func authorizedAgent(_ request: Request, _ context: APIRequestContext) async throws -> (Agent, Principal) {
        try await deps.resolveAgent(request, id: try context.parameters.require("id"))
    }
}

extension APIDependencies {
    /// Authenticates the caller and checks it may act on agent `id` without reading the agent: an agent key
    /// sees only its own agent (404 otherwise). The unit of work itself answers 404 for an unknown agent.
    func authorize(_ request: Request, agentId: String) async throws -> Principal {
        let principal = try await authenticator.principal(request)
        if case .agent(let own) = principal, own != agentId { throw CutoverError.agentNotFound(agentId) }
        return principal
    }

    /// Authenticates the caller and finds the `{id}` agent it may see (404 otherwise).
    func resolveAgent(_ request: Request, id: String) async throws -> (Agent, Principal) {
        let principal = try await authenticator.principal(request)
        guard let agent = try await store.read({ try await $0.agent(id: id) }) else {
            throw CutoverError.agentNotFound(id)
        }
        try principal.requireVisible(agent, ref: id)
        return (agent, principal)
    }
}
