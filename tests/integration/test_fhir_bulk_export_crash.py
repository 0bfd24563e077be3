"""A Bulk Data export survives a SIGKILL of the worker running it: another worker resumes at the
last committed page and every kit is in the files, and audited, exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from healthinfo.config import Settings
from healthinfo.db.models import AuditEvent, ExportJob
from healthinfo.fhir.bulk import BULK_EXPORT
from tests.conftest import open_client
from tests.support.backends import BACKENDS
from tests.support.bulk import kit_ids, manifest, resources, started
from tests.support.forwarding import FULL, fresh_database, services_of, submit
from tests.support.problems import running_app
from tests.support.server import keystore_url_for
from tests.support.tokens import TEST_AUDIT_KEYS, TEST_MASTER_KEYS, TEST_SECRET, auth
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

KITS = 400 if FULL else 120
LEASE_SECONDS = 1.5


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started_workers: list[WorkerProcess] = []
    yield started_workers
    for worker in started_workers:
        worker.kill()


def settings_for(database: str, data_dir: Path) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database,
        "data_dir": data_dir,
        "jwt_secret": TEST_SECRET,
        "master_keys": TEST_MASTER_KEYS,
        "audit_keys": TEST_AUDIT_KEYS,
        "keystore_url": keystore_url_for(database),
        "migrate_on_start": True,
        "export_in_process": False,  # the workers run the job, nobody else
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def worker(database: str, data_dir: Path, name: str) -> WorkerProcess:
    return WorkerProcess(
        database_url=database,
        data_dir=data_dir,
        forward_url="http://127.0.0.1:9/",  # nothing is recorded to forward here
        name=name,
        extra_env={
            "HEALTHINFO_MASTER_KEYS": TEST_MASTER_KEYS,
            "HEALTHINFO_AUDIT_KEYS": TEST_AUDIT_KEYS,
            "HEALTHINFO_KEYSTORE_URL": keystore_url_for(database),
            # One kit a page: the job is many transactions long, so the kill lands inside it.
            "HEALTHINFO_EXPORT_PAGE_SIZE": "1",
            "HEALTHINFO_EXPORT_LEASE_SECONDS": str(LEASE_SECONDS),
            "HEALTHINFO_EXPORT_POLL_SECONDS": "0.05",
        },
    )


async def test_a_worker_killed_mid_export_is_resumed_and_each_kit_is_written_once(
    database: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    data_dir = tmp_path / "data"
    admin = auth(f"admin-{uuid.uuid4().hex[:8]}", "admin")
    kits = [f"KIT-{uuid.uuid4().hex[:12]}" for _ in range(KITS)]
    async with (
        running_app(settings_for(database, data_dir)) as app,
        await open_client(app) as client,
    ):
        gate = asyncio.Semaphore(8)

        async def submit_one(kit: str) -> None:
            async with gate:
                await submit(client, kit)

        await asyncio.gather(*(submit_one(kit) for kit in kits))
        status = await started(client, admin, "?_type=QuestionnaireResponse")
        job_id = status.rsplit("/", 1)[1]
        svc = services_of(app)

        async def progress() -> tuple[int, int | None]:
            async with svc.uows.read() as uow:
                row = (
                    await uow.session.execute(
                        select(ExportJob.exported, ExportJob.total).where(
                            ExportJob.job_id == job_id
                        )
                    )
                ).one()
            return int(row[0]), row[1]

        first = worker(database, data_dir, "first")
        workers.append(first)
        first.start()
        async with asyncio.timeout(60):
            while (await progress())[0] < KITS // 4:  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.01)
        first.kill()
        at_kill, total = await progress()
        assert total == KITS
        assert at_kill < KITS, "the export finished before the kill: nothing was resumed"
        await asyncio.sleep(LEASE_SECONDS)
        assert (await progress())[0] == at_kill  # nobody went on while no worker ran

        second = worker(database, data_dir, "second")
        workers.append(second)
        second.start()
        found = await manifest(client, status, admin, within=120)
        exported = kit_ids(await resources(client, found, admin, "QuestionnaireResponse"))
        assert Counter(exported) == Counter(kits)
        async with svc.uows.read() as uow:
            audited = dict(
                (
                    await uow.session.execute(
                        select(AuditEvent.kit_id, func.count())
                        .where(AuditEvent.action == BULK_EXPORT)
                        .group_by(AuditEvent.kit_id)
                    )
                ).all()
            )
        assert audited == dict.fromkeys(kits, 1)
