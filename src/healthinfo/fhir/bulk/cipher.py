"""Export output at rest: each page compressed, then sealed with the job's own data key.

The key lives in the key store like a kit's (named ``export:<job id>``), so destroying it when
the job is cancelled or expires crypto-shreds every copy of the output, backups included.
AES-256-GCM with the job id, the page number and the key id as associated data: a page copied
to another job or position fails to decrypt. Stored form: ``<key id>:<base64(nonce|sealed)>``.
"""

from __future__ import annotations

import base64
import json
import os
import zlib

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from healthinfo.crypto.keystore import KeyStore

NONCE_BYTES = 12
KEY_PREFIX = "export:"


def key_name(job_id: str) -> str:
    return KEY_PREFIX + job_id


class PartCipher:
    def __init__(self, keystore: KeyStore) -> None:
        self._keystore = keystore

    async def seal(self, job_id: str, seq: int, plain: bytes) -> str:
        key = await self._keystore.current(key_name(job_id))
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key.key).encrypt(
            nonce, zlib.compress(plain, 1), _aad(job_id, seq, key.key_id)
        )
        return f"{key.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    async def open(self, job_id: str, seq: int, stored: str) -> bytes:
        """Raises ``KeyDestroyed`` once the job's key is gone (cancelled or expired)."""
        key_id, _, payload = stored.partition(":")
        key = await self._keystore.by_id(key_name(job_id), key_id)
        raw = base64.b64decode(payload)
        plain = AESGCM(key.key).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(job_id, seq, key_id)
        )
        return zlib.decompress(plain)

    async def destroy(self, job_id: str) -> None:
        await self._keystore.destroy(key_name(job_id))


def _aad(job_id: str, seq: int, key_id: str) -> bytes:
    return json.dumps([job_id, seq, key_id]).encode()
