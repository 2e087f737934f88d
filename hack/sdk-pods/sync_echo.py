"""A sync agentex-sdk pod, built the way the SDK's `sync` template builds one (FastACP.create).

message/send echoes the user's text back as one TextContent message ("echo: <text>"); with
stream=true it streams the echo as text deltas (one per word) and ends with the full message. Configured by the SDK's own environment variables:
AGENTEX_BASE_URL, ACP_URL, ACP_PORT, AGENT_NAME, ACP_TYPE=sync, AGENTEX_DEPLOYMENT_ID (optional),
AGENT_API_KEY (optional). Run: uvicorn sync_echo:app --port $ACP_PORT (from hack/sdk-pods).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator

from agentex.lib.sdk.fastacp.fastacp import FastACP
from agentex.lib.utils.logging import make_logger
from agentex.protocol.acp import SendMessageParams
from agentex.types.task_message_delta import TextDelta
from agentex.types.task_message_update import StreamTaskMessageDelta, StreamTaskMessageFull, TaskMessageUpdate
from agentex.types.text_content import TextContent

from recorder import Recorder

logger = make_logger(__name__)
DEPLOYMENT = os.environ.get("AGENTEX_DEPLOYMENT_ID") or "legacy"

acp = FastACP.create(acp_type="sync")


@acp.on_message_send
async def handle_message_send(params: SendMessageParams) -> AsyncGenerator[TaskMessageUpdate, None]:
    # An async generator function: FastACP 0.28.4 streams what it yields. (A coroutine that returns
    # a generator, as the SDK's own default SyncACP handler does for stream=true, is mistaken for
    # message content and answered with a -32603 validation error.) The pod answers message/send
    # with NDJSON whether or not stream is set; the platform aggregates for non-streaming callers.
    text = params.content.content if isinstance(params.content, TextContent) else str(params.content)
    reply = f"echo: {text}"
    logger.info(f"sync echo ({DEPLOYMENT}) task={params.task.id} stream={params.stream}")
    if params.stream:
        words = reply.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            yield StreamTaskMessageDelta(type="delta", index=0, delta=TextDelta(type="text", text_delta=piece))
    yield StreamTaskMessageFull(type="full", index=0, content=TextContent(author="agent", content=reply))


app = Recorder(acp)
