"""The room hub with its in-process adapters: queues, fan-out, room limit, presence, shutdown.

Two hubs on one ``InProcessBroker`` stand for two server instances in one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from healthinfo.errors import RoomFull, Unavailable
from healthinfo.health_information.model import HealthInformationState, Status
from healthinfo.health_information.service import ChangeEvent
from healthinfo.infra.access_log import AccessTokenFilter, redact
from healthinfo.infra.bus import InProcessBroker, InProcessBus
from healthinfo.kits.service import KitRoster
from healthinfo.realtime import events
from healthinfo.realtime.events import AccessChanged, LiveEvent
from healthinfo.realtime.hub import RESYNC, SHUTDOWN, SLOW_CONSUMER, RoomHub, Subscription
from healthinfo.realtime.presence import presence_users
from healthinfo.realtime.rooms import InMemoryRoomStore, Member

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def change(kit_id: str, version: int, *, submitted: bool = False) -> ChangeEvent:
    state = HealthInformationState(
        kit_id=kit_id,
        questionnaire_id="health-information",
        questionnaire_version="1",
        status=Status.SUBMITTED if submitted else Status.IN_PROGRESS,
        answers={"heightCm": 170 + version},
        version=version,
        created_at=NOW,
        updated_at=NOW,
        updated_by="alice",
        submitted_at=NOW if submitted else None,
    )
    return ChangeEvent(state, ["heightCm"], "rest", submitted)


def hub_on(broker: InProcessBroker, *, limit: int = 3, queue: int = 16) -> RoomHub:
    return RoomHub(
        bus=InProcessBus(broker),
        rooms=InMemoryRoomStore(),
        room_limit=limit,
        queue_size=queue,
        presence_ttl_seconds=30,
    )


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RoomHub, RoomHub]]:
    broker = InProcessBroker()
    first, second = hub_on(broker), hub_on(broker)
    await first.start()
    await second.start()
    yield first, second
    await first.stop()
    await second.stop()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def versions(sub: Subscription) -> list[int | None]:
    return [i.version for i in sub.take() if isinstance(i, LiveEvent) and i.name != "presence"]


async def test_a_full_queue_closes_the_subscription_as_a_slow_consumer() -> None:
    sub = Subscription("K1", "alice", max_items=2)
    for version in (1, 2, 3):
        sub.offer(LiveEvent("updated", {}, version))
    assert sub.close_reason == SLOW_CONSUMER
    assert sub.closed.is_set()
    assert sub.take() == []  # the queue is released at once
    sub.offer(LiveEvent("updated", {}, 4))
    assert sub.take() == []


async def test_wait_times_out_then_wakes_on_an_item() -> None:
    sub = Subscription("K1", "alice", max_items=2)
    assert await sub.wait(0.01) is False
    asyncio.get_running_loop().call_later(0.01, sub.offer, RESYNC)
    assert await sub.wait(1) is True
    assert sub.take() == [RESYNC]


async def test_a_change_reaches_every_subscriber_on_every_instance_once(
    pair: tuple[RoomHub, RoomHub],
) -> None:
    first, second = pair
    here = await first.join("K1", "alice")
    there = await second.join("K1", "bob")
    elsewhere = await second.join("K2", "carol")
    await settle()
    for sub in (here, there, elsewhere):
        sub.take()

    await first.publish_change(change("K1", 1))
    await first.publish_change(change("K1", 2, submitted=True))
    await settle()
    assert versions(here) == [1, 2]  # its own bus echo is ignored: no duplicates
    assert versions(there) == [1, 2]
    assert versions(elsewhere) == []


async def test_an_access_change_reaches_every_connection_of_the_kit_on_every_instance(
    pair: tuple[RoomHub, RoomHub],
) -> None:
    first, second = pair
    here = await first.join("K1", "alice")
    there = await second.join("K1", "bob")
    elsewhere = await second.join("K2", "carol")
    await settle()
    for sub in (here, there, elsewhere):
        sub.take()

    await first.access_changed("K1")
    await first.access_changed("K1", erased=True)
    await settle()
    for sub in (here, there):
        assert [i for i in sub.take() if isinstance(i, AccessChanged)] == [
            AccessChanged(erased=False),
            AccessChanged(erased=True),
        ]
    assert not [i for i in elsewhere.take() if isinstance(i, AccessChanged)]


async def test_one_user_holds_at_most_their_share_of_a_room() -> None:
    hub = RoomHub(
        bus=InProcessBus(),
        rooms=InMemoryRoomStore(),
        room_limit=3,
        user_limit=2,
        retry_after_seconds=4,
        queue_size=16,
        presence_ttl_seconds=30,
    )
    await hub.start()
    try:
        await hub.join("K1", "alice")
        await hub.join("K1", "alice")
        with pytest.raises(RoomFull) as refused:
            await hub.join("K1", "alice")
        assert refused.value.extra() == {"retryAfter": 4}
        assert "one user" in refused.value.detail
        await hub.join("K1", "bob")  # someone else still gets the last place
        with pytest.raises(RoomFull):
            await hub.join("K1", "carol")
    finally:
        await hub.stop()


async def test_the_room_limit_refuses_the_newcomer_and_a_leave_frees_a_place() -> None:
    hub = hub_on(InProcessBroker(), limit=2)
    await hub.start()
    try:
        a = await hub.join("K1", "alice")
        await hub.join("K1", "bob")
        with pytest.raises(RoomFull):
            await hub.join("K1", "carol")
        assert hub.connections("K1") == 2
        await hub.join("K2", "carol")  # another kit's room is separate
        await hub.leave(a)
        await hub.leave(a)  # idempotent
        await hub.join("K1", "carol")
        assert hub.connections("K1") == 2
    finally:
        await hub.stop()


async def test_presence_reaches_every_member_and_each_newcomer(
    pair: tuple[RoomHub, RoomHub],
) -> None:
    first, _second = pair
    alice = await first.join("K1", "alice")
    await settle()
    assert [i.data for i in alice.take() if isinstance(i, LiveEvent)] == [
        {"users": [{"userId": "alice"}]}
    ]
    second_tab = await first.join("K1", "alice")  # the same user again: unchanged list
    await settle()
    assert alice.take() == []
    assert [i.data for i in second_tab.take() if isinstance(i, LiveEvent)] == [
        {"users": [{"userId": "alice"}]}
    ]
    await first.focus(second_tab, "heightCm")
    await settle()
    assert [i.data for i in alice.take() if isinstance(i, LiveEvent)] == [
        {"users": [{"userId": "alice", "field": "heightCm"}]}
    ]


def test_presence_lists_each_user_once_with_their_latest_focus() -> None:
    members = [
        Member("c1", "bob", "heightCm", 1.0),
        Member("c2", "alice", None, 0.0),
        Member("c3", "bob", "weightKg", 2.0),
        Member("c4", "bob", None, 0.5),
    ]
    assert presence_users(members) == [{"userId": "alice"}, {"userId": "bob", "field": "weightKg"}]


async def test_shutdown_closes_every_subscription_and_refuses_newcomers() -> None:
    hub = hub_on(InProcessBroker())
    await hub.start()
    a = await hub.join("K1", "alice")
    b = await hub.join("K2", "bob")
    hub.begin_shutdown()
    await settle()
    assert (a.close_reason, b.close_reason) == (SHUTDOWN, SHUTDOWN)
    with pytest.raises(Unavailable):
        await hub.join("K1", "carol")
    await hub.stop()


def test_bus_messages_are_checked_not_trusted() -> None:
    event = events.change(change("K1", 3))
    good = events.encode_change("origin-1", "K1", event)
    decoded = events.decode("K1", good)
    assert decoded is not None
    assert decoded.event == event
    assert events.decode("K2", good) is None  # addressed to another kit
    assert events.decode("K1", b"not json") is None
    assert events.decode("K1", b'{"format": 1, "origin": "o", "kitId": "K1", "event": "x"}') is None
    tampered = good.replace(b'"id":3', b'"id":4')
    assert events.decode("K1", tampered) is None  # id and data.version disagree
    presence = events.decode("K1", events.encode_presence_changed("o", "K1"))
    assert presence is not None
    assert presence.event is None
    assert presence.access is None
    access = events.decode("K1", events.encode_access_changed("o", "K1", True))
    assert access is not None
    assert (access.event, access.access) == (None, AccessChanged(erased=True))
    assert b"user" not in events.encode_access_changed("o", "K1", False)  # nobody named
    bad = b'{"format": 1, "origin": "o", "kitId": "K1", "event": "access-changed"}'
    assert events.decode("K1", bad) is None  # "erased" must say true or false


def test_event_encodings() -> None:
    updated = events.change(change("K1", 2))
    assert updated.sse().decode().startswith("event: updated\nid: 2\ndata: {")
    assert updated.sse().endswith(b"\n\n")
    assert updated.message()["id"] == "2"
    presence = events.presence([{"userId": "alice"}])
    assert presence.sse() == b'event: presence\ndata: {"users":[{"userId":"alice"}]}\n\n'
    assert "id" not in presence.message()


def test_the_access_token_is_redacted_from_log_records() -> None:
    assert redact("GET /e?lastEventId=3&access_token=abc.def.ghi&x=1") == (
        "GET /e?lastEventId=3&access_token=[redacted]&x=1"
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/v1/k?access_token=secret", "1.1", 200),
        None,
    )
    assert AccessTokenFilter().filter(record)
    assert "secret" not in record.getMessage()


async def test_connections_of_a_kit_share_a_roster_read_begun_after_their_items() -> None:
    hub = hub_on(InProcessBroker())
    reads: list[int] = []
    release = asyncio.Event()

    async def read(kit_id: str) -> KitRoster:
        reads.append(hub.deliveries(kit_id))
        await release.wait()
        return KitRoster(kit_id, "alice", {}, None)

    hub.use_roster_reader(read)
    await hub.start()
    try:
        await hub.join("K1", "alice")
        await hub.publish_change(change("K1", 1))
        seen = hub.deliveries("K1")
        waiting = [asyncio.create_task(hub.roster("K1", after=seen)) for _ in range(3)]
        await settle()
        assert reads == [seen]  # one read for the three connections
        await hub.publish_change(change("K1", 2))  # delivered after that read began
        later = asyncio.create_task(hub.roster("K1", after=hub.deliveries("K1")))
        await settle()
        assert reads == [seen, seen + 1]  # so it cannot serve the new delivery
        release.set()
        rosters = await asyncio.gather(*waiting, later)
        assert {r.owner_id for r in rosters} == {"alice"}
    finally:
        await hub.stop()
