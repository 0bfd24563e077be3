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
* recovery within ``RECOVERY_BOUND_SECONDS`` of every fault's removal;
* no answer value and no credential in anything the service wrote: every write carries marker
  values (a free-text note ``PHI-<run>… #<step>`` and, for the decimal questions, a number with
  a run-specific fraction), the servers trace every request to an OTLP receiver
  (``otlp_sink.py``), and after the load every server log and the span dump are scanned
  (``tests/support/phi_scan.py``) for each value written, each bearer token used, the JWT
  secret and the master keys.

One load runs per module (the ``outcome`` fixture); each test judges one of these properties.
The measured figures are printed and written to ``fault-figures.json`` in the run's tmp dir.
Default size 8 writers × 60 writes; ``HEALTHINFO_TEST_FULL=1``: 8 × 250 (2,000 writes).
"""

from __future__ import annotations

import asyncio
import json
import math
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

from tests.faults.otlp_sink import OtlpSink
from tests.support.fault_proxy import FaultProxy
from tests.support.phi_scan import PhiScanner, ScanReport, Secret, credential_secrets
from tests.support.private_postgres import PrivatePostgres
from tests.support.redis_server import PrivateRedis
from tests.support.server import ServerProcess
from tests.support.tokens import TEST_MASTER_KEYS, TEST_SECRET, token

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
DECIMAL_QUESTIONS = frozenset({"weightKg", "waistCm"})
SERVER_ENV = {
    "HEALTHINFO_IDEMPOTENCY_LEASE_SECONDS": "2",  # a killed request's key is free again soon
    "HEALTHINFO_DB_TIMEOUT_SECONDS": "3",
    "HEALTHINFO_REDIS_KEY_PREFIX": "faults:",
    **{
        f"HEALTHINFO_RATE_LIMIT_{kind}_PER_{who}": "1000000/minute"
        for kind in ("READ", "WRITE", "STREAM")
        for who in ("USER", "ADDRESS")
    },
    # The most verbose level: the PHI scan reads every line the service can write.
    "HEALTHINFO_LOG_LEVEL": "DEBUG",
    # Spans to the test's OTLP receiver (its endpoint is added per run); exported every 0.5 s
    # instead of 5 s, so a SIGKILL loses little of the span dump.
    "HEALTHINFO_OTEL_ENABLED": "true",
    "OTEL_BSP_SCHEDULE_DELAY": "500",
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
    # What the PHI scan looks for: every free-text value starts with the marker; every decimal
    # answer has the fraction's digits (a value no log line, id or timing has by chance). Kept
    # out of reprs, so failures do not print them.
    marker: str = field(default_factory=lambda: f"PHI-{uuid.uuid4().hex}", repr=False)
    fraction: str = field(default_factory=lambda: f"{uuid.uuid4().int % 10**7:07d}", repr=False)
    written: set[str] = field(default_factory=set, repr=False)  # every text and decimal sent
    tokens: set[str] = field(default_factory=set, repr=False)  # every bearer token sent
    attempts: list[Attempt] = field(default_factory=list)  # writes
    reads: list[Attempt] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    progress: int = 0
    # Writers wait at this many writes until the fault schedule moves it on: a fast service
    # must not finish its load before every fault has landed (inject_faults).
    release: float = math.inf
    released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    origin: float = field(default_factory=time.monotonic)

    def kit(self, index: int | str) -> str:
        return f"FAULT-{self.run}-{index}"

    def auth(self, user: str) -> dict[str, str]:
        bearer = token(user)
        self.tokens.add(bearer)
        return {"Authorization": f"Bearer {bearer}"}

    def note(self, label: str) -> str:
        """A free-text answer: the run's marker, and characters JSON and URLs escape."""
        return f"{self.marker} née {label}"

    def value(self, number: int, step: int) -> int | float:
        """Writer ``number``'s answer at ``step``. A decimal one is unmistakable in a text:
        the writer's number (so no writer's value is part of another's), the run's fraction,
        the step and a final 1 (so no trailing zero is dropped); 15 digits at most, so the
        float prints exactly as written."""
        question, low, high = QUESTIONS[number]
        if question in DECIMAL_QUESTIONS:
            return float(f"{low + number}.{number}{self.fraction}{step:04d}1")
        return low + step % (high - low)

    def remember(self, patch: dict[str, Any]) -> None:
        """The distinctive values: free text and decimals (small integers are in every log)."""
        self.written.update(
            value if isinstance(value, str) else json.dumps(value)
            for value in patch.values()
            if isinstance(value, str | float)
        )

    async def write(
        self, client: httpx.AsyncClient, kit: str, user: str, patch: dict[str, Any], key: str
    ) -> Ack:
        """PATCH until acknowledged, retrying safely with the same Idempotency-Key."""
        deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
        pause = 0.05
        headers = {**self.auth(user), "Idempotency-Key": key}
        self.remember(patch)
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
        question = QUESTIONS[number][0]
        kit, owner = self.kit(number % KITS), f"fault-owner-{number % KITS}"
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=CLIENT_TIMEOUT_SECONDS
        ) as client:
            for step in range(WRITES_PER_WRITER):
                while self.progress >= self.release:
                    self.released.clear()
                    await self.released.wait()
                patch = {
                    question: self.value(number, step),
                    "additionalNotes": self.note(f"w{number} #{step:04d}"),
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
                        headers=self.auth(f"fault-owner-{number % KITS}"),
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
            patch = {"additionalNotes": self.note(f"probe after {fault.kind} #{index:02d}")}
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
    spans: OtlpSink
    directory: Path  # the servers' logs are in directory / "service"


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
    """Each fault once the writers are that far along, so every fault lands during the load.

    The writers are held at the next fault's threshold plus half a step (``load.release``)
    until that fault begins, so however fast the service is, every fault meets writes in
    flight and writes continue through it.
    """
    step = total // (len(SCHEDULE) + 1)
    for number, (kind, injector, db_unreachable, service_down) in enumerate(SCHEDULE, 1):
        threshold = number * step
        while load.progress < threshold:
            assert not all(w.done() for w in writers), "the writers stopped early"
            await asyncio.sleep(0.01)
        assert load.progress < total, f"the writers finished before fault {kind}"
        load.release = (number + 1) * step + step // 2 if number < len(SCHEDULE) else math.inf
        load.released.set()
        fault = Fault(
            kind, time.monotonic(), db_unreachable=db_unreachable, service_down=service_down
        )
        await injector(parts, fault)
        await load.probe(fault)
        load.faults.append(fault)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    tmp_path = tmp_path_factory.mktemp("faults")
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
        spans = OtlpSink(tmp_path / "spans.jsonl")
        spans.start()
        started.append(spans.close)
        server = ServerProcess(
            database_url=postgres.url(pg_proxy.port),
            data_dir=tmp_path / "service",
            extra_env={
                **SERVER_ENV,
                "HEALTHINFO_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/0",
                "HEALTHINFO_OTEL_EXPORTER_ENDPOINT": spans.endpoint,
            },
        )
        (tmp_path / "service").mkdir()
        server.start()
        started.append(server.stop)
        yield Parts(server, postgres, redis, pg_proxy, redis_proxy, spans, tmp_path)
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


async def read_back(
    client: httpx.AsyncClient, kit: str, headers: dict[str, str]
) -> tuple[Any, list[int]]:
    current = await client.get(f"/v1/kits/{kit}/health-information", headers=headers)
    assert current.status_code == 200, current.text
    versions: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        page = await client.get(
            f"/v1/kits/{kit}/health-information/history", params=params, headers=headers
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
            current, history = await read_back(c, kit, load.auth(owner))
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


@dataclass
class PhiScan:
    """What the scan read (so it cannot pass by reading nothing), and what it found."""

    logs: ScanReport
    request_lines: int  # access-log lines: one per request the service answered
    spans: ScanReport
    server_spans: int
    rejected_exports: int
    database_log: ScanReport
    secrets: dict[str, int]
    spellings: int
    control: ScanReport  # the kits' answers as the API serves them: where the values belong
    control_expected: int  # the text and decimal answers in them, each must be found

    @property
    def leaks(self) -> list[str]:
        return [str(leak) for r in (self.logs, self.spans, self.database_log) for leak in r.leaks]

    def figures(self) -> dict[str, Any]:
        return {
            "server_log_files": self.logs.sources,
            "server_log_lines": self.logs.lines,
            "server_request_lines": self.request_lines,
            "spans": self.spans.lines,
            "server_spans": self.server_spans,
            "rejected_span_exports": self.rejected_exports,
            "database_log_lines": self.database_log.lines,
            "secrets": self.secrets,
            "spellings_searched": self.spellings,
            "control_values_found": f"{len(self.control.leaks)}/{self.control_expected}",
            "leaks": len(self.leaks),
        }


async def served_answers(load: Load) -> list[str]:
    """Each kit's current answers, the response text as the API sends it."""
    owners = {load.kit(i): f"fault-owner-{i}" for i in range(KITS)}
    owners[load.kit("probe")] = "fault-prober"
    async with httpx.AsyncClient(base_url=load.base_url, timeout=CLIENT_TIMEOUT_SECONDS) as c:
        responses = [
            await c.get(f"/v1/kits/{kit}/health-information", headers=load.auth(owner))
            for kit, owner in owners.items()
        ]
    assert all(r.status_code == 200 for r in responses), [r.status_code for r in responses]
    return [r.text for r in responses]


def scan_for_phi(load: Load, parts: Parts, served: list[str]) -> PhiScan:
    """Every server log, the span dump and PostgreSQL's log, for every value written, every
    token used, the JWT secret and the master keys. Call it once the server has stopped, so the
    spans it still held are exported.

    ``served`` (the kits' answers from the API) is the positive control: there the values
    belong, so there the scan must find each text and decimal answer, spelled as the service
    spells them."""
    values = [Secret("answer value", value) for value in sorted(load.written)]
    tokens = [Secret("bearer token", bearer) for bearer in sorted(load.tokens)]
    credentials = credential_secrets(TEST_SECRET, TEST_MASTER_KEYS)
    marker = Secret("answer value (the run's marker)", load.marker)
    scanner = PhiScanner([marker, *values, *tokens, *credentials])
    server_logs = sorted((parts.directory / "service").glob("server-*.log"))
    request_lines = sum(
        path.read_text(errors="replace").count('"event": "http.request"') for path in server_logs
    )
    database_log = [parts.postgres.log] if parts.postgres.log.exists() else []
    distinctive = [
        value
        for text in served
        for value in json.loads(text)["answers"].values()
        if isinstance(value, str | float)
    ]
    return PhiScan(
        logs=scanner.scan_files(server_logs),
        request_lines=request_lines,
        spans=scanner.scan_files([parts.spans.path]),
        server_spans=parts.spans.server_spans,
        rejected_exports=parts.spans.rejected,
        database_log=scanner.scan_files(database_log),
        secrets={
            "answer_values": len(values) + 1,
            "bearer_tokens": len(tokens),
            "credentials": len(credentials),
        },
        spellings=scanner.secrets,
        control=scanner.scan_text("answers served by the API", "\n".join(served)),
        control_expected=len(distinctive),
    )


def report(
    load: Load,
    duration: float,
    found: list[Violation],
    integrity: dict[str, int],
    phi: PhiScan,
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
        "phi_scan": phi.figures(),
    }


@dataclass(frozen=True, repr=False)
class Outcome:
    """The load's record and what was judged of it (no repr: a failure must not print values)."""

    load: Load
    violations: list[Violation]
    phi: PhiScan


@pytest.fixture(scope="module")
async def outcome(parts: Parts) -> Outcome:
    """One load under every fault, checked and scanned; each test below judges one property."""
    load = Load(parts.server.base_url)
    total = WRITERS * WRITES_PER_WRITER
    load.release = total // (len(SCHEDULE) + 1) * 3 // 2  # the first fault's (inject_faults)
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
    served = await served_answers(load)
    await asyncio.to_thread(parts.server.stop)  # SIGTERM: the server exports its last spans
    phi = scan_for_phi(load, parts, served)
    figures = report(load, duration, found, integrity, phi)
    path = parts.directory / "fault-figures.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nfault suite figures ({path}):\n{json.dumps(figures, indent=2)}")
    return Outcome(load, found, phi)


def test_acknowledged_writes_survive_crashes_and_outages(outcome: Outcome) -> None:
    load, found = outcome.load, outcome.violations
    assert len(load.acks) == WRITERS * WRITES_PER_WRITER + len(SCHEDULE)
    assert not load.unexpected, load.unexpected[:5]
    assert not found, "\n".join(v.describe(load.origin) for v in found[:25])
    slow = [f"{f.kind}: {f.recovery:.1f}s" for f in load.faults]
    assert max(f.recovery for f in load.faults) <= RECOVERY_BOUND_SECONDS, slow


def test_no_answer_value_or_credential_reaches_a_log_or_a_span(outcome: Outcome) -> None:
    leaks = outcome.phi.leaks
    assert not leaks, f"{len(leaks)} leak(s) of answer values or credentials:\n" + "\n".join(
        leaks[:25]
    )


def test_the_phi_scan_read_the_whole_load(outcome: Outcome) -> None:
    """The scan above passes only if it had something to read: an access-log line for at least
    every acknowledged write, most of their server spans (a SIGKILL loses the unexported ones),
    and every value and token the clients sent, which it does find where they belong."""
    load, phi = outcome.load, outcome.phi
    assert phi.control_expected >= KITS + 1  # a note per kit, and the decimals
    assert len(phi.control.leaks) == phi.control_expected, "the scan misses values it should see"
    assert phi.logs.sources >= 1
    assert phi.request_lines >= len(load.acks), "fewer access-log lines than acknowledged writes"
    assert phi.server_spans >= len(load.acks) // 2, "the span dump misses most requests"
    assert phi.rejected_exports == 0, "the service sent spans the OTLP receiver could not decode"
    assert phi.secrets["answer_values"] > len(load.acks), "not every written value was searched"
    assert phi.secrets["bearer_tokens"] >= 1
