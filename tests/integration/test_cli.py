"""The real ``healthinfo`` command, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from healthinfo.auth.actor import Actor
from healthinfo.auth.tokens import TokenVerifier
from healthinfo.config import Settings
from healthinfo.db import migrate
from healthinfo.errors import Unauthenticated
from tests.support.backends import BACKENDS, create_pg_database, drop_pg_database
from tests.support.server import ServerProcess, free_port
from tests.support.tokens import TEST_MASTER_KEYS, TEST_SECRET

pytestmark = pytest.mark.asyncio

SECRET_MARKER = "CLI-SECRET-MARKER-4d2b-long-enough-for-hs256"
PASSWORD_MARKER = "PW-MARKER-81f0"
COMMANDS = [
    ["token", "--sub", "alice"],
    ["config"],
    ["migrate"],
    ["serve", "--port", "0"],
    ["worker"],
]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(tmp_path: Path, data_dir: Path) -> dict[str, str]:
    """The caller's environment without any HEALTHINFO_* variable, and a fresh data dir."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("HEALTHINFO_")}
    return {**clean, "HEALTHINFO_DATA_DIR": str(data_dir)}


async def healthinfo(tmp_path: Path, env: dict[str, str], *args: str) -> Run:
    """Run ``python -m healthinfo ARGS`` in an empty directory (so no stray .env is read)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "healthinfo",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def verify(secret: bytes, token: str) -> Actor:
    return await TokenVerifier(hs_secret=secret).verify(token)


def single_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


# --- token -----------------------------------------------------------------------------------


async def test_token_is_verified_with_the_configured_secret(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env["HEALTHINFO_JWT_SECRET"] = TEST_SECRET
    run = await healthinfo(tmp_path, env, "token", "--sub", "alice", "--role", "admin")
    assert run.code == 0, run.stderr
    actor = await verify(TEST_SECRET.encode(), single_line(run.stdout))
    assert actor == Actor("alice", frozenset({"admin"}))


def write_server_secret(data_dir: Path) -> bytes:
    """What ``healthinfo serve`` leaves in its data directory on its first start."""
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = b"generated-by-the-server-" + os.urandom(24).hex().encode()
    (data_dir / "jwt-secret").write_bytes(secret + b"\n")
    return secret


async def test_token_without_a_configured_secret_uses_the_one_serve_generated(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    secret = write_server_secret(data_dir)
    run = await healthinfo(tmp_path, env, "token", "--sub", "alice", "--role", "admin")
    assert run.code == 0, run.stderr
    actor = await verify(secret, single_line(run.stdout))
    assert actor == Actor("alice", frozenset({"admin"}))


async def test_token_without_any_secret_says_where_it_looked_and_mints_nothing(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    run = await healthinfo(tmp_path, env, "token", "--sub", "alice")
    assert run.code == 2
    assert run.stdout == ""
    line = single_line(run.stderr)
    assert str((data_dir / "jwt-secret").resolve()) in line
    assert "HEALTHINFO_DATA_DIR" in line
    assert not (data_dir / "jwt-secret").exists()


async def test_token_minted_after_serve_started_is_accepted_by_that_server(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    """README's "First request": serve first (it writes data/jwt-secret), then token."""
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "healthinfo", "serve", "--port", str(port)),
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, server)
        run = await healthinfo(tmp_path, env, "token", "--sub", "alice")
        assert run.code == 0, run.stderr
        async with httpx.AsyncClient(base_url=base) as http:
            response = await http.get(
                "/v1/kits/K-FIRST/health-information",
                headers={"Authorization": f"Bearer {single_line(run.stdout)}"},
            )
        assert response.status_code == 404, response.text  # authenticated: nothing saved yet
        assert stat.S_IMODE((data_dir / "jwt-secret").stat().st_mode) == 0o600
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=20)


async def wait_ready(base: str, server: asyncio.subprocess.Process, within: float = 90) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=1) as http:
        while time.monotonic() < deadline:
            assert server.returncode is None, "serve exited"
            try:
                if (await http.get("/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("serve did not become ready")


async def test_token_reuses_the_generated_secret(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    secret = write_server_secret(data_dir)
    first = await healthinfo(tmp_path, env, "token", "--sub", "alice")
    second = await healthinfo(tmp_path, env, "token", "--sub", "bob")
    assert first.code == second.code == 0
    assert (data_dir / "jwt-secret").read_bytes().strip() == secret
    assert await verify(secret, single_line(second.stdout)) == Actor("bob")


async def test_token_without_a_secret_is_not_signed_with_a_known_default(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    write_server_secret(data_dir)
    run = await healthinfo(tmp_path, env, "token", "--sub", "alice")
    assert run.code == 0, run.stderr
    with pytest.raises(Unauthenticated):
        await verify(TEST_SECRET.encode(), single_line(run.stdout))


@pytest.mark.parametrize("role", ["root", "Admin"])
async def test_token_refuses_an_unknown_role_in_one_line(
    tmp_path: Path, env: dict[str, str], role: str
) -> None:
    env["HEALTHINFO_JWT_SECRET"] = TEST_SECRET
    run = await healthinfo(tmp_path, env, "token", "--sub", "alice", "--role", role)
    assert run.code == 2
    assert run.stdout == ""
    line = single_line(run.stderr)
    assert role in line
    assert "admin" in line
    assert "auditor" in line


@pytest.mark.parametrize("ttl", ["0", "-5"])
async def test_token_refuses_a_lifetime_that_is_not_positive(
    tmp_path: Path, env: dict[str, str], ttl: str
) -> None:
    env["HEALTHINFO_JWT_SECRET"] = TEST_SECRET
    run = await healthinfo(tmp_path, env, "token", "--sub", "alice", "--ttl", ttl)
    assert run.code == 2
    assert "--ttl" in single_line(run.stderr)
    assert run.stdout == ""


async def test_token_takes_repeated_roles(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_JWT_SECRET"] = TEST_SECRET
    run = await healthinfo(
        tmp_path, env, "token", "--sub", "carol", "--role", "admin", "--role", "auditor"
    )
    assert run.code == 0, run.stderr
    actor = await verify(TEST_SECRET.encode(), single_line(run.stdout))
    assert actor == Actor("carol", frozenset({"admin", "auditor"}))


async def test_token_without_roles_names_a_plain_user(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_JWT_SECRET"] = TEST_SECRET
    run = await healthinfo(tmp_path, env, "token", "--sub", "dave")
    assert run.code == 0, run.stderr
    assert await verify(TEST_SECRET.encode(), single_line(run.stdout)) == Actor("dave")


async def test_token_requires_a_subject(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_JWT_SECRET"] = TEST_SECRET
    run = await healthinfo(tmp_path, env, "token", "--role", "admin")
    assert run.code == 2
    assert "--sub" in run.stderr
    assert run.stdout == ""


# --- config ----------------------------------------------------------------------------------


async def test_config_prints_json_with_the_secret_masked(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env["HEALTHINFO_JWT_SECRET"] = SECRET_MARKER
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 0, run.stderr
    assert SECRET_MARKER not in run.stdout
    assert SECRET_MARKER not in run.stderr
    shown = json.loads(run.stdout)
    assert shown["HEALTHINFO_JWT_SECRET"]
    assert shown["HEALTHINFO_DATA_DIR"] == str(tmp_path / "data")


async def test_config_masks_the_database_url_password(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_DATABASE_URL"] = (
        f"postgresql+asyncpg://svc:{PASSWORD_MARKER}@db.example:5432/healthinfo"
    )
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 0, run.stderr
    assert PASSWORD_MARKER not in run.stdout
    url = json.loads(run.stdout)["HEALTHINFO_DATABASE_URL"]
    assert "svc" in url
    assert "db.example:5432/healthinfo" in url


async def test_config_masks_the_replica_url_passwords(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_DATABASE_URL"] = "postgresql+asyncpg://svc@db.example:5432/healthinfo"
    env["HEALTHINFO_DATABASE_REPLICA_URLS"] = ",".join(
        f"postgresql+asyncpg://svc:{PASSWORD_MARKER}@replica-{n}.example:5432/healthinfo"
        for n in (1, 2)
    )
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 0, run.stderr
    assert PASSWORD_MARKER not in run.stdout
    replicas = json.loads(run.stdout)["HEALTHINFO_DATABASE_REPLICA_URLS"]
    assert ["replica-1.example" in replicas[0], "replica-2.example" in replicas[1]] == [True, True]


async def test_config_masks_the_redis_url_password(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_REDIS_URL"] = f"redis://:{PASSWORD_MARKER}@cache.example:6379/0"
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 0, run.stderr
    assert PASSWORD_MARKER not in run.stdout
    assert "cache.example" in json.loads(run.stdout)["HEALTHINFO_REDIS_URL"]


async def test_config_never_prints_the_generated_secret(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    secret = write_server_secret(data_dir).decode()
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 0, run.stderr
    assert secret not in run.stdout


async def test_config_shows_the_effective_defaults(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 0, run.stderr
    shown = json.loads(run.stdout)
    assert all(name.startswith("HEALTHINFO_") for name in shown)
    assert shown["HEALTHINFO_RATE_LIMIT_ENABLED"] is True
    assert shown["HEALTHINFO_DATABASE_URL"] == f"sqlite+aiosqlite:///{data_dir / 'healthinfo.db'}"
    assert shown["HEALTHINFO_MIGRATE_ON_START"] is True
    assert shown["HEALTHINFO_REDIS_URL"].startswith("unset: in-process")
    assert str(data_dir / "jwt-secret") in shown["HEALTHINFO_JWT_SECRET"]


async def test_config_shows_a_value_for_every_setting_never_null(
    tmp_path: Path, env: dict[str, str]
) -> None:
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 0, run.stderr
    shown = json.loads(run.stdout)
    assert set(shown) == {f"HEALTHINFO_{name.upper()}" for name in Settings.model_fields}
    assert [name for name, value in shown.items() if value is None] == []


# --- invalid configuration -------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
async def test_invalid_variable_makes_any_command_exit_2_naming_it(
    tmp_path: Path, env: dict[str, str], command: list[str]
) -> None:
    env["HEALTHINFO_MAX_BODY_BYTES"] = "abc"
    run = await healthinfo(tmp_path, env, *command)
    assert run.code == 2
    assert "HEALTHINFO_MAX_BODY_BYTES" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


async def test_every_wrong_variable_is_named_once(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_MAX_BODY_BYTES"] = "abc"
    env["HEALTHINFO_ROOM_LIMIT"] = "0"
    env["HEALTHINFO_DATABASE_URL"] = f"postgresql://svc:{PASSWORD_MARKER}@db.example/hi"
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 2
    for name in ("HEALTHINFO_MAX_BODY_BYTES", "HEALTHINFO_ROOM_LIMIT", "HEALTHINFO_DATABASE_URL"):
        assert run.stderr.count(name) == 1, run.stderr
    assert "postgresql+asyncpg" in run.stderr
    assert PASSWORD_MARKER not in run.stderr


async def test_short_secret_exits_2_without_echoing_it(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_JWT_SECRET"] = "short-SECRET-e9d1"
    run = await healthinfo(tmp_path, env, "token", "--sub", "alice")
    assert run.code == 2
    assert "HEALTHINFO_JWT_SECRET" in run.stderr
    assert "short-SECRET-e9d1" not in run.stderr + run.stdout


# --- migrate ---------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def database_env(
    request: pytest.FixtureRequest, env: dict[str, str], data_dir: Path
) -> AsyncIterator[dict[str, str]]:
    """``env`` for an empty database: the default SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield env
        return
    name, url = await create_pg_database()
    try:
        yield {**env, "HEALTHINFO_DATABASE_URL": url}
    finally:
        await drop_pg_database(name)


def sqlite_tables(data_dir: Path) -> set[str]:
    with sqlite3.connect(data_dir / "healthinfo.db") as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


async def test_migrate_on_a_fresh_sqlite_file_reaches_the_head_revision(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    head = migrate.head_revision()
    assert head
    run = await healthinfo(tmp_path, env, "migrate")
    assert run.code == 0, run.stderr
    assert head in run.stdout
    assert (data_dir / "healthinfo.db").is_file()
    assert {"alembic_version", "kits"} <= sqlite_tables(data_dir)


async def test_migrate_down_to_base_and_up_again(
    tmp_path: Path, database_env: dict[str, str]
) -> None:
    head = migrate.head_revision()
    assert head
    up = await healthinfo(tmp_path, database_env, "migrate")
    assert up.code == 0, up.stderr
    assert head in up.stdout
    down = await healthinfo(tmp_path, database_env, "migrate", "--down", "base")
    assert down.code == 0, down.stderr
    assert head not in down.stdout
    again = await healthinfo(tmp_path, database_env, "migrate")
    assert again.code == 0, again.stderr
    assert head in again.stdout


async def test_migrate_down_to_base_drops_the_tables(
    tmp_path: Path, env: dict[str, str], data_dir: Path
) -> None:
    assert (await healthinfo(tmp_path, env, "migrate")).code == 0
    down = await healthinfo(tmp_path, env, "migrate", "--down", "base")
    assert down.code == 0, down.stderr
    assert sqlite_tables(data_dir) <= {"alembic_version"}


async def test_migrate_twice_is_harmless(tmp_path: Path, database_env: dict[str, str]) -> None:
    head = migrate.head_revision()
    assert head
    first = await healthinfo(tmp_path, database_env, "migrate")
    second = await healthinfo(tmp_path, database_env, "migrate")
    assert first.code == second.code == 0
    assert head in second.stdout


async def test_migrate_down_to_base_never_says_revision_none(
    tmp_path: Path, env: dict[str, str]
) -> None:
    assert (await healthinfo(tmp_path, env, "migrate")).code == 0
    down = await healthinfo(tmp_path, env, "migrate", "--down", "base")
    assert down.code == 0, down.stderr
    assert "None" not in down.stdout + down.stderr
    assert "base" in single_line(down.stdout)


async def test_migrate_down_to_an_unknown_revision_lists_the_known_ones(
    tmp_path: Path, env: dict[str, str]
) -> None:
    run = await healthinfo(tmp_path, env, "migrate", "--down", "bogus")
    assert run.code == 2
    line = single_line(run.stderr)
    assert "'bogus'" in line
    assert all(rev in line for rev in ["base", *migrate.revisions_oldest_first()])
    assert run.stdout == ""


# --- operator mistakes: one line on stderr, no traceback, a non-zero exit ---------------------


async def test_serve_refuses_a_port_out_of_range_in_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    run = await healthinfo(tmp_path, env, "serve", "--port", "99999")
    assert run.code == 2
    assert "99999" in single_line(run.stderr)


async def test_audit_verify_of_a_kit_that_does_not_exist_exits_2(
    tmp_path: Path, database_env: dict[str, str]
) -> None:
    assert (await healthinfo(tmp_path, database_env, "migrate")).code == 0
    run = await healthinfo(tmp_path, database_env, "audit", "verify", "--kit", "NOPE")
    assert run.code == 2
    assert single_line(run.stderr) == "healthinfo: audit verify: no such kit: NOPE"
    assert run.stdout == ""


@pytest.mark.parametrize("command", [["migrate"], ["serve", "--port", "0"]], ids=lambda c: c[0])
async def test_an_unreachable_database_is_one_line_naming_host_and_port_never_the_password(
    tmp_path: Path, env: dict[str, str], command: list[str]
) -> None:
    port = free_port()  # nothing listens there
    env["HEALTHINFO_DATABASE_URL"] = (
        f"postgresql+asyncpg://svc:{PASSWORD_MARKER}@127.0.0.1:{port}/healthinfo"
    )
    run = await healthinfo(tmp_path, env, *command)
    assert run.code == 1
    line = single_line(run.stderr)
    assert f"127.0.0.1:{port}" in line
    assert "HEALTHINFO_DATABASE_URL" in line
    assert "refused" in line.lower()
    assert PASSWORD_MARKER not in run.stderr + run.stdout


async def test_a_database_host_that_does_not_resolve_says_so_in_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env["HEALTHINFO_DATABASE_URL"] = "postgresql+asyncpg://svc@db.invalid:5432/healthinfo"
    run = await healthinfo(tmp_path, env, "migrate")
    assert run.code == 1
    line = single_line(run.stderr)
    assert "db.invalid:5432" in line
    assert "resolve" in line


async def test_a_malformed_database_url_is_one_line_without_the_password(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env["HEALTHINFO_DATABASE_URL"] = f"postgresql+asyncpg://svc:{PASSWORD_MARKER}@db:port/hi"
    run = await healthinfo(tmp_path, env, "migrate")
    assert run.code == 2
    assert "HEALTHINFO_DATABASE_URL" in single_line(run.stderr)
    assert PASSWORD_MARKER not in run.stderr


async def test_an_unreachable_redis_stops_serve_with_one_line_never_the_password(
    tmp_path: Path, env: dict[str, str]
) -> None:
    port = free_port()
    env["HEALTHINFO_REDIS_URL"] = f"redis://:{PASSWORD_MARKER}@127.0.0.1:{port}/0"
    run = await healthinfo(tmp_path, env, "serve", "--port", "0")
    assert run.code == 1
    line = single_line(run.stderr)
    assert f"127.0.0.1:{port}" in line
    assert "HEALTHINFO_REDIS_URL" in line
    assert "refused" in line.lower()  # why it failed, not only where
    assert PASSWORD_MARKER not in run.stderr + run.stdout


async def test_serve_starts_degraded_without_redis_when_told_redis_is_not_required(
    tmp_path: Path,
) -> None:
    """HEALTHINFO_REDIS_REQUIRED_AT_START=false: an outage at start-up is not a mistake."""
    server = ServerProcess(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hi.db'}",
        data_dir=tmp_path,
        extra_env={
            "HEALTHINFO_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "HEALTHINFO_REDIS_REQUIRED_AT_START": "false",
        },
    )
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["cache"] == "degraded"
    finally:
        await asyncio.to_thread(server.stop)
    log = await asyncio.to_thread(server.log.read_text)
    assert "healthinfo: warning: cannot reach Redis" in log


async def test_a_malformed_redis_url_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    env["HEALTHINFO_REDIS_URL"] = f"http://:{PASSWORD_MARKER}@cache.example:6379"
    run = await healthinfo(tmp_path, env, "serve", "--port", "0")
    assert run.code == 2
    assert "HEALTHINFO_REDIS_URL" in single_line(run.stderr)
    assert PASSWORD_MARKER not in run.stderr


async def test_production_serve_refuses_an_http_jwks_url_in_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env.update(
        {
            "HEALTHINFO_ENVIRONMENT": "production",
            "HEALTHINFO_JWT_JWKS_URL": "http://issuer.example/.well-known/jwks.json",
            "HEALTHINFO_MASTER_KEYS": TEST_MASTER_KEYS,
        }
    )
    run = await healthinfo(tmp_path, env, "serve", "--port", "0")
    assert run.code == 2
    line = single_line(run.stderr)
    assert "jwks-http" in line
    assert "HEALTHINFO_ALLOW_INSECURE" in line


async def test_config_masks_the_audit_keys(tmp_path: Path, env: dict[str, str]) -> None:
    from healthinfo.crypto.master_keys import new_key_spec

    spec = new_key_spec("a1")
    env["HEALTHINFO_AUDIT_KEYS"] = spec
    run = await healthinfo(tmp_path, env, "config")
    assert run.code == 0, run.stderr
    assert spec.split(":")[1] not in run.stdout
    assert json.loads(run.stdout)["HEALTHINFO_AUDIT_KEYS"]
