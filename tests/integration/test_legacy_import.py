"""The legacy import moves every well-formed old Redis entry and reports the rest."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy import MetaData, Table, func, inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

from healthinfo.legacy.import_redis import ImportOptions, LegacyImporter
from tests.support.backends import (
    REDIS_URL,
    create_pg_database,
    delete_redis_keys,
    drop_pg_database,
    sqlite_url,
)
from tests.support.tokens import TEST_SECRET, auth

ADMIN = auth("admin", "admin")


@pytest.fixture
async def legacy_prefix() -> AsyncIterator[str]:
    """The old system's keys, under a prefix of this test's own on the shared Redis."""
    prefix = f"legacy-test-{uuid.uuid4().hex[:8]}:health-info:"
    yield prefix
    await delete_redis_keys(prefix.split(":")[0])


async def fill(prefix: str, entries: dict[str, object]) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for kit, value in entries.items():
            if isinstance(value, dict) and value.get("__hash__"):
                await client.hset(prefix + kit, mapping={"answers": "{}"})
            else:
                await client.set(
                    prefix + kit, value if isinstance(value, str) else json.dumps(value)
                )
    finally:
        await client.aclose()


def options(prefix: str, **overrides: object) -> ImportOptions:
    return ImportOptions(pattern=prefix + "*", **overrides)  # type: ignore[arg-type]


async def test_well_formed_entries_become_version_1_with_their_owner(
    app: FastAPI, client: httpx.AsyncClient, legacy_prefix: str, kit_id: str
) -> None:
    await fill(
        legacy_prefix,
        {kit_id: {"answers": {"heightCm": 171, "smokingStatus": "never"}, "userId": "mum"}},
    )
    report = await LegacyImporter(app.state.services, options(legacy_prefix)).run(REDIS_URL)
    assert report.imported == [kit_id]
    response = await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth("mum"))
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert response.json()["answers"] == {"heightCm": 171, "smokingStatus": "never"}
    assert response.json()["status"] == "in-progress"


async def test_malformed_entries_are_reported_with_a_reason_and_no_value(
    app: FastAPI, legacy_prefix: str, kit_id: str
) -> None:
    await fill(
        legacy_prefix,
        {
            f"{kit_id}-json": "{not json MARKER-1",
            f"{kit_id}-array": [1, 2],
            f"{kit_id}-noanswers": {"userId": "x"},
            f"{kit_id}-invalid": {"answers": {"heightCm": "MARKER-2"}},
            f"{kit_id}-unknown": {"answers": {"shoeSize": 42}},
            f"{kit_id}-hash": {"__hash__": True},
            "bad id!": {"answers": {}},
        },
    )
    report = await LegacyImporter(app.state.services, options(legacy_prefix)).run(REDIS_URL)
    assert report.imported == []
    reasons = dict(report.invalid)
    assert len(reasons) == 7
    assert reasons[legacy_prefix + f"{kit_id}-json"] == "not JSON"
    assert reasons[legacy_prefix + f"{kit_id}-array"] == "not a JSON object"
    assert reasons[legacy_prefix + f"{kit_id}-hash"] == "not a string value (hash, list or set)"
    assert "answers.heightCm" in reasons[legacy_prefix + f"{kit_id}-invalid"]
    assert "answers.shoeSize" in reasons[legacy_prefix + f"{kit_id}-unknown"]
    assert "MARKER" not in json.dumps(report.as_dict())


async def test_kits_that_already_have_data_are_skipped_not_overwritten(
    app: FastAPI, client: httpx.AsyncClient, legacy_prefix: str, kit_id: str, user: str
) -> None:
    await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {"heightCm": 190}},
        headers=auth(user),
    )
    await fill(legacy_prefix, {kit_id: {"answers": {"heightCm": 150}}})
    report = await LegacyImporter(app.state.services, options(legacy_prefix)).run(REDIS_URL)
    assert [kit for kit, _ in report.skipped] == [legacy_prefix + kit_id]
    current = (await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth(user))).json()
    assert current["answers"] == {"heightCm": 190}


async def test_running_twice_imports_once(app: FastAPI, legacy_prefix: str, kit_id: str) -> None:
    await fill(legacy_prefix, {kit_id: {"answers": {"heightCm": 150}}})
    first = await LegacyImporter(app.state.services, options(legacy_prefix)).run(REDIS_URL)
    second = await LegacyImporter(app.state.services, options(legacy_prefix)).run(REDIS_URL)
    assert (len(first.imported), len(second.imported), len(second.skipped)) == (1, 0, 1)


async def test_each_import_is_audited(
    app: FastAPI, client: httpx.AsyncClient, legacy_prefix: str, kit_id: str
) -> None:
    await fill(legacy_prefix, {kit_id: {"answers": {"heightCm": 150}, "userId": "dad"}})
    await LegacyImporter(app.state.services, options(legacy_prefix)).run(REDIS_URL)
    events = (await client.get(f"/v1/kits/{kit_id}/audit-events", headers=ADMIN)).json()["items"]
    saves = [e for e in events if e["action"] == "health-information.save"]
    assert len(saves) == 1
    assert saves[0]["actor"] == "legacy-import"
    assert saves[0]["channel"] == "cli"
    assert "kit.assign-owner" in [e["action"] for e in events]


async def test_dry_run_reports_but_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, legacy_prefix: str, kit_id: str
) -> None:
    await fill(legacy_prefix, {kit_id: {"answers": {"heightCm": 150}}})
    report = await LegacyImporter(app.state.services, options(legacy_prefix, dry_run=True)).run(
        REDIS_URL
    )
    assert report.imported == [kit_id]
    response = await client.get(f"/v1/kits/{kit_id}/health-information", headers=ADMIN)
    assert response.status_code == 404


async def test_a_whole_document_of_answers_with_a_custom_key_layout(
    app: FastAPI, client: httpx.AsyncClient, legacy_prefix: str, kit_id: str
) -> None:
    await fill(legacy_prefix, {f"{kit_id}:v0": {"heightCm": 160}})
    opts = options(
        legacy_prefix, kit_id_pattern=r"^.*:(?P<kit>[^:]+):v0$", answers_field="", owner_field=None
    )
    report = await LegacyImporter(app.state.services, opts).run(REDIS_URL)
    assert report.imported == [kit_id]
    body = (await client.get(f"/v1/kits/{kit_id}/health-information", headers=ADMIN)).json()
    assert body["answers"] == {"heightCm": 160}


def test_the_command_prints_a_json_report(legacy_prefix: str, tmp_path: Path) -> None:
    asyncio.run(
        fill(legacy_prefix, {"CLI-KIT-1": {"answers": {"heightCm": 150}}, "CLI-KIT-2": "oops"})
    )
    env = {**os.environ, "HEALTHINFO_DATA_DIR": str(tmp_path), "HEALTHINFO_JWT_SECRET": TEST_SECRET}
    command = [
        sys.executable,
        "-m",
        "healthinfo",
        "import-legacy-redis",
        "--redis-url",
        REDIS_URL,
        "--pattern",
        legacy_prefix + "*",
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["imported"], report["invalid"], report["dryRun"]) == (1, 1, False)


@pytest.fixture
async def fresh_database(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of this run's backend, for the command to migrate."""
    if database_url.startswith("sqlite"):
        yield sqlite_url(tmp_path)
        return
    name, url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(name)


async def row_counts(url: str) -> dict[str, int]:
    """Rows in every table of a database: what "writes nothing" is measured by."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
            counts = {}
            for name in names:
                table = Table(name, MetaData())  # names from the database itself, quoted
                count = select(func.count()).select_from(table)
                counts[name] = (await conn.execute(count)).scalar_one()
            return counts
    finally:
        await engine.dispose()


def run_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healthinfo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_dry_run_writes_no_row_anywhere_key_store_included(
    legacy_prefix: str, tmp_path: Path, fresh_database: str
) -> None:
    await fill(
        legacy_prefix,
        {
            "DRY-KIT-1": {"answers": {"heightCm": 150}, "userId": "mum"},
            "DRY-KIT-2": {"answers": {"heightCm": 160}},
        },
    )
    data_dir = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEALTHINFO_")},
        "HEALTHINFO_DATA_DIR": str(data_dir),
        "HEALTHINFO_DATABASE_URL": fresh_database,
        "HEALTHINFO_JWT_SECRET": TEST_SECRET,
    }
    migrated = await asyncio.to_thread(run_command, env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    keystore = f"sqlite+aiosqlite:///{data_dir / 'keystore.db'}"
    before = (await row_counts(fresh_database), await row_counts(keystore))
    result = await asyncio.to_thread(
        run_command,
        env,
        *("import-legacy-redis", "--redis-url", REDIS_URL, "--pattern", legacy_prefix + "*"),
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert (json.loads(result.stdout)["imported"], json.loads(result.stdout)["dryRun"]) == (2, True)
    assert (await row_counts(fresh_database), await row_counts(keystore)) == before


async def test_a_dry_run_on_an_unmigrated_database_refuses_in_one_line(
    legacy_prefix: str, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEALTHINFO_")},
        "HEALTHINFO_DATA_DIR": str(tmp_path / "data"),
        "HEALTHINFO_JWT_SECRET": TEST_SECRET,
    }
    result = await asyncio.to_thread(
        run_command,
        env,
        *("import-legacy-redis", "--redis-url", REDIS_URL, "--pattern", legacy_prefix + "*"),
        "--dry-run",
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "healthinfo migrate" in result.stderr
    assert not (tmp_path / "data" / "healthinfo.db").exists() or (
        await row_counts(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'healthinfo.db'}") == {}
    )


async def test_an_ownerless_import_gets_a_claim_code_and_naming_it_claims_nothing(
    app: FastAPI, client: httpx.AsyncClient, legacy_prefix: str, kit_id: str
) -> None:
    await fill(legacy_prefix, {kit_id: {"answers": {"heightCm": 171}}})
    report = await LegacyImporter(app.state.services, options(legacy_prefix, owner_field=None)).run(
        REDIS_URL
    )
    [issued] = report.as_dict()["claimCodes"]
    assert issued["kitId"] == kit_id
    assert (await client.post(f"/v1/kits/{kit_id}/claim", headers=auth("guess"))).status_code == 404
    claimed = await client.post(
        f"/v1/kits/{kit_id}/claim", json={"claimCode": issued["claimCode"]}, headers=auth("mum")
    )
    assert claimed.status_code == 201
    read = await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth("mum"))
    assert read.json()["answers"] == {"heightCm": 171}


async def test_an_import_with_an_owner_hands_out_no_claim_code(
    app: FastAPI, legacy_prefix: str, kit_id: str
) -> None:
    await fill(legacy_prefix, {kit_id: {"answers": {"heightCm": 171}, "userId": "mum"}})
    report = await LegacyImporter(app.state.services, options(legacy_prefix)).run(REDIS_URL)
    assert report.as_dict()["claimCodes"] == []


def test_the_command_writes_claim_codes_to_a_private_file_not_to_stdout(
    legacy_prefix: str, tmp_path: Path
) -> None:
    import asyncio
    import stat

    asyncio.run(fill(legacy_prefix, {"CLI-CODE-1": {"answers": {"heightCm": 150}}}))
    codes = tmp_path / "codes.json"
    env = {**os.environ, "HEALTHINFO_DATA_DIR": str(tmp_path), "HEALTHINFO_JWT_SECRET": TEST_SECRET}
    command = [
        *(sys.executable, "-m", "healthinfo", "import-legacy-redis"),
        *("--redis-url", REDIS_URL, "--pattern", legacy_prefix + "*"),
        *("--owner-field", "", "--claim-codes-file", str(codes)),
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    [issued] = json.loads(codes.read_text())
    assert issued["kitId"] == "CLI-CODE-1"
    assert stat.S_IMODE(codes.stat().st_mode) == 0o600
    assert issued["claimCode"] not in result.stdout + result.stderr
    assert json.loads(result.stdout)["claimCodesWritten"] == 1


async def test_imported_kits_are_bound_to_the_newest_version_that_accepts_their_answers(
    app: FastAPI, client: httpx.AsyncClient, legacy_prefix: str
) -> None:
    questionnaire_id = f"legacy-{uuid.uuid4().hex[:8]}"
    item = {"type": "integer", "required": False, "section": "s"}
    admin = auth(f"admin-{uuid.uuid4().hex[:6]}", "admin")
    for version, ids in (("1", ["heightCm", "oldQuestion"]), ("2", ["heightCm"])):
        definition = {
            "id": questionnaire_id,
            "version": version,
            "title": "Legacy",
            "items": [{"id": i, "text": i, **item} for i in ids],
        }
        published = await client.post("/v1/questionnaires", json=definition, headers=admin)
        assert published.status_code == 201, published.text
    old, new = f"KIT-{uuid.uuid4().hex[:10]}", f"KIT-{uuid.uuid4().hex[:10]}"
    await fill(
        legacy_prefix,
        {
            old: {"answers": {"heightCm": 171, "oldQuestion": 3}, "userId": "mum"},
            new: {"answers": {"heightCm": 160}, "userId": "mum"},
        },
    )
    importer = LegacyImporter(
        app.state.services, options(legacy_prefix, questionnaire_id=questionnaire_id)
    )
    report = await importer.run(REDIS_URL)
    assert sorted(report.imported) == sorted([old, new])
    bound = {}
    for kit in (old, new):
        response = await client.get(f"/v1/kits/{kit}/health-information", headers=auth("mum"))
        bound[kit] = response.json()["questionnaire"]["version"]
    assert bound == {old: "1", new: "2"}
