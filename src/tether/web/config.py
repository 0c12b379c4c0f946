"""The web service's settings, read once from :class:`~tether.config.Settings`.

The public base URL derives the OAuth callback (``<base>/oauth/callback``) and the client
ID metadata document URL (``<base>/oauth/client-metadata.json``). Both are sent to
authorization servers, so the base must be https (CB-1; RFC 9700 §4.1.1) except on a
loopback host (RFC 8252 §7.3), where the service only serves this machine.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tether.config import Settings
from tether.errors import ConfigurationError
from tether.store.crypto import KeyRing, load_key_file

__all__ = ["WebConfig", "is_loopback", "public_base", "return_url_allowed"]

CALLBACK_PATH = "/oauth/callback"
METADATA_PATH = "/oauth/client-metadata.json"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_base(url: str) -> str:
    """Check and normalise the public base URL (no trailing slash).

    Raises:
        ConfigurationError: Not an absolute http(s) URL, or plain http on a
            non-loopback host, or a query or fragment.
    """
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(
            f"the public URL {url!r} is not an absolute http(s) URL",
            hint="set TETHER_PUBLIC_URL, e.g. https://tether.example.com",
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"the public URL {url!r} may not have a query or fragment",
            hint="set TETHER_PUBLIC_URL to the base URL only",
        )
    if parts.scheme != "https" and not is_loopback(host):
        raise ConfigurationError(
            f"the public URL {url!r} must use https: authorization servers send "
            "codes to it, and plain http is only allowed on a loopback host",
            hint="put Tether behind TLS and set TETHER_PUBLIC_URL=https://…",
        )
    return url.strip().rstrip("/")


def _session_secret(settings: Settings) -> str:
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path = Path(settings.home) / "session-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: two workers starting at once agree on one secret
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        value = secrets.token_urlsafe(32)
        handle.write(value + "\n")
    return value


@dataclass(frozen=True, slots=True)
class WebConfig:
    """Plain values the web layer needs; built once by :meth:`from_settings`.

    Attributes:
        base_url: The checked public base URL, no trailing slash.
        database_url: Where the stores live.
        session_secret: Signs the admin session cookie.
        client_name: The client name shown on consent screens.
        allow_networks: Installation-wide network allowlist.
        return_urls: Allowed prefixes for the end-user flow's return URL.
        key_ring_source: The settings, to build the key ring lazily (the key file is
            only touched when the service starts).
    """

    base_url: str
    database_url: str
    session_secret: str
    client_name: str
    allow_networks: tuple[str, ...]
    return_urls: tuple[str, ...]
    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings) -> WebConfig:
        """Read and check the settings once."""
        base = public_base(settings.public_url)
        return cls(
            base_url=base,
            database_url=settings.resolved_database_url(),
            session_secret=_session_secret(settings),
            client_name=settings.client_name,
            allow_networks=tuple(settings.allow_networks),
            return_urls=tuple(settings.return_urls),
            settings=settings,
        )

    @property
    def callback_url(self) -> str:
        """Tether's OAuth redirect URI."""
        return self.base_url + CALLBACK_PATH

    @property
    def metadata_url(self) -> str | None:
        """The client ID metadata document URL; only an https base can be a client id."""
        url = self.base_url + METADATA_PATH
        return url if url.startswith("https://") else None

    @property
    def secure_cookies(self) -> bool:
        """Session cookies get ``Secure`` whenever the service is served over https."""
        return self.base_url.startswith("https://")

    def key_ring(self) -> KeyRing:
        """The configured key ring, or the key file (created 0600 on first run)."""
        if self.settings.encryption_keys is not None:
            return KeyRing.from_string(self.settings.encryption_keys)
        return load_key_file(self.settings.resolved_key_file())

    def return_url_allowed(self, url: str) -> bool:
        """True when ``url`` starts with an allowed prefix (or is a local path)."""
        return return_url_allowed(url, self.return_urls)


def return_url_allowed(url: str, prefixes: tuple[str, ...]) -> bool:
    """True for a local path (``/x``, not ``//host``) or a URL under an allowed prefix.

    A prefix should end with ``/`` so ``https://app.example`` cannot be extended to
    ``https://app.example.evil.test``.
    """
    if url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return True
    return any(url.startswith(prefix) for prefix in prefixes)
