"""Tether: connect a multi-user AI application to remote MCP servers.

The public API is what this module exports (``tether.__all__``); everything in the layer
packages (``tether.hub``, ``tether.mcp``, ``tether.store``, ``tether.net``,
``tether.oauth``) is internal. The web service's mountable app comes from
``tether.web`` (it needs the ``web`` extra); ``import tether`` loads neither FastAPI nor
typer.
"""

from tether.errors import (
    AccessDenied,
    AuthorizationRequired,
    BlockedDestination,
    CallbackRejected,
    ConfigurationError,
    DecryptionError,
    DiscoveryError,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidResponse,
    InvalidScope,
    InvalidTarget,
    MCPProtocolError,
    NetworkError,
    NotFound,
    OAuthError,
    PermissionDenied,
    RemoteError,
    RequestTimeout,
    ResponseTooLarge,
    ServerError,
    SessionExpired,
    SkillVerificationFailed,
    StepUpRequired,
    StorageError,
    TemporarilyUnavailable,
    TetherError,
    UnauthorizedClient,
    UnsupportedGrantType,
    UsageError,
    ValidationFailed,
    VersionConflict,
)
from tether.hub.agent import run_tool_calls
from tether.hub.connections import StartedAuthorization
from tether.hub.tether import ConnectionInfo, Tether
from tether.mcp.elicitation import accept_defaults
from tether.mcp.render import render_tools
from tether.mcp.results import ToolErrorCode, ToolResult
from tether.net.fetch import RequestRecord
from tether.store.crypto import KeyRing, load_key_file
from tether.store.paging import Page

__all__ = [
    "AccessDenied",
    "AuthorizationRequired",
    "BlockedDestination",
    "CallbackRejected",
    "ConfigurationError",
    "ConnectionInfo",
    "DecryptionError",
    "DiscoveryError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidScope",
    "InvalidTarget",
    "KeyRing",
    "MCPProtocolError",
    "NetworkError",
    "NotFound",
    "OAuthError",
    "Page",
    "PermissionDenied",
    "RemoteError",
    "RequestRecord",
    "RequestTimeout",
    "ResponseTooLarge",
    "ServerError",
    "SessionExpired",
    "SkillVerificationFailed",
    "StartedAuthorization",
    "StepUpRequired",
    "StorageError",
    "TemporarilyUnavailable",
    "Tether",
    "TetherError",
    "ToolErrorCode",
    "ToolResult",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UsageError",
    "ValidationFailed",
    "VersionConflict",
    "accept_defaults",
    "load_key_file",
    "render_tools",
    "run_tool_calls",
]
