"""The probe's request list: every request its Tether sends, by step and party (issue 9).

A :class:`Recorder` is the ``on_request`` observer of the probe's
:meth:`tether.Tether.open`: it sees the OAuth steps' requests and the MCP session's
alike, and hands them out step by step (:meth:`Recorder.take`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from tether import RequestRecord
from tether.probe.report import Party, Request, mask_url

__all__ = ["Recorder", "party_of"]

PRM_PATH = "/.well-known/oauth-protected-resource"
"""The protected resource metadata's well-known prefix (RFC 9728 §3): served by the
MCP server, not by its authorization server."""


def party_of(record: RequestRecord) -> Party:
    """Who a request went to: the MCP server, its authorization server, or the IdP.

    The MCP session's requests carry no step; the tokenless challenge and the PRM
    are the MCP server's; the enterprise ``token_exchange`` is the IdP's; every other
    OAuth step (AS metadata, registration, token, revocation) the AS's.
    """
    if record.step in (None, "challenge"):
        return "MCP"
    if record.step == "discovery" and urlsplit(record.url).path.startswith(PRM_PATH):
        return "MCP"
    if record.step == "token_exchange":
        return "IdP"
    return "AS"


class Recorder:
    """Collects the requests a probe's Tether sends (never a header or body)."""

    def __init__(self) -> None:
        self._pending: list[tuple[RequestRecord, Party]] = []

    def __call__(self, record: RequestRecord) -> None:
        """The observer: remember the request."""
        self._pending.append((record, party_of(record)))

    def take(self, step: str) -> list[Request]:
        """The requests since the last call, as ``step``'s."""
        taken, self._pending = self._pending, []
        return [
            Request(
                step,
                record.method,
                mask_url(record.url),
                record.status,
                record.content_type,
                party,
                record.rpc,
                record.error,
            )
            for record, party in taken
        ]

    def take_by_step(
        self, default: str, known: tuple[str, ...]
    ) -> dict[str, list[Request]]:
        """The requests since the last call, grouped by the hub's step name.

        ``challenge`` requests count as ``discovery`` (the first step of a connect
        that was not given a challenge); steps not in ``known`` go to ``default``.
        """
        taken, self._pending = self._pending, []
        out: dict[str, list[Request]] = {name: [] for name in known}
        for record, party in taken:
            name = "discovery" if record.step == "challenge" else (record.step or "")
            name = name if name in out else default
            out.setdefault(name, []).append(
                Request(
                    name,
                    record.method,
                    mask_url(record.url),
                    record.status,
                    record.content_type,
                    party,
                    record.rpc,
                    record.error,
                )
            )
        return out
