"""FHIR Bulk Data export at scale: ``python -m bench.export --kits 100000`` (docs/performance.md).

Seeds N submitted kits straight into a fresh PostgreSQL database (bulk INSERTs of rows made by
the service's own encrypting codec, each kit with its own data key, as the service stores
them), queues one export, and lets a real ``healthinfo worker`` process run it. Prints kits/s,
the worker's peak RSS (VmHWM), and the CPU seconds of the worker and of the PostgreSQL
backends serving this database (the database's CPU share). ``--json`` prints one JSON object.
Memory should stay flat as N grows: run 10,000 and 100,000 and compare the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import select

from healthinfo.app import migrate_all
from healthinfo.audit.keys import AuditKeyring
from healthinfo.common.database import create_engines
from healthinfo.common.uow import UnitOfWorkFactory
from healthinfo.config import Settings
from healthinfo.crypto.codec import EncryptedAnswerCodec
from healthinfo.crypto.factory import build_keystore
from healthinfo.crypto.keystore import DATA_KEYS, _keys_of_this_write
from healthinfo.crypto.master_keys import new_key_spec
from healthinfo.db.models import ExportJob, HealthInformation, Kit
from healthinfo.fhir.bulk.store import ExportStore

PG_ADMIN_DSN = os.environ.get(
    "HEALTHINFO_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ANSWERS: dict[str, Any] = {
    "dateOfBirth": "1980-05-17",
    "sexAtBirth": "female",
    "heightCm": 168,
    "weightKg": 61.5,
    "smokingStatus": "never",
    "alcoholFrequency": "monthly-or-less",
    "takesMedication": False,
    "hasAllergies": False,
    "consentToResearch": True,
}
BATCH = 2000
SECRET = "bench-export-secret-0123456789abcdefghij"


async def seed(settings: Settings, kits: int) -> float:
    """Insert ``kits`` submitted kits; returns the seconds it took."""
    started = time.perf_counter()
    keystore = build_keystore(settings)
    codec = EncryptedAnswerCodec(keystore)
    engines = create_engines(
        settings.effective_database_url, pool_size=2, max_overflow=0, timeout=30
    )
    now = datetime.now(UTC)
    try:
        for offset in range(0, kits, BATCH):
            ids = [f"BENCH-{i:08d}" for i in range(offset, min(kits, offset + BATCH))]
            key_rows = [keystore._new_row(kit) for kit in ids]
            keys = {row["kit_id"]: keystore._unwrap(_Row(row)) for row in key_rows}
            token = _keys_of_this_write.set(dict(keys))  # the codec finds each kit's key here
            try:
                stored = [await codec.encode(kit, ANSWERS) for kit in ids]
            finally:
                _keys_of_this_write.reset(token)
            async with keystore.engine.begin() as conn:
                await conn.execute(DATA_KEYS.insert(), key_rows)
            async with engines.write.begin() as conn:
                await conn.execute(
                    Kit.__table__.insert(),
                    [
                        {"kit_id": k, "owner_id": f"u-{k}", "claimed_at": now, "created_at": now}
                        for k in ids
                    ],
                )
                await conn.execute(
                    HealthInformation.__table__.insert(),
                    [
                        {
                            "kit_id": k,
                            "questionnaire_id": "health-information",
                            "questionnaire_version": "1",
                            "status": "submitted",
                            "answers": s,
                            "field_versions": dict.fromkeys(ANSWERS, 1),
                            "version": 1,
                            "created_at": now,
                            "updated_at": now,
                            "updated_by": f"u-{k}",
                            "submitted_at": now,
                        }
                        for k, s in zip(ids, stored, strict=True)
                    ],
                )
    finally:
        await engines.dispose()
        await keystore.engines.dispose()
    return time.perf_counter() - started


class _Row:
    """A dict row as the attribute row ``KeyStore._unwrap`` reads."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def backend_cpu_seconds(database: str) -> float:
    """CPU seconds (user + system) of the PostgreSQL backends connected to ``database``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if not cmdline.startswith("postgres:") or f" {database} " not in cmdline:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(kits: int, page_size: int) -> dict[str, Any]:
    name = f"healthinfo_bench_export_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"
    data_dir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    env_values = {
        "HEALTHINFO_ENVIRONMENT": "test",
        "HEALTHINFO_DATABASE_URL": url,
        "HEALTHINFO_KEYSTORE_URL": url,
        "HEALTHINFO_DATA_DIR": str(data_dir),
        "HEALTHINFO_JWT_SECRET": SECRET,
        "HEALTHINFO_MASTER_KEYS": new_key_spec("m1"),
        "HEALTHINFO_AUDIT_KEYS": new_key_spec("a1"),
        "HEALTHINFO_EXPORT_PAGE_SIZE": str(page_size),
        "HEALTHINFO_EXPORT_POLL_SECONDS": "0.2",
    }
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **{key.removeprefix("HEALTHINFO_").lower(): value for key, value in env_values.items()},
    )
    AuditKeyring.parse(env_values["HEALTHINFO_AUDIT_KEYS"])
    worker: subprocess.Popen[bytes] | None = None
    try:
        keystore = build_keystore(settings)
        engines = create_engines(url, pool_size=2, max_overflow=0, timeout=30)
        await migrate_all(settings, engines, keystore)
        seed_seconds = await seed(settings, kits)
        uows = UnitOfWorkFactory(engines)
        job_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        async with uows.write() as uow:
            await ExportStore().create(
                uow,
                {
                    "job_id": job_id,
                    "requester": "bench-admin",
                    "request_url": "http://bench/v1/fhir/$export?_type=QuestionnaireResponse",
                    "types": ["QuestionnaireResponse"],
                    "since": None,
                    "statuses": [],
                    "transaction_time": now,
                    "created_at": now,
                },
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHINFO_")}
        env.update(env_values, HEALTHINFO_MIGRATE_ON_START="false")
        db_cpu_before = backend_cpu_seconds(name)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
            [sys.executable, "-m", "healthinfo", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        state, exported = "", 0
        db_cpu = 0.0
        while state != "completed":
            await asyncio.sleep(0.5)
            db_cpu = max(db_cpu, backend_cpu_seconds(name) - db_cpu_before)
            async with uows.read() as uow:
                row = (
                    await uow.session.execute(
                        select(ExportJob.state, ExportJob.exported).where(
                            ExportJob.job_id == job_id
                        )
                    )
                ).one()
            state, exported = row[0], row[1]
            if worker.poll() is not None:
                raise RuntimeError("the worker exited")
        seconds = time.perf_counter() - started
        rss = peak_rss_mib(worker.pid)
        worker_cpu = process_cpu_seconds(worker.pid)
        await engines.dispose()
        await keystore.engines.dispose()
        return {
            "kits": kits,
            "exported": exported,
            "page_size": page_size,
            "seed_seconds": round(seed_seconds, 1),
            "export_seconds": round(seconds, 1),
            "kits_per_second": round(exported / seconds, 1),
            "worker_peak_rss_mib": round(rss, 1),
            "worker_cpu_seconds": round(worker_cpu, 1),
            "db_cpu_seconds": round(db_cpu, 1),
            "db_cpu_share": round(db_cpu / (db_cpu + worker_cpu), 3) if worker_cpu else None,
            "load_average_at_start": round(load_before, 2),
            "load_average_at_end": round(os.getloadavg()[0], 2),
        }
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kits", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.kits, args.page_size))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
