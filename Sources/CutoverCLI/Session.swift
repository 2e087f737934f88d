import CutoverCore
import Foundation
import NIOHTTP1

/// The client commands' workflows: each reads or writes through the API and prints to stdout.
public struct Session: Sendable {
    public let client: APIClient
    public let printer: Printer

    public init(client: APIClient, printer: Printer) {
        self.client = client
        self.printer = printer
    }

    // MARK: Agents

    /// An agent by name, else by id; its JSON as the API answered.
    func agent(_ ref: String) async throws -> APIClient.Answer {
        let byName = try await client.send(.GET, "/agents/name/\(segment(ref))")
        if byName.status == 200 { return byName }
        let byId = try await client.send(.GET, "/agents/\(segment(ref))")
        if byId.status == 200 { return byId }
        // Both unknown: the server's own words for the name, the way a person addresses an agent.
        let failed = byName.status == 404 && byId.status != 404 ? byId : byName
        throw CLIError.api(status: failed.status, message: failed.json.objectValue?["message"]?.stringValue ?? "")
    }

    func agentId(_ ref: String) async throws -> (id: String, name: String) {
        let object = try await agent(ref).json.objectValue ?? [:]
        return (object["id"]?.stringValue ?? ref, object["name"]?.stringValue ?? ref)
    }

    public func listAgents() async throws {
        let answer = try await client.call(.GET, "/agents?limit=1000")
        try show(answer, columns: Views.agentColumns, rows: answer.json.arrayValue.map { Views.agentRow($0, now: printer.now()) })
    }

    public func getAgent(_ ref: String) async throws {
        let answer = try await agent(ref)
        try show(answer, columns: Views.agentColumns, rows: [Views.agentRow(answer.json, now: printer.now())])
    }

    public func deleteAgent(_ ref: String, dryRun: Bool) async throws {
        let (id, name) = try await agentId(ref)
        let answer = try await client.call(.DELETE, "/agents/\(segment(id))" + dryRunQuery(dryRun))
        done(answer, "agent \(name) deleted", dryRun: dryRun)
    }

    // MARK: Deployments

    func deploymentPath(_ agentId: String, _ deployment: String) -> String {
        "/agents/\(segment(agentId))/deployments/\(segment(deployment))"
    }

    /// Every deployment of the agent, newest first, soft-deleted ones only with `all`.
    func deployments(_ agentId: String, all: Bool) async throws -> APIClient.Answer {
        try await client.call(.GET, "/agents/\(segment(agentId))/deployments?limit=1000\(all ? "&include_deleted=true" : "")")
    }

    public func listDeployments(agent ref: String, all: Bool, watch: Bool) async throws {
        let (agentId, _) = try await agentId(ref)
        // The newest event before the list: every change after it is in the watch, none before it is missed.
        let latest = watch ? try await latestEventId(agentId) : nil
        let answer = try await deployments(agentId, all: all)
        let rows = answer.json.arrayValue.map { Views.deploymentRow($0, now: printer.now()) }
        guard watch else { return try show(answer, columns: Views.deploymentColumns, rows: rows) }
        if printer.format == .table {
            var table = Table(columns: Views.deploymentColumns)
            table.rows = rows
            table.render(colour: printer.colour).forEach(printer.line)
        } else if let text = printer.raw(answer) {
            printer.line(text)
        }
        var table = Table(columns: Views.deploymentColumns)
        table.rows = rows
        let widths = table.widths
        var shown: [String: String] = [:]
        for try await line in EventStream(client: client, agentId: agentId, after: latest) {
            guard let deploymentId = line.deploymentId else { continue }
            let reply = try await client.send(.GET, deploymentPath(agentId, deploymentId))
            guard reply.status == 200 else { continue }  // collected meanwhile: the event table tells that story
            if !all && !(reply.json.objectValue?["expires_at"]?.isNull ?? true) && line.event.objectValue?["type"]?.stringValue != "Deleted" {
                continue
            }
            switch printer.format {
            case .table:
                // One event rarely changes what the row shows (Created then Registered): print changes only.
                let row = Table.format(Views.deploymentRow(reply.json, now: printer.now()), widths: widths, colour: printer.colour)
                if shown.updateValue(row, forKey: deploymentId) != row { printer.line(row) }
            case .json: printer.line(JSONCodec.string(reply.json))
            case .yaml: printer.line("---\n" + YAMLText.render(reply.json))
            }
        }
    }

    public func getDeployment(agent ref: String, _ deployment: String) async throws {
        let (agentId, _) = try await agentId(ref)
        let answer = try await client.call(.GET, deploymentPath(agentId, deployment))
        try show(answer, columns: Views.deploymentColumns, rows: [Views.deploymentRow(answer.json, now: printer.now())])
    }

    public func createDeployment(
        agent ref: String, image: String, id: String?, labels: [String: String], dryRun: Bool
    ) async throws {
        let (agentId, name) = try await agentId(ref)
        var body: [String: JSONValue] = ["docker_image": .string(image)]
        if let id { body["id"] = .string(id) }
        if !labels.isEmpty { body["registration_metadata"] = .object(labels.mapValues(JSONValue.string)) }
        let answer = try await client.call(.POST, "/agents/\(segment(agentId))/deployments" + dryRunQuery(dryRun), body: .object(body))
        done(answer, "deployment \(name)/\(answer.json.objectValue?["id"]?.stringValue ?? id ?? "") created", dryRun: dryRun)
    }

    public func promote(agent ref: String, _ deployment: String, reason: String?, dryRun: Bool) async throws {
        let (agentId, name) = try await agentId(ref)
        let answer = try await client.call(
            .POST, deploymentPath(agentId, deployment) + "/promote" + dryRunQuery(dryRun), body: reasonBody(reason))
        done(answer, "deployment \(name)/\(deployment) promoted to production", dryRun: dryRun)
    }

    public func rollback(agent ref: String, to target: String?, reason: String?, dryRun: Bool) async throws {
        let (agentId, name) = try await agentId(ref)
        var body = reasonBody(reason).objectValue ?? [:]
        if let target { body["to_deployment_id"] = .string(target) }
        let answer = try await client.call(.POST, "/agents/\(segment(agentId))/rollback" + dryRunQuery(dryRun), body: .object(body))
        done(answer, "agent \(name) rolled back to \(answer.json.objectValue?["id"]?.stringValue ?? "?")", dryRun: dryRun)
    }

    public func delete(agent ref: String, _ deployment: String, dryRun: Bool) async throws {
        let (agentId, name) = try await agentId(ref)
        let answer = try await client.call(.DELETE, deploymentPath(agentId, deployment) + dryRunQuery(dryRun))
        var message = "deployment \(name)/\(deployment) deleted"
        if let until = answer.json.objectValue?["message"]?.stringValue?.range(of: "restorable until ") {
            let text = answer.json.objectValue?["message"]?.stringValue ?? ""
            message += " (\(text[until.lowerBound...]))"
        }
        done(answer, message, dryRun: dryRun)
    }

    public func restore(agent ref: String, _ deployment: String, dryRun: Bool) async throws {
        let (agentId, name) = try await agentId(ref)
        let answer = try await client.call(.POST, deploymentPath(agentId, deployment) + "/restore" + dryRunQuery(dryRun))
        done(answer, "deployment \(name)/\(deployment) restored", dryRun: dryRun)
    }

    // MARK: Events

    func latestEventId(_ agentId: String) async throws -> String? {
        try await client.call(.GET, "/agents/\(segment(agentId))/events?limit=1").json.arrayValue.first?
            .objectValue?["id"]?.stringValue
    }

    public func events(agent ref: String, deployment: String?, watch: Bool) async throws {
        let (agentId, _) = try await agentId(ref)
        guard watch else {
            let path = deployment.map { deploymentPath(agentId, $0) + "/events" } ?? "/agents/\(segment(agentId))/events"
            let answer = try await client.call(.GET, path + "?limit=1000")
            let oldestFirst = answer.json.arrayValue.reversed().map { Views.eventRow($0, now: printer.now()) }
            return try show(answer, columns: Views.eventColumns, rows: oldestFirst)
        }
        // Widths fit typical events; a watch cannot realign lines it has already printed.
        let widths = [5, 13, 12, 12]
        if printer.format == .table {
            printer.line(Table.format(Views.eventColumns.map { Table.Cell($0) }, widths: widths, colour: false))
        }
        // The watch sends the whole trail first, oldest first, then each event as it commits.
        for try await line in EventStream(client: client, agentId: agentId, after: nil) {
            if let deployment, line.deploymentId != deployment { continue }
            switch printer.format {
            case .table:
                printer.line(Table.format(Views.eventRow(line.event, now: printer.now()), widths: widths, colour: printer.colour))
            case .json: printer.line(line.text)
            case .yaml: printer.line("---\n" + YAMLText.render(line.event))
            }
        }
    }

    // MARK: Tasks

    /// Tasks, newest first: all the caller may see, or one agent's, optionally of one status.
    public func listTasks(agent ref: String?, status: String?) async throws {
        var query = ["limit=1000"]
        if let ref { query.append("agent_id=\(segment(try await agentId(ref).id))") }
        if let status { query.append("status=\(segment(status))") }
        let answer = try await client.call(.GET, "/tasks?" + query.joined(separator: "&"))
        try show(answer, columns: Views.taskColumns, rows: answer.json.arrayValue.map { Views.taskRow($0, now: printer.now()) })
    }

    /// A task by id, else by name.
    public func getTask(_ ref: String) async throws {
        var answer = try await client.send(.GET, "/tasks/\(segment(ref))")
        if answer.status == 404 { answer = try await client.send(.GET, "/tasks/name/\(segment(ref))") }
        guard answer.status == 200 else {
            throw CLIError.api(status: answer.status, message: answer.json.objectValue?["message"]?.stringValue ?? "")
        }
        try show(answer, columns: Views.taskColumns, rows: [Views.taskRow(answer.json, now: printer.now())])
    }

    // MARK: Wait

    /// Returns when `deployment` meets `condition`; throws when it no longer can, or at `timeout` (exit 2).
    public func wait(agent ref: String, _ deployment: String, for condition: WaitCondition, timeout: Duration) async throws {
        let (agentId, name) = try await agentId(ref)
        try await waitFor(agentId: agentId, agentName: name, deployment, condition, timeout: timeout)
        printer.line("deployment \(name)/\(deployment) is \(condition == .production ? "in production" : condition.rawValue)")
    }

    func waitFor(agentId: String, agentName: String, _ deployment: String, _ condition: WaitCondition, timeout: Duration) async throws {
        let latest = try await latestEventId(agentId)
        let path = deploymentPath(agentId, deployment)
        let first = try await client.call(.GET, path)
        switch condition.evaluate(first.json, id: deployment) {
        case .reached: return
        case .impossible(let why): throw CLIError(why)
        case .waiting: break
        }
        let client = self.client
        let outcome: WaitCondition.State? = try await withThrowingTaskGroup(of: WaitCondition.State?.self) { group in
            group.addTask {
                for try await line in EventStream(client: client, agentId: agentId, after: latest) where line.deploymentId == deployment {
                    let reply = try await client.send(.GET, path)
                    if reply.status != 200 && reply.status != 404 {
                        throw CLIError.api(status: reply.status, message: reply.json.objectValue?["message"]?.stringValue ?? "")
                    }
                    let state = condition.evaluate(reply.status == 404 ? nil : reply.json, id: deployment)
                    if state != .waiting { return state }
                }
                throw CLIError("the server closed the watch")
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
        switch outcome {
        case .reached?: return
        case .impossible(let why)?: throw CLIError(why)
        case .waiting?, nil:
            let now = try await client.send(.GET, path)
            let state = now.status == 200
                ? WaitCondition.describe(now.json.objectValue ?? [:], id: deployment).replacingOccurrences(of: "deployment \(deployment) is ", with: "")
                : "gone"
            throw CLIError.timedOut(
                "timed out after \(timeout.formatted) waiting for deployment \(deployment) to be \(condition.rawValue); it is \(state)")
        }
    }

    // MARK: Apply

    /// Applies `documents`: everything is planned (and every agent looked up, every create checked with a
    /// dry run) before the first write, so an invalid document leaves the server untouched.
    public func apply(_ documents: [ApplyDocument], dryRun: Bool, wait: Bool, timeout: Duration) async throws {
        var plans: [ApplyPlan] = []
        var agents: [String: (id: String, name: String)] = [:]
        var known: [String: [JSONValue]] = [:]
        for document in documents {
            let agent: (id: String, name: String)
            if let cached = agents[document.agent] {
                agent = cached
            } else {
                do { agent = try await agentId(document.agent) } catch let error as CLIError where !error.message.hasPrefix("cannot reach") {
                    throw document.problem("agent", error.message)
                }
                agents[document.agent] = agent
            }
            if known[agent.id] == nil { known[agent.id] = try await deployments(agent.id, all: true).json.arrayValue }
            let plan = try ApplyPlan.make(document, agentId: agent.id, agentName: agent.name, deployments: known[agent.id] ?? [])
            if plan.steps.contains(.create) {
                let check = try await client.send(
                    .POST, "/agents/\(segment(agent.id))/deployments?dry_run=true", body: createBody(document))
                if check.status != 200 {
                    let field = check.json.objectValue?["data"]?.objectValue?["errors"]?.arrayValue.first?.objectValue?["field"]?.stringValue
                    throw document.problem(
                        Self.documentField(field) ?? "document", check.json.objectValue?["message"]?.stringValue ?? "HTTP \(check.status)")
                }
                if let id = document.id {
                    // A later document naming the same id finds it as this one will leave it.
                    known[agent.id, default: []].insert(["id": .string(id), "docker_image": .string(document.image), "status": "Pending", "expires_at": nil], at: 0)
                }
            }
            plans.append(plan)
        }
        let suffix = dryRun ? " (dry run)" : ""
        for plan in plans {
            var id = plan.deploymentId
            let label = { "deployment \(plan.agentName)/\(id ?? "(\(plan.document.image))")" }
            if plan.steps.isEmpty { printer.line("\(label()) unchanged\(suffix)") }
            for step in plan.steps {
                switch step {
                case .create:
                    if !dryRun {
                        let created = try await client.call(.POST, "/agents/\(segment(plan.agentId))/deployments", body: createBody(plan.document))
                        id = created.json.objectValue?["id"]?.stringValue ?? id
                    }
                    if plan.steps.count == 1 || wait || dryRun { printer.line("\(label()) created\(suffix)") }
                case .restore:
                    if !dryRun { try await client.call(.POST, deploymentPath(plan.agentId, id ?? "") + "/restore") }
                    printer.line("\(label()) restored\(suffix)")
                case .promote:
                    if !dryRun { try await client.call(.POST, deploymentPath(plan.agentId, id ?? "") + "/promote", body: reasonBody("apply")) }
                    printer.line("\(label()) promoted\(suffix)")
                case .awaitReadyThenPromote(let status):
                    if dryRun {
                        printer.line("\(label()) promoted once Ready\(wait ? "" : " (with --wait)")\(suffix)")
                    } else if wait {
                        try await waitFor(agentId: plan.agentId, agentName: plan.agentName, id ?? "", .ready, timeout: timeout)
                        let current = try await client.call(.GET, deploymentPath(plan.agentId, id ?? ""))
                        if current.json.objectValue?["is_production"] != .bool(true) {
                            try await client.call(.POST, deploymentPath(plan.agentId, id ?? "") + "/promote", body: reasonBody("apply"))
                        }
                        printer.line("\(label()) promoted")
                    } else {
                        let verb = plan.steps.first == .create ? "created" : plan.steps.first == .restore ? "restored" : "unchanged"
                        printer.line("\(label()) \(verb); not promoted: it is \(status) (rerun apply, or use --wait)")
                    }
                }
            }
        }
        if plans.allSatisfy(\.changesNothing) { printer.line("nothing to change") }
    }

    private func createBody(_ document: ApplyDocument) -> JSONValue {
        var body: [String: JSONValue] = ["docker_image": .string(document.image)]
        if let id = document.id { body["id"] = .string(id) }
        if let metadata = document.metadata { body["registration_metadata"] = .object(metadata) }
        return .object(body)
    }

    /// The document's name for a field the server named in a refused create.
    static func documentField(_ field: String?) -> String? {
        guard let field else { return nil }
        if field == "docker_image" { return "image" }
        if field.hasPrefix("registration_metadata") { return "metadata" + field.dropFirst("registration_metadata".count) }
        return field
    }

    // MARK: Output

    private func show(_ answer: APIClient.Answer, columns: [String], rows: [[Table.Cell]]) throws {
        if let text = printer.raw(answer) { return printer.line(text) }
        var table = Table(columns: columns)
        table.rows = rows
        if rows.isEmpty { return FileHandle.standardError.write(Data("No resources found.\n".utf8)) }
        table.render(colour: printer.colour).forEach(printer.line)
    }

    private func done(_ answer: APIClient.Answer, _ message: String, dryRun: Bool) {
        if let text = printer.raw(answer) { return printer.line(text) }
        printer.line(message + (dryRun ? " (dry run)" : ""))
    }

    private func dryRunQuery(_ dryRun: Bool) -> String { dryRun ? "?dry_run=true" : "" }

    private func reasonBody(_ reason: String?) -> JSONValue {
        reason.map { ["reason": .string($0)] } ?? .object([:])
    }
}

extension JSONValue {
    var arrayValue: [JSONValue] { if case .array(let items) = self { items } else { [] } }
}
