import CutoverController
import CutoverCore
import Hummingbird

/// `/agents/{id}/deployments[/{did}[/promote|/restore|/events]]`.
struct DeploymentRoutes {
    let deps: APIDependencies
    static let orderable = ["created_at", "status", "registered_at", "ready_at", "promoted_at", "docker_image"]

    func register(on router: Router<APIRequestContext>) {
        router.post("/agents/:id/deployments") { request, context in
            let agentId = try context.parameters.require("id")
            let principal = try await deps.authorize(request, agentId: agentId)
            let dryRun = try QueryInput(request).dryRun
            var body = try await BodyFields.read(request)
            let image = body.string("docker_image", required: true) { Rules.shortTextProblem($0, max: 1024) }
            let id = body.string("id", rule: Rules.deploymentIdProblem)
            let metadata = body.metadata("registration_metadata")
            let sgp = body.string("sgp_deploy_id") { Rules.shortTextProblem($0) }
            let helm = body.string("helm_release_name") { Rules.shortTextProblem($0) }
            try body.check()
            let deployment = try await deps.controlPlane.createDeployment(
                agentId: agentId,
                .init(dockerImage: image!, id: id, registrationMetadata: metadata, sgpDeployId: sgp, helmReleaseName: helm),
                RequestContext(actor: principal.actor, dryRun: dryRun))
            return Wire.response(deployment, dryRun: dryRun)
        }
        router.get("/agents/:id/deployments") { request, context in
            let id = try context.parameters.require("id")
            _ = try await deps.authorize(request, agentId: id)
            let query = QueryInput(request)
            let input = Result { (try query.page(orderable: Self.orderable), try query.flag("include_deleted")) }
            // An unknown agent is 404 before its query is judged, as on every route of an agent.
            if case .failure = input { _ = try await deps.resolveAgent(request, id: id) }
            let (page, includeDeleted) = try input.get()
            // The agent's existence and the page come in one statement.
            guard let list = try await deps.store.read({
                try await $0.listDeployments(agentId: id, includeDeleted: includeDeleted, page: page)
            }) else {
                throw CutoverError.agentNotFound(id)
            }
            return Wire.response(list)
        }
        router.get("/agents/:id/deployments/:did") { request, context in
            let (_, deployment, _) = try await resolve(request, context)
            return Wire.response(deployment)
        }
        router.get("/agents/:id/deployments/:did/events") { request, context in
            let (agent, deployment, _) = try await resolve(request, context)
            let page = try QueryInput(request).page(orderable: AgentRoutes.eventOrderable)
            let events = try await deps.store.read {
                try await $0.listEvents(agentId: agent.id, deploymentId: deployment.id, page: page)
            }
            return Wire.response(events)
        }
        router.post("/agents/:id/deployments/:did/promote") { request, context in
            let (agentId, deploymentId, principal) = try await authorizeDeployment(request, context)
            try principal.requireAdmin(action: "promote")
            let dryRun = try QueryInput(request).dryRun
            var body = try await BodyFields.read(request, allowEmpty: true)
            let reason = body.string("reason") { Rules.shortTextProblem($0, max: 1024) }
            try body.check()
            let promoted = try await deps.controlPlane.promote(
                agentId: agentId, deploymentId: deploymentId, reason: reason,
                RequestContext(actor: principal.actor, dryRun: dryRun))
            return Wire.response(promoted, dryRun: dryRun)
        }
        router.delete("/agents/:id/deployments/:did") { request, context in
            let (agentId, deploymentId, principal) = try await authorizeDeployment(request, context)
            try principal.requireAdmin(action: "delete a deployment")
            let dryRun = try QueryInput(request).dryRun
            let deleted = try await deps.controlPlane.deleteDeployment(
                agentId: agentId, deploymentId: deploymentId, RequestContext(actor: principal.actor, dryRun: dryRun))
            let until = deleted.expiresAt.map { "; restorable until \($0)" } ?? ""
            return Wire.response(
                ["id": .string(deploymentId), "message": .string("deployment '\(deploymentId)' deleted\(until)")],
                dryRun: dryRun)
        }
        router.post("/agents/:id/deployments/:did/restore") { request, context in
            let (agentId, deploymentId, principal) = try await authorizeDeployment(request, context)
            try principal.requireAdmin(action: "restore a deployment")
            let dryRun = try QueryInput(request).dryRun
            let restored = try await deps.controlPlane.restoreDeployment(
                agentId: agentId, deploymentId: deploymentId, RequestContext(actor: principal.actor, dryRun: dryRun))
            return Wire.response(restored, dryRun: dryRun)
        }
    }

    /// The `{id}` and `{did}` of a mutation the caller may attempt; the unit of work checks that they exist
    /// and belong together.
    func authorizeDeployment(
        _ request: Request, _ context: APIRequestContext
    ) async throws -> (String, String, Principal) {
        let agentId = try context.parameters.require("id")
        let principal = try await deps.authorize(request, agentId: agentId)
        return (agentId, try context.parameters.require("did"), principal)
    }

    /// The `{id}` agent and its `{did}` deployment: 404 unless the deployment belongs to that agent.
    func resolve(
        _ request: Request, _ context: APIRequestContext
    ) async throws -> (Agent, Deployment, Principal) {
        let (agent, principal) = try await deps.resolveAgent(request, id: try context.parameters.require("id"))
        let did = try context.parameters.require("did")
        guard let deployment = try await deps.store.read({ try await $0.deployment(id: did) }),
            deployment.agentId == agent.id
        else { throw CutoverError.deploymentNotFound(did, agent: agent.id) }
        return (agent, deployment, principal)
    }
}
