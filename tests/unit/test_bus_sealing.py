"""Sealed bus messages: unreadable in transit, opened by every instance holding the key."""

from __future__ import annotations

import asyncio

import pytest

from healthinfo.crypto.master_keys import MasterKeyring, new_key_spec
from healthinfo.infra.bus import InProcessBroker, InProcessBus
from healthinfo.infra.bus_sealing import SealedBus

pytestmark = pytest.mark.asyncio

K1, K2 = new_key_spec("k1"), new_key_spec("k2")
SECRET = b'{"answers":{"dateOfBirth":"1980-05-17"}}'


class Tap:
    """What crosses the wire (the inner bus), and what the sealed bus hands to the hub."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []

    def __call__(self, kit_id: str, payload: bytes) -> None:
        self.received.append((kit_id, payload))


async def started(bus: SealedBus | InProcessBus) -> Tap:
    tap = Tap()
    await bus.start(tap, lambda: None)
    return tap


async def settle() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def sealed(broker: InProcessBroker, spec: str, namespace: str = "p:") -> SealedBus:
    return SealedBus(InProcessBus(broker), MasterKeyring.parse(spec), namespace=namespace)


async def test_the_payload_never_crosses_the_bus_in_clear() -> None:
    broker = InProcessBroker()
    wire = await started(InProcessBus(broker))
    publisher = sealed(broker, K1)
    await started(publisher)
    publisher.publish("KIT-1", SECRET)
    await settle()
    [(kit_id, payload)] = [m for m in wire.received if m[0] == "KIT-1"][:1]
    assert kit_id == "KIT-1"
    assert b"1980-05-17" not in payload
    assert payload.startswith(b"hb1:k1:")


async def test_another_instance_with_the_keyring_opens_it() -> None:
    broker = InProcessBroker()
    publisher, receiver = sealed(broker, K1), sealed(broker, K1)
    await started(publisher)
    inbox = await started(receiver)
    publisher.publish("KIT-1", SECRET)
    await settle()
    assert inbox.received == [("KIT-1", SECRET)]


async def test_after_a_rotation_messages_sealed_with_the_old_key_still_open() -> None:
    broker = InProcessBroker()
    old, rotated = sealed(broker, K1), sealed(broker, f"{K1},{K2}")
    inbox = await started(rotated)
    await started(old)
    old.publish("KIT-1", SECRET)
    await settle()
    assert inbox.received == [("KIT-1", SECRET)]
    assert rotated.seal("KIT-1", SECRET).startswith(b"hb1:k2:")


async def test_a_message_for_another_channel_or_deployment_does_not_open() -> None:
    broker = InProcessBroker()
    receiver = sealed(broker, K1)
    message = receiver.seal("KIT-1", SECRET)
    assert receiver.open("KIT-2", message) is None
    assert sealed(broker, K1, namespace="other:").open("KIT-1", message) is None
    assert receiver.rejected == 1


async def test_unsealed_tampered_or_foreign_messages_are_dropped_and_counted() -> None:
    broker = InProcessBroker()
    receiver = sealed(broker, K1)
    inbox = await started(receiver)
    good = receiver.seal("KIT-1", SECRET)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    foreign = sealed(broker, new_key_spec("k1")).seal("KIT-1", SECRET)  # same id, other key
    wire = InProcessBus(broker)
    for message in (SECRET, tampered, foreign, b"hb1:nokey:xx"):
        wire.publish("KIT-1", message)
    await settle()
    assert inbox.received == []
    assert receiver.rejected == 4
