import CutoverController
import CutoverCore
import Hummingbird

/// `POST /agents/register` (pods) and `POST /agents/register-build` (build pipelines).
struct RegistrationRoutes {
    let deps: APIDependencies

    func register(on router: Router<APIRequestContext>) {
        router.post("/agents/register") { request, _ in
            try deps.authenticator.authorizeRegistration(request)
            let dryRun = try QueryInput(request).dryRun
            let registration = try await parseRegistration(request)
            let agent = try await deps.controlPlane.register(
                registration, RequestContext(actor: .registration, dryRun: dryRun))
            return Wire.response(bytes: Wire.registration(agent), dryRun: dryRun)
        }
        router.post("/agents/register-build") { request, _ in
            let principal = try await deps.authenticator.principal(request)
            guard principal == .admin else { throw CutoverError.forbidden("only an admin token can register builds") }
            let dryRun = try QueryInput(request).dryRun
            var body = try await BodyFields.read(request)
            let name = body.string("name", required: true, rule: Rules.agentNameProblem)
            let description = body.string("description", rule: Rules.descriptionProblem) ?? ""
            let metadata = body.metadata("registration_metadata")
            let inputType = body.enumValue("agent_input_type", AgentInputType.self)
            try body.check()
            let agent = try await deps.controlPlane.registerBuild(
                .init(name: name!, description: description, registrationMetadata: metadata, agentInputType: inputType),
                RequestContext(actor: principal.actor, dryRun: dryRun))
            return Wire.response(agent, dryRun: dryRun)
        }
    }

    func parseRegistration(_ request: Request) async throws -> RegistrationRequest {
        var body = try await BodyFields.read(request)
        let name = body.string("name", required: true, rule: Rules.agentNameProblem)
        let description = body.string("description", rule: Rules.descriptionProblem) ?? ""
        let acpURL = body.string("acp_url", required: true) { ACPURL.problem($0, allowedHosts: deps.allowedHosts) }
        let acpType = body.enumValue("acp_type", ACPType.self) ?? .async
        let agentId = body.string("agent_id") { Rules.shortTextProblem($0, max: 128) }
        let metadata = body.metadata("registration_metadata")
        let inputType = body.enumValue("agent_input_type", AgentInputType.self)
        if let deploymentId = metadata?["deployment_id"], !deploymentId.isNull {
            if let text = deploymentId.stringValue {
                if let problem = Rules.deploymentIdProblem(text) {
                    body.fail("registration_metadata.deployment_id", problem)
                }
            } else {
                body.fail("registration_metadata.deployment_id", "must be a string, not \(deploymentId.typeName)")
            }
        }
        if let image = metadata?["docker_image"], !image.isNull {
            if let text = image.stringValue {
                if let problem = Rules.nulProblem(text) ?? Rules.shortTextProblem(text, max: 1024) {
                    body.fail("registration_metadata.docker_image", problem)
                }
            } else {
                body.fail("registration_metadata.docker_image", "must be a string, not \(image.typeName)")
            }
        }
        try body.check()
        return RegistrationRequest(
            name: name!, description: description, acpURL: acpURL!, acpType: acpType, agentId: agentId,
            registrationMetadata: metadata, agentInputType: inputType)
    }
}
