"""Amendment reasons under the kit's data key: readable while the kit's data is, never after.

A reason is free text an admin typed about a patient's answers ("the lab phoned: the height
was mistyped"), so it is health data too. It is stored through the answer codec, AES-GCM with
the kit's data key and the kit id as associated data, like the answers: a database dump, an
export of the table or a backup shows only ciphertext, and an erasure, which destroys the
kit's key, shreds every reason along with the answers. The audit trail keeps the event (who
amended what, when); after the erasure its reason reads as erased.
"""

from __future__ import annotations

from dataclasses import dataclass

from healthinfo.crypto.keystore import KeyDestroyed
from healthinfo.health_information.codec import AnswerCodec

SEALED_PREFIX = "enc1:"
_FIELD = "reason"


@dataclass(frozen=True, slots=True)
class RevealedReason:
    text: str | None
    erased: bool = False


NO_REASON = RevealedReason(None)
ERASED = RevealedReason(None, erased=True)


class ReasonCodec:
    def __init__(self, codec: AnswerCodec) -> None:
        self._codec = codec

    async def seal(self, kit_id: str, reason: str) -> str:
        return await self._codec.encode(kit_id, {_FIELD: reason})

    async def reveal(self, kit_id: str, stored: str | None) -> RevealedReason:
        """The reason, or ``ERASED`` when the kit's key is gone (the kit was erased since)."""
        if stored is None:
            return NO_REASON
        if not stored.startswith(SEALED_PREFIX):
            return RevealedReason(stored)  # written before reasons were sealed (pre-migration)
        try:
            text = (await self._codec.decode(kit_id, stored))[_FIELD]
        except KeyDestroyed:
            return ERASED
        return RevealedReason(text if isinstance(text, str) else None)
