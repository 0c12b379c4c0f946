"""Remote text reaches the terminal without escape sequences (issue 11 item 9)."""

from __future__ import annotations

import pytest

from tether.cli import render
from tether.errors import OAuthError
from tether.hub.tether import ConnectionInfo

ATTACK = "\x1b]0;pwned\x07\x1b[2J\x1b[1;31mfake prompt$ \x9b0m\r\x1b]8;;http://e\x07x"


def test_connection_status_strips_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    error = OAuthError.from_response("invalid_grant", ATTACK + "y" * 5000)
    info = ConnectionInfo(
        server_id="s1",
        server_name="jira",
        subject="alice",
        status="needs_reauth",
        issuer="https://as.example/" + ATTACK,
        client_id=None,
        scopes=("read", ATTACK),
        required_scopes=(ATTACK,),
        expires_at=None,
        has_refresh_token=False,
        connected_at=None,
        refreshed_at=None,
        last_error_code="oauth.invalid_grant",
        last_error=ATTACK + str(error),
    )
    render.connection(info, as_json=False)
    out = capsys.readouterr().out
    for bad in ("\x1b", "\x07", "\x9b", "\r"):
        assert bad not in out
    assert "fake prompt$" in out
    assert max(len(line) for line in out.splitlines()) < 2 * render.MAX_TERMINAL_TEXT


def test_terminal_text_keeps_lines_of_tool_output() -> None:
    text = "line 1\n\x1b[31mline 2\x1b[0m\r\n\tline 3"
    assert render.terminal_text(text, multiline=True) == "line 1\nline 2\n\tline 3"
    assert render.terminal_text(text) == "line 1 line 2 line 3"
