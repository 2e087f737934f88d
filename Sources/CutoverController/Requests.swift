import CutoverCore

/// Who is asking and how: carried from the API into every unit of work.
public struct RequestContext: Sendable {
    public var actor: Actor
    public var dryRun: Bool
    /// The time the unit of work writes. Re-read by `lockedNow()` once the agent row is locked.
    public private(set) var now: Timestamp

    public init(actor: Actor, dryRun: Bool = false) {
        self.actor = actor
        self.dryRun = dryRun
        self.now = .now()
    }

    /// The context with the clock read now, to be called once the agent's row lock is held: writers of
    /// one agent then take their times in commit order, so events and `demoted_at` never contradict it.
    public func lockedNow() -> RequestContext {
        var copy = self
        copy.now = .now()
        return copy
    }
}

/// A validated `POST /agents/register`.
public struct RegistrationRequest: Sendable {
    public var name: String
    public var description: String
    public var acpURL: String
    public var acpType: ACPType
    public var agentId: String?
    public var registrationMetadata: [String: JSONValue]?
    public var agentInputType: AgentInputType?

    public init(
        name: String, description: String, acpURL: String, acpType: ACPType, agentId: String? = nil,
        registrationMetadata: [String: JSONValue]? = nil, agentInputType: AgentInputType? = nil
    ) {
        self.name = name
        self.description = description
        self.acpURL = acpURL
        self.acpType = acpType
        self.agentId = agentId
        self.registrationMetadata = registrationMetadata
        self.agentInputType = agentInputType
    }

    /// Present ⇒ a deployment-scoped registration of that deployment.
    public var deploymentId: String? { registrationMetadata?["deployment_id"]?.stringValue }

    /// The image the pod names, if any (a new deployment without one takes its agent's newest image).
    public var image: String? { registrationMetadata?["docker_image"]?.stringValue }
}

/// A validated `POST /agents/{id}/deployments`.
public struct DeploymentRequest: Sendable {
    public var dockerImage: String
    public var id: String?
    public var registrationMetadata: [String: JSONValue]?
    public var sgpDeployId: String?
    public var helmReleaseName: String?

    public init(
        dockerImage: String, id: String? = nil, registrationMetadata: [String: JSONValue]? = nil,
        sgpDeployId: String? = nil, helmReleaseName: String? = nil
    ) {
        self.dockerImage = dockerImage
        self.id = id
        self.registrationMetadata = registrationMetadata
        self.sgpDeployId = sgpDeployId
        self.helmReleaseName = helmReleaseName
    }
}

/// A validated `POST /agents/register-build`.
public struct BuildRegistrationRequest: Sendable {
    public var name: String
    public var description: String
    public var registrationMetadata: [String: JSONValue]?
    public var agentInputType: AgentInputType?

    public init(
        name: String, description: String, registrationMetadata: [String: JSONValue]? = nil,
        agentInputType: AgentInputType? = nil
    ) {
        self.name = name
        self.description = description
        self.registrationMetadata = registrationMetadata
        self.agentInputType = agentInputType
    }
}
