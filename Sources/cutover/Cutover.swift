import ArgumentParser

@main
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
