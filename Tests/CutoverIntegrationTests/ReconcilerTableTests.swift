import CutoverController
import CutoverCore
import CutoverRuntime
import CutoverStore
import Logging
import Synchronization
import Testing

// Table tests of the two reconcilers, in the style of Knative's: each row gives the records at the start,
// what the outside world answers (the probe) and the time (a ManualClock), runs ONE reconcile of one key
// against a real store, and states the rows, the events and the requeue it expects. Nothing here sleeps.

private let t0 = Timestamp(microseconds: 1_800_000_000_000_000)
private let deadline = t0 + .seconds(600)
private let podURL = "http://10.0.0.7:8000"
private let probeURL = podURL + "/healthz"
private let waitingHint = "WaitingForRegistration: no pod has registered yet (deadline \(deadline))"

private let baseAgent = Agent(
    id: "agent-1", name: "app", description: "", status: .unknown, acpType: .async, createdAt: t0,
    updatedAt: t0, apiKey: String(repeating: "a", count: 64))
private let otherAgent = Agent(
    id: "agent-2", name: "other", description: "", status: .ready, acpType: .async, createdAt: t0,
    updatedAt: t0, apiKey: String(repeating: "b", count: 64))

/// `d1`, created at `t0`, no pod yet.
private let unregistered = Deployment(id: "d1", agentId: "agent-1", dockerImage: "img:1", createdAt: t0)
/// `d1` with a pod registered 5 s after creation, never probed.
private let registered = unregistered.with {
    $0.acpURL = podURL
    $0.registeredAt = t0 + .seconds(5)
}
/// `d0`, the agent's production deployment, an hour older than `d1`.
private let production = Deployment(
    id: "d0", agentId: "agent-1", dockerImage: "img:0", status: .ready, acpURL: "http://10.0.0.6:8000",
    isProduction: true, createdAt: t0 + .seconds(-3_600), registeredAt: t0 + .seconds(-3_590),
    readyAt: t0 + .seconds(-3_580), promotedAt: t0 + .seconds(-3_580))
private let withProduction = baseAgent.with { $0.productionDeploymentId = "d0" }

private let logger: Logger = {
    var logger = Logger(label: "cutover-table-test")
    logger.logLevel = .warning
    return logger
}()

// MARK: DeploymentReconciler

@Suite("DeploymentReconciler, one reconcile per row")
struct DeploymentReconcilerTableTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var agent = baseAgent
        var deployments: [Deployment]
        var key = "d1"
        var policy = ReconcilePolicy()
        /// What every probe answers.
        var probe: ProbeOutcome = .healthy
        /// The time of the reconcile, after `t0`.
        var at: Duration
        /// The deployments afterwards (all of the agent's, by id).
        var want: [Deployment]
        /// The agent afterwards; nil: unchanged.
        var wantAgent: Agent?
        /// The events written, in order: type and reason.
        var wantEvents: [(EventType, String?)] = []
        var wantProbes: [String] = []
        var wantRequeue: Requeue
        /// Whether it writes at all (a transaction); a row that writes nothing opens none.
        var writes: Bool
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        .init(name: "unregistered before the deadline: the waiting hint, requeued at the deadline",
              deployments: [unregistered], at: .seconds(60),
              want: [unregistered.with { $0.statusReason = waitingHint }],
              wantRequeue: .at(deadline), writes: true),
        .init(name: "unregistered, hint already recorded: writes nothing, requeued at the deadline",
              deployments: [unregistered.with { $0.statusReason = waitingHint }], at: .seconds(599),
              want: [unregistered.with { $0.statusReason = waitingHint }],
              wantRequeue: .at(deadline), writes: false),
        .init(name: "unregistered at the deadline: Failed NeverRegistered",
              deployments: [unregistered.with { $0.statusReason = waitingHint }], at: .seconds(600),
              want: [unregistered.with {
                  $0.status = .failed
                  $0.statusReason = "NeverRegistered: no pod registered within 10m"
                  $0.failedAt = deadline
              }],
              wantEvents: [(.failed, "NeverRegistered")], wantRequeue: .done, writes: true),
        .init(name: "unregistered long past the deadline: Failed NeverRegistered, failed_at is now",
              deployments: [unregistered], at: .seconds(86_400),
              want: [unregistered.with {
                  $0.status = .failed
                  $0.statusReason = "NeverRegistered: no pod registered within 10m"
                  $0.failedAt = t0 + .seconds(86_400)
              }],
              wantEvents: [(.failed, "NeverRegistered")], wantRequeue: .done, writes: true),
        .init(name: "registered, healthy, no production and no legacy URL: Ready and auto-promoted",
              deployments: [registered], at: .seconds(10),
              want: [registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(10)
                  $0.isProduction = true
                  $0.promotedAt = t0 + .seconds(10)
              }],
              wantAgent: baseAgent.with {
                  $0.productionDeploymentId = "d1"
                  $0.status = .ready
                  $0.updatedAt = t0 + .seconds(10)
              },
              wantEvents: [(.ready, nil), (.autoPromoted, nil)], wantProbes: [probeURL], wantRequeue: .done,
              writes: true),
        .init(name: "registered, healthy after failed probes: Ready clears the hint and the probe error",
              deployments: [registered.with {
                  $0.statusReason = "ProbePending: connection refused"
                  $0.lastProbeError = "connection refused"
              }],
              policy: ReconcilePolicy(autoPromote: .never), at: .seconds(30),
              want: [registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(30)
              }],
              wantEvents: [(.ready, nil)], wantProbes: [probeURL], wantRequeue: .done, writes: true),
        .init(name: "registered, healthy, the agent has a production deployment: Ready, not promoted",
              agent: withProduction, deployments: [production, registered], at: .seconds(10),
              want: [production, registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(10)
              }],
              wantEvents: [(.ready, nil)], wantProbes: [probeURL], wantRequeue: .done, writes: true),
        .init(name: "registered, healthy, the agent has a legacy URL: Ready, not promoted",
              agent: baseAgent.with { $0.acpURL = "http://legacy:8000" }, deployments: [registered], at: .seconds(10),
              want: [registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(10)
              }],
              wantEvents: [(.ready, nil)], wantProbes: [probeURL], wantRequeue: .done, writes: true),
        .init(name: "registered, healthy, auto_promote: never: Ready, not promoted",
              deployments: [registered], policy: ReconcilePolicy(autoPromote: .never), at: .seconds(10),
              want: [registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(10)
              }],
              wantEvents: [(.ready, nil)], wantProbes: [probeURL], wantRequeue: .done, writes: true),
        .init(name: "registered, healthy, the agent is deleted: Ready, not promoted",
              agent: baseAgent.with { $0.status = .deleted }, deployments: [registered], at: .seconds(10),
              want: [registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(10)
              }],
              wantEvents: [(.ready, nil)], wantProbes: [probeURL], wantRequeue: .done, writes: true),
        .init(name: "registered, unhealthy before the deadline: hint and last_probe_error, backoff until the deadline",
              deployments: [registered], probe: .unhealthy("readiness probe answered HTTP 503"), at: .seconds(60),
              want: [registered.with {
                  $0.statusReason = "ProbePending: readiness probe answered HTTP 503"
                  $0.lastProbeError = "readiness probe answered HTTP 503"
              }],
              wantProbes: [probeURL], wantRequeue: .backoff(notAfter: deadline), writes: true),
        .init(name: "registered, unhealthy again with the same error: probes, writes nothing",
              deployments: [registered.with {
                  $0.statusReason = "ProbePending: readiness probe answered HTTP 503"
                  $0.lastProbeError = "readiness probe answered HTTP 503"
              }],
              probe: .unhealthy("readiness probe answered HTTP 503"), at: .seconds(120),
              want: [registered.with {
                  $0.statusReason = "ProbePending: readiness probe answered HTTP 503"
                  $0.lastProbeError = "readiness probe answered HTTP 503"
              }],
              wantProbes: [probeURL], wantRequeue: .backoff(notAfter: deadline), writes: false),
        .init(name: "registered, at the deadline with a recorded probe error: Failed ProbeFailed without probing",
              deployments: [registered.with {
                  $0.statusReason = "ProbePending: connection refused"
                  $0.lastProbeError = "connection refused"
              }],
              probe: .healthy, at: .seconds(600),
              want: [registered.with {
                  $0.status = .failed
                  $0.statusReason = "ProbeFailed: connection refused"
                  $0.lastProbeError = "connection refused"
                  $0.failedAt = deadline
              }],
              wantEvents: [(.failed, "ProbeFailed")], wantRequeue: .done, writes: true),
        .init(name: "registered, never probed, at the deadline: its one probe decides (unhealthy: Failed ProbeFailed)",
              deployments: [registered], probe: .unhealthy("readiness probe answered HTTP 500"), at: .seconds(600),
              want: [registered.with {
                  $0.status = .failed
                  $0.statusReason = "ProbeFailed: readiness probe answered HTTP 500"
                  $0.failedAt = deadline
              }],
              wantEvents: [(.failed, "ProbeFailed")], wantProbes: [probeURL], wantRequeue: .done, writes: true),
        .init(name: "registered, never probed, past the deadline: its one probe decides (healthy: Ready)",
              agent: withProduction, deployments: [production, registered], at: .seconds(700),
              want: [production, registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(700)
              }],
              wantEvents: [(.ready, nil)], wantProbes: [probeURL], wantRequeue: .done, writes: true),
        .init(name: "the probe path comes from the policy, joined to the pod's URL with one slash",
              deployments: [registered.with { $0.acpURL = podURL + "/" }],
              policy: ReconcilePolicy(autoPromote: .never, probePath: "ready"), at: .seconds(10),
              want: [registered.with {
                  $0.acpURL = podURL + "/"
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(10)
              }],
              wantEvents: [(.ready, nil)], wantProbes: [podURL + "/ready"], wantRequeue: .done, writes: true),
        .init(name: "probe: none, registered: Ready and auto-promoted without probing",
              deployments: [registered], policy: ReconcilePolicy(probe: .none), probe: .unhealthy("never asked"),
              at: .seconds(10),
              want: [registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(10)
                  $0.isProduction = true
                  $0.promotedAt = t0 + .seconds(10)
              }],
              wantAgent: baseAgent.with {
                  $0.productionDeploymentId = "d1"
                  $0.status = .ready
                  $0.updatedAt = t0 + .seconds(10)
              },
              wantEvents: [(.ready, nil), (.autoPromoted, nil)], wantRequeue: .done, writes: true),
        .init(name: "probe: none, unregistered: still waits for a registration",
              deployments: [unregistered], policy: ReconcilePolicy(probe: .none), at: .seconds(1),
              want: [unregistered.with { $0.statusReason = waitingHint }],
              wantRequeue: .at(deadline), writes: true),
        .init(name: "soft-deleted Pending deployment: done, nothing written, nothing probed",
              deployments: [registered.with { $0.expiresAt = t0 + .seconds(86_400) }], at: .seconds(700),
              want: [registered.with { $0.expiresAt = t0 + .seconds(86_400) }],
              wantRequeue: .done, writes: false),
        .init(name: "soft-deleted unregistered deployment past its deadline: not failed",
              deployments: [unregistered.with { $0.expiresAt = t0 + .seconds(60) }], at: .seconds(86_400),
              want: [unregistered.with { $0.expiresAt = t0 + .seconds(60) }],
              wantRequeue: .done, writes: false),
        .init(name: "unknown deployment: done",
              deployments: [registered], key: "ghost", at: .seconds(10), want: [registered],
              wantRequeue: .done, writes: false),
        .init(name: "Ready deployment: done, nothing probed",
              deployments: [registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(6)
              }],
              at: .seconds(10),
              want: [registered.with {
                  $0.status = .ready
                  $0.readyAt = t0 + .seconds(6)
              }],
              wantRequeue: .done, writes: false),
        .init(name: "Failed deployment: done, even when its pod is healthy now",
              deployments: [registered.with {
                  $0.status = .failed
                  $0.failedAt = deadline
              }],
              at: .seconds(900),
              want: [registered.with {
                  $0.status = .failed
                  $0.failedAt = deadline
              }],
              wantRequeue: .done, writes: false),
    ]

    @Test("one reconcile: rows, events, probes and requeue", arguments: rows, Backend.all)
    func reconcile(_ row: Row, _ backend: Backend) async throws {
        try await check(row, backend) { reconciler, key in try await reconciler.reconcile(key) }
    }

    @Test("the same rows, each key reconciled in a batch with an unknown one", arguments: rows, Backend.all)
    func reconcileInABatch(_ row: Row, _ backend: Backend) async throws {
        try await check(row, backend) { reconciler, key in
            let results = await reconciler.reconcile(batch: ["ghost-0", key])
            #expect(try results[0].get() == .done)
            return try results[1].get()
        }
    }

    private func check(
        _ row: Row, _ backend: Backend, reconcile: (DeploymentReconciler, String) async throws -> Requeue
    ) async throws {
        try await backend.withStore { base in
            try await seed(base, agents: [row.agent], deployments: row.deployments)
            let before = try await TableState.read(base)
            let store = CountingStore(base)
            let prober = FixedProber(row.probe)
            let clock = ManualClock(t0 + row.at)
            let reconciler = DeploymentReconciler(
                store: store, policy: row.policy, prober: prober, clock: clock, logger: logger)

            let requeue = try await reconcile(reconciler, row.key)
            #expect(requeue == row.wantRequeue)
            #expect(prober.urls == row.wantProbes)
            #expect(store.transactions == (row.writes ? 1 : 0))

            let after = try await TableState.read(base)
            #expect(after.deployments == row.want)
            #expect(after.agents == [row.wantAgent ?? row.agent])
            #expect(after.events.map(\.type) == row.wantEvents.map(\.0))
            #expect(after.events.map(\.reason) == row.wantEvents.map(\.1))
            #expect(after.events.allSatisfy { $0.deploymentId == "d1" && $0.actor == "controller" })
            #expect(after.events.allSatisfy { $0.createdAt == t0 + row.at })
            if !row.writes { #expect(after == before) }

            // Level-triggered: a second reconcile at the same time and with the same answer writes nothing
            // more and asks for the same requeue.
            let again = try await reconcile(reconciler, row.key)
            #expect(again == row.wantRequeue)
            #expect(store.transactions == (row.writes ? 1 : 0), "the second reconcile opens no transaction")
            #expect(try await TableState.read(base) == after)
        }
    }

    @Test("a batch: one read, one transaction, each deployment decided as alone, one auto-promotion per agent",
          arguments: Backend.all)
    func batchOfSeveralAgents(_ backend: Backend) async throws {
        let second = registered.with {
            $0.id = "d2"
            $0.registeredAt = t0 + .seconds(6)
        }
        let waiting = Deployment(id: "d3", agentId: "agent-2", dockerImage: "img:3", createdAt: t0)
        let alreadyReady = Deployment(
            id: "d4", agentId: "agent-2", dockerImage: "img:4", status: .ready, acpURL: podURL, createdAt: t0,
            registeredAt: t0, readyAt: t0)
        try await backend.withStore { base in
            try await seed(base, agents: [baseAgent, otherAgent], deployments: [registered, second, waiting, alreadyReady])
            let store = CountingStore(base)
            let prober = FixedProber(.healthy)
            let at = t0 + .seconds(10)
            let reconciler = DeploymentReconciler(
                store: store, policy: ReconcilePolicy(), prober: prober, clock: ManualClock(at), logger: logger)

            let results = await reconciler.reconcile(batch: ["d2", "ghost", "d1", "d3", "d4"])
            #expect(results.map { try? $0.get() } == [.done, .done, .done, .at(deadline), .done])
            #expect(store.transactions == 1, "the deployments that write share one transaction")
            #expect(prober.urls == [probeURL, probeURL], "d1 and d2 probed; d3 has no pod, d4 is Ready")

            let after = try await TableState.read(base)
            let ready = { (d: Deployment) in d.with {
                $0.status = .ready
                $0.readyAt = at
            } }
            #expect(after.deployments == [
                ready(registered),
                ready(second).with {
                    $0.isProduction = true
                    $0.promotedAt = at
                },
                waiting.with { $0.statusReason = waitingHint },
                alreadyReady,
            ], "d2 came first in the batch: it alone takes production")
            #expect(after.agents == [
                baseAgent.with {
                    $0.productionDeploymentId = "d2"
                    $0.status = .ready
                    $0.updatedAt = at
                },
                otherAgent,
            ])
            #expect(after.events.map { "\($0.deploymentId ?? "-") \($0.type.rawValue)" } == [
                "d2 \(EventType.ready.rawValue)", "d2 \(EventType.autoPromoted.rawValue)", "d1 \(EventType.ready.rawValue)",
            ])
            #expect(after.events.allSatisfy { $0.createdAt == at && $0.actor == "controller" })

            let again = await reconciler.reconcile(batch: ["d2", "ghost", "d1", "d3", "d4"])
            #expect(again.map { try? $0.get() } == [.done, .done, .done, .at(deadline), .done])
            #expect(store.transactions == 1, "level-triggered: the second batch writes nothing")
            #expect(try await TableState.read(base) == after)
        }
    }

    @Test("a pending deployment is waited on, then failed when the clock reaches its deadline", arguments: Backend.all)
    func deadlineOnTheClock(_ backend: Backend) async throws {
        try await backend.withStore { base in
            try await seed(base, agents: [baseAgent], deployments: [registered])
            let clock = ManualClock(t0 + .seconds(10))
            let prober = FixedProber(.unhealthy("connection refused"))
            let reconciler = DeploymentReconciler(
                store: base, policy: ReconcilePolicy(), prober: prober, clock: clock, logger: logger)
            #expect(try await reconciler.reconcile("d1") == .backoff(notAfter: deadline))
            clock.advance(to: deadline + .microseconds(-1))
            #expect(try await reconciler.reconcile("d1") == .backoff(notAfter: deadline))
            #expect(prober.urls == [probeURL, probeURL])
            clock.advance(to: deadline)
            #expect(try await reconciler.reconcile("d1") == .done)
            #expect(prober.urls.count == 2, "at the deadline the recorded error decides, without a third probe")
            let d = try #require(try await TableState.read(base).deployments.first)
            #expect(d.status == .failed)
            #expect(d.statusReason == "ProbeFailed: connection refused")
            #expect(d.failedAt == deadline)
        }
    }
}

// MARK: RetentionReconciler

/// Retention rows: keep one previous production and two others, a Failed one an hour, ten minutes to restore.
private let retentionPolicy = RetentionPolicy(
    retainPreviousProduction: 1, retainInactive: 2, failedTTL: .seconds(3_600), deletionGrace: .seconds(600))
private let passTime = t0 + .seconds(86_400)
private let regrace = passTime + .seconds(600)

/// A deployment of `agent` created `created` seconds after `t0`.
private func row(
    _ id: String, created: Int64, agentId: String = "agent-1", status: DeploymentStatus = .ready,
    production: Bool = false, promoted: Int64? = nil, demoted: Int64? = nil, failedAt: Timestamp? = nil,
    expiresAt: Timestamp? = nil
) -> Deployment {
    Deployment(
        id: id, agentId: agentId, dockerImage: "img:\(id)", status: status, acpURL: "http://\(id):8000",
        isProduction: production, createdAt: t0 + .seconds(created), registeredAt: t0 + .seconds(created),
        readyAt: status == .ready ? t0 + .seconds(created + 1) : nil, promotedAt: promoted.map { t0 + .seconds($0) },
        demotedAt: demoted.map { t0 + .seconds($0) }, expiresAt: expiresAt, failedAt: failedAt)
}

private let retentionProduction = row("prod", created: 0, production: true, promoted: 1_000)
/// `agent-1` with `prod` in production.
private let retentionOwner = withProduction.with { $0.productionDeploymentId = "prod" }

@Suite("RetentionReconciler, one reconcile per row")
struct RetentionReconcilerTableTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var agents = [retentionOwner, otherAgent]
        var deployments: [Deployment]
        var key = "agent-1"
        var policy = retentionPolicy
        var batchSize = 500
        /// The time of the pass.
        var now = passTime
        /// The deployments that expire (expires_at = now + grace), oldest first, with their reason.
        var wantExpired: [(String, ExpiryReason)] = []
        /// The deployments hard-deleted, one set per collection transaction, earliest expiry first.
        var wantCollected: [Set<String>] = []
        var wantRequeue: Requeue
        /// Transactions in all: the retention plan, then each collection batch (the last one short).
        var wantTransactions: Int
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        .init(name: "within every count: nothing expires, nothing is due",
              deployments: [retentionProduction, row("i1", created: 10), row("i2", created: 20)],
              wantRequeue: .done, wantTransactions: 2),
        .init(name: "unknown agent: done, no collection",
              deployments: [retentionProduction, row("x", created: 1, expiresAt: t0)], key: "ghost",
              wantRequeue: .done, wantTransactions: 1),
        .init(name: "beyond both counts: the oldest expire, restorable until now + grace, due then",
              deployments: [retentionProduction,
                            row("p1", created: 10, promoted: 11, demoted: 100), row("p2", created: 20, promoted: 21, demoted: 200),
                            row("i1", created: 30), row("i2", created: 40), row("i3", created: 50)],
              wantExpired: [("p1", .previousProductionLimit), ("i1", .inactiveLimit)],
              wantRequeue: .at(regrace), wantTransactions: 2),
        .init(name: "soft-deleted rows past their expiry are collected; a later expiry sets the requeue",
              deployments: [retentionProduction,
                            row("d-past", created: 10, expiresAt: passTime + .seconds(-1)),
                            row("d-now", created: 20, expiresAt: passTime),
                            row("d-later", created: 30, expiresAt: passTime + .seconds(30))],
              wantCollected: [["d-past", "d-now"]], wantRequeue: .at(passTime + .seconds(30)), wantTransactions: 2),
        .init(name: "batch size 2, five expired rows: collected in three transactions, earliest expiry first",
              deployments: [retentionProduction] + (1...5).map {
                  row("e\($0)", created: Int64($0), expiresAt: passTime + .seconds(Int64($0) - 10))
              },
              batchSize: 2,
              wantCollected: [["e1", "e2"], ["e3", "e4"], ["e5"]], wantRequeue: .done, wantTransactions: 4),
        .init(name: "batch size 2, four expired rows: two full batches, then an empty one ends it",
              deployments: [retentionProduction] + (1...4).map {
                  row("e\($0)", created: Int64($0), expiresAt: passTime + .seconds(Int64($0) - 10))
              },
              batchSize: 2,
              wantCollected: [["e1", "e2"], ["e3", "e4"]], wantRequeue: .done, wantTransactions: 4),
        .init(name: "batch size 1, three expired rows: four collection transactions",
              deployments: [retentionProduction] + (1...3).map {
                  row("e\($0)", created: Int64($0), expiresAt: passTime + .seconds(Int64($0) - 10))
              },
              batchSize: 1,
              wantCollected: [["e1"], ["e2"], ["e3"]], wantRequeue: .done, wantTransactions: 5),
        .init(name: "batch size 0 is taken as 1: the collection still ends",
              deployments: [retentionProduction] + (1...2).map {
                  row("e\($0)", created: Int64($0), expiresAt: passTime + .seconds(Int64($0) - 10))
              },
              batchSize: 0,
              wantCollected: [["e1"], ["e2"]], wantRequeue: .done, wantTransactions: 4),
        .init(name: "newly expired rows wait for their grace; old soft-deleted ones go now",
              deployments: [retentionProduction, row("i1", created: 10), row("i2", created: 20), row("i3", created: 30),
                            row("gone", created: 5, expiresAt: t0)],
              wantExpired: [("i1", .inactiveLimit)], wantCollected: [["gone"]], wantRequeue: .at(regrace),
              wantTransactions: 2),
        .init(name: "a production row is never collected, even one carrying a past expires_at",
              deployments: [retentionProduction.with { $0.expiresAt = t0 }],
              wantRequeue: .done, wantTransactions: 2),
        .init(name: "Failed past the TTL expires; a younger Failed one is kept",
              deployments: [retentionProduction,
                            row("f-old", created: 10, status: .failed, failedAt: passTime + .seconds(-7_200)),
                            row("f-young", created: 20, status: .failed, failedAt: passTime + .seconds(-3_000))],
              wantExpired: [("f-old", .failedTTL)], wantRequeue: .at(passTime + .seconds(600)), wantTransactions: 2),
        .init(name: "a younger Failed one alone: due at its TTL",
              deployments: [retentionProduction,
                            row("f-young", created: 20, status: .failed, failedAt: passTime + .seconds(-3_000))],
              wantRequeue: .at(passTime + .seconds(600)), wantTransactions: 2),
        .init(name: "a deleted agent: every non-production deployment expires with AgentDeleted",
              agents: [retentionOwner.with { $0.status = .deleted }],
              deployments: [retentionProduction, row("p1", created: 10, promoted: 11, demoted: 100),
                            row("i1", created: 20), row("pending", created: 30, status: .pending)],
              policy: RetentionPolicy(retainPreviousProduction: 10, retainInactive: 10, deletionGrace: .seconds(600)),
              wantExpired: [("p1", .agentDeleted), ("i1", .agentDeleted), ("pending", .agentDeleted)],
              wantRequeue: .at(regrace), wantTransactions: 2),
        .init(name: "a deleted agent's expired rows are collected; its production record stays",
              agents: [retentionOwner.with { $0.status = .deleted }],
              deployments: [retentionProduction, row("p1", created: 10, promoted: 11, demoted: 100, expiresAt: passTime),
                            row("i1", created: 20, expiresAt: passTime)],
              wantCollected: [["p1", "i1"]], wantRequeue: .done, wantTransactions: 2),
        .init(name: "another agent's expired rows are left alone",
              deployments: [retentionProduction, row("i1", created: 10),
                            row("x1", created: 10, agentId: "agent-2", expiresAt: t0),
                            row("x2", created: 20, agentId: "agent-2"), row("x3", created: 30, agentId: "agent-2"),
                            row("x4", created: 40, agentId: "agent-2")],
              wantRequeue: .done, wantTransactions: 2),
    ]

    @Test("one pass: rows expired and collected, events, tombstones, requeue", arguments: rows, Backend.all)
    func reconcile(_ row: Row, _ backend: Backend) async throws {
        try await backend.withStore { base in
            try await seed(base, agents: row.agents, deployments: row.deployments)
            let store = CountingStore(base)
            let reconciler = RetentionReconciler(
                store: store, policy: row.policy, clock: ManualClock(row.now), logger: logger, batchSize: row.batchSize)

            let requeue = try await reconciler.reconcile(row.key)
            #expect(requeue == row.wantRequeue)
            #expect(store.transactions == row.wantTransactions)

            let expiresAt = row.now + row.policy.deletionGrace
            let collected = row.wantCollected.reduce(into: Set<String>()) { $0.formUnion($1) }
            let expired = Dictionary(uniqueKeysWithValues: row.wantExpired.map { ($0.0, $0.1) })
            let want = row.deployments.filter { !collected.contains($0.id) }.map { d in
                expired[d.id] == nil ? d : d.with { $0.expiresAt = expiresAt }
            }
            let after = try await TableState.read(base)
            #expect(after.deployments == want.sorted { $0.id < $1.id })
            #expect(after.agents == row.agents.sorted { $0.id < $1.id }, "retention never writes an agent")

            // Expired events first (oldest deployment first), then one GarbageCollected per collected row,
            // batch by batch.
            let events = after.events
            let expiredEvents = events.prefix { $0.type == .expired }
            #expect(expiredEvents.map(\.deploymentId) == row.wantExpired.map(\.0))
            #expect(expiredEvents.map(\.reason) == row.wantExpired.map(\.1.rawValue))
            for event in expiredEvents {
                #expect(event.message.contains("restorable until \(expiresAt)"), "\(event.message)")
            }
            let collectedEvents = Array(events.dropFirst(expiredEvents.count))
            #expect(collectedEvents.allSatisfy { $0.type == .garbageCollected })
            var rest = collectedEvents[...]
            for batch in row.wantCollected {
                #expect(Set(rest.prefix(batch.count).compactMap(\.deploymentId)) == batch)
                rest = rest.dropFirst(batch.count)
            }
            #expect(rest.isEmpty, "no other event")
            #expect(events.allSatisfy { $0.actor == "controller" && $0.createdAt == row.now && $0.agentId == row.key })

            // A collected id stays its agent's: the agent may create it again, another agent never.
            for id in collected.sorted() {
                let fresh = Deployment(id: id, agentId: row.key, dockerImage: "img:again", createdAt: row.now)
                #expect(try await base.transaction(dryRun: true) { try await $0.insertDeploymentIfAbsent(fresh) })
                let foreign = fresh.with { $0.agentId = "agent-2" }
                #expect(try await base.transaction(dryRun: true) { try await $0.insertDeploymentIfAbsent(foreign) } == false,
                        "\(id) cannot be taken by another agent")
            }
        }
    }

    @Test("expired at one pass, collected by the pass at the requeued time, not a microsecond before",
          arguments: Backend.all)
    func expiryThenCollectionOnTheClock(_ backend: Backend) async throws {
        try await backend.withStore { base in
            try await seed(base, agents: [retentionOwner], deployments: [
                retentionProduction, row("i1", created: 10), row("i2", created: 20), row("i3", created: 30),
            ])
            let clock = ManualClock(passTime)
            let reconciler = RetentionReconciler(store: base, policy: retentionPolicy, clock: clock, logger: logger)
            #expect(try await reconciler.reconcile("agent-1") == .at(regrace))
            clock.advance(to: regrace + .microseconds(-1))
            #expect(try await reconciler.reconcile("agent-1") == .at(regrace))
            #expect(try await TableState.read(base).deployments.map(\.id) == ["i1", "i2", "i3", "prod"])
            clock.advance(to: regrace)
            #expect(try await reconciler.reconcile("agent-1") == .done)
            let after = try await TableState.read(base)
            #expect(after.deployments.map(\.id) == ["i2", "i3", "prod"])
            #expect(after.events.map(\.type) == [.expired, .garbageCollected])
            #expect(after.events.map(\.createdAt) == [passTime, regrace])
        }
    }

    @Test("an id collected twice from its agent stays that agent's", arguments: Backend.all)
    func collectedTwice(_ backend: Backend) async throws {
        try await backend.withStore { base in
            try await seed(base, agents: [retentionOwner, otherAgent], deployments: [
                retentionProduction, row("x", created: 10, expiresAt: t0),
            ])
            let clock = ManualClock(passTime)
            let reconciler = RetentionReconciler(store: base, policy: retentionPolicy, clock: clock, logger: logger)
            _ = try await reconciler.reconcile("agent-1")
            let again = row("x", created: 86_400, expiresAt: passTime + .seconds(1))
            #expect(try await base.transaction { try await $0.insertDeploymentIfAbsent(again) })
            clock.advance(by: .seconds(1))
            _ = try await reconciler.reconcile("agent-1")
            #expect(try await TableState.read(base).deployments.map(\.id) == ["prod"])
            let foreign = again.with { $0.agentId = "agent-2" }
            #expect(try await base.transaction(dryRun: true) { try await $0.insertDeploymentIfAbsent(foreign) } == false)
            #expect(try await base.transaction(dryRun: true) { try await $0.insertDeploymentIfAbsent(again) })
        }
    }
}

// MARK: Support

/// Every agent and deployment (by id) and every event (in commit order) of a store.
struct TableState: Equatable {
    var agents: [Agent]
    var deployments: [Deployment]
    var events: [Event]

    static func read(_ store: any Store) async throws -> TableState {
        try await store.read { tx in
            let all = Page(limit: 1000, orderBy: "created_at", direction: .asc)
            let agents = try await tx.listAgents(page: all).sorted { $0.id < $1.id }
            var deployments: [Deployment] = []
            var events: [Event] = []
            for agent in agents {
                deployments += try await tx.listDeployments(agentId: agent.id, includeDeleted: true, page: all) ?? []
                events += try await tx.listEvents(agentId: agent.id, deploymentId: nil, page: all)
            }
            return TableState(agents: agents, deployments: deployments.sorted { $0.id < $1.id }, events: events)
        }
    }
}

/// Writes a row's records directly, as they would be at the start: no events, no controller.
private func seed(_ store: any Store, agents: [Agent], deployments: [Deployment]) async throws {
    try await store.transaction { tx in
        for agent in agents {
            guard try await tx.insertAgentIfAbsent(agent) else { throw TestFailure("agent \(agent.id) not inserted") }
        }
        for deployment in deployments {
            guard try await tx.insertDeploymentIfAbsent(deployment) else {
                throw TestFailure("deployment \(deployment.id) not inserted")
            }
        }
    }
}

/// A readiness prober that gives one fixed answer and records every URL it was asked to probe.
final class FixedProber: ReadinessProber {
    let outcome: ProbeOutcome
    private let probed = Mutex<[String]>([])

    init(_ outcome: ProbeOutcome) { self.outcome = outcome }

    func probe(_ url: String) async -> ProbeOutcome {
        probed.withLock { $0.append(url) }
        return outcome
    }

    var urls: [String] { probed.withLock { $0 } }
}

/// A store that counts the transactions run through it, so a row can state how many a reconcile opened.
final class CountingStore: Store {
    let base: any Store
    private let count = Atomic<Int>(0)

    init(_ base: any Store) { self.base = base }

    var transactions: Int { count.load(ordering: .relaxed) }

    func transaction<T: Sendable>(
        dryRun: Bool, _ body: @escaping @Sendable (StoreTransaction) async throws -> T
    ) async throws -> T {
        count.add(1, ordering: .relaxed)
        return try await base.transaction(dryRun: dryRun, body)
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        try await base.read(body)
    }

    func autocommit<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        try await base.autocommit(body)
    }

    var changes: ChangeFeed { base.changes }
    var runsOneStatementUnits: Bool { base.runsOneStatementUnits }
    func migrate() async throws -> [Int] { try await base.migrate() }
    func isReady() async -> Bool { await base.isReady() }
    func close() async throws { try await base.close() }
    func isUnavailable(_ error: any Error) -> Bool { base.isUnavailable(error) }
}

extension Deployment {
    fileprivate func with(_ change: (inout Deployment) -> Void) -> Deployment {
        var copy = self
        change(&copy)
        return copy
    }
}

extension Agent {
    fileprivate func with(_ change: (inout Agent) -> Void) -> Agent {
        var copy = self
        change(&copy)
        return copy
    }
}
