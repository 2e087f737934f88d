import CutoverCore
import Hummingbird

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json`: unauthenticated.
struct OperationsRoutes {
    let deps: APIDependencies

    func register(on router: Router<APIRequestContext>) {
        router.get("/healthz") { _, _ in Wire.response(["status": "ok"]) }
        router.get("/readyz") { _, _ in
            guard await deps.store.isReady() else {
                throw CutoverError.unavailable("database unreachable or migrations not applied")
            }
            guard deps.hearsChanges() else {
                throw CutoverError.unavailable("not listening for the other replicas' changes; reconnecting")
            }
            return Wire.response(["status": "ready"])
        }
        router.get("/metrics") { _, _ in
            let text = await deps.metrics?() ?? ""
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/openapi.json") { _, _ in Wire.response(OpenAPIDocument.document) }
    }
}
