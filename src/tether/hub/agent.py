"""The agent loop's glue: run a model response's tool calls, answer in its format.

:func:`run_tool_calls` reads the tool calls out of an OpenAI (Chat Completions or
Responses) or Anthropic response, calls each through a toolset
(:meth:`tether.hub.tether.Tether.call`), concurrently and each within its own deadline,
and returns the provider's tool-result messages (:mod:`tether.mcp.toolcalls`, TOOL-6 –
TOOL-8). Every per-call failure (unknown tool, arguments that are not a JSON object,
the deadline, a tool error, authorization needed, a server that cannot be reached, even
a bug) is answered as model-visible text, so the agent's turn goes on (TOOL-3, TOOL-9,
G-25).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import anyio

from tether.errors import TetherError, UsageError
from tether.mcp.results import (
    ToolErrorCode,
    ToolResult,
    error_result,
    result_from_error,
)
from tether.mcp.toolcalls import (
    ToolCall,
    check_provider,
    parse_tool_calls,
    tool_results,
)

__all__ = ["DEADLINE", "MAX_CONCURRENCY", "ToolCaller", "run_tool_calls"]

logger = logging.getLogger(__name__)

DEADLINE = 60.0
"""Seconds each call may take by default (the server's own timeout still applies)."""
MAX_CONCURRENCY = 8
"""Calls of one response run at the same time by default."""


class ToolCaller(Protocol):
    """What runs one call: :class:`~tether.hub.tether.Tether` (its ``call``)."""

    async def call(
        self,
        toolset_ref: str,
        tool_name: str,
        arguments: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        reserved: Sequence[str] = (),
    ) -> ToolResult:
        """Call a toolset's tool by its exposed name; failures as error results."""
        ...


async def run_tool_calls(
    tether: ToolCaller,
    toolset: str,
    response: Any,
    *,
    provider: str,
    user: str | None = None,
    deadline: float | None = DEADLINE,
    max_concurrency: int = MAX_CONCURRENCY,
    reserved: Sequence[str] = (),
    images: bool = True,
) -> list[dict[str, Any]]:
    """Run the tool calls of a model response; the messages that answer them.

    Append the returned messages (Chat Completions: ``tool`` messages; Responses:
    ``function_call_output`` items; Anthropic: one ``user`` message of
    ``tool_result`` blocks) to the conversation, after the model's own turn, and ask
    the model again. An empty list means the model called none of the toolset's
    tools: without tools of your own, its answer is final.

    Calls to ``reserved`` names (the host application's own tools, compared
    case-insensitively as tool names are) are neither run nor answered: answer them
    yourself. For Anthropic, put your ``tool_result`` blocks into the same ``user``
    message, since all results of a turn go back in one message (TOOL-8).

    Args:
        tether: The :class:`~tether.hub.tether.Tether` (or anything with its ``call``).
        toolset: The toolset whose tools the model was given (id or name).
        response: The model's response, as a dict or an SDK object with
            ``model_dump()``; see :func:`tether.mcp.toolcalls.parse_tool_calls`.
        provider: ``"openai_chat"``, ``"openai_responses"`` or ``"anthropic"``.
        user: The user the agent acts for (needed for per-user servers).
        deadline: Seconds each call may take, from when it starts (calls waiting for
            a free slot are not yet timed); ``None`` leaves only the server's timeout.
        max_concurrency: How many calls run at once.
        reserved: The same reserved names given to :meth:`Tether.toolset` (your own
            tools' names), so the exposed names resolve the same way; their calls
            are left to you.
        images: Pass tool results' images to the providers that take them.

    Returns:
        The provider's tool-result messages, one answer per call, in call order.

    Raises:
        UsageError: Unknown provider, a bad ``deadline`` or ``max_concurrency``, or a
            response that is not in the provider's format.
        InvalidResponse: A tool call without an id.
    """
    kind = check_provider(provider)
    if deadline is not None and not deadline > 0:
        raise UsageError("deadline must be a positive number of seconds, or None")
    if max_concurrency < 1:
        raise UsageError("max_concurrency must be at least 1")
    own = {name.lower() for name in reserved}
    calls = tuple(
        call
        for call in parse_tool_calls(response, kind)
        if not (call.name and call.name.lower() in own)
    )
    results: list[ToolResult | None] = [None] * len(calls)
    limiter = anyio.CapacityLimiter(max_concurrency)

    async def one(index: int, call: ToolCall) -> None:
        if call.problem is not None:
            results[index] = call.problem
            return
        async with limiter:
            results[index] = await _run(tether, toolset, call, user, deadline, reserved)

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(one, index, call)
    done = [r for r in results if r is not None]
    return tool_results(kind, calls, done, images=images)


async def _run(
    tether: ToolCaller,
    toolset: str,
    call: ToolCall,
    user: str | None,
    deadline: float | None,
    reserved: Sequence[str],
) -> ToolResult:
    """One call; whatever happens, a result."""
    try:
        with anyio.fail_after(deadline):
            return await tether.call(
                toolset, call.name, call.arguments, user=user, reserved=reserved
            )
    except TimeoutError:
        if deadline is None:  # a timeout raised by the call itself
            return error_result(ToolErrorCode.TIMEOUT)
        return error_result(
            ToolErrorCode.TIMEOUT,
            f"The tool did not finish within {deadline:g} seconds. Try again later, "
            "or with a smaller request.",
        )
    except TetherError as exc:
        return result_from_error(exc)
    except Exception:
        logger.exception("tool call %r of toolset %r failed", call.name[:100], toolset)
        return error_result(ToolErrorCode.INTERNAL)
