"""Whether a streaming replica may answer a read about one kit: the decision, without I/O.

A replica replays the primary's WAL in commit order, late by its replication lag. Whether that
lag matters *for one read* is decided per kit, by comparing what the replica shows of the kit
with the newest state of the kit known to be committed:

* ``audit_length``: every change to a kit (answers, claim, members, erasure, amendment) appends
  an event to the kit's audit hash chain in the change's own transaction, and the chain's length
  grows by one under a per-kit lock. A replica showing a chain at least that long has replayed
  every change up to it. This process notes the length each of its changes committed
  (``ChangeRecord``).
* ``answers``: the answers' creation time and version held by the shared cache, which every
  instance writes through after its commits: changes made anywhere, while Redis holds them.
  The creation time tells an erased and saved-again kit (version 1 again) from the old one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

DEFAULT_TRACKED_KITS = 50_000


@dataclass(frozen=True, slots=True)
class AnswersMark:
    """Which incarnation of a kit's answers (its creation time), at which version."""

    created_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class KitMark:
    """What one database shows of a kit: 0 and None for a kit it has never seen."""

    audit_length: int
    answers: AnswersMark | None


@dataclass(frozen=True, slots=True)
class Requirement:
    """The newest state of a kit known to be committed; None where nothing is known."""

    audit_length: int | None = None
    answers: AnswersMark | None = None


def is_fresh(replica: KitMark, required: Requirement) -> bool:
    """Whether ``replica`` shows the kit at least as new as ``required``.

    Conservative where it cannot tell: other answers than the known ones (erased, or erased and
    saved again, or a stale cache entry) count as behind, so the read goes to the primary.
    """
    if required.audit_length is not None and replica.audit_length < required.audit_length:
        return False
    wanted, shown = required.answers, replica.answers
    if wanted is None:
        return True
    return (
        shown is not None
        and shown.created_at == wanted.created_at
        and shown.version >= wanted.version
    )


class ChangeRecord:
    """The kits this process changed, least recently changed first, bounded in size.

    Each with the audit chain length its newest change committed. Beyond ``max_kits`` the
    least recently changed kit is forgotten: its last change is then tens of thousands of
    changes old, while replicas lag by milliseconds to seconds.
    """

    def __init__(self, max_kits: int = DEFAULT_TRACKED_KITS) -> None:
        self._max_kits = max_kits
        self._kits: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kits)

    def changed(self, kit_id: str, audit_length: int) -> None:
        """Note a committed change; concurrent changes may be noted out of order: keep the max."""
        self._kits[kit_id] = max(audit_length, self._kits.get(kit_id, 0))
        self._kits.move_to_end(kit_id)
        while len(self._kits) > self._max_kits:
            self._kits.popitem(last=False)

    def known(self, kit_id: str) -> int | None:
        return self._kits.get(kit_id)
