"""Acknowledged writes survive crashes and outages: a write load under injected faults.

A real ``healthinfo serve`` subprocess runs on a PRIVATE PostgreSQL cluster and a PRIVATE Redis,
each reached through a ``FaultProxy``. Eight writers PATCH four kits concurrently (two writers
per kit, each on its own question plus a shared note, so every write changes something) and a
reader GETs them, while a fault schedule, paced by the writers' progress, hits every part in turn:

* the service: SIGKILL, then a restart (twice);
* Redis: delayed, connections cut and refused, killed and restarted;
* PostgreSQL: delayed, connections cut, refused, answered "starting up" (57P03) for 2 s,
  ``pg_ctl restart -m fast`` (clean) and ``-m immediate`` (a crash recovered from the WAL).

Clients do what the contract tells them to: on a connection error, a timeout, a 503 or a 409
``idempotency-key-in-use`` they retry the same request with the same ``Idempotency-Key``. After
each fault is removed, a probe write measures the recovery (first acknowledged write).

What it proves, checked after the load from the database through the API:

* 0 acknowledged writes lost: every acknowledged version is in the history, and the state the
  acknowledgement showed is what the history holds at that version;
* 0 lost updates: per kit, the acknowledged versions are exactly 1..N, each once (no write applied
  twice, none acknowledged twice, no commit without its acknowledgement), the history has no gaps,
  and the final answers equal the acknowledged patches applied in version order;
* no 5xx except 503 while the database is unreachable (never for a Redis fault), and connection
  errors only while the service is down;
* recovery within ``RECOVERY_BOUND_SECONDS`` of every fault's removal.

The measured figures are printed and written to ``fault-figures.json`` in the test's tmp dir.
Default size 8 writers × 60 writes; ``HEALTHINFO_TEST_FULL=1``: 8 × 250 (2,000 writes).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.private_postgres import PrivatePostgres
from tests.support.redis_server import PrivateRedis
from tests.support.server import ServerProcess
from tests.support.tokens import auth

FULL = os.environ.get("HEALTHINFO_TEST_FULL") == "1"
WRITERS = 8
WRITES_PER_WRITER = 250 if FULL else 60
KITS = 4
RECOVERY_BOUND_SECONDS = 15.0
WRITE_DEADLINE_SECONDS = 120.0  # one logical write may keep retrying this long
CLIENT_TIMEOUT_SECONDS = 30.0
GRACE_SECONDS = 1.0  # after recovery, requests already waiting may still end in 503
# (question, lowest, highest) — one per writer; every value in range is a valid answer.
QUESTIONS = (
    ("heightCm", 30, 272),
    ("cigarettesPerDay", 0, 200),
    ("yearsSmoked", 0, 100),
    ("drinksPerWeek", 0, 200),
    ("fastingHours", 0, 72),
    ("weeksPregnant", 1, 45),
    ("weightKg", 1, 650),
    ("waistCm", 20, 300),
)
SERVER_ENV = {
    "HEALTHINFO_IDEMPOTENCY_LEASE_SECONDS": "2",  # a killed request's key is free again soon
    "HEALTHINFO_DB_TIMEOUT_SECONDS": "3",
    "HEALTHINFO_REDIS_KEY_PREFIX": "faults:",
    **{
        f"HEALTHINFO_RATE_LIMIT_{kind}_PER_{who}": "1000000/minute"
        for kind in ("READ", "WRITE", "STREAM")
        for who in ("USER", "ADDRESS")
    },
}


@dataclass(frozen=True)
class Attempt:
    started: float
    ended: float
    outcome: int | str  # the status, or "transport:<exception>"


@dataclass(frozen=True)
class Ack:
    kit: str
    patch: dict[str, Any]
    version: int
    answers: dict[str, Any]
    replayed: bool
    ended: float


@dataclass
class Fault:
    kind: str
    injected: float
    removed: float = 0.0
    recovered: float = 0.0
    db_unreachable: bool = False  # 503 is allowed while it lasts
    service_down: bool = False  # connection errors are allowed while it lasts

    @property
    def recovery(self) -> float:
        return self.recovered - self.removed


class GaveUp(AssertionError):
    pass


@dataclass
class Load:
    """The clients' side: every attempt, every acknowledgement, and the faults injected."""

    base_url: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    attempts: list[Attempt] = field(default_factory=list)  # writes
    reads: list[Attempt] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    progress: int = 0
    origin: float = field(default_factory=time.monotonic)

    def kit(self, index: int | str) -> str:
        return f"FAULT-{self.run}-{index}"

    async def write(
        self, client: httpx.AsyncClient, kit: str, user: str, patch: dict[str, Any], key: str
    ) -> Ack:
        """PATCH until acknowledged, retrying safely with the same Idempotency-Key."""
        deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
        pause = 0.05
        headers = {**auth(user), "Idempotency-Key": key}
        while True:
            started = time.monotonic()
            try:
                response = await client.patch(
                    f"/v1/kits/{kit}/health-information",
                    json={"answers": patch},
                    headers=headers,
                )
            except httpx.TransportError as exc:
                self.attempts.append(Attempt(started, time.monotonic(), f"transport:{exc!r}"))
            else:
                ended = time.monotonic()
                self.attempts.append(Attempt(started, ended, response.status_code))
                if response.status_code == 200:
                    body = response.json()
                    replayed = response.headers.get("idempotent-replayed") == "true"
                    ack = Ack(kit, patch, body["version"], body["answers"], replayed, ended)
                    self.acks.append(ack)
                    return ack
                retryable = response.status_code >= 500 or (
                    response.status_code == 409
                    and response.json().get("code") == "idempotency-key-in-use"
                )
                if not retryable:
                    self.unexpected.append(f"{response.status_code}: {response.text}")
                    raise GaveUp(f"write {key} refused: {response.status_code} {response.text}")
            if time.monotonic() > deadline:
                raise GaveUp(f"write {key} not acknowledged within {WRITE_DEADLINE_SECONDS}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def writer(self, number: int) -> None:
        question, low, high = QUESTIONS[number]
        kit, owner = self.kit(number % KITS), f"fault-owner-{number % KITS}"
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=CLIENT_TIMEOUT_SECONDS
        ) as client:
            for step in range(WRITES_PER_WRITER):
                patch = {
                    question: low + step % (high - low),
                    "additionalNotes": f"w{number}-{step}",
                }
                await self.write(client, kit, owner, patch, f"{self.run}-w{number}-{step}")
                self.progress += 1

    async def reader(self, stop: asyncio.Event) -> None:
        """Reads alongside the writers (no retries: each answer is recorded and judged)."""
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=CLIENT_TIMEOUT_SECONDS
        ) as client:
            number = 0
            while not stop.is_set():
                kit = self.kit(number % KITS)
                started = time.monotonic()
                try:
                    response = await client.get(
                        f"/v1/kits/{kit}/health-information",
                        headers=auth(f"fault-owner-{number % KITS}"),
                    )
                except httpx.TransportError as exc:
                    self.reads.append(Attempt(started, time.monotonic(), f"transport:{exc!r}"))
                else:
                    self.reads.append(Attempt(started, time.monotonic(), response.status_code))
                    if response.status_code not in (200, 404, 503) and response.status_code < 500:
                        self.unexpected.append(f"read {response.status_code}: {response.text}")
                number += 1
                await asyncio.sleep(0.05)

    async def probe(self, fault: Fault) -> None:
        """One write on the probe kit right after the fault's removal: the recovery time."""
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=CLIENT_TIMEOUT_SECONDS
        ) as client:
            index = len(self.faults)
            patch = {"additionalNotes": f"probe after {fault.kind} #{index}"}
            ack = await self.write(
                client, self.kit("probe"), "fault-prober", patch, f"{self.run}-probe-{index}"
            )
        fault.recovered = ack.ended


# -- the faults --------------------------------------------------------------------------------


@dataclass
class Parts:
    server: ServerProcess
    postgres: PrivatePostgres
    redis: PrivateRedis
    pg_proxy: FaultProxy
    redis_proxy: FaultProxy


Injector = Callable[[Parts, Fault], Awaitable[None]]
HOLD = 2.0  # seconds a delay, or an outage through the proxy, lasts


async def kill_service(parts: Parts, fault: Fault) -> None:
    """SIGKILL, then a new process on the same port; removed once it reports ready (the
    interpreter's start-up is reported as the outage, not as the recovery)."""
    await asyncio.to_thread(parts.server.kill)
    await asyncio.to_thread(parts.server.start)
    fault.removed = time.monotonic()


async def delay_postgres(parts: Parts, fault: Fault) -> None:
    parts.pg_proxy.delay(100)
    await asyncio.sleep(HOLD)
    parts.pg_proxy.pass_()
    fault.removed = time.monotonic()


async def cut_postgres(parts: Parts, fault: Fault) -> None:
    parts.pg_proxy.cut()
    fault.removed = time.monotonic()


async def refuse_postgres(parts: Parts, fault: Fault) -> None:
    parts.pg_proxy.refuse()
    await asyncio.sleep(HOLD)
    parts.pg_proxy.pass_()
    fault.removed = time.monotonic()


async def postgres_starting_up(parts: Parts, fault: Fault) -> None:
    """What a restart shows for a moment, held for HOLD: 57P03 "the database system is
    starting up" to every new connection (the open ones are cut)."""
    parts.pg_proxy.postgres_starting_up()
    await asyncio.sleep(HOLD)
    parts.pg_proxy.pass_()
    fault.removed = time.monotonic()


async def restart_postgres_fast(parts: Parts, fault: Fault) -> None:
    await asyncio.to_thread(parts.postgres.restart, "fast")
    fault.removed = time.monotonic()


async def crash_postgres(parts: Parts, fault: Fault) -> None:
    await asyncio.to_thread(parts.postgres.restart, "immediate")
    fault.removed = time.monotonic()


async def delay_redis(parts: Parts, fault: Fault) -> None:
    parts.redis_proxy.delay(300)  # well over the cache's 50 ms budget
    await asyncio.sleep(HOLD)
    parts.redis_proxy.pass_()
    fault.removed = time.monotonic()


async def cut_and_refuse_redis(parts: Parts, fault: Fault) -> None:
    parts.redis_proxy.refuse()
    await asyncio.sleep(HOLD)
    parts.redis_proxy.pass_()
    fault.removed = time.monotonic()


async def restart_redis(parts: Parts, fault: Fault) -> None:
    await asyncio.to_thread(parts.redis.stop)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(parts.redis.start)
    fault.removed = time.monotonic()


# (kind, injector, the database is unreachable, the service is down)
SCHEDULE: tuple[tuple[str, Injector, bool, bool], ...] = (
    ("postgres-delay-100ms", delay_postgres, False, False),
    ("redis-delay-300ms", delay_redis, False, False),
    ("service-sigkill-restart", kill_service, False, True),
    ("redis-cut-and-refuse", cut_and_refuse_redis, False, False),
    ("postgres-cut-connections", cut_postgres, True, False),
    ("postgres-refuse-connections", refuse_postgres, True, False),
    ("postgres-starting-up", postgres_starting_up, True, False),
    ("redis-kill-restart", restart_redis, False, False),
    ("postgres-restart-fast", restart_postgres_fast, True, False),
    ("postgres-crash-immediate", crash_postgres, True, False),
    ("service-sigkill-restart", kill_service, False, True),
)


async def inject_faults(
    load: Load, parts: Parts, total: int, writers: list[asyncio.Task[None]]
) -> None:
    """Each fault once the writers are that far along, so every fault lands during the load."""
    for number, (kind, injector, db_unreachable, service_down) in enumerate(SCHEDULE, 1):
        threshold = number * total // (len(SCHEDULE) + 1)
        while load.progress < threshold:
            assert not all(w.done() for w in writers), "the writers stopped early"
            await asyncio.sleep(0.01)
        assert load.progress < total, f"the writers finished before fault {kind}"
        fault = Fault(
            kind, time.monotonic(), db_unreachable=db_unreachable, service_down=service_down
        )
        await injector(parts, fault)
        await load.probe(fault)
        load.faults.append(fault)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    postgres = PrivatePostgres()
    redis = PrivateRedis(tmp_path)
    started: list[Callable[[], None]] = []
    try:
        postgres.start()
        started.append(postgres.stop)
        redis.start()
        started.append(redis.stop)
        pg_proxy = FaultProxy("127.0.0.1", postgres.port, name="pg-proxy")
        pg_proxy.start()
        started.append(pg_proxy.close)
        redis_proxy = FaultProxy("127.0.0.1", redis.port, name="redis-proxy")
        redis_proxy.start()
        started.append(redis_proxy.close)
        server = ServerProcess(
            database_url=postgres.url(pg_proxy.port),
            data_dir=tmp_path / "service",
            extra_env={
                **SERVER_ENV,
                "HEALTHINFO_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/0",
            },
        )
        (tmp_path / "service").mkdir()
        server.start()
        started.append(server.stop)
        yield Parts(server, postgres, redis, pg_proxy, redis_proxy)
    finally:
        for stop in reversed(started):
            stop()


# -- the checks ----------------------------------------------------------------------------------


def overlaps(attempt: Attempt, start: float, end: float) -> bool:
    return attempt.started <= end and attempt.ended >= start


@dataclass(frozen=True)
class Violation:
    attempt: Attempt
    what: str
    during: str  # the fault it overlapped, or "no fault"

    def describe(self, origin: float) -> str:
        started, ended = self.attempt.started - origin, self.attempt.ended - origin
        return f"{self.what} ({started:.2f}s-{ended:.2f}s, during {self.during})"


def violations(load: Load) -> list[Violation]:
    """5xx other than 503; 503 outside database outages; connection errors while it was up."""
    windows = [(f, f.injected, f.recovered + GRACE_SECONDS) for f in load.faults]
    found = []
    for attempt in load.attempts + load.reads:
        during = [f for f, start, end in windows if overlaps(attempt, start, end)]
        label = ", ".join(f.kind for f in during) or "no fault"
        outcome = attempt.outcome
        if isinstance(outcome, str):
            if not any(f.service_down for f in during):
                found.append(Violation(attempt, f"{outcome} while the service was up", label))
        elif outcome == 503:
            if not any(f.db_unreachable for f in during):
                found.append(Violation(attempt, "503 while the database was reachable", label))
        elif outcome >= 500:
            found.append(Violation(attempt, str(outcome), label))
    return found


async def read_back(client: httpx.AsyncClient, kit: str, user: str) -> tuple[Any, list[int]]:
    current = await client.get(f"/v1/kits/{kit}/health-information", headers=auth(user))
    assert current.status_code == 200, current.text
    versions: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        page = await client.get(
            f"/v1/kits/{kit}/health-information/history", params=params, headers=auth(user)
        )
        assert page.status_code == 200, page.text
        versions += [item["version"] for item in page.json()["items"]]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            return current.json(), versions


def replay(acks: list[Ack]) -> Iterator[tuple[Ack, dict[str, Any]]]:
    """The acknowledged patches applied in version order: each with the answers they make."""
    answers: dict[str, Any] = {}
    for ack in sorted(acks, key=lambda a: a.version):
        answers = {**answers, **ack.patch}
        yield ack, answers


async def check_nothing_lost(load: Load) -> dict[str, int]:
    """Per kit: versions 1..N each acknowledged once, history without gaps, state = replay."""
    lost_writes = lost_updates = 0
    owners = {load.kit(i): f"fault-owner-{i}" for i in range(KITS)}
    owners[load.kit("probe")] = "fault-prober"
    async with httpx.AsyncClient(base_url=load.base_url, timeout=CLIENT_TIMEOUT_SECONDS) as c:
        for kit, owner in owners.items():
            acks = [a for a in load.acks if a.kit == kit]
            current, history = await read_back(c, kit, owner)
            versions = sorted(a.version for a in acks)
            top = current["version"]
            assert history == list(range(top, 0, -1)), f"{kit}: history has gaps: {history}"
            missing = sorted(set(versions) - set(history))
            lost_writes += len(missing)
            assert not missing, f"{kit}: acknowledged versions {missing} are not in the history"
            duplicated = [v for v, n in Counter(versions).items() if n > 1]
            unacknowledged = sorted(set(history) - set(versions))
            lost_updates += len(duplicated) + len(unacknowledged)
            assert not duplicated, f"{kit}: versions {duplicated} were acknowledged twice"
            assert not unacknowledged, f"{kit}: versions {unacknowledged} committed, never acked"
            for ack, expected in replay(acks):
                assert ack.answers == expected, f"{kit} v{ack.version}: {ack.answers} != {expected}"
            assert current["answers"] == expected, f"{kit}: final state is not the replay"
    return {"lost_acknowledged_writes": lost_writes, "lost_updates": lost_updates}


def report(
    load: Load, duration: float, found: list[Violation], integrity: dict[str, int]
) -> dict[str, Any]:
    outcomes = Counter(str(a.outcome).split("(")[0] for a in load.attempts)
    by_fault: dict[str, Counter[str]] = {}
    for violation in found:
        by_fault.setdefault(violation.during, Counter())[violation.what.split("(")[0]] += 1
    total = WRITERS * WRITES_PER_WRITER
    return {
        "size": "full" if FULL else "ci",
        "writers": WRITERS,
        "writes_per_writer": WRITES_PER_WRITER,
        "acknowledged_writes": len(load.acks),
        "load_writes": total,
        "probe_writes": len(load.acks) - total,
        "attempts": len(load.attempts),
        "retries": len(load.attempts) - len(load.acks),
        "idempotent_replays": sum(a.replayed for a in load.acks),
        "outcomes": dict(sorted(outcomes.items())),
        "reads": len(load.reads),
        "read_outcomes": dict(
            sorted(Counter(str(a.outcome).split("(")[0] for a in load.reads).items())
        ),
        "faults_injected": len(load.faults),
        "faults": [
            {
                "kind": f.kind,
                "injected_at_seconds": round(f.injected - load.origin, 2),
                "removed_at_seconds": round(f.removed - load.origin, 2),
                "outage_seconds": round(f.removed - f.injected, 2),
                "recovery_seconds": round(f.recovery, 3),
            }
            for f in load.faults
        ],
        "max_recovery_seconds": round(max(f.recovery for f in load.faults), 3),
        "recovery_bound_seconds": RECOVERY_BOUND_SECONDS,
        "duration_seconds": round(duration, 1),
        "acknowledged_writes_per_second": round(len(load.acks) / duration, 1),
        "violations": len(found),
        "violations_by_fault": {k: dict(v) for k, v in sorted(by_fault.items())},
        **integrity,
    }


async def test_acknowledged_writes_survive_crashes_and_outages(
    parts: Parts, tmp_path: Path
) -> None:
    load = Load(parts.server.base_url)
    total = WRITERS * WRITES_PER_WRITER
    writers = [asyncio.create_task(load.writer(n)) for n in range(WRITERS)]
    stop_reading = asyncio.Event()
    reader = asyncio.create_task(load.reader(stop_reading))
    try:
        await inject_faults(load, parts, total, writers)
        await asyncio.gather(*writers)
        stop_reading.set()
        await reader
    finally:
        for task in [*writers, reader]:
            task.cancel()
    duration = time.monotonic() - load.origin

    found = violations(load)
    integrity = await check_nothing_lost(load)
    figures = report(load, duration, found, integrity)
    path = tmp_path / "fault-figures.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nfault suite figures ({path}):\n{json.dumps(figures, indent=2)}")

    assert len(load.acks) == total + len(SCHEDULE)
    assert not load.unexpected, load.unexpected[:5]
    assert not found, "\n".join(v.describe(load.origin) for v in found[:25])
    slow = [f"{f.kind}: {f.recovery:.1f}s" for f in load.faults]
    assert max(f.recovery for f in load.faults) <= RECOVERY_BOUND_SECONDS, slow
