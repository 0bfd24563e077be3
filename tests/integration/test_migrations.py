"""Every migration upgrades, downgrades and upgrades again, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from healthinfo.audit.keys import AuditKeyring
from healthinfo.common.database import create_engines
from healthinfo.crypto.master_keys import new_key_spec
from healthinfo.db import migrate
from healthinfo.db.models import Base
from tests.support.backends import BACKENDS, create_pg_database, drop_pg_database, sqlite_url

KEYS = AuditKeyring.parse(new_key_spec("a1"))


@pytest.fixture(params=BACKENDS)
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    name = None
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
    else:
        name, url = await create_pg_database()
    engines = create_engines(url, pool_size=2, max_overflow=0, timeout=10)
    try:
        yield engines.write
    finally:
        await engines.dispose()
        if name:
            await drop_pg_database(name)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_creates_every_model_table(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    assert set(Base.metadata.tables) <= await table_names(empty_engine)
    assert await migrate.current_revision(empty_engine) == migrate.head_revision()


async def test_upgrade_downgrade_upgrade_round_trips(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    await migrate.downgrade(empty_engine, "base")
    assert await table_names(empty_engine) <= {"alembic_version"}
    assert await migrate.current_revision(empty_engine) is None
    await migrate.upgrade(empty_engine)
    assert set(Base.metadata.tables) <= await table_names(empty_engine)


async def test_each_revision_steps_down_and_up_one_at_a_time(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    revisions = migrate.revisions_oldest_first()
    for revision in reversed(revisions):
        await migrate.downgrade(empty_engine, "-1")
        assert await migrate.current_revision(empty_engine) != revision
    for revision in revisions:
        await migrate.upgrade(empty_engine, "+1")
        assert await migrate.current_revision(empty_engine) == revision


async def test_models_and_migrations_agree(empty_engine: AsyncEngine) -> None:
    """Autogenerate finds nothing to do: no model change is missing a migration."""
    await migrate.upgrade(empty_engine)
    assert await migrate.pending_model_changes(empty_engine) == []


async def test_the_hash_chain_migration_chains_events_written_before_it(
    empty_engine: AsyncEngine,
) -> None:
    from healthinfo.audit import chain
    from healthinfo.common.database import Engines
    from healthinfo.common.uow import UnitOfWorkFactory

    await _events_before_the_chain(empty_engine, 3)
    await migrate.upgrade(empty_engine)
    uows = UnitOfWorkFactory(Engines(write=empty_engine, read=empty_engine))
    async with uows.read() as uow:
        checked, broken = await chain.verify(uow, KEYS, "K")
    assert (checked, broken) == (3, None)


async def test_chains_written_before_the_head_kept_its_prev_hash_go_on_after_it(
    empty_engine: AsyncEngine,
) -> None:
    """0007 leaves existing heads' ``prev_hash`` null; the next append sets it and continues
    the chain (on PostgreSQL, in SQL), and the whole chain verifies."""

    from healthinfo.audit import chain
    from healthinfo.audit.service import AuditEntry, AuditLog
    from healthinfo.auth.actor import Actor
    from healthinfo.common.context import Channel, RequestContext
    from healthinfo.common.database import Engines
    from healthinfo.common.uow import UnitOfWorkFactory

    await _events_before_the_chain(empty_engine, 2)
    await migrate.upgrade(empty_engine)
    head = "SELECT prev_hash, last_hash, length FROM audit_chain_heads WHERE kit_id = 'K'"
    async with empty_engine.connect() as conn:
        before = (await conn.execute(text(head))).one()
    assert (before.prev_hash, before.length) == (None, 2)
    uows = UnitOfWorkFactory(Engines(write=empty_engine, read=empty_engine))
    async with uows.write() as uow:
        ctx = RequestContext(actor=Actor("u"), channel=Channel.REST)
        await AuditLog(KEYS).record(uow, ctx, AuditEntry("kit.test", "K"))
    async with empty_engine.connect() as conn:
        after = (await conn.execute(text(head))).one()
    assert (after.prev_hash, after.length) == (before.last_hash, 3)
    async with uows.read() as uow:
        assert await chain.verify(uow, KEYS, "K") == (3, None)


async def test_the_encryption_migration_encrypts_old_rows_and_its_downgrade_decrypts(
    empty_engine: AsyncEngine, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from healthinfo.crypto.codec import EncryptedAnswerCodec
    from healthinfo.crypto.keystore import KeyStore
    from healthinfo.crypto.master_keys import MasterKeyring, new_key_spec

    keystore_engines = create_engines(sqlite_url(tmp_path), pool_size=2, max_overflow=0, timeout=10)
    keystore = KeyStore(keystore_engines, MasterKeyring.parse(new_key_spec("m1")))
    codec = EncryptedAnswerCodec(keystore)
    await migrate.upgrade(keystore_engines.write, location=migrate.KEYSTORE_MIGRATIONS_DIR)
    await migrate.upgrade(empty_engine, "0005")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    plain = '{"heightCm":180}'
    async with empty_engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO kits (kit_id, created_at) VALUES ('K', :now)"), {"now": now}
        )
        await conn.execute(
            text(
                "INSERT INTO health_information (kit_id, questionnaire_id, questionnaire_version,"
                " status, answers, field_versions, version, created_at, updated_at, updated_by)"
                " VALUES ('K', 'q', '1', 'in-progress', :a, '{}', 1, :now, :now, 'u')"
            ),
            {"a": plain, "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO revisions (kit_id, version, status, answers, changed, at, by, channel)"
                " VALUES ('K', 1, 'in-progress', :a, '[]', :now, 'u', 'rest')"
            ),
            {"a": plain, "now": now},
        )

    async def stored() -> list[str]:
        async with empty_engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT answers FROM health_information UNION ALL SELECT answers FROM revisions"
                )
            )
            return [r.answers for r in rows]

    try:
        await migrate.upgrade(empty_engine, codec=codec)
        encrypted = await stored()
        assert all(a.startswith("enc1:") for a in encrypted)
        assert [await codec.decode("K", a) for a in encrypted] == [{"heightCm": 180}] * 2
        await migrate.downgrade(empty_engine, "0005", codec=codec)
        assert await stored() == [plain, plain]
    finally:
        await keystore_engines.dispose()


async def test_key_store_migrations_go_up_down_and_up(empty_engine: AsyncEngine) -> None:
    location = migrate.KEYSTORE_MIGRATIONS_DIR
    await migrate.upgrade(empty_engine, location=location)
    assert "data_keys" in await table_names(empty_engine)
    await migrate.downgrade(empty_engine, "base", location=location)
    assert "data_keys" not in await table_names(empty_engine)
    await migrate.upgrade(empty_engine, location=location)
    assert await migrate.current_revision(empty_engine, location=location) == migrate.head_revision(
        location
    )


async def _events_before_the_chain(engine: AsyncEngine, count: int) -> None:
    """Kit K's audit events as 0004 stored them: no hash chain yet (0005 adds it)."""
    from datetime import UTC, datetime

    await migrate.upgrade(engine, "0004")
    async with engine.begin() as conn:
        for i in range(count):
            await conn.execute(
                text(
                    "INSERT INTO audit_events (event_id, at, kit_id, actor, action, channel,"
                    " changed, outcome) VALUES (:e, :at, 'K', 'u', 'a', 'rest', '[]', 'ok')"
                ),
                {"e": f"e-{i}", "at": datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC)},
            )


async def test_the_reason_migration_seals_old_reasons_and_its_downgrade_unseals_them(
    empty_engine: AsyncEngine, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from healthinfo.audit import chain
    from healthinfo.audit.reasons import ReasonCodec
    from healthinfo.common.database import Engines
    from healthinfo.common.uow import UnitOfWorkFactory
    from healthinfo.crypto.codec import EncryptedAnswerCodec
    from healthinfo.crypto.keystore import KeyStore
    from healthinfo.crypto.master_keys import MasterKeyring, new_key_spec

    keystore_engines = create_engines(sqlite_url(tmp_path), pool_size=2, max_overflow=0, timeout=10)
    keystore = KeyStore(keystore_engines, MasterKeyring.parse(new_key_spec("m1")))
    codec = EncryptedAnswerCodec(keystore)
    reasons = ReasonCodec(codec)
    await migrate.upgrade(keystore_engines.write, location=migrate.KEYSTORE_MIGRATIONS_DIR)
    amend, erase = "health-information.amend", "health-information.erase"
    # Reasons in plain text, as 0003-0007 stored them; 0005 chains them (unkeyed).
    await migrate.upgrade(empty_engine, "0004")
    async with empty_engine.begin() as conn:
        for i, (action, kit, reason) in enumerate(
            (
                (amend, "KEPT", "typo per lab"),
                ("kit.test", "KEPT", None),
                (amend, "GONE", "diabetic, per lab"),
                (erase, "GONE", None),
            )
        ):
            await conn.execute(
                text(
                    "INSERT INTO audit_events (event_id, at, kit_id, actor, action, channel,"
                    " changed, outcome, reason) VALUES (:e, :at, :k, 'admin', :a, 'rest', '[]',"
                    " 'ok', :r)"
                ),
                {
                    "e": f"e-{i}",
                    "at": datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC),
                    "k": kit,
                    "a": action,
                    "r": reason,
                },
            )
    await migrate.upgrade(empty_engine, "0007")
    uows = UnitOfWorkFactory(Engines(write=empty_engine, read=empty_engine))

    async def reasons_of(kit_id: str) -> list[str | None]:
        async with empty_engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT reason FROM audit_events WHERE kit_id = :k AND action = :a"),
                {"k": kit_id, "a": amend},
            )
            return [r.reason for r in rows]

    async def chains_hold(at: str) -> bool:
        """Verified by today's code (the unkeyed links as a legacy prefix), then back to ``at``."""
        await migrate.upgrade(empty_engine, codec=codec)
        try:
            async with uows.read() as uow:
                kits = ("KEPT", "GONE")
                return all([(await chain.verify(uow, KEYS, k))[1] is None for k in kits])
        finally:
            await migrate.downgrade(empty_engine, at, codec=codec)

    try:
        await migrate.upgrade(empty_engine, "0008", codec=codec)
        [kept], [gone] = await reasons_of("KEPT"), await reasons_of("GONE")
        assert kept.startswith("enc1:")
        assert gone.startswith("enc1:")
        assert "diabetic" not in gone
        assert (await reasons.reveal("KEPT", kept)).text == "typo per lab"
        assert (await reasons.reveal("GONE", gone)).erased
        assert await chains_hold("0008")
        await migrate.downgrade(empty_engine, "0007", codec=codec)
        assert (await reasons_of("KEPT"), await reasons_of("GONE")) == (["typo per lab"], [None])
        assert await chains_hold("0007")
    finally:
        await keystore_engines.dispose()


async def test_the_keyed_links_downgrade_relinks_them_unkeyed_and_upgrade_keeps_them_valid(
    empty_engine: AsyncEngine,
) -> None:
    """0009's downgrade recomputes keyed links the unkeyed way of 0005 (so 0007's code can
    verify them); upgraded again, they verify as a legacy unkeyed prefix, then keyed ones."""

    from healthinfo.audit import chain
    from healthinfo.audit.service import AuditEntry, AuditLog
    from healthinfo.auth.actor import Actor
    from healthinfo.common.context import Channel, RequestContext
    from healthinfo.common.database import Engines
    from healthinfo.common.uow import UnitOfWorkFactory

    await _events_before_the_chain(empty_engine, 2)
    await migrate.upgrade(empty_engine)
    uows = UnitOfWorkFactory(Engines(write=empty_engine, read=empty_engine))
    ctx = RequestContext(actor=Actor("u"), channel=Channel.REST)
    for _ in range(2):
        async with uows.write() as uow:
            await AuditLog(KEYS).record(uow, ctx, AuditEntry("kit.test", "K"))
    await migrate.downgrade(empty_engine, "0008")
    await migrate.upgrade(empty_engine)
    async with empty_engine.connect() as conn:
        keyed = (await conn.execute(text("SELECT count(key_id) FROM audit_events"))).scalar()
    assert keyed == 0
    async with uows.write() as uow:
        await AuditLog(KEYS).record(uow, ctx, AuditEntry("kit.test", "K"))
    async with uows.read() as uow:
        assert await chain.verify(uow, KEYS, "K") == (5, None)


async def test_the_questionnaire_migration_keeps_kits_and_answers_both_ways(
    empty_engine: AsyncEngine,
) -> None:
    """0010 alters ``kits`` in place: rebuilding it on SQLite would cascade to the answers."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    revision = "0010"
    await migrate.upgrade(empty_engine, revision)
    now = datetime.now(UTC)
    async with empty_engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO kits (kit_id, created_at) VALUES ('K', :now)"), {"now": now}
        )
        await conn.execute(
            text(
                "INSERT INTO health_information (kit_id, questionnaire_id, questionnaire_version,"
                " status, answers, field_versions, version, created_at, updated_at, updated_by)"
                " VALUES ('K', 'health-information', '1', 'in-progress', 'x', '{}', 1, :now,"
                " :now, 'u')"
            ),
            {"now": now},
        )

    async def count() -> int:
        async with empty_engine.connect() as conn:
            return int(
                (await conn.execute(text("SELECT count(*) FROM health_information"))).scalar_one()
            )

    await migrate.downgrade(empty_engine, f"{revision}-1")
    assert await count() == 1
    assert "questionnaire_definitions" not in await table_names(empty_engine)
    await migrate.upgrade(empty_engine, revision)
    assert await count() == 1


async def test_the_export_migration_adds_its_tables_and_its_downgrade_removes_them(
    empty_engine: AsyncEngine,
) -> None:
    """0011 (FHIR Bulk Data export jobs): up, down, up, and the one-active-job-per-requester
    index holds after the round trip."""
    from datetime import UTC, datetime

    from sqlalchemy.exc import IntegrityError

    await migrate.upgrade(empty_engine, "0011")
    assert {"export_jobs", "export_parts"} <= await table_names(empty_engine)
    await migrate.downgrade(empty_engine, "0010")
    assert not {"export_jobs", "export_parts"} & await table_names(empty_engine)
    await migrate.upgrade(empty_engine, "0011")
    insert = text(
        "INSERT INTO export_jobs (job_id, requester, active, state, request_url, types, statuses,"
        " transaction_time, created_at, phase, parts, exported)"
        " VALUES (:id, 'r', 1, 'queued', 'u', '[]', '[]', :now, :now, 0, 0, 0)"
    )
    now = datetime.now(UTC)
    async with empty_engine.begin() as conn:
        await conn.execute(insert, {"id": "a" * 32, "now": now})
    with pytest.raises(IntegrityError):
        async with empty_engine.begin() as conn:
            await conn.execute(insert, {"id": "b" * 32, "now": now})
