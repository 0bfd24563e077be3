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
