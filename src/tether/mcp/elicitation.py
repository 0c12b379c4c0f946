"""Answers to a server's ``elicitation/create`` (MCP 2025-11-25 *Elicitation*, SEP-1034).

A server may ask the user for input in the middle of a request. Tether runs in a service
where no user sits at the MCP session, so the policy is conservative and chosen by the
embedding app (``HubConfig.elicitation``):

* :func:`decline` (the default): every request is answered ``action: "decline"``. The
  client still declares the capability, so a server gets a clean refusal instead of an
  error and can go on without the input.
* :func:`accept_defaults`: a **form** request whose every property has a ``default``
  (SEP-1034: defaults for primitive schema types) is accepted with exactly those values;
  anything else — a URL-mode request, a property without a default that is required —
  is declined. Meant for unattended runs such as ``tether probe --conformance``.

An app with a user interface passes its own handler: ``(message, requested_schema) ->
Elicited``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ElicitationHandler", "Elicited", "accept_defaults", "decline"]

Primitive = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Elicited:
    """The user's (or policy's) answer to one elicitation.

    Attributes:
        action: ``accept``, ``decline`` or ``cancel`` (MCP ``ElicitResult.action``).
        content: The form values when accepted.
    """

    action: Literal["accept", "decline", "cancel"]
    content: Mapping[str, Primitive | list[str]] = field(default_factory=dict)


ElicitationHandler = Callable[[str, Mapping[str, Any] | None], Awaitable[Elicited]]
"""``(message, requested_schema) -> Elicited``; the schema is ``None`` in URL mode."""


async def decline(message: str, requested_schema: Mapping[str, Any] | None) -> Elicited:
    """Decline every elicitation (the production default)."""
    return Elicited("decline")


async def accept_defaults(
    message: str, requested_schema: Mapping[str, Any] | None
) -> Elicited:
    """Accept a form elicitation with its schema's defaults, else decline (SEP-1034).

    Args:
        message: The server's message (unused: nobody reads it).
        requested_schema: The flat object schema of a form request; ``None`` in URL mode.

    Returns:
        ``accept`` with every property's ``default`` when all required properties have
        one; ``decline`` otherwise.
    """
    if requested_schema is None:
        return Elicited("decline")
    properties = requested_schema.get("properties")
    if not isinstance(properties, Mapping):
        return Elicited("decline")
    content: dict[str, Primitive | list[str]] = {}
    for name, schema in properties.items():
        if isinstance(schema, Mapping) and "default" in schema:
            content[str(name)] = schema["default"]
    required = requested_schema.get("required") or ()
    if any(name not in content for name in required):
        return Elicited("decline")
    return Elicited("accept", content)
