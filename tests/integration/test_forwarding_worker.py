"""``healthinfo worker`` as operators run it: a separate process, killed with SIGKILL in the
middle of deliveries; another worker takes over the dead one's claims once their lease ends.
On SQLite and on PostgreSQL, with a real lab server (``tests.support.lab``)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from healthinfo.common.clock import utc_now
from healthinfo.forwarding.outbox import AMENDED, SUBMITTED
from tests.conftest import open_client
from tests.support.backends import BACKENDS
from tests.support.forwarding import (
    FORWARD_SECRET,
    FULL,
    eventually,
    forwarding_settings,
    fresh_database,
    outbox_rows,
    services_of,
    submit,
)
from tests.support.lab import Lab, Request, Respond, assert_delivered_once_each_in_kit_order
from tests.support.metrics import families, our_families
from tests.support.problems import running_app
from tests.support.tokens import auth
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

LEASE_SECONDS = 1.5


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


async def test_a_worker_killed_mid_delivery_loses_nothing_another_worker_finishes(
    database: str, tmp_path: Path, kit_id: str, workers: list[WorkerProcess]
) -> None:
    submissions = 300 if FULL else 60
    ordered_kits, events_per_kit = 5, 3

    def slow_lab(request: Request) -> Respond:
        # Every answer takes a moment, so deliveries are in flight when the worker dies;
        # one in ten is a 503 (retried by whichever worker holds the event then).
        return Respond(503 if request.index % 10 == 3 else 200, delay=0.03)

    data_dir = tmp_path / "data"
    async with Lab(FORWARD_SECRET.encode(), policy=slow_lab) as lab:
        # The serve side records only; delivery is the workers' job.
        settings = forwarding_settings(database, data_dir, lab.url, forward_in_process=False)
        async with running_app(settings) as app, await open_client(app) as client:
            svc = services_of(app)
            gate = asyncio.Semaphore(16)

            async def submit_one(kit: str) -> None:
                async with gate:
                    await submit(client, kit)

            await asyncio.gather(*(submit_one(f"{kit_id}-{i}") for i in range(submissions)))
            for i in range(ordered_kits):
                kit = f"{kit_id}-ordered-{i}"
                saved = await client.put(
                    f"/v1/kits/{kit}/health-information",
                    json={"answers": {"heightCm": 170}},
                    headers=auth("lab-user"),
                )
                assert saved.status_code == 201
                for version in range(1, events_per_kit + 1):
                    async with svc.uows.write() as uow:
                        await svc.forwarding.outbox.record(
                            uow,
                            event_type=SUBMITTED if version == 1 else AMENDED,
                            kit_id=kit,
                            version=version,
                            occurred_at=utc_now(),
                            representation={"kitId": kit, "version": version},
                        )
            total = submissions + ordered_kits * events_per_kit
            env = {"HEALTHINFO_FORWARD_LEASE_SECONDS": str(LEASE_SECONDS)}

            doomed = WorkerProcess(
                database_url=database,
                data_dir=data_dir,
                forward_url=lab.url,
                name="doomed",
                extra_env=env,
            )
            workers.append(doomed)
            doomed.start()
            await lab.wait_for(lambda: len(lab.accepted) >= total // 3 and lab.in_flight > 0, 90)
            doomed.kill()  # while the lab holds at least one of its requests
            assert doomed.process is not None
            assert doomed.process.returncode == -9

            # Claims are released only by recording an outcome; no other relay runs yet, so a
            # pending row that still names an owner is a claim the killed worker took along.
            stranded = [r for r in await outbox_rows(app) if r.state == "pending" and r.lease_owner]
            assert stranded, "the killed worker held no claim: the test proves nothing"
            accepted_before = len(lab.accepted_ids())
            assert accepted_before < total

            successors = [
                WorkerProcess(
                    database_url=database,
                    data_dir=data_dir,
                    forward_url=lab.url,
                    name=f"successor-{n}",
                    extra_env=env,
                )
                for n in range(2)
            ]
            for successor in successors:  # two in parallel: they share the work
                workers.append(successor)
                successor.start()

            async def all_delivered() -> bool:
                rows = await outbox_rows(app)
                return len(rows) == total and {r.state for r in rows} == {"delivered"}

            await eventually(all_delivered, within=60, interval=0.1)
            for successor in successors:
                assert successor.stop() == 0, successor.output()  # SIGTERM: a clean stop

            rows = await outbox_rows(app)
            assert_delivered_once_each_in_kit_order(
                lab, [(r.event_id, r.kit_id, r.kit_sequence) for r in rows]
            )
            # The claims the killed worker held were sent again by a successor.
            assert {r.event_id for r in stranded} <= lab.accepted_ids()
            resent = [r.event_id for r in stranded if len(lab.for_event(r.event_id)) > 1]
            assert resent, "no stranded claim was sent again"


async def test_a_worker_without_a_forward_url_runs_exports_only_saying_so(tmp_path: Path) -> None:
    """The worker also runs Bulk Data exports, so no forward URL is not an error any more; it
    says forwarding is off, naming the setting, and stops cleanly on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHINFO_")}
    env["HEALTHINFO_DATA_DIR"] = str(tmp_path / "data")
    env["HEALTHINFO_LOG_JSON"] = "true"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "healthinfo",
        "worker",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: list[str] = []

    async def read_until_started() -> None:
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode():
            seen.append(line)
            if "forwarding.worker_started" in line:
                return

    await asyncio.wait_for(read_until_started(), timeout=60)
    process.terminate()
    rest, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    output = "".join(seen) + rest.decode()
    assert process.returncode == 0, output
    off = [line for line in seen if "forwarding.worker_forwarding_off" in line]
    assert off, output
    assert "HEALTHINFO_FORWARD_URL" in off[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def scrape(url: str, worker: WorkerProcess) -> str:
    """The worker's /metrics, once its server is up (it starts with the worker)."""
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(200):
            try:
                response = await http.get(url)
            except httpx.TransportError:
                assert worker.process is not None
                assert worker.process.poll() is None, worker.output()
                await asyncio.sleep(0.1)
                continue
            assert response.status_code == 200
            return response.text
    raise AssertionError(f"the worker served no metrics: {worker.output()}")


async def test_the_worker_exports_its_metrics_prefixed_with_the_process_collectors(
    database: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """``healthinfo worker --metrics-port``: the forwarding metrics under ``healthinfo_`` and
    the worker process's own CPU, memory and file descriptors, as serve's /metrics has them."""
    data_dir = tmp_path / "data"
    async with Lab(FORWARD_SECRET.encode()) as lab:
        settings = forwarding_settings(database, data_dir, lab.url, forward_in_process=False)
        async with running_app(settings):  # migrates the schema the worker reads
            port = free_port()
            worker = WorkerProcess(
                database_url=database,
                data_dir=data_dir,
                forward_url=lab.url,
                name="metrics",
                args=("--metrics-port", str(port)),
            )
            workers.append(worker)
            worker.start()
            text = await scrape(f"http://127.0.0.1:{port}/metrics", worker)
    names = {family.name for family in families(text)}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names
    ours = {family.name for family in our_families(text)}
    assert "healthinfo_forwarding_oldest_pending_age_seconds" in ours
    assert all(name.startswith("healthinfo_") for name in ours), ours
