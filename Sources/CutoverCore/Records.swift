public enum AgentStatus: String, Sendable, CaseIterable, Codable {
    case ready = "Ready", failed = "Failed", unknown = "Unknown", deleted = "Deleted"
    case unhealthy = "Unhealthy", buildOnly = "BuildOnly"
}

public enum ACPType: String, Sendable, CaseIterable, Codable {
    case sync, async, agentic
}

public enum AgentInputType: String, Sendable, CaseIterable, Codable {
    case text, json
}

public enum DeploymentStatus: String, Sendable, CaseIterable, Codable {
    case pending = "Pending", ready = "Ready", failed = "Failed"
}

public struct Agent: Sendable, Equatable {
    public var id: String
    public var name: String
    public var description: String
    public var status: AgentStatus
    public var statusReason: String?
    public var acpType: ACPType
    public var agentInputType: AgentInputType?
    public var registrationMetadata: [String: JSONValue]?
    public var registeredAt: Timestamp?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var productionDeploymentId: String?
    /// The legacy route, set by a registration without `deployment_id`. Internal: never serialized.
    public var acpURL: String?
    /// Internal: returned only by registration.
    public var apiKey: String

    public init(
        id: String, name: String, description: String, status: AgentStatus, statusReason: String? = nil,
        acpType: ACPType, agentInputType: AgentInputType? = nil, registrationMetadata: [String: JSONValue]? = nil,
        registeredAt: Timestamp? = nil, createdAt: Timestamp, updatedAt: Timestamp,
        productionDeploymentId: String? = nil, acpURL: String? = nil, apiKey: String
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.status = status
        self.statusReason = statusReason
        self.acpType = acpType
        self.agentInputType = agentInputType
        self.registrationMetadata = registrationMetadata
        self.registeredAt = registeredAt
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.productionDeploymentId = productionDeploymentId
        self.acpURL = acpURL
        self.apiKey = apiKey
    }
}

public struct Deployment: Sendable, Equatable {
    public var id: String
    public var agentId: String
    public var dockerImage: String
    public var registrationMetadata: [String: JSONValue]?
    public var status: DeploymentStatus
    public var statusReason: String?
    public var acpURL: String?
    public var isProduction: Bool
    public var sgpDeployId: String?
    public var helmReleaseName: String?
    public var createdAt: Timestamp
    public var registeredAt: Timestamp?
    public var readyAt: Timestamp?
    public var promotedAt: Timestamp?
    /// Internal: when this deployment last stopped being production; orders rollback targets.
    public var demotedAt: Timestamp?
    public var expiresAt: Timestamp?
    /// Internal: when the deployment turned `Failed`; starts the failed TTL of retention.
    public var failedAt: Timestamp?
    /// Internal: the error of the last failed readiness probe of the current registration, if any.
    public var lastProbeError: String?
    /// Read-only: the RUNNING tasks this deployment owns (task affinity keeps them here).
    public var runningTasks = 0

    public var isDeleted: Bool { expiresAt != nil }
    /// It has been production at some point, so it is a rollback candidate.
    public var wasProduction: Bool { promotedAt != nil }

    public init(
        id: String, agentId: String, dockerImage: String, registrationMetadata: [String: JSONValue]? = nil,
        status: DeploymentStatus = .pending, statusReason: String? = nil, acpURL: String? = nil,
        isProduction: Bool = false, sgpDeployId: String? = nil, helmReleaseName: String? = nil,
        createdAt: Timestamp, registeredAt: Timestamp? = nil, readyAt: Timestamp? = nil,
        promotedAt: Timestamp? = nil, demotedAt: Timestamp? = nil, expiresAt: Timestamp? = nil,
        failedAt: Timestamp? = nil, lastProbeError: String? = nil
    ) {
        self.id = id
        self.agentId = agentId
        self.dockerImage = dockerImage
        self.registrationMetadata = registrationMetadata
        self.status = status
        self.statusReason = statusReason
        self.acpURL = acpURL
        self.isProduction = isProduction
        self.sgpDeployId = sgpDeployId
        self.helmReleaseName = helmReleaseName
        self.createdAt = createdAt
        self.registeredAt = registeredAt
        self.readyAt = readyAt
        self.promotedAt = promotedAt
        self.demotedAt = demotedAt
        self.expiresAt = expiresAt
        self.failedAt = failedAt
        self.lastProbeError = lastProbeError
    }
}

public enum EventType: String, Sendable, CaseIterable, Codable {
    case created = "Created", registered = "Registered", ready = "Ready", failed = "Failed"
    case promoted = "Promoted", autoPromoted = "AutoPromoted", rolledBack = "RolledBack", demoted = "Demoted"
    case productionCleared = "ProductionCleared", deleted = "Deleted", restored = "Restored"
    case expired = "Expired", garbageCollected = "GarbageCollected"
    /// A task's owner deployment was gone, so the task moved to the agent's current route.
    case taskMoved = "TaskMoved"
}

/// Who caused a state change, as recorded on its event.
public enum Actor: Sendable, Equatable, CustomStringConvertible {
    case admin
    case agent(String)
    case registration
    case controller

    public var description: String {
        switch self {
        case .admin: "admin"
        case .agent(let id): "agent:\(id)"
        case .registration: "registration"
        case .controller: "controller"
        }
    }
}

public struct Event: Sendable, Equatable {
    public var id: String
    public var agentId: String
    public var deploymentId: String?
    public var type: EventType
    public var reason: String?
    public var message: String
    public var actor: String
    public var createdAt: Timestamp

    public init(
        id: String, agentId: String, deploymentId: String?, type: EventType, reason: String? = nil,
        message: String, actor: String, createdAt: Timestamp
    ) {
        self.id = id
        self.agentId = agentId
        self.deploymentId = deploymentId
        self.type = type
        self.reason = reason
        self.message = message
        self.actor = actor
        self.createdAt = createdAt
    }
}

/// An event before the store gives it an id: what a decision asks to be recorded.
public struct EventDraft: Sendable, Equatable {
    public var deploymentId: String?
    public var type: EventType
    public var reason: String?
    public var message: String

    public init(deploymentId: String?, type: EventType, reason: String? = nil, message: String) {
        self.deploymentId = deploymentId
        self.type = type
        self.reason = reason
        self.message = message
    }
}
