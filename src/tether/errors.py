"""Tether's one exception tree.

Every error Tether raises is a :class:`TetherError` with a stable ``code`` (a string that
never changes once released; callers, the web API and the CLI switch on it) and a message an
admin can act on: what failed, at which server or issuer, and what to do next.

The tree splits "the caller or the configuration is wrong" from "a remote party is wrong",
following h11's local/remote split::

    TetherError                       code, message, server, step, hint
     ├─ UsageError                    the caller asked for something invalid
     │   ├─ NotFound                  an unknown server, credential, toolset, connection
     │   ├─ Unauthenticated           no valid API key or admin session (web API)
     │   └─ Forbidden                 the caller's role may not do this (web API)
     ├─ ValidationFailed              input failed validation (field errors attached)
     ├─ ConfigurationError            settings or a server's admin configuration are wrong
     ├─ AuthorizationRequired         no usable grant; a user must (re)connect
     │   └─ StepUpRequired            more scope needed (RFC 6750 §3.1 insufficient_scope)
     ├─ CallbackRejected              an OAuth callback was refused (state, iss, error)
     ├─ RemoteError                   an authorization server or MCP server misbehaved
     │   ├─ DiscoveryError            metadata missing, malformed or inconsistent
     │   ├─ OAuthError                RFC 6749 §5.2 error response
     │   │   ├─ InvalidRequest, InvalidClient, InvalidGrant, UnauthorizedClient,
     │   │   ├─ UnsupportedGrantType, InvalidScope, AccessDenied, InvalidTarget, …
     │   ├─ InvalidResponse           a body that is not what the protocol requires
     │   │   └─ SkillVerificationFailed  a skill file fails its digest, size or frontmatter
     │   └─ MCPProtocolError          JSON-RPC or transport-level MCP failure
     │       ├─ PermissionDenied      HTTP 403 for one call; nothing stored changes
     │       └─ SessionExpired        the server forgot our MCP session (HTTP 404)
     ├─ BlockedDestination            the SSRF policy refused an address
     ├─ NetworkError                  connect/read failure; tokens are kept, retried later
     │   ├─ RequestTimeout            the per-server deadline passed
     │   └─ ResponseTooLarge          the body exceeded the size cap
     └─ StorageError                  the database or cache failed
         ├─ VersionConflict           compare-and-set lost; the hub re-reads and retries
         └─ DecryptionError           a secret could not be decrypted (wrong/missing key)

The HTTP status and CLI exit code for each class are in :data:`HTTP_STATUS` and
:data:`EXIT_CODES` (design-notes D3.7); :func:`http_status` and :func:`exit_code` look them up
along the class's MRO so a subclass inherits its parent's mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

__all__ = [
    "EXIT_CODES",
    "HTTP_STATUS",
    "AccessDenied",
    "AuthorizationRequired",
    "BlockedDestination",
    "CallbackRejected",
    "ConfigurationError",
    "DecryptionError",
    "DiscoveryError",
    "Forbidden",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidScope",
    "InvalidTarget",
    "MCPProtocolError",
    "NetworkError",
    "NotFound",
    "OAuthError",
    "PermissionDenied",
    "RemoteError",
    "RequestTimeout",
    "ResponseTooLarge",
    "ServerError",
    "SessionExpired",
    "SkillVerificationFailed",
    "StepUpRequired",
    "StorageError",
    "TemporarilyUnavailable",
    "TetherError",
    "Unauthenticated",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UsageError",
    "ValidationFailed",
    "VersionConflict",
    "clean_text",
    "exit_code",
    "http_status",
]


#: Default bound of :func:`clean_text`: enough for any sensible error description.
MAX_REMOTE_TEXT: Final = 500

# ECMA-48 escape sequences: CSI (``ESC [`` … final byte), OSC/DCS/SOS/PM/APC strings
# (terminated by BEL or ST), and two-byte escapes; plus their 8-bit C1 forms.
_ESCAPES: Final = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidi overrides and isolates, zero-width joiners, BOM, line/paragraph separators).
_CONTROLS: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]"
)
_BREAKS: Final = re.compile("[\t\n]+")


def clean_text(
    text: object, *, limit: int = MAX_REMOTE_TEXT, keep_newlines: bool = False
) -> str:
    r"""Make text from a remote party safe for a terminal, a log line or an error message.

    ANSI/ECMA-48 escape sequences (CSI colours, OSC titles and hyperlinks, DCS strings)
    are removed whole, then every remaining control character and the Unicode
    formatting characters that reorder or hide text (bidi overrides, zero-width marks).
    Tabs and newlines become one space unless ``keep_newlines``; the result is cut to
    ``limit`` characters, ending in ``…`` when cut. Pure: no I/O, never raises.

    Args:
        text: Any value; non-strings are converted with :func:`str`.
        limit: Maximum length of the result (at least 1).
        keep_newlines: Keep ``\n`` and ``\t`` (multi-line tool output); ``\r`` is
            always removed, since it lets text overwrite what came before it.

    Returns:
        The cleaned text.
    """
    value = text if isinstance(text, str) else str(text)
    # Bound the work before the regexes: nothing past a few times the limit can show.
    value = value[: max(limit, 1) * 4 + 64]
    value = _CONTROLS.sub("", _ESCAPES.sub("", value))
    if not keep_newlines:
        value = _BREAKS.sub(" ", value).strip()
    limit = max(limit, 1)
    if len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return value


class TetherError(Exception):
    """Root of every error Tether raises.

    Attributes:
        code: Stable machine-readable code, e.g. ``"oauth.invalid_grant"``.
        message: What failed, in words an admin can act on.
        server: Name or URL of the server (or issuer) involved, when known.
        step: The step of a flow that failed (``"discovery"``, ``"token"``, …).
        hint: What to do next.
        details: Extra non-secret data for API responses and reports.
    """

    code: ClassVar[str] = "tether.error"

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        step: str | None = None,
        hint: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.server = server
        self.step = step
        self.hint = hint
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = []
        if self.step:
            parts.append(f"[{self.step}]")
        if self.server:
            parts.append(f"{self.server}:")
        parts.append(self.message)
        text = " ".join(parts)
        if self.hint:
            text += f" — {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description (never contains secrets)."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for key in ("server", "step", "hint"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.details:
            out["details"] = self.details
        return out


# --------------------------------------------------------------------- we are wrong


class UsageError(TetherError):
    """The caller asked for something invalid (wrong argument, wrong state)."""

    code = "usage"


class NotFound(UsageError):
    """An unknown server, credential, toolset, connection or pending authorization."""

    code = "not_found"


class Unauthenticated(UsageError):
    """The web API got no valid API key or admin session."""

    code = "auth.unauthenticated"


class Forbidden(UsageError):
    """The caller is known but its role may not do this (or not for this user)."""

    code = "auth.forbidden"


class ValidationFailed(UsageError):
    """Input failed validation; ``details["fields"]`` maps field names to problems."""

    code = "validation"

    def __init__(
        self, message: str, *, fields: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        details = dict(kwargs.pop("details", None) or {})
        if fields:
            details["fields"] = dict(fields)
        super().__init__(message, details=details, **kwargs)


class ConfigurationError(TetherError):
    """Settings or a server's admin configuration are wrong or incomplete."""

    code = "configuration"


class AuthorizationRequired(TetherError):
    """No usable grant for this server and subject: a user must connect (again)."""

    code = "authorization_required"


class StepUpRequired(AuthorizationRequired):
    """The server needs more scope (RFC 6750 §3.1 ``insufficient_scope``).

    ``details["required_scopes"]`` lists the scope union to request on reconnect.
    """

    code = "step_up_required"


class CallbackRejected(TetherError):
    """An OAuth callback was refused.

    Unknown, expired or replayed state, an ``iss`` mismatch (RFC 9207 §2.4), a wrong user,
    or an error returned by the authorization server (RFC 6749 §4.1.2.1).
    """

    code = "callback_rejected"


class BlockedDestination(TetherError):
    """The SSRF policy refused a destination (scheme, address or redirect)."""

    code = "blocked_destination"


# --------------------------------------------------------------------- the remote is wrong


class RemoteError(TetherError):
    """An authorization server or MCP server misbehaved or refused."""

    code = "remote"


class DiscoveryError(RemoteError):
    """Metadata was missing, malformed or inconsistent (RFC 9728, RFC 8414)."""

    code = "discovery"


class InvalidResponse(RemoteError):
    """A response body was not what the protocol requires (HTML for JSON, bad fields)."""

    code = "invalid_response"


class SkillVerificationFailed(InvalidResponse):
    """A skill file does not match its ``skills/list`` entry (SEP-2640, verification).

    Its size, SHA-256 digest or (for ``SKILL.md``) YAML frontmatter differs from what the
    server listed; the content must not be used. ``details`` names the ``skill``, the
    file's ``uri`` and the ``reason`` (``size``, ``digest`` or ``frontmatter``).
    """

    code = "skill_verification_failed"


class OAuthError(RemoteError):
    """An OAuth error response (RFC 6749 §5.2, §4.1.2.1; RFC 7009 §2.2.1).

    Use :meth:`from_response` to get the subclass for a given ``error`` code.
    """

    code = "oauth.error"
    oauth_code: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[OAuthError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only a class that names its own code registers: a subclass of, say,
        # InvalidGrant must not take over "invalid_grant" from it.
        code = cls.__dict__.get("oauth_code")
        if code:
            OAuthError.registry[code] = cls

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
        error_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.error = error or self.oauth_code or "unknown_error"
        self.error_description = error_description
        self.error_uri = error_uri
        details = dict(kwargs.pop("details", None) or {})
        details.setdefault("error", self.error)
        if error_description:
            details.setdefault("error_description", error_description)
        if error_uri:
            details.setdefault("error_uri", error_uri)
        super().__init__(message, details=details, **kwargs)

    @classmethod
    def from_response(
        cls,
        error: str,
        error_description: str | None = None,
        error_uri: str | None = None,
        **kwargs: Any,
    ) -> OAuthError:
        """Build the most specific subclass for an RFC 6749 §5.2 ``error`` code."""
        # Remote text: no escape sequences or control characters, bounded (RFC 6749
        # §5.2 limits these to printable ASCII; nothing enforces it on the sender).
        error = clean_text(error, limit=100) or "unknown_error"
        if error_description is not None:
            error_description = clean_text(error_description) or None
        if error_uri is not None:
            error_uri = clean_text(error_uri) or None
        klass = OAuthError.registry.get(error, OAuthError)
        text = f"the authorization server answered '{error}'"
        if error_description:
            text += f": {error_description}"
        return klass(
            text,
            error=error,
            error_description=error_description,
            error_uri=error_uri,
            **kwargs,
        )


class InvalidRequest(OAuthError):
    """RFC 6749 §5.2 ``invalid_request``."""

    code = "oauth.invalid_request"
    oauth_code = "invalid_request"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2 ``invalid_client``: client authentication failed."""

    code = "oauth.invalid_client"
    oauth_code = "invalid_client"


class InvalidGrant(OAuthError):
    """RFC 6749 §5.2 ``invalid_grant``: the code or refresh token is dead."""

    code = "oauth.invalid_grant"
    oauth_code = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """RFC 6749 §5.2 ``unauthorized_client``."""

    code = "oauth.unauthorized_client"
    oauth_code = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """RFC 6749 §5.2 ``unsupported_grant_type``."""

    code = "oauth.unsupported_grant_type"
    oauth_code = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """RFC 6749 §5.2 ``invalid_scope``."""

    code = "oauth.invalid_scope"
    oauth_code = "invalid_scope"


class AccessDenied(OAuthError):
    """RFC 6749 §4.1.2.1 ``access_denied``: the user or AS refused."""

    code = "oauth.access_denied"
    oauth_code = "access_denied"


class InvalidTarget(OAuthError):
    """RFC 8707 §2 ``invalid_target``: the AS refused the resource indicator."""

    code = "oauth.invalid_target"
    oauth_code = "invalid_target"


class ServerError(OAuthError):
    """RFC 6749 §4.1.2.1 ``server_error``."""

    code = "oauth.server_error"
    oauth_code = "server_error"


class TemporarilyUnavailable(OAuthError):
    """RFC 6749 §4.1.2.1 ``temporarily_unavailable``."""

    code = "oauth.temporarily_unavailable"
    oauth_code = "temporarily_unavailable"


class MCPProtocolError(RemoteError):
    """A JSON-RPC or Streamable HTTP failure talking MCP to a server."""

    code = "mcp.protocol"


class PermissionDenied(MCPProtocolError):
    """The MCP server refused one call with HTTP 403 (not ``insufficient_scope``).

    An authorization decision for that call only: nothing stored changes, and the
    grant keeps working for everything else (RFC 6750 §3.1; RFC 9110 §15.5.4).
    """

    code = "mcp.forbidden"


class SessionExpired(MCPProtocolError):
    """The server no longer knows our MCP session (HTTP 404 on a session id)."""

    code = "mcp.session_expired"


class NetworkError(TetherError):
    """A connection or read failed. Stored tokens are kept; the step can be retried."""

    code = "network"


class RequestTimeout(NetworkError):
    """The per-server deadline passed before a complete response arrived."""

    code = "network.timeout"


class ResponseTooLarge(NetworkError):
    """A response body exceeded the configured size cap."""

    code = "network.too_large"


class StorageError(TetherError):
    """The database or cache failed."""

    code = "storage"


class VersionConflict(StorageError):
    """A compare-and-set write lost: someone else changed the record first."""

    code = "storage.version_conflict"


class DecryptionError(StorageError):
    """A stored secret could not be decrypted: the key is missing or wrong."""

    code = "storage.decryption"


# --------------------------------------------------------------------- mappings

HTTP_STATUS: Final[Mapping[type[TetherError], int]] = {
    TetherError: 500,
    UsageError: 400,
    NotFound: 404,
    Unauthenticated: 401,
    Forbidden: 403,
    ValidationFailed: 422,
    ConfigurationError: 409,
    AuthorizationRequired: 401,
    StepUpRequired: 403,
    PermissionDenied: 403,
    CallbackRejected: 400,
    BlockedDestination: 400,
    RemoteError: 502,
    NetworkError: 502,
    RequestTimeout: 504,
    StorageError: 500,
    VersionConflict: 409,
}

EXIT_CODES: Final[Mapping[type[TetherError], int]] = {
    TetherError: 1,
    UsageError: 2,
    ValidationFailed: 2,
    ConfigurationError: 3,
    AuthorizationRequired: 4,
    CallbackRejected: 4,
    BlockedDestination: 5,
    RemoteError: 6,
    NetworkError: 7,
    StorageError: 8,
}


def _lookup(
    error: TetherError | type[TetherError], table: Mapping[type[TetherError], int]
) -> int:
    klass = error if isinstance(error, type) else type(error)
    for base in klass.__mro__:
        if base in table:
            return table[base]
    return table[TetherError]


def http_status(error: TetherError | type[TetherError]) -> int:
    """HTTP status for an error (design-notes D3.7)."""
    return _lookup(error, HTTP_STATUS)


def exit_code(error: TetherError | type[TetherError]) -> int:
    """CLI exit code for an error (design-notes D3.7)."""
    return _lookup(error, EXIT_CODES)
