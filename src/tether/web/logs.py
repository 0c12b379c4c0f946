"""Structured JSON logs with secrets masked (design-notes S13).

One JSON object a line: ``ts``, ``level``, ``logger``, ``msg`` and any ``extra`` fields.
Before a line is written, anything that looks like a credential is replaced by a mask:
``Authorization``/``Bearer`` values, OAuth ``code``, ``state``, token and secret query or
JSON fields, and Tether API keys. Records are masked by value, so a secret that reaches a
log line by accident (an exception text, a URL) is still hidden.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["JsonFormatter", "configure_logging", "mask_secrets"]

MASK: Final = "********"
_PATTERNS: Final = (
    # Authorization: Bearer xyz / DPoP xyz / Basic xyz
    re.compile(r"(?i)\b(bearer|dpop|basic)\s+[A-Za-z0-9._~+/=-]{4,}"),
    # key=value in URLs, forms and logfmt
    re.compile(
        r"(?i)\b(code|state|access_token|refresh_token|id_token|client_secret|"
        r"code_verifier|assertion|client_assertion|password|api_key|token)=[^&\s\"']+"
    ),
    # "key": "value" in JSON
    re.compile(
        r'(?i)"(access_token|refresh_token|id_token|client_secret|code_verifier|'
        r'password|value|secret|api_key|token)"\s*:\s*"[^"]*"'
    ),
    # Tether API keys
    re.compile(r"\btk_[A-Za-z0-9]+_[A-Za-z0-9_-]{8,}"),
)
_RESERVED: Final = frozenset(vars(logging.makeLogRecord({})))


def _mask_one(match: re.Match[str]) -> str:
    text = match.group(0)
    if text.startswith('"'):
        return text.split(":", 1)[0] + f': "{MASK}"'
    if "=" in text:
        return text.split("=", 1)[0] + "=" + MASK
    if " " in text:
        return text.split(None, 1)[0] + " " + MASK
    return MASK


def mask_secrets(text: str) -> str:
    """``text`` with every credential-looking substring masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(_mask_one, text)
    return text


class JsonFormatter(logging.Formatter):
    """Formats a record as one masked JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise ``record``."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, int | float | bool) else str(value)
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(out, default=str))


def configure_logging(level: str = "info") -> None:
    """Send every log record to stderr as masked JSON (``tether serve``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
