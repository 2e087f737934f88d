import CutoverCore
import CutoverRouting
import HTTPTypes
import Hummingbird
import Metrics
import NIOCore

/// `POST /agents/{id}/rpc`, `/agents/name/{name}/rpc` (production, else legacy) and
/// `/agents/{id}/deployments/{did}/rpc` (that deployment only). Every error is a JSON-RPC error body.
struct RPCRoutes {
    let deps: APIDependencies
    let table: RouteTable
    let proxy: RPCProxy
    static let bodyLimit = 10 << 20

    var tasks: TaskProtocol { TaskProtocol(deps: deps, proxy: proxy, affinity: deps.taskAffinity) }

    func register(on router: Router<APIRequestContext>) {
        router.post("/agents/:id/rpc") { request, context in
            let id = try context.parameters.require("id")
            return await handle(request) { principal in
                try await productionTarget(try await visible(try await table.route(agentId: id), id, principal))
            }
        }
        router.post("/agents/name/:name/rpc") { request, context in
            let name = try context.parameters.require("name")
            return await handle(request) { principal in
                try await productionTarget(try await visible(try await table.route(agentName: name), name, principal))
            }
        }
        router.post("/agents/:id/deployments/:did/rpc") { request, context in
            let id = try context.parameters.require("id")
            let did = try context.parameters.require("did")
            return await handle(request, pinned: true) { principal in
                _ = try await visible(try await table.route(agentId: id), id, principal)
                guard let route = try await table.route(agentId: id, deploymentId: did) else {
                    throw JSONRPC.Failure(.notFound, 404, "deployment '\(did)' not found for agent '\(id)'",
                                          data: ["agent": .string(id), "deployment": .string(did)])
                }
                let data: [String: JSONValue] = ["agent": .string(route.agent.agentId), "deployment": .string(did)]
                if route.isDeleted {
                    throw JSONRPC.Failure(.deleted, 410, "deployment '\(did)' is deleted", data: data)
                }
                guard route.status == .ready, let url = route.url else {
                    throw JSONRPC.Failure(
                        .noRoute, 409, "deployment '\(did)' is \(route.status.rawValue), not Ready", data: data)
                }
                return (route.agent, url, did, data)
            }
        }
    }

    /// The agent as the caller may see it: unknown, deleted and other agents' (for an agent key) are 404.
    func visible(_ route: AgentRoute?, _ ref: String, _ principal: Principal) async throws -> AgentRoute {
        let otherAgent: Bool = if case .agent(let id) = principal { id != route?.agentId } else { false }
        guard let route, !route.isDeleted, !otherAgent else {
            throw JSONRPC.Failure(.notFound, 404, "agent '\(ref)' not found", data: ["agent": .string(ref)])
        }
        return route
    }

    func productionTarget(_ route: AgentRoute) async throws -> (AgentRoute, String, String, [String: JSONValue]) {
        switch route.target {
        case .deployment(let id, let url):
            return (route, url, id, ["agent": .string(route.agentId), "deployment": .string(id)])
        case .legacy(let url):
            return (route, url, "legacy", ["agent": .string(route.agentId), "deployment": "legacy"])
        case .none:
            throw JSONRPC.Failure(
                .noRoute, 409,
                "agent '\(route.name)' has no route: no production deployment and no legacy URL",
                data: ["agent": .string(route.agentId)])
        }
    }

    /// Authenticates, reads and validates the body, resolves the target, checks the method and its params,
    /// then hands the call to the task protocol. Nothing reaches the agent until every check has passed.
    /// `pinned`: the preview route, whose deployment the caller chose.
    func handle(
        _ request: Request, pinned: Bool = false,
        resolve: (Principal) async throws -> (AgentRoute, String, String, [String: JSONValue])
    ) async -> Response {
        var requestId: JSONValue = .null
        let start = ContinuousClock.now
        var outcome = "error"
        defer {
            let counter = outcome == "forwarded" ? RPCMetrics.forwarded : RPCMetrics.requests(outcome)
            counter.increment()
            RPCMetrics.headLatency.recordNanoseconds((ContinuousClock.now - start).microseconds * 1_000)
        }
        do {
            let principal: Principal
            do {
                principal = try await deps.authenticator.principal(request)
            } catch let error as CutoverError {
                throw JSONRPC.Failure(.invalidRequest, error.status, error.message)
            }
            let body: ByteBuffer
            do {
                body = try await collectBody(request, limit: Self.bodyLimit)
            } catch let error as CutoverError {
                throw JSONRPC.Failure(.invalidRequest, error.status, error.message)
            }
            let parsed: JSONValue
            do {
                // Exact: what a call carries is stored (task params, messages, events) and read back.
                parsed = try JSONCodec.parse(body.readableBytesView, exactNumbers: true)
            } catch let error where error.inexactNumberField != nil {
                requestId = JSONRPC.requestId(try? JSONCodec.parse(body.readableBytesView))
                throw JSONRPC.Failure(
                    .invalidParams, 400,
                    "\(error.inexactNumberField!): \(error.reason) (a double cannot hold it; send it as a string to keep it as it is)")
            } catch {
                throw JSONRPC.Failure(.parseError, 400, "parse error: \(error)")
            }
            requestId = JSONRPC.requestId(parsed)
            let rpc = try JSONRPC.validate(parsed)
            let (route, url, deploymentLabel, data) = try await resolve(principal)
            try JSONRPC.authorize(rpc, acpType: route.acpType, data: data)
            let headers: [(String, String)]
            do {
                headers = try HeaderPolicy.upstream(
                    request.headers.map { ($0.name.canonicalName, $0.value) }, apiKey: route.apiKey,
                    newRequestId: Identifiers.uuid)
            } catch {
                throw JSONRPC.Failure(.invalidRequest, 400, error.description, data: data)
            }
            // Every method an acp_type allows is a task method: the task protocol handles it.
            guard let method = TaskMethod(rawValue: rpc.method) else {
                throw JSONRPC.Failure(.methodNotAllowed, 400, "method '\(rpc.method)' is not a task method", data: data)
            }
            let call = try TaskCall.parse(method, params: parsed.objectValue?["params"]?.objectValue ?? [:])
            let target = TaskProtocol.Target(deploymentId: deploymentLabel == "legacy" ? nil : deploymentLabel, url: url)
            let response = try await tasks.handle(
                call, clientId: requestId, route: route, target: target, pinned: pinned, headers: headers, data: data,
                bodySize: body.readableBytes)
            outcome = "forwarded"
            return response
        } catch let failure as JSONRPC.Failure {
            outcome = String(failure.code.rawValue)
            return Wire.response(failure.body(id: requestId), status: .init(code: failure.httpStatus))
        } catch {
            // Reading the route failed (the database) or the request body broke off.
            let failure = JSONRPC.Failure(.upstreamUnreachable, 503, "the request could not be routed: \(error)")
            return Wire.response(failure.body(id: requestId), status: .serviceUnavailable)
        }
    }
}

extension HTTPField.Name {
    static let deploymentId = Self("x-cutover-deployment-id")!
}

/// Made once: metric handles are looked up in the registry on creation, which the hot path should not pay.
enum RPCMetrics {
    static let forwarded = requests("forwarded")
    static let headLatency = Timer(label: "cutover_rpc_head_seconds")
    /// Streamed answers cut because the agent fell silent for longer than the RPC timeout.
    static let streamsCut = Counter(label: "cutover_rpc_streams_cut_total")
    static func requests(_ outcome: String) -> Counter {
        Counter(label: "cutover_rpc_requests_total", dimensions: [("outcome", outcome)])
    }
}
