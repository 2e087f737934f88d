import CutoverCore
import Foundation

/// The table columns of each record, from the API's JSON.
enum Views {
    static let agentColumns = ["NAME", "STATUS", "PRODUCTION", "TYPE", "AGE"]
    static let deploymentColumns = ["NAME", "STATUS", "PRODUCTION", "IMAGE", "AGE"]
    static let eventColumns = ["AGE", "TYPE", "DEPLOYMENT", "ACTOR", "MESSAGE"]
    static let taskColumns = ["ID", "NAME", "STATUS", "DEPLOYMENT", "AGE"]

    static func taskRow(_ task: JSONValue, now: Date) -> [Table.Cell] {
        let t = task.objectValue ?? [:]
        let status = t["status"]?.stringValue ?? ""
        let colour: Int? = switch status {
        case "RUNNING": 33
        case "COMPLETED": 32
        case "FAILED", "TIMED_OUT", "TERMINATED": 31
        default: 90
        }
        return [
            .init(t["id"]?.stringValue ?? ""),
            .init(t["name"]?.stringValue ?? "<none>"),
            .init(status, colour: colour),
            .init(t["deployment_id"]?.stringValue ?? "legacy"),
            .init(Age.describe(t["created_at"]?.stringValue, now: now)),
        ]
    }

    static func agentRow(_ agent: JSONValue, now: Date) -> [Table.Cell] {
        let a = agent.objectValue ?? [:]
        let status = a["status"]?.stringValue ?? ""
        return [
            .init(a["name"]?.stringValue ?? ""),
            .init(status, colour: colour(status)),
            .init(a["production_deployment_id"]?.stringValue ?? "<none>"),
            .init(a["acp_type"]?.stringValue ?? ""),
            .init(Age.describe(a["created_at"]?.stringValue, now: now)),
        ]
    }

    static func deploymentRow(_ deployment: JSONValue, now: Date) -> [Table.Cell] {
        let d = deployment.objectValue ?? [:]
        let deleted = !(d["expires_at"]?.isNull ?? true)
        let status = d["status"]?.stringValue ?? ""
        return [
            .init(d["id"]?.stringValue ?? ""),
            .init(deleted ? "\(status) (deleted)" : status, colour: deleted ? 90 : colour(status)),
            .init(d["is_production"] == .bool(true) ? "yes" : "-"),
            .init(d["docker_image"]?.stringValue ?? ""),
            .init(Age.describe(d["created_at"]?.stringValue, now: now)),
        ]
    }

    static func eventRow(_ event: JSONValue, now: Date) -> [Table.Cell] {
        let e = event.objectValue ?? [:]
        let type = e["type"]?.stringValue ?? ""
        var message = e["message"]?.stringValue ?? ""
        if let reason = e["reason"]?.stringValue, !message.contains(reason) { message += " (\(reason))" }
        return [
            .init(Age.describe(e["created_at"]?.stringValue, now: now)),
            .init(type, colour: type == "Failed" ? 31 : nil),
            .init(e["deployment_id"]?.stringValue ?? "-"),
            .init(e["actor"]?.stringValue ?? ""),
            .init(message),
        ]
    }

    /// Green for what is fine, yellow for what is on its way, red for what failed.
    static func colour(_ status: String) -> Int? {
        switch status {
        case "Ready": 32
        case "Pending", "Unknown", "BuildOnly": 33
        case "Failed", "Unhealthy": 31
        case "Deleted": 90
        default: nil
        }
    }
}
