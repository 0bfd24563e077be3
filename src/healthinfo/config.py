"""Settings: one validated object, read once from ``HEALTHINFO_*`` variables (and ``.env``).

Built at start-up and passed to ``create_app(settings)``; nothing reads the environment later,
so tests build settings as plain data. A wrong value stops start-up with one line per variable
(``SettingsError``), because an operator fixing a deployment wants the variable's name, not a
stack trace.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from healthinfo.common.flags import OFF, ON, Flag

if TYPE_CHECKING:
    from healthinfo.audit.keys import AuditKeyring
    from healthinfo.crypto.master_keys import MasterKeyring

ENV_PREFIX = "HEALTHINFO_"
JWT_SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET_BYTES = 32
# What production refuses unless HEALTHINFO_ALLOW_INSECURE names it (name: what it allows).
INSECURE_EXCEPTIONS = {
    "jwks-http": "an http:// HEALTHINFO_JWT_JWKS_URL",
    "forward-http": "an http:// HEALTHINFO_FORWARD_URL",
    "redis-plaintext": "a redis:// HEALTHINFO_REDIS_URL without TLS",
}


ReadAuditMode = Literal["sync", "batched", "off"]
_LEGACY_READ_AUDIT = {
    "true": "batched",
    "1": "batched",
    "on": "batched",
    "yes": "batched",
    "false": "off",
    "0": "off",
    "no": "off",
}


def parse_read_audit_mode(value: object) -> object:
    """``sync``, ``batched`` or ``off``; the older boolean values still work (true: the default,
    ``batched``; false: ``off``). The older percentage rollouts are refused with a message: an
    audit that covers some kits only is not a mode this service offers any more."""
    if isinstance(value, bool):
        return "batched" if value else "off"
    if isinstance(value, str):
        text = value.strip().lower()
        if text.endswith("%"):
            raise ValueError("must be sync, batched or off (percentages are no longer accepted)")
        return _LEGACY_READ_AUDIT.get(text, text)
    return value


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
    # NoDecode: a comma-separated list, not JSON (URLs hold no commas).
    database_replica_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="PostgreSQL streaming replicas for history, audit and export reads.",
    )

    keystore_url: str | None = Field(
        default=None,
        description="The key store's database (data keys); must be apart from the data.",
    )
    master_keys: SecretStr | None = Field(
        default=None, description="id:base64url-32-bytes[,id:…]; the last one is active."
    )

    # Tamper-evident audit trail (docs/security.md, "Audit trail"): HMAC keys outside the
    # database, and signed checkpoints of the chain heads written outside it too.
    audit_keys: SecretStr | None = Field(
        default=None, description="id:base64url-32-bytes[,id:…]; the last one links new events."
    )
    audit_checkpoint_dir: Path | None = Field(
        default=None, description="Where checkpoints go; default: <data dir>/audit-checkpoints."
    )
    audit_checkpoint_interval: float = Field(default=60.0, gt=0, le=86_400)

    redis_url: str | None = None
    redis_key_prefix: str = Field(default="healthinfo:", min_length=1, max_length=64)
    cache_enabled: Flag = ON
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
    # Read auditing (docs/security.md, "Reads and the loss window"): sync, batched or off.
    audit_reads: Annotated[ReadAuditMode, NoDecode, BeforeValidator(parse_read_audit_mode)] = (
        "batched"
    )
    audit_read_batch_ms: int = Field(default=50, ge=1, le=10_000)
    audit_read_batch_size: int = Field(default=200, ge=1, le=10_000)
    audit_read_max_pending: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Read events waiting for a batch; beyond it a read audits synchronously.",
    )
    strict_preconditions: Flag = OFF
    amendments_enabled: Flag = ON
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_answers: int = Field(default=200, ge=1, le=10_000)
    questionnaire_id: str = "health-information"
    # Questionnaires managed at run time (docs/questionnaires.md). HEALTHINFO_QUESTIONNAIRE_ID
    # above is the older name of HEALTHINFO_DEFAULT_QUESTIONNAIRE, which wins when both are set.
    default_questionnaire: str | None = Field(default=None, min_length=1, max_length=64)
    write_retry_attempts: int = Field(default=50, ge=1, le=1000)

    idempotency_retention_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    idempotency_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    idempotency_purge_interval_seconds: float = Field(default=600.0, gt=0, le=86400)

    rate_limit_enabled: bool = True
    rate_limit_read_per_user: str = "1200/minute"
    rate_limit_write_per_user: str = "600/minute"
    rate_limit_stream_per_user: str = "120/minute"
    rate_limit_read_per_address: str = "3000/minute"
    rate_limit_write_per_address: str = "1500/minute"
    rate_limit_stream_per_address: str = "300/minute"
    # Local counting, reconciled through Redis this often (0: one Redis call per request,
    # exact across processes); docs/operations.md "Rate limits across processes".
    rate_limit_sync_ms: int = Field(default=100, ge=0, le=10_000)
    room_limit: int = Field(default=50, ge=1, le=10_000)
    # Real-time (docs/realtime.md): SSE and WebSocket rooms, presence, the event bus.
    realtime_ping_seconds: float = Field(default=15.0, gt=0, le=15)
    realtime_max_connection_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    realtime_retry_ms: int = Field(default=3000, ge=100, le=600_000)
    realtime_queue_size: int = Field(default=256, ge=1, le=100_000)
    realtime_presence_ttl_seconds: float = Field(default=30.0, ge=0.5, le=600)
    bus_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    # Streams and sockets (docs/realtime.md "Revocation" and "Limits"): connections one user
    # may hold in one kit's room, WebSocket focus messages per user, and how often a stream
    # re-checks its access while the event bus is down (at most 5 s: the promise).
    room_user_limit: int = Field(default=5, ge=1, le=10_000)
    rate_limit_focus_per_user: str = "300/minute"
    realtime_access_recheck_seconds: float = Field(default=5.0, gt=0, le=5)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Logs (docs/operations.md#logs): true JSON lines, false the console layout, unset or
    # "auto" JSON unless stdout is a terminal.
    log_json: Annotated[
        bool | None,
        BeforeValidator(
            lambda v: None if isinstance(v, str) and v.strip().lower() in ("", "auto") else v
        ),
    ] = Field(default=None, description="true: JSON lines; false: console; unset/auto: by TTY.")
    # Observability (docs/operations.md): tracing, error tracking, profiling.
    otel_enabled: bool = False
    otel_exporter_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL; unset: the standard OTEL_EXPORTER_OTLP_* vars.",
    )
    sentry_dsn: SecretStr | None = None
    profiling_enabled: bool = False

    # Forwarding submissions to the lab's API (docs/forwarding.md). Unset URL: forwarding off.
    forward_url: str | None = None
    forward_secret: SecretStr | None = None
    forward_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    forward_retry_initial_seconds: float = Field(default=1.0, gt=0, le=3600)
    forward_retry_max_seconds: float = Field(default=60.0, gt=0, le=86_400)
    forward_give_up_after_seconds: float = Field(default=86_400.0, gt=0, le=30 * 86_400)
    forward_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    forward_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    forward_batch_size: int = Field(default=20, ge=1, le=100)
    forward_in_process: bool = Field(
        default=True,
        description="Deliver from the serve process too; turn off where `healthinfo worker` runs.",
    )

    # FHIR Bulk Data export (docs/fhir.md#bulk-data-export). Jobs run in the worker and, unless
    # turned off, in the serve process too; their output expires after ``export_ttl`` seconds.
    export_ttl: float = Field(default=86_400.0, gt=0, le=30 * 86_400)
    export_in_process: bool = Field(
        default=True,
        description="Run export jobs in the serve process too; off where `healthinfo worker` runs.",
    )
    export_page_size: int = Field(default=500, ge=1, le=10_000)
    export_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    export_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    export_purge_interval_seconds: float = Field(default=600.0, gt=0, le=86_400)

    # --- operator safety (docs/configuration.md#production-safety): proxies, header limits,
    # the named exceptions production allows. One block, so merges stay local.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks whose X-Forwarded-For/-Proto serve believes; none.",
    )
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    redis_required_at_start: bool = Field(
        default=True,
        description="serve refuses to start when Redis does not answer; false: start degraded "
        "(in-process fallbacks) with a one-line warning, as after an outage while running.",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="serve's worker processes (`--workers` wins); unset: the CPU count when "
        "PostgreSQL and Redis are configured, else 1.",
    )
    worker_healthcheck_seconds: int = Field(
        default=30,
        ge=1,
        le=600,
        description="With several workers: how long a worker may take to start, or to answer "
        "the supervisor's ping, before it is killed and replaced.",
    )
    allow_insecure: Annotated[frozenset[str], NoDecode] = Field(
        default_factory=frozenset,
        description="Production exceptions, by name: " + ", ".join(sorted(INSECURE_EXCEPTIONS)),
    )

    @field_validator("trusted_proxies", "allow_insecure", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, entries: list[str]) -> list[str]:
        """Addresses or CIDR networks only: ``*`` would let any client choose its address."""
        import ipaddress

        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    "each entry must be an IP address or network (10.0.0.5, 10.0.0.0/24); "
                    "'*' is refused: any client could then pick its address"
                ) from None
        return entries

    @field_validator("allow_insecure")
    @classmethod
    def _known_exceptions(cls, names: frozenset[str]) -> frozenset[str]:
        unknown = sorted(names - INSECURE_EXCEPTIONS.keys())
        if unknown:
            raise ValueError(
                f"unknown name(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(INSECURE_EXCEPTIONS))
            )
        return names

    @field_validator("database_url", "keystore_url")
    @classmethod
    def _parseable_url(cls, url: str | None) -> str | None:
        """Parsed now, so a typo stops start-up here; the message never quotes the URL."""
        if url is None:
            return None
        from sqlalchemy.engine import make_url

        try:
            parsed = make_url(url)
            port = parsed.port
        except Exception:
            raise ValueError(
                "not a database URL (postgresql+asyncpg://user:password@host:5432/name)"
            ) from None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range (1-65535)")
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError("not a Redis URL (redis://host:6379/0 or rediss://…)") from None
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("needs a host (redis://host:6379/0)")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range (1-65535)")
        return url

    @model_validator(mode="after")
    def _production_refuses_plaintext(self) -> Settings:
        """In production, traffic that carries tokens' keys, answers or cached answers is
        encrypted, unless HEALTHINFO_ALLOW_INSECURE names the exception (docs/configuration.md)."""
        if self.environment != "production":
            return self
        found = []
        if self.jwt_jwks_url and self.jwt_jwks_url.lower().startswith("http://"):
            found.append("jwks-http")
        if self.forward_url and self.forward_url.lower().startswith("http://"):
            found.append("forward-http")
        if self.redis_url and self.redis_url.lower().startswith("redis://"):
            found.append("redis-plaintext")
        refused = [name for name in found if name not in self.allow_insecure]
        if refused:
            raise ValueError(
                "production refuses "
                + "; ".join(f"{INSECURE_EXCEPTIONS[name]} ({name})" for name in refused)
                + ": use TLS, or name the exception in HEALTHINFO_ALLOW_INSECURE"
            )
        return self

    # The legacy unversioned routes (docs/api-notes.md): when they stop, sent as `Sunset`.
    legacy_sunset: datetime | None = Field(
        default=None,
        description="RFC 3339 date-time with an offset (2027-06-30T00:00:00Z); unset: no Sunset.",
    )

    @field_validator("legacy_sunset")
    @classmethod
    def _sunset_has_offset(cls, value: datetime | None) -> datetime | None:
        """A Sunset is one instant for every client: a local time without offset is not."""
        if value is not None and value.utcoffset() is None:
            raise ValueError("give a time zone offset, e.g. 2027-06-30T00:00:00Z")
        return value

    @field_validator("database_url", "keystore_url")
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

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_replica_urls")
    @classmethod
    def _replicas_are_asyncpg(cls, urls: list[str]) -> list[str]:
        """A replica is a PostgreSQL streaming replica, reached through the async driver."""
        for url in urls:
            if not url.startswith("postgresql+asyncpg://"):
                raise ValueError(
                    "each replica must be a postgresql+asyncpg://… URL (a PostgreSQL streaming "
                    "replica, through the async driver)"
                )
        return urls

    @model_validator(mode="after")
    def _workers_need_redis(self) -> Settings:
        """Worker processes share events and cache entries only through Redis."""
        if (self.workers or 1) > 1 and not self.redis_url:
            raise ValueError(
                "HEALTHINFO_WORKERS above 1 needs HEALTHINFO_REDIS_URL: without a shared bus a "
                "stream on one worker would miss the writes made through another"
            )
        return self

    @model_validator(mode="after")
    def _replicas_need_postgres(self) -> Settings:
        """A SQLite file has no streaming replicas: refuse them rather than ignore them."""
        if self.database_replica_urls and self.is_sqlite:
            raise ValueError(
                "HEALTHINFO_DATABASE_REPLICA_URLS needs a PostgreSQL HEALTHINFO_DATABASE_URL "
                "(replicas stream from it)"
            )
        return self

    @field_validator(
        "rate_limit_read_per_user",
        "rate_limit_write_per_user",
        "rate_limit_stream_per_user",
        "rate_limit_read_per_address",
        "rate_limit_write_per_address",
        "rate_limit_stream_per_address",
        "rate_limit_focus_per_user",
    )
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError("must be like '600/minute' or '10/second'") from None
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes")
        return secret

    @field_validator("forward_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in {"http", "https"} or not rest.split("/", 1)[0]:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @model_validator(mode="after")
    def _forwarding_is_complete(self) -> Settings:
        """A signature needs a secret, and a lease must outlast a request (docs/forwarding.md)."""
        if self.forward_url is None:
            return self
        secret = self.forward_secret
        if secret is None or len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"HEALTHINFO_FORWARD_SECRET must be set (at least {MIN_SECRET_BYTES} bytes) "
                "when HEALTHINFO_FORWARD_URL is"
            )
        if self.forward_lease_seconds < 2 * self.forward_timeout_seconds:
            raise ValueError(
                "HEALTHINFO_FORWARD_LEASE_SECONDS must be at least twice "
                "HEALTHINFO_FORWARD_TIMEOUT_SECONDS, so a claim outlasts its request"
            )
        if self.forward_retry_max_seconds < self.forward_retry_initial_seconds:
            raise ValueError(
                "HEALTHINFO_FORWARD_RETRY_MAX_SECONDS must not be below "
                "HEALTHINFO_FORWARD_RETRY_INITIAL_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Settings:
        """Outside development a generated secret would differ per machine: refuse to guess."""
        has_key = bool(self.jwt_secret or self.jwt_public_keys or self.jwt_jwks_url)
        if self.environment == "production" and not has_key:
            raise ValueError(
                "HEALTHINFO_JWT_SECRET, HEALTHINFO_JWT_PUBLIC_KEYS or HEALTHINFO_JWT_JWKS_URL "
                "must be set in production"
            )
        if self.environment == "production" and self.master_keys is None:
            raise ValueError("HEALTHINFO_MASTER_KEYS must be set in production")
        if self.environment == "production" and self.keystore_url is None and not self.is_sqlite:
            raise ValueError(
                "HEALTHINFO_KEYSTORE_URL must be set in production: a database apart from the "
                "data, so that erasing a kit's key also makes old backups unreadable"
            )
        if self.master_keys is not None:
            from healthinfo.crypto.master_keys import MasterKeyError, MasterKeyring

            try:
                MasterKeyring.parse(self.master_keys.get_secret_value())
            except MasterKeyError as exc:
                raise ValueError(f"HEALTHINFO_MASTER_KEYS: {exc}") from None
        return self

    @model_validator(mode="after")
    def _audit_keys_are_real(self) -> Settings:
        """A generated audit key lives beside the data it protects: refuse it in production."""
        if self.environment == "production" and self.audit_keys is None:
            raise ValueError("HEALTHINFO_AUDIT_KEYS must be set in production")
        if self.audit_keys is not None:
            from healthinfo.audit.keys import AuditKeyError, AuditKeyring

            try:
                AuditKeyring.parse(self.audit_keys.get_secret_value())
            except AuditKeyError as exc:
                raise ValueError(f"HEALTHINFO_AUDIT_KEYS: {exc}") from None
        return self

    def audit_keyring(self) -> AuditKeyring:
        from healthinfo.audit.keys import AuditKeyring

        if self.audit_keys is not None:
            return AuditKeyring.parse(self.audit_keys.get_secret_value())
        return AuditKeyring.generated(self.data_dir)

    @property
    def effective_audit_checkpoint_dir(self) -> Path:
        return self.audit_checkpoint_dir or self.data_dir / "audit-checkpoints"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'healthinfo.db'}"

    @property
    def effective_keystore_url(self) -> str:
        return self.keystore_url or f"sqlite+aiosqlite:///{self.data_dir / 'keystore.db'}"

    def keyring(self) -> MasterKeyring:
        from healthinfo.crypto.master_keys import MasterKeyring, generated_keyring

        if self.master_keys is not None:
            return MasterKeyring.parse(self.master_keys.get_secret_value())
        return generated_keyring(self.data_dir)

    @property
    def effective_default_questionnaire(self) -> str:
        """The questionnaire a kit is bound to when its first write names none."""
        return self.default_questionnaire or self.questionnaire_id

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_workers(self) -> int:
        """Several processes need what they share to be shared: PostgreSQL (SQLite's writer lock
        serialises them anyway) and Redis (each process's in-process cache and bus would not see
        the others' writes, so streams on one would miss events written through another)."""
        if self.workers is not None:
            return self.workers
        if self.is_sqlite or not self.redis_url:
            return 1
        return max(1, os.cpu_count() or 1)

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
        lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)
