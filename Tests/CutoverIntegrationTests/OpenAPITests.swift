import CutoverCore
import CutoverServer
import Hummingbird
import Logging
import Testing

/// The published OpenAPI document and the router agree: every route served is documented with its
/// method, and every documented operation is served.
@Suite("OpenAPI document")
struct OpenAPITests {
    static let methods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// `method path` of every operation the document lists.
    static func documented(_ document: JSONValue) -> Set<String> {
        var operations: Set<String> = []
        for (path, item) in document["paths"]?.objectValue ?? [:] {
            for method in (item.objectValue ?? [:]).keys where methods.contains(method) {
                operations.insert("\(method.uppercased()) \(path)")
            }
        }
        return operations
    }

    /// `method path` of every route the app's router registers, with `:name` captures written `{name}`.
    static func served(_ backend: Backend) async throws -> Set<String> {
        let store = try await backend.makeStore()
        let app = CutoverApp(store: store, options: .init(), logger: Logger(label: "openapi-test"))
        let routes = app.router.routes.map { route in
            let path = route.path.description.split(separator: "/", omittingEmptySubsequences: false).map { part in
                part.hasPrefix(":") ? "{\(part.dropFirst())}" : String(part)
            }.joined(separator: "/")
            return "\(route.method.rawValue) \(path)"
        }
        try await app.httpClient.shutdown()
        try await Backend.discard(store)
        return Set(routes)
    }

    /// The document as `GET /openapi.json` serves it.
    static func fetch(_ h: Harness) async throws -> JSONValue {
        let reply = try await h.get("/openapi.json")
        #expect(reply.status == 200)
        #expect(reply.headers.first(name: "content-type") == "application/json")
        return reply.json
    }

    @Test(arguments: Backend.all)
    func everyRouteIsDocumentedAndEveryDocumentedRouteIsServed(_ backend: Backend) async throws {
        let served = try await Self.served(backend)
        #expect(served.count >= 23, "the router lists its routes: \(served.sorted())")
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let documented = Self.documented(try await Self.fetch(h))
            #expect(served.subtracting(documented).sorted() == [], "served but not documented")
            #expect(documented.subtracting(served).sorted() == [], "documented but not served")
        }
    }

    @Test(arguments: Backend.all)
    func theDocumentIsServedAsOpenAPI31JSON(_ backend: Backend) async throws {
        let served = try await Self.served(backend)
        let servedPaths = Set(served.map { $0.split(separator: " ", maxSplits: 1)[1] })
        try await Harness.with(backend, .init(runController: false, socket: false)) { h in
            let document = try await Self.fetch(h)
            #expect(document["openapi"] == "3.1.0")
            #expect(document["info"]?["title"] == "Cutover")
            let paths = try #require(document["paths"]?.objectValue)
            #expect(paths.count == servedPaths.count)
            #expect(document["components"]?["securitySchemes"]?["adminToken"]?["scheme"] == "bearer")
            #expect(document["components"]?["securitySchemes"]?["agentApiKey"]?["name"] == "x-agent-api-key")
            // YAML scalars arrive typed: numbers as numbers, quoted status codes and versions as strings.
            #expect(document["components"]?["parameters"]?["Limit"]?["schema"]?["maximum"] == 1000)
            #expect(paths["/agents/{id}/rpc"]?["post"]?["responses"]?["502"] != nil)
            // Served once parsed: a second answer is the same document.
            #expect(try await Self.fetch(h) == document)
        }
    }

    /// Every `{name}` of a path is declared as a path parameter, and every `$ref` names something in the document.
    @Test func parametersAndReferencesResolve() async throws {
        try await Harness.with(.sqlite, .init(runController: false, socket: false)) { h in
            let document = try await Self.fetch(h)
            for (path, item) in document["paths"]?.objectValue ?? [:] {
                let captures = Set(path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) })
                for (method, operation) in item.objectValue ?? [:] where Self.methods.contains(method) {
                    let declared = (item["parameters"]?.arrayValue ?? []) + (operation["parameters"]?.arrayValue ?? [])
                    let names = Set(declared.compactMap { Self.resolve($0, in: document) }
                        .filter { $0["in"] == "path" }.compactMap { $0["name"]?.stringValue })
                    #expect(names == captures, "\(method) \(path) declares path parameters \(names.sorted())")
                    #expect(operation["responses"]?.objectValue?.isEmpty == false, "\(method) \(path) has responses")
                }
            }
            var unresolved: [String] = []
            Self.visitReferences(document) { ref in
                if Self.pointer(ref, in: document) == nil { unresolved.append(ref) }
            }
            #expect(unresolved == [])
        }
    }

    static func resolve(_ value: JSONValue, in document: JSONValue) -> JSONValue? {
        guard let ref = value["$ref"]?.stringValue else { return value }
        return pointer(ref, in: document)
    }

    /// Follows a local JSON pointer (`#/components/...`).
    static func pointer(_ ref: String, in document: JSONValue) -> JSONValue? {
        guard ref.hasPrefix("#/") else { return nil }
        var node: JSONValue? = document
        for token in ref.dropFirst(2).split(separator: "/") {
            let key = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            node = node?[key]
        }
        return node
    }

    static func visitReferences(_ value: JSONValue, _ visit: (String) -> Void) {
        switch value {
        case .object(let object):
            if let ref = object["$ref"]?.stringValue { visit(ref) }
            for child in object.values { visitReferences(child, visit) }
        case .array(let items):
            for child in items { visitReferences(child, visit) }
        default: break
        }
    }
}

extension JSONValue {
    fileprivate var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }
}
