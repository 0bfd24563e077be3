"""Bus messages sealed with AES-GCM: whoever can read Redis cannot read the answers in them.

A change event on the bus carries the changed answers (``updated``) or the whole
representation (``submitted``): health data. Redis pub/sub has no access control per channel
and is often shared or monitored (``MONITOR``, a replica, a packet capture), so every payload
is sealed at the publish boundary and opened at the receive boundary, around any bus:

* the key is derived (HKDF-SHA256) from a master key of the keyring (``HEALTHINFO_MASTER_KEYS``),
  one bus key per master key, so no new secret needs distributing;
* the sealed message names the master key id (``hb1:<key id>:<nonce | ciphertext+tag>``):
  after a rotation (a new key appended, the old one kept for a while) instances seal with the
  newest key and open messages sealed with any key they still hold;
* the associated data is the channel (key prefix, ``events:``, kit id), so a message replayed
  on another kit's channel, or another deployment's, fails to open.

A message that does not open (not sealed, tampered with, sealed with a key this instance does
not hold) is dropped and counted: the bus is never the source of truth, receivers fill gaps
from the database, so a dropped message costs latency, never correctness. During a rolling
upgrade from a version that did not seal, the old instances' messages are dropped likewise.
"""

from __future__ import annotations

import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from healthinfo.crypto.master_keys import MasterKeyring
from healthinfo.infra.bus import EventBus, MessageHandler, ReconnectHandler

logger = logging.getLogger(__name__)

MAGIC = b"hb1:"
NONCE_BYTES = 12
_INFO = b"healthinfo event bus v1"


def bus_key(master: bytes) -> bytes:
    """The bus key derived from one master key: never the master key itself."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master)


class SealedBus:
    """An ``EventBus`` whose payloads are AES-GCM sealed on the way out and opened on the way in."""

    def __init__(self, inner: EventBus, keyring: MasterKeyring, *, namespace: str) -> None:
        self._inner = inner
        self._keys = {key_id: AESGCM(bus_key(key)) for key_id, key in keyring.keys.items()}
        self._active_id = keyring.active_id
        self._namespace = namespace
        self.kind = inner.kind
        self.rejected = 0

    @property
    def connected(self) -> bool:
        return self._inner.connected

    async def start(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        def opened(kit_id: str, payload: bytes) -> None:
            plain = self.open(kit_id, payload)
            if plain is not None:
                on_message(kit_id, plain)

        await self._inner.start(opened, on_reconnect)

    def publish(self, kit_id: str, payload: bytes) -> None:
        self._inner.publish(kit_id, self.seal(kit_id, payload))

    async def stop(self) -> None:
        await self._inner.stop()

    def seal(self, kit_id: str, payload: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self._active_id].encrypt(nonce, payload, self._aad(kit_id))
        return MAGIC + self._active_id.encode() + b":" + nonce + sealed

    def open(self, kit_id: str, message: bytes) -> bytes | None:
        """The payload, or None (dropped, counted, logged without content) if it does not open."""
        if message.startswith(MAGIC):
            key_id, _, raw = message[len(MAGIC) :].partition(b":")
            key = self._keys.get(key_id.decode("utf-8", "replace"))
            if key is not None and len(raw) > NONCE_BYTES:
                try:
                    return key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(kit_id))
                except InvalidTag:
                    pass
        self.rejected += 1
        logger.warning("bus.message_unsealable")
        return None

    def _aad(self, kit_id: str) -> bytes:
        return f"{self._namespace}events:{kit_id}".encode()
