"""Routing a kit's reads to a streaming replica only when it shows what is known to be committed.

The decision and the routing, against in-memory databases: no PostgreSQL here. The real
streaming replica is in tests/integration/test_read_replicas.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from healthinfo.audit.service import AuditEntry
from healthinfo.common.uow import UnitOfWork
from healthinfo.compliance.export import EXPORT
from healthinfo.errors import NotFound, Unavailable
from healthinfo.health_information.service import ERASE, READ, SAVE
from healthinfo.replication.freshness import (
    AnswersMark,
    ChangeRecord,
    KitMark,
    Requirement,
    is_fresh,
)
from healthinfo.replication.reads import LAGGING, UNAVAILABLE, ReplicaReads, is_change

KIT = "KIT-1"
CREATED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
NOTHING = KitMark(audit_length=0, answers=None)


def mark(audit_length: int, version: int | None = None, created: datetime = CREATED) -> KitMark:
    answers = AnswersMark(created, version) if version is not None else None
    return KitMark(audit_length=audit_length, answers=answers)


# -- the decision ---------------------------------------------------------------------------


def test_a_replica_is_fresh_when_nothing_newer_is_known() -> None:
    assert is_fresh(NOTHING, Requirement())


def test_a_replica_with_a_shorter_audit_chain_is_behind() -> None:
    assert not is_fresh(mark(4), Requirement(audit_length=5))


def test_a_replica_with_an_audit_chain_as_long_or_longer_is_fresh() -> None:
    assert is_fresh(mark(5), Requirement(audit_length=5))
    assert is_fresh(mark(6), Requirement(audit_length=5))


def test_a_replica_with_an_older_version_of_the_known_answers_is_behind() -> None:
    assert not is_fresh(mark(9, version=2), Requirement(answers=AnswersMark(CREATED, 3)))


def test_a_replica_with_the_known_version_of_the_answers_or_newer_is_fresh() -> None:
    assert is_fresh(mark(9, version=3), Requirement(answers=AnswersMark(CREATED, 3)))
    assert is_fresh(mark(9, version=4), Requirement(answers=AnswersMark(CREATED, 3)))


def test_a_replica_without_the_known_answers_is_behind() -> None:
    assert not is_fresh(mark(9), Requirement(answers=AnswersMark(CREATED, 1)))


def test_a_replica_with_other_answers_than_the_known_ones_is_behind() -> None:
    """Erased and saved again: version 1 of the new answers is not version 1 of the old."""
    erased_long_ago = CREATED - timedelta(days=3)
    shown = mark(9, version=7, created=erased_long_ago)
    assert not is_fresh(shown, Requirement(answers=AnswersMark(CREATED, 1)))


def test_both_requirements_must_hold() -> None:
    required = Requirement(audit_length=5, answers=AnswersMark(CREATED, 2))
    assert not is_fresh(mark(4, version=2), required)
    assert not is_fresh(mark(5, version=1), required)
    assert is_fresh(mark(5, version=2), required)


# -- what this process changed --------------------------------------------------------------


def test_a_change_is_known_by_the_audit_length_it_committed() -> None:
    changes = ChangeRecord()
    assert changes.known(KIT) is None
    changes.changed(KIT, 7)
    assert changes.known(KIT) == 7


def test_changes_noted_out_of_order_keep_the_longest_chain() -> None:
    """Two changes committed here concurrently may run their after-commit hooks either way."""
    changes = ChangeRecord()
    changes.changed(KIT, 8)
    changes.changed(KIT, 7)
    assert changes.known(KIT) == 8


def test_the_least_recently_changed_kit_is_forgotten_beyond_the_limit() -> None:
    changes = ChangeRecord(max_kits=2)
    for kit in ("A", "B", "A", "C"):
        changes.changed(kit, 1)
    assert len(changes) == 2
    assert changes.known("B") is None
    assert changes.known("A") is not None
    assert changes.known("C") is not None


@pytest.mark.parametrize(
    ("entry", "holds_back"),
    [
        (AuditEntry(action=SAVE, kit_id=KIT), True),
        (AuditEntry(action="kit.member.put", kit_id=KIT), True),
        (AuditEntry(action=ERASE, kit_id=KIT), True),
        (AuditEntry(action=READ, kit_id=KIT), False),
        (AuditEntry(action=EXPORT, kit_id=KIT), False),
        (AuditEntry(action=SAVE, kit_id=KIT, outcome="refused:version-conflict"), False),
        (AuditEntry(action=SAVE, kit_id=KIT, outcome="unchanged"), False),
    ],
)
def test_only_accepted_changes_hold_replicas_back(entry: AuditEntry, holds_back: bool) -> None:
    assert is_change(entry) is holds_back


# -- routing, against in-memory databases ----------------------------------------------------


class Database:
    """A fake database: what it shows of each kit, and whether it answers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.marks: dict[str, KitMark] = {}
        self.up = True


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, database: Database) -> None:
        super().__init__(cast(AsyncSession, None), writable=False)
        self.database = database


class Sources:
    def __init__(self, primary: Database, replicas: list[Database]) -> None:
        self.primary = primary
        self.replicas = replicas

    @property
    def replica_count(self) -> int:
        return len(self.replicas)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[UnitOfWork]:
        yield FakeUnitOfWork(self.primary)

    @asynccontextmanager
    async def replica(self, index: int) -> AsyncIterator[UnitOfWork]:
        database = self.replicas[index]
        if not database.up:
            raise Unavailable()
        yield FakeUnitOfWork(database)


class Marks:
    async def shown(self, uow: UnitOfWork, kit_id: str) -> KitMark:
        return cast(FakeUnitOfWork, uow).database.marks.get(kit_id, NOTHING)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Setup:
    """A primary, replicas, the record of this process's changes and the cache's versions."""

    def __init__(self, replicas: int = 1) -> None:
        self.primary = Database("primary")
        self.replicas = [Database(f"replica-{i}") for i in range(replicas)]
        self.changes = ChangeRecord()
        self.cached: dict[str, AnswersMark] = {}
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.reads = ReplicaReads(
            Sources(self.primary, self.replicas),
            changes=self.changes,
            registry=self.registry,
            known_answers=self.known_answers,
            marks=Marks(),
            cool_down_seconds=5.0,
            clock=self.clock,
        )

    async def known_answers(self, kit_id: str) -> AnswersMark | None:
        return self.cached.get(kit_id)

    def everywhere(self, kit_id: str, shown: KitMark) -> None:
        for database in (self.primary, *self.replicas):
            database.marks[kit_id] = shown

    async def served_by(self, kit_id: str = KIT) -> str:
        async with self.reads.for_kit(kit_id) as uow:
            return cast(FakeUnitOfWork, uow).database.name

    def fallbacks(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "healthinfo_replica_fallbacks_total", {"reason": reason}
        )
        return value or 0.0

    def replica_reads(self) -> float:
        return self.registry.get_sample_value("healthinfo_replica_reads_total") or 0.0


async def test_without_replicas_every_read_goes_to_the_primary() -> None:
    setup = Setup(replicas=0)
    assert await setup.served_by() == "primary"
    assert setup.fallbacks(LAGGING) == setup.fallbacks(UNAVAILABLE) == 0


async def test_a_replica_showing_everything_known_serves_the_read() -> None:
    setup = Setup()
    setup.everywhere(KIT, mark(3, version=2))
    setup.cached[KIT] = AnswersMark(CREATED, 2)
    assert await setup.served_by() == "replica-0"
    assert setup.replica_reads() == 1


async def test_a_replica_behind_a_change_made_here_sends_the_read_to_the_primary() -> None:
    setup = Setup()
    setup.everywhere(KIT, mark(3))
    setup.changes.changed(KIT, 4)
    assert await setup.served_by() == "primary"
    assert setup.fallbacks(LAGGING) == 1


async def test_a_replica_behind_the_cached_answers_sends_the_read_to_the_primary() -> None:
    """The cache holds what any instance committed: a write made through another instance."""
    setup = Setup()
    setup.everywhere(KIT, mark(3, version=2))
    setup.cached[KIT] = AnswersMark(CREATED, 3)
    assert await setup.served_by() == "primary"
    assert setup.fallbacks(LAGGING) == 1


async def test_the_replica_serves_again_once_it_has_caught_up() -> None:
    setup = Setup()
    setup.changes.changed(KIT, 4)
    setup.replicas[0].marks[KIT] = mark(3)
    assert await setup.served_by() == "primary"
    setup.replicas[0].marks[KIT] = mark(4)
    assert await setup.served_by() == "replica-0"


async def test_replicas_take_turns() -> None:
    setup = Setup(replicas=3)
    served = [await setup.served_by() for _ in range(4)]
    assert served == ["replica-0", "replica-1", "replica-2", "replica-0"]


async def test_the_next_replica_serves_when_one_is_unreachable() -> None:
    setup = Setup(replicas=2)
    setup.replicas[0].up = False
    assert await setup.served_by() == "replica-1"
    assert setup.fallbacks(UNAVAILABLE) == 0


async def test_the_primary_serves_when_no_replica_is_reachable() -> None:
    setup = Setup()
    setup.replicas[0].up = False
    assert await setup.served_by() == "primary"
    assert setup.fallbacks(UNAVAILABLE) == 1


async def test_an_unreachable_replica_rests_for_its_cool_down() -> None:
    setup = Setup()
    setup.replicas[0].up = False
    assert await setup.served_by() == "primary"
    setup.replicas[0].up = True
    setup.clock.now += 4.9
    assert await setup.served_by() == "primary"
    setup.clock.now += 0.2
    assert await setup.served_by() == "replica-0"
    assert setup.fallbacks(UNAVAILABLE) == 2


async def test_a_failure_during_the_replica_read_is_not_retried_on_the_primary() -> None:
    """The caller's block may have run in part: it answers 503, like a primary failure."""
    setup = Setup()
    with pytest.raises(Unavailable):
        async with setup.reads.for_kit(KIT):
            raise Unavailable()
    assert setup.fallbacks(UNAVAILABLE) == 0


async def test_a_refusal_during_the_replica_read_reaches_the_caller() -> None:
    setup = Setup()
    with pytest.raises(NotFound):
        async with setup.reads.for_kit(KIT):
            raise NotFound("no such kit")
    assert setup.replica_reads() == 1
