import ArgumentParser

struct Cutover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "A control plane for versioned agent deployments.",
        subcommands: [
            Serve.self, Migrate.self, DemoAgent.self,
            Agents.self, Deployments.self, Tasks.self, Promote.self, Rollback.self, Delete.self, Restore.self, Events.self,
            Wait.self, Apply.self,
        ]
    )
}

extension Cutover {
    static func prefersEventLoopExecutor(_ command: any ParsableCommand) -> Bool {
        guard let serve = command as? Serve, case .postgres? = try? serve.options.settings().database else { return false }
        return true
    }

    /// What `AsyncParsableCommand.main()` does after parsing; called from `main.swift`, whose top-level
    /// code would pick the synchronous overloads.
    static func run(_ parsed: any ParsableCommand) async {
        var command = parsed
        do {
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
