"""How answers become stored text: the one seam where encryption at rest plugs in.

Repositories encode every answers document (current state, revisions) through an
``AnswerCodec``; the kit id travels along so an encrypting codec can bind ciphertext to its
kit as associated data and use per-kit keys. The services never see stored text.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

Answers = dict[str, Any]


class AnswerCodec(Protocol):
    def encode(self, kit_id: str, answers: Answers) -> str: ...

    def decode(self, kit_id: str, stored: str) -> Answers: ...


class JsonAnswerCodec:
    """Plain JSON with sorted keys (stable bytes, so equal answers store equal text)."""

    def encode(self, kit_id: str, answers: Answers) -> str:
        return json.dumps(answers, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def decode(self, kit_id: str, stored: str) -> Answers:
        decoded = json.loads(stored)
        if not isinstance(decoded, dict):
            raise ValueError("stored answers are not an object")
        return decoded
