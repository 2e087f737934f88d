import CutoverCore
import Foundation
import Yams

/// One document of `cutover apply`: the desired state of one deployment.
public struct ApplyDocument: Equatable, Sendable {
    public var file: String
    /// From 1, as a person counts the documents of the file.
    public var index: Int
    public var agent: String
    public var id: String?
    public var image: String
    public var metadata: [String: JSONValue]?
    public var production: Bool

    static let fields: Set<String> = ["kind", "agent", "id", "image", "metadata", "production"]

    func problem(_ field: String, _ text: String) -> CLIError {
        CLIError("\(file): document \(index): \(field): \(text)")
    }

    /// Every document of `text`, each checked; the first problem found names its file, document and field.
    public static func parse(_ text: String, file: String) throws -> [ApplyDocument] {
        var documents: [ApplyDocument] = []
        var index = 0
        do {
            let parser = try Parser(yaml: text)
            while let root = try parser.nextRoot() {
                index += 1
                let loaded = Constructor.default.any(from: root)
                if loaded is NSNull { continue }  // an empty document, e.g. after a trailing `---`
                documents.append(try document(loaded, file: file, index: index))
            }
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("\(file): document \(index + 1): not valid YAML: \(describe(error))")
        }
        if documents.isEmpty { throw CLIError("\(file): no documents to apply") }
        return documents
    }

    private static func document(_ loaded: Any, file: String, index: Int) throws -> ApplyDocument {
        var doc = ApplyDocument(file: file, index: index, agent: "", id: nil, image: "", metadata: nil, production: false)
        guard let map = loaded as? [String: Any] else { throw doc.problem("document", "must be a mapping of fields") }
        if let unknown = map.keys.sorted().first(where: { !fields.contains($0) }) {
            throw doc.problem(unknown, "unknown field (known: \(fields.sorted().joined(separator: ", ")))")
        }
        guard let kind = map["kind"] else { throw doc.problem("kind", "required (kind: Deployment)") }
        guard kind as? String == "Deployment" else { throw doc.problem("kind", "must be Deployment") }
        doc.agent = try string(map, "agent", in: doc, required: true) ?? ""
        doc.image = try string(map, "image", in: doc, required: true) ?? ""
        if let problem = Rules.nulProblem(doc.image) { throw doc.problem("image", problem) }
        doc.id = try string(map, "id", in: doc, required: false)
        if let id = doc.id, let problem = Rules.deploymentIdProblem(id) { throw doc.problem("id", problem) }
        if let metadata = map["metadata"], !(metadata is NSNull) {
            guard let object = metadata as? [String: Any] else { throw doc.problem("metadata", "must be a mapping") }
            doc.metadata = try object.mapValues { try json($0, field: "metadata", in: doc) }
        }
        if let production = map["production"] {
            guard let flag = production as? Bool else { throw doc.problem("production", "must be true or false") }
            doc.production = flag
        }
        return doc
    }

    private static func string(_ map: [String: Any], _ field: String, in doc: ApplyDocument, required: Bool) throws -> String? {
        guard let value = map[field], !(value is NSNull) else {
            if required { throw doc.problem(field, "required") }
            return nil
        }
        // YAML reads `id: 4312` as a number; an id or image is text whatever it looks like.
        let text: String
        switch value {
        case let s as String: text = s
        case let n as Int: text = String(n)
        default: throw doc.problem(field, "must be a string")
        }
        if text.isEmpty { throw doc.problem(field, "must not be empty") }
        return text
    }

    private static func json(_ value: Any, field: String, in doc: ApplyDocument) throws -> JSONValue {
        switch value {
        case let s as String: return .string(s)
        case let b as Bool: return .bool(b)
        case let n as Int: return .number(Double(n))
        case let d as Double: return .number(d)
        case let a as [Any]: return .array(try a.map { try json($0, field: field, in: doc) })
        case let o as [String: Any]: return .object(try o.mapValues { try json($0, field: field, in: doc) })
        case is NSNull: return .null
        default: throw doc.problem(field, "holds a value that is not JSON (\(type(of: value)))")
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? YamlError { return "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)" }
        return "\(error)"
    }
}

/// What applying one document does, decided from the deployments its agent has now.
public struct ApplyPlan: Equatable, Sendable {
    public enum Step: Equatable, Sendable {
        case create
        case restore
        case promote
        /// Production was asked for, but the deployment is not Ready yet.
        case awaitReadyThenPromote(status: String)
    }

    public var document: ApplyDocument
    public var agentId: String
    public var agentName: String
    /// Nil when a deployment without an id in the document is still to be created.
    public var deploymentId: String?
    public var steps: [Step]

    public var changesNothing: Bool { steps.isEmpty }

    /// `deployments` is every deployment of the agent, soft-deleted ones included, newest first.
    public static func make(
        _ document: ApplyDocument, agentId: String, agentName: String, deployments: [JSONValue]
    ) throws -> ApplyPlan {
        var plan = ApplyPlan(document: document, agentId: agentId, agentName: agentName, deploymentId: document.id, steps: [])
        let existing: [String: JSONValue]?
        if let id = document.id {
            existing = deployments.lazy.compactMap(\.objectValue).first { $0["id"]?.stringValue == id }
        } else {
            existing = deployments.lazy.compactMap(\.objectValue).first {
                $0["docker_image"]?.stringValue == document.image && ($0["expires_at"]?.isNull ?? true)
            }
        }
        guard let d = existing else {
            plan.steps = [.create]
            if document.production { plan.steps.append(.awaitReadyThenPromote(status: "Pending")) }
            return plan
        }
        let id = d["id"]?.stringValue ?? ""
        plan.deploymentId = id
        let image = d["docker_image"]?.stringValue ?? ""
        if image != document.image {
            throw document.problem("image", "deployment \(id) exists with image \(image); a deployment's image never changes (give the new build its own id)")
        }
        if !(d["expires_at"]?.isNull ?? true) { plan.steps.append(.restore) }
        guard document.production, d["is_production"] != .bool(true) else { return plan }
        switch d["status"]?.stringValue ?? "" {
        case "Ready": plan.steps.append(.promote)
        case "Failed":
            throw document.problem(
                "production", "\(WaitCondition.describe(d, id: id)); it cannot be promoted (ship a new build)")
        case let status: plan.steps.append(.awaitReadyThenPromote(status: status))
        }
        return plan
    }
}
