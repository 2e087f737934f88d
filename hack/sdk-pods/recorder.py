"""Shared by the SDK pods: an ASGI wrapper that records every RPC the pod receives.

`POST /api` requests are recorded (method, path, headers, JSON body, the status and body of the
answer) and `GET /debug/received` returns them as a JSON array, so hack/sdk_compat_test.py can see
exactly what Cutover forwarded (the envelope's id, params.agent / params.task, x-agent-api-key...).
Everything else passes straight through to the FastACP app, lifespan included (registration runs
at start-up exactly as in a stock pod).
"""

from __future__ import annotations

import json
import threading

_LOCK = threading.Lock()
RECEIVED: list[dict] = []


class Recorder:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == "/debug/received" and scope.get("method") == "GET":
            with _LOCK:
                data = json.dumps(RECEIVED).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        if path != "/api":
            return await self.app(scope, receive, send)

        # Buffer the request body, record it, then replay it to the app.
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        entry = {
            "method": scope.get("method"),
            "path": path,
            "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])},
            "body": body,
            "status": None,
            "content_type": None,
            "answer": "",
        }
        with _LOCK:
            RECEIVED.append(entry)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        async def capture(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-type":
                        entry["content_type"] = v.decode("latin-1")
            elif message["type"] == "http.response.body" and len(entry["answer"]) < 20000:
                entry["answer"] += message.get("body", b"").decode("utf-8", "replace")
            await send(message)

        await self.app(scope, replay, capture)
