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
    /// What `AsyncParsableCommand.main()` does; called from `main.swift`, whose top-level code would pick
    /// the synchronous overloads.
    static func runAsMain() async {
        do {
            var command = try parseAsRoot()
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
