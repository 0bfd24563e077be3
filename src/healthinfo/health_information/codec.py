"""How answers become stored text: the one seam where encryption at rest plugs in.

Repositories, the cache and the forwarding outbox encode every answers document through an
``AnswerCodec``; the kit id travels along so an encrypting codec can use the kit's own data
key and bind the ciphertext to the kit. Async, because finding a kit's key is I/O.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

Answers = dict[str, Any]


class AnswerCodec(Protocol):
    async def encode(self, kit_id: str, answers: Answers) -> str: ...

    async def decode(self, kit_id: str, stored: str) -> Answers: ...


class JsonAnswerCodec:
    """Plain JSON with sorted keys: for tests of pure logic, never for stored data."""

    encrypted = False

    async def encode(self, kit_id: str, answers: Answers) -> str:
        return json.dumps(answers, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    async def decode(self, kit_id: str, stored: str) -> Answers:
        decoded = json.loads(stored)
        if not isinstance(decoded, dict):
            raise ValueError("stored answers are not an object")
        return decoded
