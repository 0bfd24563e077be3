"""Encryption at rest: no answer in clear text anywhere it is stored; erasure shreds the key."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from healthinfo.app import create_app
from healthinfo.config import Settings
from healthinfo.crypto.codec import EncryptedAnswerCodec
from healthinfo.crypto.factory import build_keystore
from healthinfo.crypto.keystore import KeyDestroyed
from healthinfo.crypto.master_keys import new_key_spec
from tests.conftest import open_client
from tests.support.backends import REDIS_URL
from tests.support.tokens import auth

MARKER = "MARKER-enc-7d1f"
MARKED = {"additionalNotes": f"{MARKER} notes", "medications": f"{MARKER} pills", "heightCm": 187}


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def write_marked(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    headers = {**auth(user), "Idempotency-Key": f"enc-{kit_id}"}
    response = await client.put(url(kit_id), json={"answers": MARKED}, headers=headers)
    assert response.status_code == 201
    await client.patch(url(kit_id), json={"answers": {"heightCm": 186}}, headers=auth(user))
    await client.get(url(kit_id), headers=auth(user))  # fills the cache


async def stored_texts(app: FastAPI, kit_id: str) -> list[str]:
    async with app.state.services.uows.read() as uow:
        rows = await uow.session.execute(
            text(
                "SELECT answers FROM health_information WHERE kit_id = :k"
                " UNION ALL SELECT answers FROM revisions WHERE kit_id = :k"
            ),
            {"k": kit_id},
        )
        return [r.answers for r in rows]


async def test_stored_answers_are_ciphertext(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await write_marked(client, kit_id, user)
    texts = await stored_texts(app, kit_id)
    assert len(texts) == 3
    assert all(t.startswith("enc1:") for t in texts)
    assert not any(MARKER in t or "187" in t for t in texts)


async def test_the_api_still_reads_them_back(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await write_marked(client, kit_id, user)
    body = (await client.get(url(kit_id), headers=auth(user))).json()
    assert body["answers"] == {**MARKED, "heightCm": 186}
    assert (await client.get(url(kit_id, "/history/1"), headers=auth(user))).json()[
        "answers"
    ] == MARKED


async def test_a_database_dump_holds_no_answer_in_clear_text(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    kit_id: str,
    user: str,
    tmp_path: Path,
) -> None:
    await write_marked(client, kit_id, user)
    assert MARKER.encode() not in await dump(settings, tmp_path)


async def test_the_cache_holds_no_answer_in_clear_text(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, kit_id: str, user: str
) -> None:
    """Redis on the postgres run, the in-process cache on the sqlite run: ciphertext in both."""
    await write_marked(client, kit_id, user)
    stored = await cached_bytes(app, settings)
    assert any(kit_id.encode() in key for key in stored)
    assert b"enc1:" in b"".join(stored.values())
    assert not any(MARKER.encode() in value for value in stored.values())


async def cached_bytes(app: FastAPI, settings: Settings) -> dict[bytes, bytes]:
    if settings.redis_url is None:
        memory = app.state.services.cache.inner
        return {key.encode(): entry.payload for key, entry in memory._entries.items()}
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in raw.scan_iter(match=f"{settings.redis_key_prefix}hi:*")]
        return {k: b"".join((await raw.hgetall(k)).values()) for k in keys}
    finally:
        await raw.aclose()


async def test_after_erasure_a_dump_taken_before_cannot_be_decrypted(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, kit_id: str, user: str
) -> None:
    await write_marked(client, kit_id, user)
    ciphertexts_before = await stored_texts(app, kit_id)
    codec = EncryptedAnswerCodec(app.state.services.keystore)
    assert (await codec.decode(kit_id, ciphertexts_before[0]))["heightCm"] in (186, 187)
    assert (await client.delete(url(kit_id), headers=auth(user))).status_code == 204
    assert await stored_texts(app, kit_id) == []
    fresh_keystore = build_keystore(settings)  # a process that never cached the key
    try:
        for ciphertext in ciphertexts_before:
            with pytest.raises(KeyDestroyed):
                await EncryptedAnswerCodec(fresh_keystore).decode(kit_id, ciphertext)
    finally:
        await fresh_keystore.engines.dispose()
    assert (await client.get(url(kit_id), headers=auth(user))).status_code == 404


async def test_a_ciphertext_moved_to_another_kit_does_not_decrypt(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await write_marked(client, kit_id, user)
    other = kit_id + "-other"
    await client.put(url(other), json={"answers": {"heightCm": 150}}, headers=auth(user))
    stolen = (await stored_texts(app, kit_id))[0]
    codec = EncryptedAnswerCodec(app.state.services.keystore)
    with pytest.raises(KeyDestroyed):
        await codec.decode(other, stolen)


async def test_keys_rotate_to_a_new_master_key_and_old_data_stays_readable(
    make_settings: Callable[..., Settings], kit_id: str, user: str, tmp_path: Path
) -> None:
    own_keystore = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    old = new_key_spec("old")
    first = make_settings(master_keys=old, keystore_url=own_keystore, cache_enabled=False)
    app = create_app(first)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        await client.put(url(kit_id), json={"answers": MARKED}, headers=auth(user))
    rotated = make_settings(
        master_keys=f"{old},{new_key_spec('new')}", keystore_url=own_keystore, cache_enabled=False
    )
    keystore = build_keystore(rotated)
    try:
        assert await keystore.rewrap() >= 1
    finally:
        await keystore.engines.dispose()
    assert rotated.master_keys is not None
    newest = rotated.master_keys.get_secret_value().split(",")[1]
    only_new = make_settings(master_keys=newest, keystore_url=own_keystore, cache_enabled=False)
    app = create_app(only_new)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        assert (await client.get(url(kit_id), headers=auth(user))).json()["answers"] == MARKED


async def dump(settings: Settings, tmp_path: Path) -> bytes:
    """pg_dump of the PostgreSQL database, or every byte of the SQLite files (WAL included)."""
    database_url = settings.effective_database_url
    if database_url.startswith("sqlite"):
        path = Path(make_url(database_url).database or "")
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    parsed = make_url(database_url)
    pg_dump = shutil.which("pg_dump") or "/usr/bin/pg_dump"
    target = tmp_path / "dump.sql"
    await asyncio.to_thread(
        subprocess.run,
        [
            pg_dump,
            "-h",
            parsed.host or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            "-f",
            str(target),
            parsed.database or "",
        ],
        check=True,
        timeout=120,
    )
    return target.read_bytes()


async def test_a_write_reads_its_kits_data_key_from_the_store_once(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    """The row, the revision and the cache entry are encrypted under one key lookup."""
    keystore = app.state.services.keystore
    await client.put(url(kit_id), json={"answers": {"heightCm": 180}}, headers=auth(user))
    lookups: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM data_keys" in statement:
            lookups.append(statement)

    engine = keystore.engines.read.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        response = await client.patch(
            url(kit_id), json={"answers": {"heightCm": 181}}, headers=auth(user)
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200
    assert len(lookups) == 1
