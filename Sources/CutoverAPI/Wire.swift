import CutoverCore
import HTTPTypes
import Hummingbird

/// The JSON shapes of the API: snake_case, every optional field present (null when unset).
enum Wire {
    static func agent(_ a: Agent) -> JSONValue {
        [
            "id": .string(a.id),
            "name": .string(a.name),
            "description": .string(a.description),
            "status": .string(a.status.rawValue),
            "status_reason": JSONValue(a.statusReason),
            "acp_type": .string(a.acpType.rawValue),
            "agent_input_type": JSONValue(a.agentInputType?.rawValue),
            "registration_metadata": JSONValue(a.registrationMetadata),
            "registered_at": JSONValue(a.registeredAt),
            "created_at": .string(a.createdAt.rfc3339),
            "updated_at": .string(a.updatedAt.rfc3339),
            "production_deployment_id": JSONValue(a.productionDeploymentId),
        ]
    }

    static func registration(_ a: Agent) -> JSONValue {
        guard case .object(var object) = agent(a) else { return agent(a) }
        object["agent_api_key"] = .string(a.apiKey)
        return .object(object)
    }

    static func deployment(_ d: Deployment) -> JSONValue {
        [
            "id": .string(d.id),
            "agent_id": .string(d.agentId),
            "docker_image": .string(d.dockerImage),
            "registration_metadata": JSONValue(d.registrationMetadata),
            "status": .string(d.status.rawValue),
            "status_reason": JSONValue(d.statusReason),
            "acp_url": JSONValue(d.acpURL),
            "is_production": .bool(d.isProduction),
            "sgp_deploy_id": JSONValue(d.sgpDeployId),
            "helm_release_name": JSONValue(d.helmReleaseName),
            "created_at": .string(d.createdAt.rfc3339),
            "registered_at": JSONValue(d.registeredAt),
            "ready_at": JSONValue(d.readyAt),
            "promoted_at": JSONValue(d.promotedAt),
            "expires_at": JSONValue(d.expiresAt),
            "running_tasks": .number(Double(d.runningTasks)),
        ]
    }

    static func event(_ e: Event) -> JSONValue {
        [
            "id": .string(e.id),
            "agent_id": .string(e.agentId),
            "deployment_id": JSONValue(e.deploymentId),
            "type": .string(e.type.rawValue),
            "reason": JSONValue(e.reason),
            "message": .string(e.message),
            "actor": .string(e.actor),
            "created_at": .string(e.createdAt.rfc3339),
        ]
    }

    static func error(_ error: CutoverError) -> JSONValue {
        var data: JSONValue = .null
        if case .validation(let problems) = error {
            data = ["errors": .array(problems.map { ["field": .string($0.field), "problem": .string($0.problem)] })]
        }
        return ["message": .string(error.message), "code": .number(Double(error.status)), "data": data]
    }

    static func response(
        _ value: JSONValue, status: HTTPResponse.Status = .ok, dryRun: Bool = false
    ) -> Response {
        let bytes = JSONCodec.serialize(value)
        var headers: HTTPFields = [.contentType: "application/json"]
        if dryRun { headers[.dryRun] = "true" }
        // Stainless clients (agentex-client) retry 409s by default; Cutover's 4xx answers are final.
        if (400..<500).contains(status.code), status != .tooManyRequests { headers[.shouldRetry] = "false" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

extension HTTPField.Name {
    static let dryRun = Self("x-cutover-dry-run")!
    static let agentAPIKey = Self("x-agent-api-key")!
    static let shouldRetry = Self("x-should-retry")!
}
