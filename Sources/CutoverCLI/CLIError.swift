/// What ends a client command unsuccessfully: printed as one `error: …` line on stderr.
public struct CLIError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var exitCode: Int32

    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { message }

    /// The server answered with an error envelope (or something else that is not a success).
    public static func api(status: Int, message: String) -> CLIError {
        CLIError(message.isEmpty ? "the server answered HTTP \(status)" : message)
    }

    /// No answer at all: the one line names the URL tried.
    public static func unreachable(_ server: String, _ cause: String) -> CLIError {
        CLIError("cannot reach the Cutover server at \(server): \(cause)")
    }

    /// `wait` ran out of time; distinct from "can no longer be reached" so a pipeline can tell them apart.
    public static func timedOut(_ message: String) -> CLIError { CLIError(message, exitCode: 2) }
}
