"""Settings: one validated object, read once from ``HEALTHINFO_*`` variables (and ``.env``).

Built at start-up and passed to ``create_app(settings)``; nothing reads the environment later,
so tests build settings as plain data. A wrong value stops start-up with one line per variable
(``SettingsError``), because an operator fixing a deployment wants the variable's name, not a
stack trace.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "HEALTHINFO_"
JWT_SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET_BYTES = 32


class SettingsError(Exception):
    """Start-up configuration is invalid; ``str()`` is one line per wrong variable."""


class Settings(BaseSettings):
    """Every knob of the service, with a validated default."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("./data")
    database_url: str | None = None
    migrate_on_start: bool | None = Field(
        default=None, description="Default: on for SQLite (the embedded default), off otherwise."
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=20, ge=0, le=500)
    db_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    redis_url: str | None = None
    redis_key_prefix: str = Field(default="healthinfo:", min_length=1, max_length=64)
    cache_enabled: bool = True
    cache_ttl_seconds: int = Field(default=3600, ge=1, le=7 * 86400)
    cache_timeout_seconds: float = Field(default=0.05, gt=0, le=5)
    cache_breaker_failures: int = Field(default=5, ge=1, le=1000)
    cache_breaker_cooldown_seconds: float = Field(default=5.0, gt=0, le=600)
    cache_max_entries: int = Field(default=10_000, ge=1, le=10_000_000)
    cache_warm_hours: float = Field(default=24.0, ge=0, le=24 * 30)
    cache_warm_max_kits: int = Field(default=1000, ge=0, le=1_000_000)

    jwt_secret: SecretStr | None = None
    jwt_public_keys: list[str] = Field(default_factory=list)
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)

    auto_claim: bool = True
    strict_preconditions: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    questionnaire_id: str = "health-information"
    write_retry_attempts: int = Field(default=50, ge=1, le=1000)

    rate_limit_enabled: bool = True
    room_limit: int = Field(default=50, ge=1, le=10_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @field_validator("database_url")
    @classmethod
    def _async_driver_only(cls, url: str | None) -> str | None:
        """``postgresql://`` silently means psycopg, which is not installed; say so at start-up."""
        if url is None:
            return None
        if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg")):
            raise ValueError("use postgresql+asyncpg://… (the async driver)")
        if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
            raise ValueError("use sqlite+aiosqlite:///path/to/file.db (the async driver)")
        return url

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes")
        return secret

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Settings:
        """Outside development a generated secret would differ per machine: refuse to guess."""
        has_key = bool(self.jwt_secret or self.jwt_public_keys or self.jwt_jwks_url)
        if self.environment == "production" and not has_key:
            raise ValueError(
                "HEALTHINFO_JWT_SECRET, HEALTHINFO_JWT_PUBLIC_KEYS or HEALTHINFO_JWT_JWKS_URL "
                "must be set in production"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'healthinfo.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def should_migrate_on_start(self) -> bool:
        return self.is_sqlite if self.migrate_on_start is None else self.migrate_on_start

    def hs_secret(self) -> bytes | None:
        """The HS256 secret: configured, or generated once into the data directory.

        Only when no asymmetric key source is configured, so a production deployment with
        JWKS never signs anything with a secret an operator did not choose.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value().encode()
        if self.jwt_public_keys or self.jwt_jwks_url:
            return None
        return _generated_secret(self.data_dir)


def _generated_secret(data_dir: Path) -> bytes:
    path = data_dir / JWT_SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(48)
        try:
            with path.open("x", encoding="ascii") as handle:
                path.chmod(0o600)
                handle.write(token)
        except FileExistsError:
            pass  # another process generated it first; use theirs
    return path.read_text(encoding="ascii").strip().encode()


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one line per variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = error["loc"]
        name = f"{ENV_PREFIX}{str(loc[0]).upper()}" if loc else "configuration"
        lines.append(f"{name}: {error['msg']}")
    return "\n".join(lines)
