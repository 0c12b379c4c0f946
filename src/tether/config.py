"""Settings, read only by the shells (``web/`` and ``cli/``; design-notes D2, S13).

Every value comes from ``TETHER_*`` environment variables, or from a ``.env`` file that
the operator names (``TETHER_ENV_FILE``, or ``tether --env-file``). A ``.env`` in the
working directory is never read on its own: a directory the operator merely ``cd``-ed
into must not be able to widen ``TETHER_ALLOW_NETWORKS`` or redirect
``TETHER_PUBLIC_URL``. Library code never reads the environment: the shells build
:class:`Settings` once and pass plain typed values down.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tether.errors import ConfigurationError

__all__ = ["ENV_FILE_VARIABLE", "Settings", "load_settings"]

ENV_FILE_VARIABLE = "TETHER_ENV_FILE"


def _default_home() -> Path:
    return Path.home() / ".tether"


def _named_env_file(
    settings_cls: type[BaseSettings], given: PydanticBaseSettingsSource
) -> PydanticBaseSettingsSource:
    """The ``.env`` source: the file passed to ``Settings``, else ``TETHER_ENV_FILE``."""
    env_file = getattr(given, "env_file", None)
    if env_file is None and os.environ.get(ENV_FILE_VARIABLE):
        env_file = Path(os.environ[ENV_FILE_VARIABLE])
        given = DotEnvSettingsSource(settings_cls, env_file=env_file)
    if env_file is not None:
        names = [env_file] if isinstance(env_file, str | os.PathLike) else env_file
        for name in names:
            if not Path(name).expanduser().is_file():
                raise ConfigurationError(
                    f"the settings file {name} does not exist",
                    hint=f"fix the path given to --env-file or {ENV_FILE_VARIABLE}",
                )
    return given


class Settings(BaseSettings):
    """Tether's configuration.

    Attributes:
        home: Folder for the default SQLite database and the generated key file
            (created 0700).
        database_url: SQLAlchemy URL; default ``sqlite+aiosqlite:///<home>/tether.db``.
        encryption_keys: Comma-separated base64 keys, newest first; when unset a key file
            (``key_file``) is created on first run with 0600 permissions.
        key_file: Where the generated key ring lives; default ``<home>/keys``.
        public_url: Base URL users' browsers reach Tether at; the OAuth callback is
            ``<public_url>/oauth/callback`` and the client ID metadata document
            ``<public_url>/oauth/client-metadata.json``.
        allow_networks: Hosts and CIDRs that may be reached although not public
            (self-hosted servers, tests). Plain http is then allowed for loopback only.
            A JSON list or a comma-separated list.
        ca_bundle: PEM file of CAs to trust instead of the system's for every server
            without a CA bundle of its own.
        redis_url: Redis for pending state, locks and caches when scaled out.
        client_name: ``client_name`` sent in dynamic registration.
        fresh_start: Accept a missing or empty SQLite database beside an existing key
            file (the operator starts over; otherwise that is refused as data loss).
        session_secret: Signs the admin pages' session cookie; when unset a file
            ``<home>/session-secret`` is created on first run with 0600 permissions
            (every worker of one installation must share it).
        return_urls: Prefixes the end-user "connect your account" flow may send the
            browser back to (the host app's pages), e.g. ``https://app.example/``.
    """

    model_config = SettingsConfigDict(
        env_prefix="TETHER_", env_file=None, extra="ignore", secrets_dir=None
    )

    home: Path = Field(default_factory=_default_home)
    database_url: SecretStr | None = None
    encryption_keys: SecretStr | None = None
    key_file: Path | None = None
    public_url: str = "http://127.0.0.1:8470"
    allow_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ca_bundle: str | None = None
    redis_url: SecretStr | None = None
    client_name: str = "Tether"
    fresh_start: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then only a ``.env`` file the operator named."""
        dotenv = _named_env_file(settings_cls, dotenv_settings)
        return init_settings, env_settings, dotenv, file_secret_settings

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _network_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg})") from None
        return parsed

    session_secret: SecretStr | None = None
    return_urls: list[str] = Field(default_factory=list)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``home``."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.home / 'tether.db'}"

    def resolved_key_file(self) -> Path:
        """The key-file path, defaulting to ``<home>/keys``."""
        return self.key_file or self.home / "keys"

    def resolved_journal_path(self) -> Path | None:
        """The token journal for a non-SQLite database: ``<home>/token-journal``.

        SQLite keeps its journal beside the database file (DUR-1); ``None`` lets
        :meth:`~tether.hub.tether.Tether.open` choose that.
        """
        url = self.resolved_database_url()
        if url.startswith(("sqlite", "memory")):
            return None
        return self.home / "token-journal"


def _describe(exc: ValidationError) -> str:
    # Never the input: a database URL or a key may be what failed.
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"TETHER_{field.upper()}" if field else "settings"
        problems.append(f"{name}: {error['msg']}")
    return "; ".join(problems)


def load_settings(*, env_file: Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings`, turning every settings problem into one clear error.

    Args:
        env_file: A ``.env`` file the operator named (``--env-file``); else
            ``TETHER_ENV_FILE``, else none.
        overrides: Values that win over the environment (command-line options).

    Raises:
        ConfigurationError: A value is malformed, or the named file does not exist.
    """
    try:
        if env_file is not None:
            return Settings(_env_file=env_file, **overrides)
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(
            f"invalid settings: {_describe(exc)}",
            hint="fix the TETHER_* environment variables (or the --env-file); "
            "docs/configuration.md lists every setting",
        ) from None
    except SettingsError as exc:
        raise ConfigurationError(
            f"invalid settings: {exc}",
            hint="docs/configuration.md lists every setting and its format",
        ) from None
