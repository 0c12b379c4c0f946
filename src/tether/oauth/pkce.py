"""PKCE with S256 only (RFC 7636 §4.1–4.2; OAuth 2.1 §4.1.1; requirements.md AUTHZ-1, AUTHZ-3).

The verifier is made from random bytes the caller passes in (``secrets.token_bytes(32)``
in the hub), so this module stays deterministic and testable with the RFC 7636 Appendix B
vector. ``plain`` is never produced (RFC 7636 §7.2, RFC 9700 §2.1.1).
"""

from __future__ import annotations

import base64
import hashlib
import re

from tether.errors import UsageError

__all__ = ["CODE_CHALLENGE_METHOD", "code_challenge", "code_verifier"]

CODE_CHALLENGE_METHOD = "S256"
"""The only method Tether sends (RFC 7636 §4.2: S256 is Mandatory To Implement)."""

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def code_verifier(random_bytes: bytes) -> str:
    """Make a code verifier from high-entropy random octets (RFC 7636 §4.1).

    Args:
        random_bytes: 32 to 96 random octets; 32 gives the recommended 43 characters.

    Returns:
        The base64url encoding of the octets, without padding.

    Raises:
        UsageError: Fewer than 32 or more than 96 octets (43–128 characters).
    """
    if not 32 <= len(random_bytes) <= 96:
        raise UsageError("a PKCE verifier needs 32 to 96 random octets (RFC 7636 §4.1)")
    return _b64url(random_bytes)


def code_challenge(verifier: str) -> str:
    """Return ``BASE64URL(SHA256(ASCII(verifier)))`` (RFC 7636 §4.2, S256).

    Args:
        verifier: A code verifier of 43–128 unreserved characters.

    Returns:
        The code challenge, without padding.

    Raises:
        UsageError: The verifier is not 43–128 characters of ``[A-Za-z0-9-._~]``.
    """
    if not _VERIFIER.fullmatch(verifier):
        raise UsageError(
            "a PKCE verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~ "
            "(RFC 7636 §4.1)"
        )
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
