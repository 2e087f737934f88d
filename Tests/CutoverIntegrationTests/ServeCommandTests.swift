import Foundation
import Testing

/// `cutover serve` as a process: the refusal of SPEC §6 and configuration errors.
@Suite("cutover serve")
struct ServeCommandTests {
    static let binary = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/cutover").path

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ["PATH": "/usr/bin:/bin"].merging(environment) { _, new in new }
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)))
    func refusesToServeOpenOnANonLoopbackAddress() throws {
        let (status, output) = try Self.run(["serve", "--listen", "0.0.0.0:0", "--database-url", "sqlite::memory:"])
        #expect(status != 0)
        #expect(output.contains("refusing to listen on 0.0.0.0:0 without tokens"))
        #expect(output.contains("--admin-token") && output.contains("--insecure"))
        let (envStatus, envOutput) = try Self.run(
            ["serve", "--database-url", "sqlite::memory:"], environment: ["CUTOVER_LISTEN": "0.0.0.0:0"])
        #expect(envStatus != 0)
        #expect(envOutput.contains("refusing to listen"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)), arguments: [
        (["--progress-deadline", "soon"], "--progress-deadline 'soon' is not a duration"),
        (["--auto-promote", "always"], "--auto-promote must be one of first, never"),
        (["--workers", "0"], "--workers '0' must be an integer"),
        (["--listen", "nohost"], "--listen 'nohost' must be host:port"),
        (["--acp-allowed-hosts", "10.0.0.0/99"], "not a valid CIDR"),
        (["--database-url", "mysql://x"], "expected sqlite://PATH"),
        (["--progress-deadline", "9999999999999h"], "is not a duration"),
    ])
    func rejectsBadSettings(_ arguments: [String], _ message: String) throws {
        let (status, output) = try Self.run(["serve", "--listen", "127.0.0.1:0"] + arguments)
        #expect(status != 0)
        #expect(output.contains(message), "\(output)")
    }
}
