"""The curated public API (``tether.__all__``), guarded like httpx's exported members."""

from __future__ import annotations

import subprocess
import sys
import types

import tether
from tether import errors


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(tether).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(tether.__all__) == tether.__all__
    assert set(tether.__all__) == public


def test_every_library_error_is_exported() -> None:
    web_only = {"Unauthenticated", "Forbidden"}  # the web API's access errors
    classes = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type) and name not in web_only
    }
    assert classes <= set(tether.__all__)


def test_import_tether_loads_no_web_or_cli_framework() -> None:
    # (starlette comes with the mcp SDK itself; the web shell's FastAPI does not)
    code = (
        "import sys, tether; "
        "print(sorted(m for m in ('fastapi', 'typer', 'jinja2', 'rich') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_agent_glue_is_public() -> None:
    """The agent loop needs only ``tether``: tool definitions in, tool results out."""
    from tether.hub.agent import run_tool_calls
    from tether.mcp.render import render_tools

    assert tether.run_tool_calls is run_tool_calls
    assert tether.render_tools is render_tools
