"""The encrypting answer codec: AES-256-GCM with the kit's data key, the kit id as associated data.

Stored form: ``enc1:<data key id>:<base64(nonce | ciphertext+tag)>``. The associated data
(kit id and key id) means a ciphertext copied into another kit's row fails to decrypt instead
of being read as that kit's answers.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from healthinfo.crypto.keystore import KeyDestroyed, KeyStore
from healthinfo.health_information.codec import Answers, JsonAnswerCodec

PREFIX = "enc1:"
NONCE_BYTES = 12


class EncryptedAnswerCodec:
    encrypted = True

    def __init__(self, keystore: KeyStore) -> None:
        self.keystore = keystore
        self._json = JsonAnswerCodec()

    async def encode(self, kit_id: str, answers: Answers) -> str:
        key = await self.keystore.current(kit_id)
        plain = (await self._json.encode(kit_id, answers)).encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key.key).encrypt(nonce, plain, _aad(kit_id, key.key_id))
        return f"{PREFIX}{key.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    async def decode(self, kit_id: str, stored: str) -> Answers:
        if not stored.startswith(PREFIX):
            raise ValueError("stored answers are not encrypted")
        key_id, _, payload = stored[len(PREFIX) :].partition(":")
        key = await self.keystore.by_id(kit_id, key_id)
        raw = base64.b64decode(payload)
        try:
            plain = AESGCM(key.key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(kit_id, key_id)
            )
        except InvalidTag:
            raise KeyDestroyed(kit_id) from None
        return await self._json.decode(kit_id, plain.decode())


def _aad(kit_id: str, key_id: str) -> bytes:
    return json.dumps([kit_id, key_id]).encode()


class EncryptedPayloadCodec:
    """Outbox payloads (the submitted representation, answers included) under the kit's key.

    After an erasure the key is gone, so an undelivered payload of that kit cannot be read
    any more, let alone forwarded: exactly what erasure promises.
    """

    def __init__(self, answers: EncryptedAnswerCodec) -> None:
        self._answers = answers

    async def encode(self, kit_id: str, body: str) -> str:
        return await self._answers.encode(kit_id, {"body": body})

    async def decode(self, kit_id: str, stored: str) -> str:
        body = (await self._answers.decode(kit_id, stored))["body"]
        if not isinstance(body, str):
            raise ValueError("stored payload is not text")
        return body
