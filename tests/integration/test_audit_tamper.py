"""An insider with the database, but neither the audit key nor the checkpoint storage, cannot
tamper with the audit trail unnoticed: ``healthinfo audit verify`` fails naming the kit.

Each test writes a kit's history through the API, pins it with ``healthinfo audit checkpoint``,
tampers through SQL the way such an insider could (including recomputing every hash that does
not need the key) and runs ``healthinfo audit verify`` as a subprocess. Checkpoints go to a
directory of the test's own, so tests do not see each other's.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import select, text

from healthinfo.audit import chain
from healthinfo.audit.checkpoints import CheckpointStore, make_checkpoint
from healthinfo.audit.keys import AuditKeyring
from healthinfo.config import Settings
from healthinfo.crypto.master_keys import new_key_spec
from healthinfo.db.models import AuditEvent
from tests.conftest import open_client
from tests.support.tokens import TEST_SECRET, auth

HISTORY = 5  # claim + 4 writes


async def make_history(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    for height in (150, 151, 152, 153):
        response = await client.patch(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": {"heightCm": height}},
            headers=auth(user),
        )
        assert response.status_code == 200, response.text


def cli(settings: Settings, checkpoints: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert settings.audit_keys is not None
    env = {
        **os.environ,
        "HEALTHINFO_ENVIRONMENT": "test",
        "HEALTHINFO_DATABASE_URL": settings.effective_database_url,
        "HEALTHINFO_DATA_DIR": str(settings.data_dir),
        "HEALTHINFO_JWT_SECRET": TEST_SECRET,
        "HEALTHINFO_AUDIT_KEYS": settings.audit_keys.get_secret_value(),
        "HEALTHINFO_AUDIT_CHECKPOINT_DIR": str(checkpoints),
    }
    return subprocess.run(
        [sys.executable, "-m", "healthinfo", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_verify_fails_naming(
    settings: Settings, checkpoints: Path, kit_id: str
) -> subprocess.CompletedProcess[str]:
    result = cli(settings, checkpoints, "verify", "--kit", kit_id)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"kit {kit_id}" in result.stdout, result.stdout
    return result


def checkpoint(settings: Settings, checkpoints: Path) -> None:
    result = cli(settings, checkpoints, "checkpoint")
    assert result.returncode == 0, result.stdout + result.stderr


async def stored_events(app: FastAPI, kit_id: str) -> list[AuditEvent]:
    async with app.state.services.uows.read() as uow:
        query = select(AuditEvent).where(AuditEvent.kit_id == kit_id).order_by(AuditEvent.id)
        return list(await uow.session.scalars(query))


async def tamper(app: FastAPI, statement: str, **params: object) -> None:
    async with app.state.services.uows.write() as uow:
        await uow.session.execute(text(statement), params)


async def set_head(app: FastAPI, kit_id: str, events: list[AuditEvent]) -> None:
    """Make the head agree with ``events``, as an insider covering their tracks would."""
    await tamper(
        app,
        "UPDATE audit_chain_heads SET prev_hash = :p, last_hash = :h, length = :n "
        "WHERE kit_id = :k",
        p=events[-2].hash if len(events) > 1 else chain.GENESIS,
        h=events[-1].hash,
        n=len(events),
        k=kit_id,
    )


async def relink_without_the_key(
    app: FastAPI, kit_id: str, events: list[AuditEvent], *, as_legacy: bool
) -> None:
    """Recompute every link the only way possible without the key (unkeyed sha256), and the
    head; ``as_legacy`` also clears the key ids, passing the chain off as pre-0009."""
    previous = chain.GENESIS
    for event in events:
        event.hash = chain.legacy_link_hash(previous, event)
        statement = "UPDATE audit_events SET prev_hash = :p, hash = :h"
        statement += ", key_id = NULL" if as_legacy else ""
        await tamper(app, statement + " WHERE id = :i", p=previous, h=event.hash, i=event.id)
        event.prev_hash, previous = previous, event.hash
    await set_head(app, kit_id, events)


async def pinned_history(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> list[AuditEvent]:
    await make_history(client, kit_id, "tamper-user")
    checkpoint(settings, tmp_path)
    events = await stored_events(app, kit_id)
    assert len(events) == HISTORY
    return events


async def test_verify_passes_an_untouched_pinned_chain(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> None:
    await pinned_history(app, client, settings, tmp_path, kit_id)
    result = cli(settings, tmp_path, "verify", "--kit", kit_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{HISTORY} events checked against checkpoint 1" in result.stdout


async def test_deleting_a_kits_newest_events_and_rewriting_its_head_is_named(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> None:
    events = await pinned_history(app, client, settings, tmp_path, kit_id)
    for event in events[-2:]:
        await tamper(app, "DELETE FROM audit_events WHERE id = :i", i=event.id)
    await set_head(app, kit_id, events[:-2])
    result = assert_verify_fails_naming(settings, tmp_path, kit_id)
    assert "deleted or the head rewound" in result.stdout


async def test_rewinding_the_head_alone_is_named(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> None:
    events = await pinned_history(app, client, settings, tmp_path, kit_id)
    await set_head(app, kit_id, events[:2])
    assert_verify_fails_naming(settings, tmp_path, kit_id)


async def test_rewriting_an_event_and_recomputing_the_unkeyed_hashes_is_named(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> None:
    events = await pinned_history(app, client, settings, tmp_path, kit_id)
    await tamper(app, "UPDATE audit_events SET actor = 'mallory' WHERE id = :i", i=events[2].id)
    events[2].actor = "mallory"
    await relink_without_the_key(app, kit_id, events, as_legacy=False)
    result = assert_verify_fails_naming(settings, tmp_path, kit_id)
    assert events[0].event_id in result.stdout  # the first link the attacker recomputed


async def test_passing_a_rewritten_chain_off_as_legacy_unkeyed_is_named(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> None:
    events = await pinned_history(app, client, settings, tmp_path, kit_id)
    await tamper(app, "UPDATE audit_events SET outcome = 'x' WHERE id = :i", i=events[1].id)
    events[1].outcome = "x"
    await relink_without_the_key(app, kit_id, events, as_legacy=True)
    result = assert_verify_fails_naming(settings, tmp_path, kit_id)
    assert "unkeyed" in result.stdout


async def test_deleting_a_middle_event_and_relinking_the_rest_is_named(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> None:
    events = await pinned_history(app, client, settings, tmp_path, kit_id)
    await tamper(app, "DELETE FROM audit_events WHERE id = :i", i=events[2].id)
    await relink_without_the_key(app, kit_id, events[:2] + events[3:], as_legacy=False)
    assert_verify_fails_naming(settings, tmp_path, kit_id)


async def test_deleting_all_of_a_kits_events_and_its_head_is_named(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> None:
    await pinned_history(app, client, settings, tmp_path, kit_id)
    await tamper(app, "DELETE FROM audit_events WHERE kit_id = :k", k=kit_id)
    await tamper(app, "DELETE FROM audit_chain_heads WHERE kit_id = :k", k=kit_id)
    result = assert_verify_fails_naming(settings, tmp_path, kit_id)
    assert "has no events" in result.stdout


async def test_a_checkpoint_not_signed_with_an_audit_key_fails_verify(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, tmp_path: Path, kit_id: str
) -> None:
    await pinned_history(app, client, settings, tmp_path, kit_id)
    path = tmp_path / "000000000001.json"
    document = json.loads(path.read_text())
    document["heads"] = [head for head in document["heads"] if head[0] != kit_id]
    document["header"]["count"] -= 1
    path.write_text(json.dumps(document))
    result = cli(settings, tmp_path, "verify", "--kit", kit_id)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "checkpoint 1" in result.stdout


async def test_rotating_the_audit_key_keeps_old_links_verifiable(
    client: httpx.AsyncClient,
    make_settings: Callable[..., Settings],
    settings: Settings,
    tmp_path: Path,
    kit_id: str,
    user: str,
) -> None:
    await make_history(client, kit_id, user)  # linked with a2, the active test key
    assert settings.audit_keys is not None
    rotated_keys = f"{settings.audit_keys.get_secret_value()},{new_key_spec('a3')}"
    rotated = make_settings(audit_keys=rotated_keys, audit_checkpoint_dir=tmp_path)
    from healthinfo.app import create_app

    app = create_app(rotated)
    async with app.router.lifespan_context(app), await open_client(app) as after:
        await make_history(after, kit_id, user)
        key_ids = [event.key_id for event in await stored_events(app, kit_id)]
    assert key_ids == ["a2"] * HISTORY + ["a3"] * (HISTORY - 1)
    checkpoint(rotated, tmp_path)
    result = cli(rotated, tmp_path, "verify", "--kit", kit_id)
    assert result.returncode == 0, result.stdout + result.stderr
    only_new = make_settings(audit_keys=rotated_keys.rsplit(",", 1)[1])
    result = cli(only_new, tmp_path / "none", "verify", "--kit", kit_id)
    assert result.returncode == 1
    assert "'a2', which is not configured" in result.stdout


async def test_the_service_writes_a_checkpoint_within_the_interval(
    make_settings: Callable[..., Settings], tmp_path: Path, kit_id: str, user: str
) -> None:
    from healthinfo.app import create_app

    quick = make_settings(audit_checkpoint_interval=0.2, audit_checkpoint_dir=tmp_path)
    app = create_app(quick)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        await make_history(client, kit_id, user)
        written = time.monotonic()
        store = CheckpointStore(tmp_path, quick.audit_keyring())
        pinned = None
        while time.monotonic() - written < 5:
            pins, _ = store.pins(kit_id)
            if (pinned := pins.heads.get(kit_id)) is not None and pinned.seq == HISTORY:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - written
    assert pinned is not None
    assert pinned.seq == HISTORY
    assert elapsed < 2, elapsed  # the interval is 0.2 s
    result = cli(quick, tmp_path, "verify", "--kit", kit_id)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_concurrent_checkpoint_writers_never_publish_the_same_number(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path, kit_id: str, user: str
) -> None:
    await make_history(client, kit_id, user)
    services = app.state.services
    store = CheckpointStore(tmp_path, services.audit.keys)
    for _ in range(3):
        await asyncio.gather(*(make_checkpoint(services.uows, store) for _ in range(4)))
    numbers = store.numbers()
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 3
    pins, newest = store.pins(kit_id)  # raises unless the files chain one to the next
    assert newest == numbers[-1]
    assert pins.heads[kit_id].seq == HISTORY


def test_a_key_ring_parses_like_the_master_keys() -> None:
    keys = AuditKeyring.parse(f"{new_key_spec('old')},{new_key_spec('new')}")
    assert keys.active_id == "new"
    assert keys.matches("old", b"m", keys.mac("old", b"m"))
    assert not keys.matches("new", b"m", keys.mac("old", b"m"))
