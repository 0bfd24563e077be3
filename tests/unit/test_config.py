"""Settings from HEALTHINFO_* variables: defaults, validation with named variables, secrets."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from healthinfo.config import Settings, SettingsError, load_settings
from healthinfo.crypto.master_keys import new_key_spec

SECRET = "a-jwt-secret-that-is-long-enough-for-hs256-xyz"
PG_URL = "postgresql+asyncpg://svc:pw@db.example:5432/healthinfo"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No HEALTHINFO_* variable from the caller's shell, and no stray .env: cwd is empty."""
    for name in list(os.environ):
        if name.upper().startswith("HEALTHINFO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settings_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


# --- defaults --------------------------------------------------------------------------------


def test_default_database_is_a_sqlite_file_in_the_data_dir() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.database_url is None
    assert (
        settings.effective_database_url == f"sqlite+aiosqlite:///{Path('data') / 'healthinfo.db'}"
    )
    assert settings.is_sqlite


def test_default_database_follows_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_DATA_DIR", "/srv/healthinfo")
    settings = load_settings()
    assert settings.effective_database_url == "sqlite+aiosqlite:////srv/healthinfo/healthinfo.db"


def test_sqlite_migrates_on_start_by_default() -> None:
    assert load_settings().should_migrate_on_start is True


def test_postgresql_does_not_migrate_on_start_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_DATABASE_URL", PG_URL)
    settings = load_settings()
    assert not settings.is_sqlite
    assert settings.should_migrate_on_start is False


def test_migrate_on_start_can_be_forced_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_DATABASE_URL", PG_URL)
    monkeypatch.setenv("HEALTHINFO_MIGRATE_ON_START", "true")
    assert load_settings().should_migrate_on_start is True
    monkeypatch.delenv("HEALTHINFO_DATABASE_URL")
    monkeypatch.setenv("HEALTHINFO_MIGRATE_ON_START", "false")
    assert load_settings().should_migrate_on_start is False


def test_other_defaults_match_the_contract() -> None:
    settings = load_settings()
    assert settings.redis_url is None
    assert settings.rate_limit_enabled is True
    assert settings.room_limit == 50
    assert settings.jwt_secret is None
    assert settings.environment == "development"


# --- environment variables -------------------------------------------------------------------


def test_prefixed_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_DATABASE_URL", PG_URL)
    monkeypatch.setenv("HEALTHINFO_REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("HEALTHINFO_JWT_SECRET", SECRET)
    monkeypatch.setenv("HEALTHINFO_DATA_DIR", "/var/lib/hi")
    monkeypatch.setenv("HEALTHINFO_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("HEALTHINFO_RATE_LIMIT_ENABLED", "false")
    monkeypatch.setenv("HEALTHINFO_ROOM_LIMIT", "7")
    settings = load_settings()
    assert settings.database_url == PG_URL
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == SECRET
    assert settings.data_dir == Path("/var/lib/hi")
    assert settings.max_body_bytes == 4096
    assert settings.rate_limit_enabled is False
    assert settings.room_limit == 7


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    settings = load_settings()
    assert settings.max_body_bytes == 1_048_576
    assert settings.database_url is None


def test_dot_env_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HEALTHINFO_ROOM_LIMIT=9\nHEALTHINFO_JWT_SECRET=" + SECRET)
    settings = load_settings()
    assert settings.room_limit == 9
    assert settings.jwt_secret is not None


def test_environment_wins_over_dot_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HEALTHINFO_ROOM_LIMIT=9\n")
    monkeypatch.setenv("HEALTHINFO_ROOM_LIMIT", "11")
    assert load_settings().room_limit == 11


def test_wrong_value_in_dot_env_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HEALTHINFO_ROOM_LIMIT=lots\n")
    with pytest.raises(SettingsError, match="HEALTHINFO_ROOM_LIMIT"):
        load_settings()


# --- wrong values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HEALTHINFO_MAX_BODY_BYTES", "abc"),
        ("HEALTHINFO_MAX_BODY_BYTES", "-1"),
        ("HEALTHINFO_ROOM_LIMIT", "0"),
        ("HEALTHINFO_ROOM_LIMIT", "many"),
        ("HEALTHINFO_RATE_LIMIT_ENABLED", "perhaps"),
        ("HEALTHINFO_ENVIRONMENT", "staging-ish"),
        ("HEALTHINFO_DB_POOL_SIZE", "0"),
        ("HEALTHINFO_LOG_LEVEL", "LOUD"),
    ],
)
def test_wrong_value_raises_settings_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    message = settings_error(monkeypatch, **{name: value})
    assert name in message
    assert message.count("\n") == 0


def test_each_wrong_variable_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(
        monkeypatch, HEALTHINFO_MAX_BODY_BYTES="abc", HEALTHINFO_ROOM_LIMIT="0"
    )
    lines = message.splitlines()
    assert len(lines) == 2
    assert any(line.startswith("HEALTHINFO_MAX_BODY_BYTES") for line in lines)
    assert any(line.startswith("HEALTHINFO_ROOM_LIMIT") for line in lines)


def test_settings_error_has_no_pydantic_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_MAX_BODY_BYTES="abc")
    assert "pydantic" not in message.lower()
    assert "errors.pydantic.dev" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://svc:pw@db.example/healthinfo",
        "postgres://svc:pw@db.example/healthinfo",
        "postgresql+psycopg://svc:pw@db.example/healthinfo",
    ],
)
def test_sync_postgresql_url_is_refused_pointing_to_asyncpg(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_DATABASE_URL=url)
    assert "HEALTHINFO_DATABASE_URL" in message
    assert "postgresql+asyncpg" in message
    assert "pw@" not in message


def test_sync_sqlite_url_is_refused_pointing_to_aiosqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_DATABASE_URL="sqlite:///tmp/x.db")
    assert "HEALTHINFO_DATABASE_URL" in message
    assert "sqlite+aiosqlite" in message


def test_short_jwt_secret_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    short = "short-SECRET-7f3a"
    message = settings_error(monkeypatch, HEALTHINFO_JWT_SECRET=short)
    assert "HEALTHINFO_JWT_SECRET" in message
    assert "32" in message
    assert short not in message


def test_production_without_any_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_ENVIRONMENT="production")
    assert "HEALTHINFO_JWT_SECRET" in message
    assert "production" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HEALTHINFO_JWT_SECRET", SECRET),
        ("HEALTHINFO_JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
    ],
)
def test_production_with_a_key_source_is_accepted(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("HEALTHINFO_ENVIRONMENT", "production")
    monkeypatch.setenv("HEALTHINFO_MASTER_KEYS", new_key_spec("k1"))
    monkeypatch.setenv("HEALTHINFO_AUDIT_KEYS", new_key_spec("a1"))
    monkeypatch.setenv(name, value)
    assert load_settings().environment == "production"


def test_production_without_master_keys_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(
        monkeypatch, HEALTHINFO_ENVIRONMENT="production", HEALTHINFO_JWT_SECRET=SECRET
    )
    assert "HEALTHINFO_MASTER_KEYS" in message


def test_production_on_postgresql_needs_a_key_store_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(
        monkeypatch,
        HEALTHINFO_ENVIRONMENT="production",
        HEALTHINFO_JWT_SECRET=SECRET,
        HEALTHINFO_MASTER_KEYS=new_key_spec("k1"),
        HEALTHINFO_DATABASE_URL="postgresql+asyncpg://db/healthinfo",
    )
    assert "HEALTHINFO_KEYSTORE_URL" in message


def test_a_malformed_master_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_MASTER_KEYS="k1:tooshort")
    assert "HEALTHINFO_MASTER_KEYS" in message
    assert "32 bytes" in message


def test_production_without_audit_keys_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated audit key would sit in the data directory, beside what it protects."""
    message = settings_error(
        monkeypatch,
        HEALTHINFO_ENVIRONMENT="production",
        HEALTHINFO_JWT_SECRET=SECRET,
        HEALTHINFO_MASTER_KEYS=new_key_spec("k1"),
    )
    assert "HEALTHINFO_AUDIT_KEYS" in message


def test_a_malformed_audit_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_AUDIT_KEYS="a1:tooshort")
    assert "HEALTHINFO_AUDIT_KEYS: audit key 'a1' must be 32 bytes" in message


def test_audit_checkpoints_default_to_the_data_dir_every_minute(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.effective_audit_checkpoint_dir == tmp_path / "audit-checkpoints"
    assert settings.audit_checkpoint_interval == 60.0


def test_a_flag_takes_a_percentage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_STRICT_PRECONDITIONS", "25%")
    assert load_settings().strict_preconditions.percent == 25


def test_a_malformed_flag_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_AUDIT_READS="sometimes")
    assert "HEALTHINFO_AUDIT_READS" in message


def test_overrides_are_validated_like_the_environment() -> None:
    with pytest.raises(SettingsError, match="HEALTHINFO_ROOM_LIMIT"):
        load_settings(room_limit=0)


# --- the HS256 secret ------------------------------------------------------------------------


def test_configured_secret_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALTHINFO_JWT_SECRET", SECRET)
    monkeypatch.setenv("HEALTHINFO_DATA_DIR", str(tmp_path / "data"))
    assert load_settings().hs_secret() == SECRET.encode()
    assert not (tmp_path / "data" / "jwt-secret").exists()


def test_secret_is_generated_into_the_data_dir_with_mode_0600(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "fresh" / "data"
    monkeypatch.setenv("HEALTHINFO_DATA_DIR", str(data_dir))
    secret = load_settings().hs_secret()
    path = data_dir / "jwt-secret"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret is not None
    assert len(secret) >= 32
    assert path.read_bytes().strip() == secret


def test_generated_secret_is_stable_across_calls_and_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HEALTHINFO_DATA_DIR", str(tmp_path / "data"))
    first = load_settings().hs_secret()
    assert load_settings().hs_secret() == first
    assert Settings(_env_file=None, data_dir=tmp_path / "data").hs_secret() == first  # type: ignore[call-arg]


def test_generated_secret_is_not_a_hard_coded_default(tmp_path: Path) -> None:
    one = load_settings(data_dir=tmp_path / "one").hs_secret()
    two = load_settings(data_dir=tmp_path / "two").hs_secret()
    assert one is not None
    assert two is not None
    assert one != two


def test_no_secret_is_generated_when_public_keys_are_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HEALTHINFO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEALTHINFO_JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    assert load_settings().hs_secret() is None
    assert not (tmp_path / "data" / "jwt-secret").exists()


# --- production refuses plaintext unless HEALTHINFO_ALLOW_INSECURE names it -----------------


def production(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """A production configuration that is valid apart from what the test adds."""
    monkeypatch.setenv("HEALTHINFO_ENVIRONMENT", "production")
    monkeypatch.setenv("HEALTHINFO_JWT_SECRET", SECRET)
    monkeypatch.setenv("HEALTHINFO_MASTER_KEYS", new_key_spec("k1"))
    monkeypatch.setenv("HEALTHINFO_AUDIT_KEYS", new_key_spec("a1"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)


FORWARD = {"HEALTHINFO_FORWARD_SECRET": SECRET}
PLAINTEXT = {
    "jwks-http": {"HEALTHINFO_JWT_JWKS_URL": "http://issuer.example/jwks.json"},
    "forward-http": {"HEALTHINFO_FORWARD_URL": "http://lab.example/intake", **FORWARD},
    "redis-plaintext": {"HEALTHINFO_REDIS_URL": "redis://cache.example:6379/0"},
}


@pytest.mark.parametrize("exception", sorted(PLAINTEXT))
def test_production_refuses_plaintext_naming_the_exception(
    monkeypatch: pytest.MonkeyPatch, exception: str
) -> None:
    production(monkeypatch, **PLAINTEXT[exception])
    message = settings_error(monkeypatch)
    assert exception in message
    assert "HEALTHINFO_ALLOW_INSECURE" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("exception", sorted(PLAINTEXT))
def test_production_accepts_plaintext_that_allow_insecure_names(
    monkeypatch: pytest.MonkeyPatch, exception: str
) -> None:
    production(monkeypatch, HEALTHINFO_ALLOW_INSECURE=exception, **PLAINTEXT[exception])
    assert load_settings().allow_insecure == frozenset({exception})


def test_an_exception_allows_only_what_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    production(
        monkeypatch,
        HEALTHINFO_ALLOW_INSECURE="jwks-http",
        **PLAINTEXT["jwks-http"],
        **PLAINTEXT["redis-plaintext"],
    )
    message = settings_error(monkeypatch)
    assert "redis-plaintext" in message
    assert "(jwks-http)" not in message


def test_production_accepts_tls_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    production(
        monkeypatch,
        HEALTHINFO_JWT_JWKS_URL="https://issuer.example/jwks.json",
        HEALTHINFO_FORWARD_URL="https://lab.example/intake",
        HEALTHINFO_REDIS_URL="rediss://cache.example:6380/0",
        **FORWARD,
    )
    assert load_settings().redis_url == "rediss://cache.example:6380/0"


def test_plaintext_is_fine_outside_production(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in PLAINTEXT.values():
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    assert load_settings().environment == "development"


def test_an_unknown_insecure_exception_is_refused_listing_the_known_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_ALLOW_INSECURE="jwks-http,everything")
    assert "HEALTHINFO_ALLOW_INSECURE" in message
    assert "everything" in message
    assert "redis-plaintext" in message


# --- trusted proxies, header limit, URL syntax ----------------------------------------------


def test_no_proxy_is_trusted_by_default() -> None:
    assert load_settings().trusted_proxies == []


def test_trusted_proxies_take_addresses_and_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_TRUSTED_PROXIES", "10.0.0.5, 192.168.0.0/24,::1")
    assert load_settings().trusted_proxies == ["10.0.0.5", "192.168.0.0/24", "::1"]


@pytest.mark.parametrize("entry", ["*", "balancer.example", "10.0.0.300"])
def test_trusted_proxies_refuse_anything_but_an_address(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    assert "HEALTHINFO_TRUSTED_PROXIES" in settings_error(
        monkeypatch, HEALTHINFO_TRUSTED_PROXIES=entry
    )


def test_header_limit_defaults_to_16_kib() -> None:
    assert load_settings().max_header_bytes == 16_384


def test_one_user_holds_at_most_five_places_in_a_room_by_default() -> None:
    """The cap itself is tested live (test_stream_revocation.py, with a limit of 2)."""
    assert load_settings().room_user_limit == 5


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://svc:PW-MARK@db.example:port/hi",
        "postgresql+asyncpg://svc:PW-MARK@db.example:99999/hi",
        "not a url PW-MARK",
    ],
)
def test_a_malformed_database_url_is_named_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    message = settings_error(monkeypatch, HEALTHINFO_DATABASE_URL=url)
    assert message.startswith("HEALTHINFO_DATABASE_URL: ")
    assert "PW-MARK" not in message


@pytest.mark.parametrize(
    "url", ["http://cache.example:6379", "redis://cache.example:port/0", "redis:///0"]
)
def test_a_malformed_redis_url_is_named(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    assert settings_error(monkeypatch, HEALTHINFO_REDIS_URL=url).startswith(
        "HEALTHINFO_REDIS_URL: "
    )


PG = "postgresql+asyncpg://svc@db.internal/healthinfo"


def test_one_worker_by_default_on_sqlite() -> None:
    assert load_settings(redis_url="redis://127.0.0.1:6379/0").effective_workers == 1


def test_one_worker_by_default_without_redis() -> None:
    assert load_settings(database_url=PG).effective_workers == 1


def test_a_worker_per_cpu_by_default_with_postgresql_and_redis() -> None:
    settings = load_settings(database_url=PG, redis_url="redis://127.0.0.1:6379/0")
    assert settings.effective_workers == (os.cpu_count() or 1)


def test_configured_workers_win_over_the_default() -> None:
    settings = load_settings(database_url=PG, redis_url="redis://127.0.0.1:6379/0", workers=3)
    assert settings.effective_workers == 3


def test_more_than_one_worker_without_redis_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "HEALTHINFO_REDIS_URL" in settings_error(monkeypatch, HEALTHINFO_WORKERS="2")
