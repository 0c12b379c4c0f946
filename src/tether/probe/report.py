"""The probe's report: steps, the requests each made, and masking (issue 4, issue 9).

Nothing secret is ever put in a report: no client secret, access or refresh token,
authorization code, PKCE verifier or ``state``; of each request only the method, the
URL (secret query parameters masked), the status, the content type, the party that
answered and, for MCP, the JSON-RPC method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tether.errors import TetherError, exit_code

__all__ = [
    "Party",
    "ProbeReport",
    "ProbeStep",
    "Request",
    "StepStatus",
    "fail",
    "mask_params",
    "mask_url",
]

StepStatus = Literal["ok", "failed", "skipped"]
Party = Literal["MCP", "AS", "IdP"]
"""Who answered: the MCP server (its endpoint and its PRM), the authorization server,
or the enterprise IdP (``token_exchange``)."""

_MASK = "***"
_SECRET_PARAMS = frozenset(
    {"state", "code", "code_verifier", "client_secret", "access_token", "refresh_token"}
)


@dataclass(frozen=True)
class Request:
    """One HTTP request the probe made (never a header or body).

    Attributes:
        step: The probe step it belongs to.
        method: The HTTP method.
        url: The URL, secret query parameters masked (:func:`mask_url`).
        status: The response status, ``None`` when none came.
        content_type: The response's content type.
        party: ``MCP``, ``AS`` or ``IdP``.
        rpc: The JSON-RPC method of an MCP request, if any.
        error: The Tether error code when no response came.
    """

    step: str
    method: str
    url: str
    status: int | None
    content_type: str
    party: Party = "AS"
    rpc: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {
            "party": self.party,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "content_type": self.content_type,
        }
        if self.rpc:
            out["rpc"] = self.rpc
        if self.error:
            out["error"] = self.error
        return out

    def line(self) -> str:
        """One concise line: ``MCP POST https://…/mcp (initialize) -> 401 text/plain``.

        Without the query (the authorization request's is in the step's details).
        """
        status = self.status if self.status is not None else (self.error or "error")
        parts = urlsplit(self.url)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        url += "?…" if parts.query else ""
        rpc = f" ({self.rpc})" if self.rpc else ""
        ctype = f" {self.content_type}" if self.content_type else ""
        return f"{self.party} {self.method} {url}{rpc} -> {status}{ctype}"


@dataclass
class ProbeStep:
    """The outcome of one step.

    Attributes:
        name: ``challenge``, ``discovery``, ``registration``, ``authorization``,
            ``token``, ``tools``, ``call``.
        status: ``ok``, ``failed`` or ``skipped``.
        summary: One line.
        details: Findings (verdicts, values; never secrets).
        requests: The HTTP requests made in this step.
        error: ``{code, message, hint, ...}`` of the Tether error when failed.
        exit_code: The CLI exit code of that error.
    """

    name: str
    status: StepStatus = "ok"
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    error: dict[str, Any] | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "details": self.details,
            "requests": [r.to_dict() for r in self.requests],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class ProbeReport:
    """Every step of one probe, in order, and every request it made."""

    url: str
    steps: list[ProbeStep] = field(default_factory=list)
    closing: list[Request] = field(default_factory=list)
    """Requests sent after the last step (closing the MCP session)."""

    @property
    def ok(self) -> bool:
        """True when no step failed."""
        return all(step.status != "failed" for step in self.steps)

    @property
    def failed_step(self) -> ProbeStep | None:
        """The first failing step."""
        return next((s for s in self.steps if s.status == "failed"), None)

    @property
    def exit_code(self) -> int:
        """0, or the exit code of the first failing step's error."""
        step = self.failed_step
        return 0 if step is None else (step.exit_code or 1)

    @property
    def requests(self) -> list[Request]:
        """Every request of the probe in the order sent (issue 9: the request list)."""
        return [r for s in self.steps for r in s.requests] + self.closing

    def step(self, name: str) -> ProbeStep | None:
        """The (last) step of that name."""
        return next((s for s in reversed(self.steps) if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; ``requests`` is the whole list, each with its step."""
        failed = self.failed_step
        return {
            "url": self.url,
            "ok": self.ok,
            "failed_step": failed.name if failed else None,
            "exit_code": self.exit_code,
            "steps": [s.to_dict() for s in self.steps],
            "requests": [{"step": r.step, **r.to_dict()} for r in self.requests],
        }


def fail(step: ProbeStep, exc: TetherError) -> None:
    """Mark ``step`` failed with the error's code, message, hint and exit code."""
    step.status = "failed"
    step.error = exc.to_dict()
    step.exit_code = exit_code(exc)
    step.summary = exc.message
    if exc.hint:
        step.details.setdefault("fix", exc.hint)


def mask_url(url: str) -> str:
    """The URL with secret-bearing query parameters replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [
        (k, _MASK if k in _SECRET_PARAMS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(pairs, safe=":/* "), "")
    )


def mask_params(
    params: Mapping[str, str | Sequence[str]],
) -> dict[str, str | list[str]]:
    """Callback parameters with the code and state masked (every value of a repeat)."""
    return {
        k: (_MASK if k in _SECRET_PARAMS else v)
        if isinstance(v, str)
        else [_MASK if k in _SECRET_PARAMS else x for x in v]
        for k, v in params.items()
    }
