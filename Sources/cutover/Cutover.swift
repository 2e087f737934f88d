import ArgumentParser

@main
struct Cutover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "A control plane for versioned agent deployments.",
        subcommands: [Serve.self, Migrate.self, DemoAgent.self]
    )
}
