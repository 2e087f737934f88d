import CutoverCore
import Testing

private let t0 = Fixture.t0
private let url = "http://agent-1.default.svc.cluster.local:8000"
private let defaultPolicy = ReconcilePolicy()
private let noProbe = ReconcilePolicy(probe: .none)
/// created_at + progress deadline (10 min) of a deployment created at `t0`.
private let deadline = t0 + .seconds(600)

@Suite("Reconcile.decide")
struct ReconcileDecideTests {
    struct NothingCase: Sendable, CustomTestStringConvertible {
        var name: String
        var deployment: Deployment
        var testDescription: String { name }
    }

    static let nothingCases: [NothingCase] = [
        .init(name: "deleted pending, unregistered",
              deployment: Fixture.deployment("d", status: .pending, expiresAt: t0 + .seconds(86_400))),
        .init(name: "deleted pending, registered",
              deployment: Fixture.deployment("d", status: .pending, acpURL: url, expiresAt: t0)),
        .init(name: "deleted ready", deployment: Fixture.deployment("d", status: .ready, acpURL: url, expiresAt: t0)),
        .init(name: "ready", deployment: Fixture.deployment("d", status: .ready, acpURL: url)),
        .init(name: "ready production",
              deployment: Fixture.deployment("d", status: .ready, acpURL: url, isProduction: true, promotedAt: t0)),
        .init(name: "ready, unregistered", deployment: Fixture.deployment("d", status: .ready)),
        .init(name: "failed, registered", deployment: Fixture.deployment("d", status: .failed, acpURL: url)),
        .init(name: "failed, unregistered", deployment: Fixture.deployment("d", status: .failed)),
    ]

    static let probes: [ProbeOutcome?] = [nil, .healthy, .unhealthy("connection refused")]
    static let instants: [Duration] = [.zero, .seconds(599), .seconds(600), .seconds(86_400)]

    @Test("deleted, Ready and Failed deployments call for nothing", arguments: nothingCases, probes)
    func nothingToDo(_ c: NothingCase, probe: ProbeOutcome?) {
        for offset in Self.instants {
            for policy in [defaultPolicy, noProbe] {
                let action = Reconcile.decide(c.deployment, probe: probe, now: t0 + offset, policy: policy)
                #expect(action == ReconcileAction.none)
            }
        }
    }

    @Test("pending, unregistered, before the deadline: wait for registration until the deadline",
          arguments: [Duration.zero, .microseconds(1), .seconds(300), .microseconds(599_999_999)])
    func awaitsRegistration(_ offset: Duration) {
        let d = Fixture.deployment("d", status: .pending)
        for probe in Self.probes {
            #expect(Reconcile.decide(d, probe: probe, now: t0 + offset, policy: defaultPolicy)
                == .awaitRegistration(deadline: deadline))
        }
        // probe: none does not matter before registration either
        #expect(Reconcile.decide(d, probe: nil, now: t0 + offset, policy: noProbe)
            == .awaitRegistration(deadline: deadline))
    }

    @Test("pending, unregistered, at or past the deadline: Failed NeverRegistered",
          arguments: [Duration.seconds(600), .microseconds(600_000_001), .seconds(3_600), .seconds(86_400 * 365)])
    func neverRegistered(_ offset: Duration) {
        let d = Fixture.deployment("d", status: .pending)
        let expected = ReconcileAction.markFailed(.neverRegistered, detail: "no pod registered within 10m")
        #expect(Reconcile.decide(d, probe: nil, now: t0 + offset, policy: defaultPolicy) == expected)
        #expect(Reconcile.decide(d, probe: nil, now: t0 + offset, policy: noProbe) == expected)
    }

    @Test("the progress deadline comes from the policy and is named in the failure detail",
          arguments: [("30s", Duration.seconds(30)), ("250ms", .milliseconds(250)), ("1h", .seconds(3_600)),
                      ("90m", .seconds(5_400))])
    func customDeadline(_ shown: String, _ progressDeadline: Duration) {
        let policy = ReconcilePolicy(progressDeadline: progressDeadline)
        let created = t0 + .seconds(42)
        let d = Fixture.deployment("d", status: .pending, createdAt: created)
        let due = created + progressDeadline
        #expect(Reconcile.decide(d, probe: nil, now: Timestamp(microseconds: due.microseconds - 1), policy: policy)
            == .awaitRegistration(deadline: due))
        #expect(Reconcile.decide(d, probe: nil, now: due, policy: policy)
            == .markFailed(.neverRegistered, detail: "no pod registered within \(shown)"))
    }

    @Test("registered with probe: none → Ready whatever the probe and the time", arguments: probes, instants)
    func probeOffMarksReady(_ probe: ProbeOutcome?, _ offset: Duration) {
        let d = Fixture.deployment("d", status: .pending, acpURL: url)
        #expect(Reconcile.decide(d, probe: probe, now: t0 + offset, policy: noProbe) == .markReady)
    }

    struct JoinCase: Sendable, CustomTestStringConvertible {
        var base: String
        var path: String
        var expected: String
        var testDescription: String { "\(base) + \(path)" }
    }

    static let joinCases: [JoinCase] = [
        .init(base: "http://a:8000", path: "/healthz", expected: "http://a:8000/healthz"),
        .init(base: "http://a:8000/", path: "/healthz", expected: "http://a:8000/healthz"),
        .init(base: "http://a:8000///", path: "/healthz", expected: "http://a:8000/healthz"),
        .init(base: "http://a:8000", path: "healthz", expected: "http://a:8000/healthz"),
        .init(base: "http://a:8000/", path: "healthz", expected: "http://a:8000/healthz"),
        .init(base: "https://a.example.com/agents/x", path: "/readyz", expected: "https://a.example.com/agents/x/readyz"),
        .init(base: "https://a.example.com/agents/x/", path: "ready", expected: "https://a.example.com/agents/x/ready"),
        .init(base: "http://[fd00::1]:8000/", path: "/api/health", expected: "http://[fd00::1]:8000/api/health"),
    ]

    @Test("registered, not probed yet → probe {acp_url}{probe_path}, joined with exactly one slash",
          arguments: joinCases)
    func probesJoinedURL(_ c: JoinCase) {
        let d = Fixture.deployment("d", status: .pending, acpURL: c.base)
        let policy = ReconcilePolicy(probePath: c.path)
        #expect(Reconcile.decide(d, probe: nil, now: t0, policy: policy) == .probe(url: c.expected))
    }

    @Test("the default probe path is /healthz")
    func defaultProbePath() {
        let d = Fixture.deployment("d", status: .pending, acpURL: url + "/")
        #expect(Reconcile.decide(d, probe: nil, now: t0, policy: defaultPolicy) == .probe(url: url + "/healthz"))
    }

    @Test("registered, not probed yet, past the deadline → still probe once: ProbeFailed needs a probe error")
    func probesEvenPastDeadline() {
        let d = Fixture.deployment("d", status: .pending, acpURL: url)
        #expect(Reconcile.decide(d, probe: nil, now: deadline + .seconds(1), policy: defaultPolicy)
            == .probe(url: url + "/healthz"))
    }

    @Test("at the deadline, a probe that already failed decides without probing again (no late failure)")
    func failsAtDeadlineWithTheRecordedProbeError() {
        var d = Fixture.deployment("d", status: .pending, acpURL: url)
        d.lastProbeError = "readiness probe answered HTTP 503"
        #expect(Reconcile.decide(d, probe: nil, now: deadline, policy: defaultPolicy)
            == .markFailed(.probeFailed, detail: "readiness probe answered HTTP 503"))
        #expect(Reconcile.decide(d, probe: nil, now: deadline + .microseconds(-1), policy: defaultPolicy)
            == .probe(url: url + "/healthz"), "before the deadline it probes again")
        d.lastProbeError = nil
        d.statusReason = "ProbePending: text in the reason is for people, not read back"
        #expect(Reconcile.decide(d, probe: nil, now: deadline, policy: defaultPolicy) == .probe(url: url + "/healthz"))
    }

    @Test("healthy probe → Ready, before or after the deadline", arguments: instants)
    func healthyMarksReady(_ offset: Duration) {
        let d = Fixture.deployment("d", status: .pending, acpURL: url)
        #expect(Reconcile.decide(d, probe: .healthy, now: t0 + offset, policy: defaultPolicy) == .markReady)
    }

    @Test("unhealthy probe before the deadline → retry no later than the deadline",
          arguments: [Duration.zero, .seconds(1), .microseconds(599_999_999)],
                     ["connection refused", "readiness probe answered HTTP 503"])
    func unhealthyRetries(_ offset: Duration, _ error: String) {
        let d = Fixture.deployment("d", status: .pending, acpURL: url)
        #expect(Reconcile.decide(d, probe: .unhealthy(error), now: t0 + offset, policy: defaultPolicy)
            == .retryProbe(lastError: error, deadline: deadline))
    }

    @Test("unhealthy probe at or past the deadline → Failed ProbeFailed with the last probe error",
          arguments: [Duration.seconds(600), .seconds(601), .seconds(86_400)],
                     ["connection refused", "readiness probe reported status 'starting'"])
    func unhealthyFails(_ offset: Duration, _ error: String) {
        let d = Fixture.deployment("d", status: .pending, acpURL: url)
        #expect(Reconcile.decide(d, probe: .unhealthy(error), now: t0 + offset, policy: defaultPolicy)
            == .markFailed(.probeFailed, detail: error))
    }

    @Test("deciding is idempotent: the same record and time give the same action")
    func idempotent() {
        let d = Fixture.deployment("d", status: .pending, acpURL: url)
        for probe in Self.probes {
            for offset in Self.instants {
                let first = Reconcile.decide(d, probe: probe, now: t0 + offset, policy: defaultPolicy)
                #expect(Reconcile.decide(d, probe: probe, now: t0 + offset, policy: defaultPolicy) == first)
            }
        }
    }

    @Test("failure reasons are the typed reasons of a Failed deployment")
    func failureReasonRawValues() {
        #expect(FailureReason.neverRegistered.rawValue == "NeverRegistered")
        #expect(FailureReason.probeFailed.rawValue == "ProbeFailed")
    }
}

@Suite("Reconcile.pendingHint")
struct PendingHintTests {
    @Test("awaiting registration names the deadline")
    func waiting() {
        let hint = Reconcile.pendingHint(.awaitRegistration(deadline: Timestamp(microseconds: 0)))
        #expect(hint == "WaitingForRegistration: no pod has registered yet (deadline 1970-01-01T00:00:00.000000Z)")
    }

    @Test("retrying carries the probe error")
    func retrying() {
        #expect(Reconcile.pendingHint(.retryProbe(lastError: "connection refused", deadline: t0))
            == "ProbePending: connection refused")
    }

    @Test("other actions have no hint",
          arguments: [ReconcileAction.none, .markReady, .probe(url: url),
                      .markFailed(.neverRegistered, detail: "x"), .markFailed(.probeFailed, detail: "y")])
    func noHint(_ action: ReconcileAction) {
        #expect(Reconcile.pendingHint(action) == nil)
    }
}

@Suite("Reconcile.shouldAutoPromote")
struct AutoPromoteTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var policy: AutoPromotePolicy
        var agent: Agent
        var expected: Bool
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        .init(name: "first, no production, no legacy route", policy: .first, agent: Fixture.agent(), expected: true),
        .init(name: "never", policy: .never, agent: Fixture.agent(), expected: false),
        .init(name: "existing production", policy: .first,
              agent: Fixture.agent(productionDeploymentId: "d-old"), expected: false),
        .init(name: "legacy acp_url", policy: .first,
              agent: Fixture.agent(acpURL: "http://legacy:8000"), expected: false),
        .init(name: "production and legacy acp_url", policy: .first,
              agent: Fixture.agent(productionDeploymentId: "d-old", acpURL: "http://legacy:8000"), expected: false),
        .init(name: "deleted agent", policy: .first, agent: Fixture.agent(status: .deleted), expected: false),
        .init(name: "never, existing production", policy: .never,
              agent: Fixture.agent(productionDeploymentId: "d-old"), expected: false),
        .init(name: "never, deleted agent", policy: .never, agent: Fixture.agent(status: .deleted), expected: false),
    ]

    @Test("auto-promotion conditions", arguments: cases)
    func conditions(_ c: Case) {
        #expect(Reconcile.shouldAutoPromote(agent: c.agent, policy: c.policy) == c.expected)
    }

    @Test("any non-deleted agent status allows auto-promotion",
          arguments: AgentStatus.allCases.filter { $0 != .deleted })
    func anyLiveStatus(_ status: AgentStatus) {
        #expect(Reconcile.shouldAutoPromote(agent: Fixture.agent(status: status), policy: .first))
        #expect(!Reconcile.shouldAutoPromote(agent: Fixture.agent(status: status), policy: .never))
    }

    @Test("the default policy auto-promotes the first deployment and probes /healthz with a 10m deadline")
    func defaults() {
        let p = ReconcilePolicy()
        #expect(p.autoPromote == .first)
        #expect(p.probe == .http)
        #expect(p.probePath == "/healthz")
        #expect(p.progressDeadline == .seconds(600))
        #expect(AutoPromotePolicy(rawValue: "never") == .never)
        #expect(ProbeMode(rawValue: "none") == ProbeMode.none)
    }
}

@Suite("ProbeVerdict.judge")
struct ProbeVerdictTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var status: Int
        var body: String
        var expected: ProbeOutcome
        var testDescription: String { "\(status) \(body)" }
    }

    static let cases: [Case] = [
        .init(status: 200, body: "OK", expected: .healthy),
        .init(status: 200, body: "", expected: .healthy),
        .init(status: 204, body: "", expected: .healthy),
        .init(status: 299, body: "fine", expected: .healthy),
        .init(status: 200, body: #"{"status":"healthy"}"#, expected: .healthy),
        .init(status: 200, body: #"{"status": "healthy", "version": "1.2.3", "checks": {"db": "ok"}}"#,
              expected: .healthy),
        .init(status: 200, body: #"{"ok":true}"#, expected: .healthy),
        .init(status: 200, body: #"["status","starting"]"#, expected: .healthy),
        .init(status: 200, body: #""starting""#, expected: .healthy),
        .init(status: 200, body: #"{"status":"healthy""#, expected: .healthy),
        .init(status: 200, body: #"{"status":"starting"}"#,
              expected: .unhealthy("readiness probe reported status 'starting'")),
        .init(status: 200, body: #"{"status":"Healthy"}"#,
              expected: .unhealthy("readiness probe reported status 'Healthy'")),
        .init(status: 200, body: #"{"status":1}"#, expected: .unhealthy("readiness probe reported status 'number'")),
        .init(status: 200, body: #"{"status":true}"#,
              expected: .unhealthy("readiness probe reported status 'boolean'")),
        .init(status: 200, body: #"{"status":null}"#, expected: .unhealthy("readiness probe reported status 'null'")),
        .init(status: 200, body: #"{"status":{"state":"healthy"}}"#,
              expected: .unhealthy("readiness probe reported status 'object'")),
        .init(status: 503, body: "", expected: .unhealthy("readiness probe answered HTTP 503")),
        .init(status: 503, body: #"{"status":"healthy"}"#, expected: .unhealthy("readiness probe answered HTTP 503")),
        .init(status: 500, body: "boom", expected: .unhealthy("readiness probe answered HTTP 500")),
        .init(status: 404, body: "not found", expected: .unhealthy("readiness probe answered HTTP 404")),
        .init(status: 301, body: "", expected: .unhealthy("readiness probe answered HTTP 301")),
        .init(status: 300, body: "", expected: .unhealthy("readiness probe answered HTTP 300")),
        .init(status: 199, body: "", expected: .unhealthy("readiness probe answered HTTP 199")),
    ]

    @Test("2xx and, for a JSON body with a status field, status == \"healthy\"", arguments: cases)
    func judge(_ c: Case) {
        #expect(ProbeVerdict.judge(statusCode: c.status, body: Array(c.body.utf8)) == c.expected)
    }

    @Test("a non-UTF-8 body with 200 is healthy")
    func binaryBody() {
        #expect(ProbeVerdict.judge(statusCode: 200, body: [0xFF, 0xFE, 0x00, 0x7B]) == .healthy)
    }
}
