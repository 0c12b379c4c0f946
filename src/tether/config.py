"""Settings, read only by the shells (``web/`` and ``cli/``; design.md §2, style.md ex. 13).

Every value comes from ``TETHER_*`` environment variables, a ``.env`` file, or a secrets
directory. Library code never reads the environment: the shells build :class:`Settings` once
and pass plain typed values down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


def _default_home() -> Path:
    return Path.home() / ".tether"


class Settings(BaseSettings):
    """Tether's configuration.

    Attributes:
        home: Folder for the default SQLite database and the generated key file.
        database_url: SQLAlchemy URL; default ``sqlite+aiosqlite:///<home>/tether.db``.
        encryption_keys: Comma-separated base64 keys, newest first; when unset a key file
            (``key_file``) is created on first run with 0600 permissions.
        key_file: Where the generated key ring lives; default ``<home>/keys``.
        public_url: Base URL users' browsers reach Tether at; the OAuth callback is
            ``<public_url>/oauth/callback`` and the client ID metadata document
            ``<public_url>/oauth/client-metadata.json``.
        allow_networks: Hosts and CIDRs that may be reached although not public
            (self-hosted servers, tests). Plain http is then allowed for loopback only.
        ca_bundle: PEM file of CAs to trust instead of the system's for every server
            without a CA bundle of its own.
        redis_url: Redis for pending state, locks and caches when scaled out.
        client_name: ``client_name`` sent in dynamic registration.
    """

    model_config = SettingsConfigDict(
        env_prefix="TETHER_", env_file=".env", extra="ignore", secrets_dir=None
    )

    home: Path = Field(default_factory=_default_home)
    database_url: SecretStr | None = None
    encryption_keys: SecretStr | None = None
    key_file: Path | None = None
    public_url: str = "http://127.0.0.1:8470"
    allow_networks: list[str] = Field(default_factory=list)
    ca_bundle: str | None = None
    redis_url: SecretStr | None = None
    client_name: str = "Tether"

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``home``."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.home / 'tether.db'}"

    def resolved_key_file(self) -> Path:
        """The key-file path, defaulting to ``<home>/keys``."""
        return self.key_file or self.home / "keys"
