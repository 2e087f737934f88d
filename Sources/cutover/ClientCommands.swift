import ArgumentParser
import CutoverCLI
import CutoverCore
import Foundation

/// Where the client commands find the server, shared by all of them.
struct ClientOptions: ParsableArguments {
    @Option(help: "The Cutover server's URL (env CUTOVER_SERVER).")
    var server: String = ProcessInfo.processInfo.environment["CUTOVER_SERVER"] ?? "http://127.0.0.1:8080"

    @Option(help: "An admin token or an agent API key, sent as a bearer token (env CUTOVER_TOKEN).")
    var token: String?

    /// Runs `body` with a session on the server; a `CLIError` becomes one line on stderr and its exit code.
    func run(_ format: OutputFormat = .table, _ body: (Session) async throws -> Void) async throws {
        let client = APIClient(server: server, token: token ?? ProcessInfo.processInfo.environment["CUTOVER_TOKEN"])
        do {
            try await body(Session(client: client, printer: Printer(format: format)))
            await client.shutdown()
        } catch let error as CLIError {
            await client.shutdown()
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(error.exitCode)
        }
    }
}

struct OutputOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "table, json (the API's JSON exactly) or yaml.")
    var output: OutputFormat = .table
}

extension OutputFormat: ExpressibleByArgument {}

extension WaitCondition: ExpressibleByArgument {}

/// `30s`, `2m`, `250ms` as command-line values.
struct DurationArgument: ExpressibleByArgument {
    var duration: Duration
    init?(argument: String) {
        guard let parsed = Duration.parse(argument), parsed > .zero else { return nil }
        duration = parsed
    }
}

struct Agents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, show and delete agents.", subcommands: [List.self, Get.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List agents.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        func run() async throws { try await client.run(output.output) { try await $0.listAgents() } }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one agent.")
        @Argument(help: "The agent's name or id.") var agent: String
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        func run() async throws { try await client.run(output.output) { try await $0.getAgent(agent) } }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an agent (its status becomes Deleted).")
        @Argument(help: "The agent's name or id.") var agent: String
        @Flag(help: "Show the answer without writing anything.") var dryRun = false
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        func run() async throws { try await client.run(output.output) { try await $0.deleteAgent(agent, dryRun: dryRun) } }
    }
}

struct Deployments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, show and create deployments.", subcommands: [List.self, Get.self, Create.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List an agent's deployments, newest first.")
        @Option(help: "The agent's name or id.") var agent: String
        @Flag(help: "Include soft-deleted deployments.") var all = false
        @Flag(help: "After the list, print each deployment as it changes, until interrupted.") var watch = false
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            try await client.run(output.output) { try await $0.listDeployments(agent: agent, all: all, watch: watch) }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one deployment.")
        @Argument(help: "The deployment's id.") var deployment: String
        @Option(help: "The agent's name or id.") var agent: String
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            try await client.run(output.output) { try await $0.getDeployment(agent: agent, deployment) }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a Pending deployment for pods that will register with its id.")
        @Option(help: "The agent's name or id.") var agent: String
        @Option(help: "The build's image.") var image: String
        @Option(help: "The deployment's id (default: one the server makes).") var id: String?
        @Option(name: .customLong("label"), help: "Build information as key=value, recorded as registration metadata (repeatable).")
        var labels: [String] = []
        @Flag(help: "Show the answer without writing anything.") var dryRun = false
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            for label in labels where !label.contains("=") || label.hasPrefix("=") {
                throw ValidationError("--label '\(label)' must be key=value")
            }
        }

        func run() async throws {
            var metadata: [String: String] = [:]
            for label in labels {
                let parts = label.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                metadata[String(parts[0])] = String(parts[1])
            }
            try await client.run(output.output) {
                try await $0.createDeployment(agent: agent, image: image, id: id, labels: metadata, dryRun: dryRun)
            }
        }
    }
}

struct Tasks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List and show tasks (made by the RPCs of agentex clients).", subcommands: [List.self, Get.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tasks, newest first.")
        @Option(help: "Only this agent's (name or id).") var agent: String?
        @Option(help: "Only tasks of this status, e.g. RUNNING.") var status: String?
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        func run() async throws {
            try await client.run(output.output) { try await $0.listTasks(agent: agent, status: status) }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one task.")
        @Argument(help: "The task's id or name.") var task: String
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        func run() async throws { try await client.run(output.output) { try await $0.getTask(task) } }
    }
}

struct Promote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make a Ready deployment the agent's production, atomically.")
    @Option(help: "The agent's name or id.") var agent: String
    @Argument(help: "The deployment's id.") var deployment: String
    @Option(help: "Why; recorded on the event.") var reason: String?
    @Flag(help: "Show the answer without writing anything.") var dryRun = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions
    func run() async throws {
        try await client.run(output.output) { try await $0.promote(agent: agent, deployment, reason: reason, dryRun: dryRun) }
    }
}

struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put the previous production deployment (or --to one) back into production.")
    @Option(help: "The agent's name or id.") var agent: String
    @Option(help: "The deployment to roll back to (default: the most recently demoted production).") var to: String?
    @Option(help: "Why; recorded on the event.") var reason: String?
    @Flag(help: "Show the answer without writing anything.") var dryRun = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions
    func run() async throws {
        try await client.run(output.output) { try await $0.rollback(agent: agent, to: to, reason: reason, dryRun: dryRun) }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Soft-delete a deployment; restorable until garbage-collected.")
    @Option(help: "The agent's name or id.") var agent: String
    @Argument(help: "The deployment's id.") var deployment: String
    @Flag(help: "Show the answer without writing anything.") var dryRun = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions
    func run() async throws {
        try await client.run(output.output) { try await $0.delete(agent: agent, deployment, dryRun: dryRun) }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Undo a deployment's soft delete.")
    @Option(help: "The agent's name or id.") var agent: String
    @Argument(help: "The deployment's id.") var deployment: String
    @Flag(help: "Show the answer without writing anything.") var dryRun = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions
    func run() async throws {
        try await client.run(output.output) { try await $0.restore(agent: agent, deployment, dryRun: dryRun) }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "An agent's audit trail, oldest first.")
    @Option(help: "The agent's name or id.") var agent: String
    @Option(help: "Only this deployment's events.") var deployment: String?
    @Flag(help: "After the trail, print each event as it commits, until interrupted.") var watch = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions
    func run() async throws {
        try await client.run(output.output) { try await $0.events(agent: agent, deployment: deployment, watch: watch) }
    }
}

struct Wait: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until a deployment is ready, in production, failed or deleted.",
        discussion: """
            Exits 0 when the condition holds, 1 as soon as it no longer can (waiting for ready on a Failed \
            deployment fails at once), 2 on timeout. It follows the agent's events; it never polls.
            """)
    @Option(help: "The agent's name or id.") var agent: String
    @Argument(help: "The deployment's id.") var deployment: String
    @Option(name: .customLong("for"), help: "ready, production, failed or deleted.") var condition: WaitCondition
    @Option(help: "How long to wait, e.g. 30s, 2m.") var timeout = DurationArgument(argument: "2m")!
    @OptionGroup var client: ClientOptions
    func run() async throws {
        try await client.run { try await $0.wait(agent: agent, deployment, for: condition, timeout: timeout.duration) }
    }
}

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make deployments match YAML documents (kind: Deployment); applying twice changes nothing.",
        discussion: """
            Each document: kind: Deployment, agent (name or id), id (optional; otherwise matched by image), \
            image, metadata (optional mapping, recorded on create), production (optional; promote once Ready). \
            Every document is checked before anything is written.
            """)
    @Option(name: .customShort("f"), help: "The file, or - for stdin.") var file: String
    @Flag(help: "Print the plan without writing anything.") var dryRun = false
    @Flag(help: "For production: true, wait until the deployment is Ready, then promote it.") var wait = false
    @Option(help: "How long --wait waits for each deployment, e.g. 30s, 2m.") var timeout = DurationArgument(argument: "2m")!
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await client.run { session in
            let text: String
            if file == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("\(file): cannot read the file") }
                text = String(decoding: data, as: UTF8.self)
            }
            let documents = try ApplyDocument.parse(text, file: file)
            try await session.apply(documents, dryRun: dryRun, wait: wait, timeout: timeout.duration)
        }
    }
}
