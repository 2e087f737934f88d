"""An async ("base", no Temporal) agentex-sdk pod, built the way the SDK's `default` template and
its tutorials build one (FastACP.create(acp_type="async", config=AsyncACPConfig(type="base"))).

- task/create: creates the task's state ({"deployment", "events": 0}) with adk.state.create and
  writes a greeting message ("task <id> created by <deployment>") with adk.messages.create.
- event/send: writes "echo: <text> (from <deployment>)" with adk.messages.create, bumps the state
  (events += 1, last = text) with adk.state.update, and commits the tracker cursor the way the
  SDK's default AsyncBaseACP handler does: tracker.update(tracker_id=<task id>,
  last_processed_event_id=<event id>); if that is refused it finds the tracker by task and agent
  and updates that one. The state's "tracker_via" says which worked.
- task/cancel: logs it, as the default handler does.
All platform calls carry trace_id=<task id>, so with the Agentex tracing processor configured
below each one also writes a span (POST /spans).

Configured by the SDK's environment variables (AGENTEX_BASE_URL, ACP_URL, ACP_PORT, AGENT_NAME,
ACP_TYPE=async, AGENTEX_DEPLOYMENT_ID, AGENT_API_KEY). Run: uvicorn async_echo:app --port $ACP_PORT.
"""

from __future__ import annotations

import os

from agentex.lib import adk
from agentex.lib.core.tracing.tracing_processor_manager import add_tracing_processor_config
from agentex.lib.sdk.fastacp.fastacp import FastACP
from agentex.lib.types.fastacp import AsyncACPConfig
from agentex.lib.types.tracing import AgentexTracingProcessorConfig
from agentex.lib.utils.logging import make_logger
from agentex.protocol.acp import CancelTaskParams, CreateTaskParams, SendEventParams
from agentex.types.text_content import TextContent

from recorder import Recorder

logger = make_logger(__name__)
DEPLOYMENT = os.environ.get("AGENTEX_DEPLOYMENT_ID") or "legacy"

add_tracing_processor_config(AgentexTracingProcessorConfig())

acp = FastACP.create(acp_type="async", config=AsyncACPConfig(type="base"))


@acp.on_task_create
async def handle_task_create(params: CreateTaskParams):
    task_id, agent_id = params.task.id, params.agent.id
    logger.info(f"async echo ({DEPLOYMENT}) task/create {task_id}")
    await adk.state.create(
        task_id=task_id,
        agent_id=agent_id,
        state={"deployment": DEPLOYMENT, "events": 0, "params": params.params},
        trace_id=task_id,
    )
    await adk.messages.create(
        task_id=task_id,
        content=TextContent(author="agent", content=f"task {task_id} created by {DEPLOYMENT}"),
        trace_id=task_id,
    )


@acp.on_task_event_send
async def handle_event_send(params: SendEventParams):
    task_id, agent_id = params.task.id, params.agent.id
    content = params.event.content
    text = content.content if isinstance(content, TextContent) else str(content)
    logger.info(f"async echo ({DEPLOYMENT}) event/send {task_id} event={params.event.id}")
    await adk.messages.create(
        task_id=task_id,
        content=TextContent(author="agent", content=f"echo: {text} (from {DEPLOYMENT})"),
        trace_id=task_id,
    )
    state = await adk.state.get_by_task_and_agent(task_id=task_id, agent_id=agent_id, trace_id=task_id)
    tracker_via = "tracker_id=task.id"
    try:
        await adk.agent_task_tracker.update(
            tracker_id=task_id, last_processed_event_id=params.event.id, trace_id=task_id
        )
    except Exception as err:  # the default handler's call refused: find the tracker instead
        logger.warning(f"tracker.update(tracker_id=task.id) failed: {err}")
        tracker_via = "by task and agent"
        try:
            tracker = await adk.agent_task_tracker.get_by_task_and_agent(task_id=task_id, agent_id=agent_id)
            if tracker is not None:
                await adk.agent_task_tracker.update(
                    tracker_id=tracker.id, last_processed_event_id=params.event.id, trace_id=task_id
                )
            else:
                tracker_via = "none found"
        except Exception as err2:
            logger.warning(f"tracker by task and agent failed: {err2}")
            tracker_via = f"failed: {type(err2).__name__}"
    if state is not None:
        new_state = dict(state.state)
        new_state.update(events=int(new_state.get("events", 0)) + 1, last=text, tracker_via=tracker_via,
                         handled_by=DEPLOYMENT)
        await adk.state.update(state_id=state.id, task_id=task_id, agent_id=agent_id, state=new_state,
                               trace_id=task_id)


@acp.on_task_cancel
async def handle_task_cancel(params: CancelTaskParams):
    logger.info(f"async echo ({DEPLOYMENT}) task/cancel {params.task.id}")


app = Recorder(acp)
