import CutoverCore
import CutoverRuntime
import CutoverStore
import Logging

/// Settings of the control plane's own decisions (the controller's runtime settings live elsewhere).
public struct ControlPlaneSettings: Sendable {
    public var reconcile: ReconcilePolicy
    public var deletionGrace: Duration

    public init(reconcile: ReconcilePolicy = .init(), deletionGrace: Duration = .seconds(24 * 3600)) {
        self.reconcile = reconcile
        self.deletionGrace = deletionGrace
    }
}

/// Every change to desired state, each one transaction that locks the agent row first (so writers of one
/// agent serialize), checks, writes and records its events.
public final class ControlPlane: Sendable {
    public let store: any Store
    public let settings: ControlPlaneSettings
    let logger: Logger
    /// Registrations of one agent's deployments (PostgreSQL), gathered per agent, keyed by whether they
    /// name an image: see `register`.
    private let registrations = WriteBatches<Bool, RegistrationRequest, Agent?>()

    public init(store: any Store, settings: ControlPlaneSettings, logger: Logger) {
        self.store = store
        self.settings = settings
        self.logger = logger
    }

    // MARK: Registration

    public func register(_ request: RegistrationRequest, _ ctx: RequestContext) async throws -> Agent {
        if request.deploymentId != nil, !ctx.dryRun, store.runsOneStatementUnits {
            // Registrations of one agent serialize on its row lock, and a queue of statements waiting on one
            // row costs PostgreSQL a wake-up and a re-check per hand-over: with 16 at a time it wrote a
            // third fewer per second than one at a time. The ones that come while one agent's statement
            // runs wait and go together, one statement for the lot. Whether a registration names an image
            // keeps batches apart, so that each new deployment without one takes the image it would have
            // taken alone (`registerDeploymentsInOneStatement`).
            let line = request.agentId.map { "id \($0)" } ?? "name \(request.name)"
            // What it adds to the statement, against the batch's limit in bytes.
            let size = request.acpURL.utf8.count + (request.registrationMetadata.map { JSONCodec.serialize(.object($0)).count } ?? 0)
            let store = store
            if let agent = try await registrations.submit(
                request, on: line, key: request.image != nil, size: size,
                run: { _, batch in try await Self.registerInOneStatement(store, batch) })
            {
                return agent
            }
        }
        return try await store.transaction(dryRun: ctx.dryRun) { tx in
            let agent = try await Self.findOrCreateAgent(tx, id: request.agentId, name: request.name) {
                Agent(
                    id: Identifiers.uuid(), name: request.name, description: request.description,
                    status: request.deploymentId == nil ? .ready : .unknown, acpType: request.acpType,
                    agentInputType: request.agentInputType, createdAt: ctx.now, updatedAt: ctx.now,
                    apiKey: Identifiers.apiKey())
            }
            let ctx = ctx.lockedNow()
            if let deploymentId = request.deploymentId {
                try Self.requireNotDeleted(agent)
                try await Self.observeRegistration(tx, agent: agent, deploymentId: deploymentId, request, ctx)
                return agent
            }
            return try await Self.registerLegacy(tx, agent: agent, request, ctx)
        }
    }

    /// Finds the agent by id (404 when unknown) or by name, or creates it; concurrent first registrations of
    /// one name create one agent, because the insert loses quietly to the winner and then reads it.
    static func findOrCreateAgent(
        _ tx: StoreTransaction, id: String?, name: String, make: () -> Agent
    ) async throws -> Agent {
        if let id {
            guard let agent = try await tx.agent(id: id, lock: true) else { throw CutoverError.agentNotFound(id) }
            return agent
        }
        if let agent = try await tx.agent(name: name, lock: true) { return agent }
        let fresh = make()
        if try await tx.insertAgentIfAbsent(fresh) { return fresh }
        guard let agent = try await tx.agent(name: name, lock: true) else {
            throw CutoverError.conflict("agent '\(name)' is being created concurrently; retry")
        }
        return agent
    }

    /// The events of a pod's registration of deployment `deploymentId`: `created` too when it is new.
    static func registrationEvents(
        deploymentId: String, _ request: RegistrationRequest
    ) -> (created: EventDraft, registered: EventDraft) {
        (EventDraft(deploymentId: deploymentId, type: .created, message: "created by the registration of a pod"),
         EventDraft(deploymentId: deploymentId, type: .registered, message: "pod registered at \(request.acpURL)"))
    }

    /// Deployment-scoped registrations of one agent (all by id or all by name, all with an image or none),
    /// as one statement (PostgreSQL); each one's agent, or nil when the statement does not apply to it
    /// (SQLite, an agent to create, a deleted agent, an id of another agent, an id already earlier in the
    /// batch) and nothing was written for it: the transaction then does it, or gives the error.
    static func registerInOneStatement(_ store: any Store, _ batch: [RegistrationRequest]) async throws -> [Agent?] {
        guard store.runsOneStatementUnits, let first = batch.first else { return batch.map { _ in nil } }
        // PostgreSQL's ON CONFLICT cannot touch one row twice in a statement: a repeat goes on its own.
        var ids: Set<String> = []
        let included = batch.map { $0.deploymentId.map { ids.insert($0).inserted } ?? false }
        let registrations = zip(batch, included).compactMap { request, included -> StoreTransaction.DeploymentRegistration? in
            guard included, let id = request.deploymentId else { return nil }
            let events = registrationEvents(deploymentId: id, request)
            return .init(
                id: id, image: request.image, metadata: request.registrationMetadata, acpURL: request.acpURL,
                created: events.created, registered: events.registered)
        }
        let written: (agent: Agent, registered: Set<String>)?
        do {
            written = try await store.autocommit { tx in
                try await tx.registerDeploymentsInOneStatement(
                    registrations, agent: first.agentId ?? first.name, byName: first.agentId == nil, actor: .registration,
                    // Read once the session is had: a wait for a pooled connection would only widen the gap the
                    // statement closes (to the agent's newest event time, once it holds the lock).
                    at: .now())
            }
        } catch CutoverError.conflict where batch.count > 1 {
            // One id was taken by another agent's garbage collection as the statement waited (the only
            // conflict it raises, and for the whole statement): each goes on its own, to its own answer.
            return batch.map { _ in nil }
        }
        return zip(batch, included).map { request, included in
            guard included, let written, let id = request.deploymentId, written.registered.contains(id) else { return nil }
            return written.agent
        }
    }

    /// A pod of one deployment registered: record the observation on the deployment only.
    static func observeRegistration(
        _ tx: StoreTransaction, agent: Agent, deploymentId: String, _ request: RegistrationRequest,
        _ ctx: RequestContext
    ) async throws {
        let (created, registered) = registrationEvents(deploymentId: deploymentId, request)
        // Insert first: a new deployment (the common case) then costs no extra read; an existing one is
        // left untouched by the insert and locked below.
        // A registration that names no image takes the agent's newest deployment's (read by the insert).
        let fresh = Deployment(
            id: deploymentId, agentId: agent.id, dockerImage: request.image ?? "unknown",
            registrationMetadata: request.registrationMetadata, acpURL: request.acpURL, createdAt: ctx.now,
            registeredAt: ctx.now)
        if try await tx.insertDeploymentIfAbsent(fresh, inheritImage: request.image == nil) {
            tx.appendEvents(agentId: agent.id, [created, registered], actor: .registration, at: ctx.now)
            return
        }
        let deployment = try await tx.deployment(id: deploymentId, lock: true)
        guard var deployment, deployment.agentId == agent.id else {
            throw CutoverError.conflict(
                "deployment id '\(deploymentId)' belongs to another agent; a deployment never changes owner")
        }
        deployment.acpURL = request.acpURL
        deployment.registeredAt = ctx.now
        // A new registration has not been probed: an earlier registration's probe error is not its own.
        deployment.lastProbeError = nil
        if let metadata = request.registrationMetadata { deployment.registrationMetadata = metadata }
        try await tx.updateDeployment(deployment)
        tx.appendEvents(agentId: agent.id, [registered], actor: .registration, at: ctx.now)
    }

    /// A registration without a deployment id: the agent's legacy route, which clears production (as in Agentex).
    static func registerLegacy(
        _ tx: StoreTransaction, agent: Agent, _ request: RegistrationRequest, _ ctx: RequestContext
    ) async throws -> Agent {
        var agent = agent
        agent.acpURL = request.acpURL
        agent.description = request.description
        agent.acpType = request.acpType
        if let input = request.agentInputType { agent.agentInputType = input }
        if let metadata = request.registrationMetadata {
            agent.registrationMetadata = (agent.registrationMetadata ?? [:]).merging(metadata) { _, new in new }
        }
        agent.status = .ready
        agent.statusReason = nil
        agent.registeredAt = ctx.now
        agent.updatedAt = ctx.now
        if let productionId = agent.productionDeploymentId {
            if var production = try await tx.deployment(id: productionId, lock: true) {
                production.isProduction = false
                production.demotedAt = ctx.now
                try await tx.updateDeployment(production)
            }
            agent.productionDeploymentId = nil
            tx.appendEvents(
                agentId: agent.id,
                [.init(deploymentId: productionId, type: .productionCleared,
                      message: "a legacy registration (no deployment_id) took over routing from '\(productionId)'")],
                actor: .registration, at: ctx.now)
        }
        try await tx.updateAgent(agent)
        tx.appendEvents(
            agentId: agent.id,
            [.init(deploymentId: nil, type: .registered, message: "legacy registration at \(request.acpURL)")],
            actor: .registration, at: ctx.now)
        return agent
    }

    public func registerBuild(_ request: BuildRegistrationRequest, _ ctx: RequestContext) async throws -> Agent {
        try await store.transaction(dryRun: ctx.dryRun) { tx in
            try await Self.findOrCreateAgent(tx, id: nil, name: request.name) {
                Agent(
                    id: Identifiers.uuid(), name: request.name, description: request.description, status: .buildOnly,
                    acpType: .async, agentInputType: request.agentInputType,
                    registrationMetadata: request.registrationMetadata, createdAt: ctx.now, updatedAt: ctx.now,
                    apiKey: Identifiers.apiKey())
            }
        }
    }

    public func deleteAgent(id: String, _ ctx: RequestContext) async throws -> Agent {
        try await store.transaction(dryRun: ctx.dryRun) { tx in
            guard var agent = try await tx.agent(id: id, lock: true) else { throw CutoverError.agentNotFound(id) }
            let ctx = ctx.lockedNow()
            guard agent.status != .deleted else { return agent }
            agent.status = .deleted
            agent.updatedAt = ctx.now
            try await tx.updateAgent(agent)
            tx.appendEvents(
                agentId: agent.id,
                [.init(deploymentId: nil, type: .deleted, message: "agent '\(agent.name)' deleted")],
                actor: ctx.actor, at: ctx.now)
            return agent
        }
    }

    // MARK: Deployments

    public func createDeployment(
        agentId: String, _ request: DeploymentRequest, _ ctx: RequestContext
    ) async throws -> Deployment {
        // A fresh id cannot conflict with anything, so on PostgreSQL the create is one statement.
        if request.id == nil, !ctx.dryRun, store.runsOneStatementUnits, let created = try await store.autocommit({ tx in
            // The clock read once the session is had, as for registrations.
            let fresh = self.newDeployment(id: Identifiers.uuid(), agentId: agentId, request, at: .now())
            return try await tx.createDeploymentInOneStatement(
                fresh, deadlineAfter: self.settings.reconcile.progressDeadline, created: Self.created(fresh),
                actor: ctx.actor)
        }) {
            return created
        }
        return try await store.transaction(dryRun: ctx.dryRun) { tx in
            let agent = try await Self.lockAgent(tx, agentId)
            let ctx = ctx.lockedNow()
            try Self.requireNotDeleted(agent)
            let fresh = self.newDeployment(id: request.id ?? Identifiers.uuid(), agentId: agent.id, request, at: ctx.now)
            guard try await tx.insertDeploymentIfAbsent(fresh, generatedId: request.id == nil) else {
                guard let existing = try await tx.deployment(id: fresh.id), existing.agentId == agent.id else {
                    throw CutoverError.conflict("deployment id '\(fresh.id)' belongs to another agent")
                }
                return existing
            }
            tx.appendEvents(agentId: agent.id, [Self.created(fresh)], actor: ctx.actor, at: ctx.now)
            return fresh
        }
    }

    /// A created deployment, waiting for its pod's registration until the progress deadline.
    private func newDeployment(id: String, agentId: String, _ request: DeploymentRequest, at now: Timestamp) -> Deployment {
        let deadline = now + settings.reconcile.progressDeadline
        return Deployment(
            id: id, agentId: agentId, dockerImage: request.dockerImage, registrationMetadata: request.registrationMetadata,
            statusReason: Reconcile.pendingHint(.awaitRegistration(deadline: deadline)),
            sgpDeployId: request.sgpDeployId, helmReleaseName: request.helmReleaseName, createdAt: now)
    }

    private static func created(_ d: Deployment) -> EventDraft {
        EventDraft(deploymentId: d.id, type: .created, message: "created with image \(d.dockerImage)")
    }

    public func promote(
        agentId: String, deploymentId: String, reason: String?, _ ctx: RequestContext
    ) async throws -> Deployment {
        if !ctx.dryRun, store.runsOneStatementUnits, let promoted = try await Self.promoteInOneStatement(
            store, agentId: agentId, deploymentId: deploymentId, reason: reason, actor: ctx.actor)
        {
            recordChange(promoted, kind: .promote, agentId: agentId, ctx)
            return promoted.deployment
        }
        let promoted = try await store.transaction(dryRun: ctx.dryRun) { tx in
            let locked = try await Self.lockWithProduction(tx, agentId: agentId, deploymentId)
            let agent = locked.agent
            let ctx = ctx.lockedNow()
            guard let target = locked.requested else {
                throw CutoverError.deploymentNotFound(deploymentId, agent: agent.id)
            }
            return try await Self.apply(
                tx, agent: agent, target: target, current: locked.production, kind: .promote, reason: reason, ctx)
        }
        recordChange(promoted, kind: .promote, agentId: agentId, ctx)
        return promoted.deployment
    }

    /// On PostgreSQL, the promotion as one statement when it can be made (see
    /// `StoreTransaction.promoteInOneStatement`), with the events `Promotion.plan` would write; nil when the
    /// promotion's transaction must decide.
    static func promoteInOneStatement(
        _ store: any Store, agentId: String, deploymentId: String, reason: String?, actor: Actor
    ) async throws -> (deployment: Deployment, changed: Bool)? {
        try await store.autocommit { tx in
            try await tx.promoteInOneStatement(
                agentId: agentId, deploymentId: deploymentId,
                events: (
                    alone: Promotion.events(kind: .promote, target: deploymentId, demoted: nil, reason: reason),
                    replacing: Promotion.events(
                        kind: .promote, target: deploymentId, demoted: Self.demotedMarker, reason: reason)),
                marker: Self.demotedMarker, madeReady: Promotion.madeReady.map(\.rawValue), actor: actor,
                at: .now())
        }
    }

    /// Stands for the demoted deployment's id in the events a one-statement promotion writes: no deployment
    /// id holds a control character.
    private static let demotedMarker = "\u{1}"

    /// Logs a committed promotion or rollback and counts it (`cutover_promotions_total{kind}`).
    private func recordChange(
        _ change: (deployment: Deployment, changed: Bool), kind: PromotionKind, agentId: String, _ ctx: RequestContext
    ) {
        guard !ctx.dryRun, change.changed else { return }
        ControllerMetrics.promotions(kind).increment()
        logger.info(
            "\(kind == .rollback ? "rolled back" : "promoted")",
            metadata: ["agent": "\(agentId)", "deployment": "\(change.deployment.id)", "actor": "\(ctx.actor)"])
    }

    public func rollback(
        agentId: String, to requestedId: String?, reason: String?, _ ctx: RequestContext
    ) async throws -> Deployment {
        let restored = try await store.transaction(dryRun: ctx.dryRun) { tx in
            let locked = try await Self.lockWithProduction(tx, agentId: agentId, requestedId)
            let agent = locked.agent
            let ctx = ctx.lockedNow()
            let history = try await tx.formerProductionDeployments(agentId: agent.id)
            let target = try Rollback.target(
                agent: agent, requested: locked.requested, requestedId: requestedId, history: history)
            return try await Self.apply(
                tx, agent: agent, target: target, current: locked.production, kind: .rollback, reason: reason, ctx)
        }
        recordChange(restored, kind: .rollback, agentId: agentId, ctx)
        return restored.deployment
    }

    /// Writes a promotion plan: the demotion, the promotion and the agent's new pointer join the statement
    /// that ends the unit of work (nothing reads them back), the demotion ordered first so the
    /// one-production index never sees two. Returns the production deployment and whether anything
    /// changed (promoting production again does not).
    static func apply(
        _ tx: StoreTransaction, agent: Agent, target: Deployment, current: Deployment?, kind: PromotionKind,
        reason: String?, _ ctx: RequestContext
    ) async throws -> (deployment: Deployment, changed: Bool) {
        let plan = try Promotion.plan(
            agent: agent, target: target, current: current, kind: kind, reason: reason, now: ctx.now)
        if plan.isNoop { return (plan.target, false) }
        if let demoted = plan.demoted {
            try await tx.replaceProductionAtFinish(demoted: demoted, promoted: plan.target)
        } else {
            try await tx.updateDeploymentAtFinish(plan.target)
        }
        try await tx.updateAgentAtFinish(plan.agent)
        tx.appendEvents(agentId: agent.id, plan.events, actor: ctx.actor, at: ctx.now)
        return (plan.target, true)
    }

    public func deleteDeployment(
        agentId: String, deploymentId: String, _ ctx: RequestContext
    ) async throws -> Deployment {
        try await store.transaction(dryRun: ctx.dryRun) { tx in
            let agent = try await Self.lockAgent(tx, agentId)
            let ctx = ctx.lockedNow()
            var deployment = try await Self.ownedDeployment(tx, agent: agent, deploymentId)
            guard !deployment.isProduction else {
                throw CutoverError.conflict(
                    "deployment '\(deploymentId)' is production; promote or roll back to another deployment before deleting it")
            }
            guard !deployment.isDeleted else { return deployment }
            deployment.expiresAt = ctx.now + self.settings.deletionGrace
            try await tx.updateDeployment(deployment)
            tx.appendEvents(
                agentId: agent.id,
                [.init(deploymentId: deploymentId, type: .deleted,
                      message: "soft-deleted; restorable until \(deployment.expiresAt!)")],
                actor: ctx.actor, at: ctx.now)
            return deployment
        }
    }

    public func restoreDeployment(
        agentId: String, deploymentId: String, _ ctx: RequestContext
    ) async throws -> Deployment {
        try await store.transaction(dryRun: ctx.dryRun) { tx in
            let agent = try await Self.lockAgent(tx, agentId)
            let ctx = ctx.lockedNow()
            var deployment = try await Self.ownedDeployment(tx, agent: agent, deploymentId)
            guard deployment.isDeleted else { return deployment }
            deployment.expiresAt = nil
            try await tx.updateDeployment(deployment)
            tx.appendEvents(
                agentId: agent.id,
                [.init(deploymentId: deploymentId, type: .restored, message: "restored")],
                actor: ctx.actor, at: ctx.now)
            return deployment
        }
    }

    // MARK: Helpers

    /// A deleted agent routes nowhere, so it takes no deployments: created or registered alike.
    static func requireNotDeleted(_ agent: Agent) throws {
        guard agent.status != .deleted else {
            throw CutoverError.conflict("agent '\(agent.name)' is deleted; it takes no new deployments")
        }
    }

    static func lockAgent(_ tx: StoreTransaction, _ id: String) async throws -> Agent {
        guard let agent = try await tx.agent(id: id, lock: true) else { throw CutoverError.agentNotFound(id) }
        return agent
    }

    /// Agent `agentId`, its deployment `id` (nil when it has none of that id) and its production
    /// deployment, locked in one statement.
    static func lockWithProduction(
        _ tx: StoreTransaction, agentId: String, _ id: String?
    ) async throws -> (agent: Agent, requested: Deployment?, production: Deployment?) {
        let locked = try await tx.lockAgentsAndDeployments(
            agentIds: [agentId], deploymentIds: Set([id].compactMap { $0 }), production: true)
        guard let agent = locked.agents[agentId] else { throw CutoverError.agentNotFound(agentId) }
        return (agent, id.flatMap { locked.deployments[$0] }, agent.productionDeploymentId.flatMap { locked.deployments[$0] })
    }

    static func ownedDeployment(_ tx: StoreTransaction, agent: Agent, _ id: String) async throws -> Deployment {
        guard let deployment = try await tx.deployment(id: id, lock: true), deployment.agentId == agent.id else {
            throw CutoverError.deploymentNotFound(id, agent: agent.id)
        }
        return deployment
    }
}
