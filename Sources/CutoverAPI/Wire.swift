import CutoverCore
import HTTPTypes
import Hummingbird

/// The JSON shapes of the API: snake_case, every optional field present (null when unset).
enum Wire {
    /// An agent; with `apiKey` (a registration's answer, the only time the key is shown) its key too.
    static func agent(_ a: Agent, apiKey: Bool = false, into out: inout [UInt8]) {
        JSONObjectWriter.write(into: &out) { o in
            o.field("acp_type", a.acpType.rawValue)
            if apiKey { o.field("agent_api_key", a.apiKey) }
            o.field("agent_input_type", a.agentInputType?.rawValue)
            o.field("created_at", a.createdAt)
            o.field("description", a.description)
            o.field("id", a.id)
            o.field("name", a.name)
            o.field("production_deployment_id", a.productionDeploymentId)
            o.field("registered_at", a.registeredAt)
            o.field("registration_metadata", a.registrationMetadata)
            o.field("status", a.status.rawValue)
            o.field("status_reason", a.statusReason)
            o.field("updated_at", a.updatedAt)
        }
    }

    static func deployment(_ d: Deployment, into out: inout [UInt8]) {
        JSONObjectWriter.write(into: &out) { o in
            o.field("acp_url", d.acpURL)
            o.field("agent_id", d.agentId)
            o.field("created_at", d.createdAt)
            o.field("docker_image", d.dockerImage)
            o.field("expires_at", d.expiresAt)
            o.field("helm_release_name", d.helmReleaseName)
            o.field("id", d.id)
            o.field("is_production", d.isProduction)
            o.field("promoted_at", d.promotedAt)
            o.field("ready_at", d.readyAt)
            o.field("registered_at", d.registeredAt)
            o.field("registration_metadata", d.registrationMetadata)
            o.field("running_tasks", Int64(d.runningTasks))
            o.field("sgp_deploy_id", d.sgpDeployId)
            o.field("status", d.status.rawValue)
            o.field("status_reason", d.statusReason)
        }
    }

    static func event(_ e: Event, into out: inout [UInt8]) {
        JSONObjectWriter.write(into: &out) { o in
            o.field("actor", e.actor)
            o.field("agent_id", e.agentId)
            o.field("created_at", e.createdAt)
            o.field("deployment_id", e.deploymentId)
            o.field("id", e.id)
            o.field("message", e.message)
            o.field("reason", e.reason)
            o.field("type", e.type.rawValue)
        }
    }

    /// A registration's answer: the agent with its key, the only time the key is shown.
    static func registration(_ a: Agent) -> [UInt8] {
        var out: [UInt8] = []
        agent(a, apiKey: true, into: &out)
        return out
    }

    /// A record as the whole response body.
    static func response(_ record: some WireRecord, dryRun: Bool = false) -> Response {
        var out: [UInt8] = []
        out.reserveCapacity(640)
        record.write(into: &out)
        return response(bytes: out, dryRun: dryRun)
    }

    /// Records as a JSON array.
    static func response(_ records: [some WireRecord]) -> Response {
        response(bytes: JSONObjectWriter.array(records) { $0.write(into: &$1) })
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
        response(bytes: JSONCodec.serialize(value), status: status, dryRun: dryRun)
    }

    static func response(bytes: [UInt8], status: HTTPResponse.Status = .ok, dryRun: Bool = false) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if dryRun { headers[.dryRun] = "true" }
        // Stainless clients (agentex-client) retry 409s by default; Cutover's 4xx answers are final.
        if (400..<500).contains(status.code), status != .tooManyRequests { headers[.shouldRetry] = "false" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// A record with one JSON shape in the API, written straight to bytes.
protocol WireRecord {
    func write(into out: inout [UInt8])
}

extension Agent: WireRecord {
    func write(into out: inout [UInt8]) { Wire.agent(self, into: &out) }
}

extension Deployment: WireRecord {
    func write(into out: inout [UInt8]) { Wire.deployment(self, into: &out) }
}

extension Event: WireRecord {
    func write(into out: inout [UInt8]) { Wire.event(self, into: &out) }
}

extension HTTPField.Name {
    static let dryRun = Self("x-cutover-dry-run")!
    static let agentAPIKey = Self("x-agent-api-key")!
    static let shouldRetry = Self("x-should-retry")!
}
