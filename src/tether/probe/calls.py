"""The probe's MCP steps: ``tools/list``, the asked-for calls, the skills (SEP-2640)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tether import AuthorizationRequired, StepUpRequired, Tether, TetherError
from tether.probe.connect import authorize
from tether.probe.options import SERVER_NAME, ProbeOptions
from tether.probe.recorder import Recorder
from tether.probe.report import ProbeReport, ProbeStep, fail

__all__ = ["skills", "tools"]


async def tools(
    tether: Tether, recorder: Recorder, options: ProbeOptions, report: ProbeReport
) -> None:
    """``tools/list`` and the optional call, re-authorizing within the retry budgets."""
    if not options.list_tools and options.call is None:
        return
    budgets = {"step_up": options.step_up_retries, "again": options.reauthorize_retries}
    while True:
        step = ProbeStep("tools")
        report.steps.append(step)
        try:
            await _list_and_call(tether, recorder, options, report, step)
            return
        except AuthorizationRequired as exc:
            # A 403 insufficient_scope (SCP-6), or a grant the server no longer takes,
            # e.g. its PRM now names another authorization server (SEP-2352): the hub
            # has rediscovered, and connecting again registers at the new issuer.
            failed = report.steps[-1]
            failed.requests += recorder.take(failed.name)
            fail(failed, exc)
            kind = "step_up" if isinstance(exc, StepUpRequired) else "again"
            if budgets[kind] <= 0:
                return
            budgets[kind] -= 1
            failed.status = "skipped"
            failed.exit_code = 0
            failed.summary = f"{exc.message}; re-authorizing"
            if not await authorize(tether, recorder, options, report):
                return
        except TetherError as exc:
            failed = report.steps[-1]
            failed.requests += recorder.take(failed.name)
            fail(failed, exc)
            return


async def _list_and_call(
    tether: Tether,
    recorder: Recorder,
    options: ProbeOptions,
    report: ProbeReport,
    step: ProbeStep,
) -> None:
    started = time.monotonic()
    options.note("tools/list")
    test = await tether.test_connection(SERVER_NAME)
    step.requests = recorder.take("tools")
    names = list(test.tool_names)
    step.summary = f"{test.tool_count} tool(s)"
    step.details = {
        "protocol_version": test.protocol_version,
        "server_info": dict(test.server_info),
        "capabilities": dict(test.capabilities),
        "tool_count": test.tool_count,
        "tool_names": names,
        "seconds": round(time.monotonic() - started, 3),
    }
    for name, arguments in await _planned_calls(tether, options, names):
        step = ProbeStep("call")
        report.steps.append(step)
        options.note(f"calling {name}")
        await _call(tether, step, name, arguments)
        step.requests = recorder.take("call")


async def _planned_calls(
    tether: Tether, options: ProbeOptions, names: list[str]
) -> list[tuple[str, Mapping[str, Any]]]:
    """The tool calls the options ask for, in order (see :class:`ProbeOptions`)."""
    if options.call is not None:
        return [(options.call, options.call_args)]
    if options.tool_calls:
        return list(options.tool_calls)
    if options.call_all_listed:
        return [(name, {}) for name in names]
    if options.schema_echo is not None:
        echo, source = options.schema_echo
        listed = {t.get("name"): t for t in await tether.list_tools(SERVER_NAME)}
        schema = listed.get(source, {}).get("inputSchema")
        if echo in listed and isinstance(schema, dict):
            return [(echo, {"schema": schema})]
    if options.call_if_listed in names:
        return [(options.call_if_listed, {})]
    return []


async def _call(
    tether: Tether, step: ProbeStep, name: str, arguments: Mapping[str, Any]
) -> None:
    result = await tether.call_tool(
        SERVER_NAME, name, dict(arguments), raise_errors=True
    )
    step.details = {
        "tool": name,
        "is_error": result.is_error,
        "text": result.text[:500],
    }
    if result.structured is not None:
        step.details["structured"] = result.structured
    if not result.is_error:
        step.summary = f"{name} succeeded"
        return
    step.status = "failed"
    step.exit_code = 1
    step.summary = f"{name} returned isError: true"
    step.error = {
        "code": result.error_code or "tool_error",
        "message": step.summary,
        "hint": "check the tool's arguments (--args)",
    }


async def skills(
    tether: Tether, recorder: Recorder, options: ProbeOptions, report: ProbeReport
) -> None:
    """List the server's skills and, with ``load``, load each one (SEP-2640)."""
    step = ProbeStep("skills")
    report.steps.append(step)
    options.note("skills/list")
    try:
        entries = await tether.list_skills(SERVER_NAME)
    except TetherError as exc:
        step.requests = recorder.take("skills")
        fail(step, exc)
        return
    step.requests = recorder.take("skills")
    step.summary = f"{len(entries)} skill(s)"
    step.details = {
        "skills": [
            {"name": e.name, "uri": e.uri, "files": len(e.files)} for e in entries
        ]
    }
    if options.skills != "load":
        return
    for entry in entries:
        step = ProbeStep("skill")
        report.steps.append(step)
        try:
            skill = await tether.read_skill(SERVER_NAME, entry.name)
            for file in entry.supporting:
                await tether.read_skill_file(SERVER_NAME, entry.name, file.uri)
        except TetherError as exc:
            step.requests = recorder.take("skill")
            fail(step, exc)
            continue
        step.requests = recorder.take("skill")
        step.summary = f"{skill.name} loaded and verified"
        step.details = {"skill": skill.name, "files": len(entry.files)}
