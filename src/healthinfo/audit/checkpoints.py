"""Signed checkpoints of the audit chain heads, written outside the database.

The keyed links stop someone with only the database from altering or inserting events, but
not from deleting a kit's newest events and rewinding its head to match: what is left is a
valid, shorter chain. A checkpoint pins heads where the database cannot reach: one file per
checkpoint in ``HEALTHINFO_AUDIT_CHECKPOINT_DIR``, ``000000000042.json``::

    {"header": {...}, "signature": "<hex HMAC>", "heads": [["KIT-1", 7, "<hash>"], ...]}

``heads`` holds only the kits whose chain changed since the checkpoint before the previous one
(found through the audit events' primary key, ``id > scanFrom``), sorted by kit id; the header
holds their Merkle root, its number, the hash of the previous checkpoint's header (so the files
form a chain of their own: a missing or replaced file shows), the newest event id it covered
(``watermark``) and ``legacyUpTo``, the newest unkeyed event id when the first checkpoint was
made. The header is signed with the active audit key (HMAC-SHA256, its id in ``keyId``).

Why HMAC and not Ed25519: the adversary is an insider with the database but neither the audit
key nor the checkpoint storage; the same rotatable key ring then serves links and checkpoints
and nothing new must be provisioned. Ed25519 would let a third party verify without being able
to sign; that is the reason to switch (a new ``format``), not needed for this threat model.

Scanning from the checkpoint *before* the previous one, not the previous one, catches appends
whose ids were allocated before the previous checkpoint but committed after it (ids are taken
at insert, commits land in any order): any append whose transaction is shorter than one
interval is pinned. Writers are made harmless rather than excluded: on PostgreSQL a
transaction-scoped advisory lock lets one instance write at a time, and every writer publishes
with an exclusive link (``os.link``), so two writers can never both publish number N.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, select

from healthinfo.audit.chain import HEADS, Pin, Pins
from healthinfo.audit.keys import AuditKeyring
from healthinfo.common.tasks import stop_tasks
from healthinfo.common.uow import UnitOfWork, UnitOfWorkFactory
from healthinfo.db.models import AuditEvent

logger = logging.getLogger(__name__)

FORMAT = "healthinfo-audit-checkpoint/1"
SIGNED_PREFIX = FORMAT.encode() + b"\n"
FILE_NAME = re.compile(r"^(\d{12})\.json$")
# pg_try_advisory_xact_lock key: one checkpoint writer at a time across instances.
ADVISORY_LOCK_KEY = 0x6865_616C_7468_4175  # "healthAu"
EVENTS = cast(Table, AuditEvent.__table__)

Head = tuple[str, int, str]  # kit id, chain length (seq of the newest event), newest hash


class CheckpointError(Exception):
    """A checkpoint file is missing, unsigned, forged or out of order."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    header: dict[str, Any]
    signature: str
    heads: list[Head]

    @property
    def number(self) -> int:
        return int(self.header["number"])

    @property
    def digest(self) -> str:
        """What the next checkpoint's ``previous`` names: the hash of this signed header."""
        return hashlib.sha256(_canonical(self.header) + self.signature.encode()).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def merkle_root(heads: list[Head]) -> str:
    """Root of a binary Merkle tree over the heads (leaf and node hashes domain-separated), so
    one kit's head can be shown to be in a checkpoint with log2(n) hashes, not the file."""
    level = [hashlib.sha256(b"\x00" + _canonical(list(head))).digest() for head in heads]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


class CheckpointStore:
    """The checkpoint files of one directory (or a mounted object store path)."""

    def __init__(self, directory: Path, keys: AuditKeyring) -> None:
        self.directory = directory
        self._keys = keys

    def numbers(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (FILE_NAME.match(path.name) for path in self.directory.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def path(self, number: int) -> Path:
        return self.directory / f"{number:012d}.json"

    def read(self, number: int) -> Checkpoint:
        """The checkpoint, its signature and Merkle root checked."""
        try:
            document = json.loads(self.path(number).read_text(encoding="utf-8"))
            header = dict(document["header"])
            signature = str(document["signature"])
            heads: list[Head] = [(str(k), int(s), str(h)) for k, s, h in document["heads"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {number} is unreadable ({exc})") from None
        checkpoint = Checkpoint(header, signature, heads)
        key_id = str(header.get("keyId"))
        if header.get("format") != FORMAT or header.get("number") != number:
            raise CheckpointError(f"checkpoint {number} has a wrong format or number")
        if not self._keys.has(key_id):
            raise CheckpointError(f"checkpoint {number} is signed with unknown key {key_id!r}")
        if not self._keys.matches(key_id, SIGNED_PREFIX + _canonical(header), signature):
            raise CheckpointError(f"checkpoint {number} has a bad signature")
        if header.get("merkleRoot") != merkle_root(heads) or header.get("count") != len(heads):
            raise CheckpointError(f"checkpoint {number} does not match its signed Merkle root")
        return checkpoint

    def newest(self) -> Checkpoint | None:
        numbers = self.numbers()
        return self.read(numbers[-1]) if numbers else None

    def all(self) -> Iterator[Checkpoint]:
        """Oldest first, one file in memory at a time, each chained to the one before."""
        previous: Checkpoint | None = None
        for number in self.numbers():
            checkpoint = self.read(number)
            if previous is not None:
                if number != previous.number + 1:
                    raise CheckpointError(f"checkpoint {previous.number + 1} is missing")
                if checkpoint.header.get("previous") != previous.digest:
                    raise CheckpointError(f"checkpoint {number} does not follow {previous.number}")
            yield checkpoint
            previous = checkpoint

    def pins(self, kit_id: str | None = None) -> tuple[Pins, int | None]:
        """Each kit's longest pinned head (the first checkpoint that saw it wins a tie: a later
        one that disagrees was made after tampering), and the newest checkpoint's number."""
        heads: dict[str, Pin] = {}
        legacy_up_to: int | None = None
        newest: int | None = None
        for checkpoint in self.all():
            newest = checkpoint.number
            legacy_up_to = int(checkpoint.header["legacyUpTo"])
            for kit, seq, digest in checkpoint.heads:
                if kit_id is not None and kit != kit_id:
                    continue
                known = heads.get(kit)
                if known is None or seq > known.seq:
                    heads[kit] = Pin(seq, digest, checkpoint.number)
        return Pins(heads, legacy_up_to), newest

    def publish(self, header: dict[str, Any], heads: list[Head]) -> Checkpoint | None:
        """Sign and write checkpoint ``header["number"]``; None if another writer had it."""
        key_id = self._keys.active_id
        header = {**header, "format": FORMAT, "keyId": key_id}
        header["merkleRoot"], header["count"] = merkle_root(heads), len(heads)
        signature = self._keys.mac(key_id, SIGNED_PREFIX + _canonical(header))
        checkpoint = Checkpoint(header, signature, heads)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.path(checkpoint.number)
        temporary = self.directory / f".{final.name}.{uuid.uuid4().hex}.tmp"
        body = {"header": header, "signature": signature, "heads": [list(h) for h in heads]}
        try:
            with temporary.open("wb") as handle:
                handle.write(_canonical(body) + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, final)  # exclusive: fails if number N exists already
        except FileExistsError:
            return None
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return checkpoint


async def make_checkpoint(
    uows: UnitOfWorkFactory, store: CheckpointStore, *, force: bool = True
) -> Checkpoint | None:
    """Pin the heads changed since the checkpoint before the newest; None when another
    instance is writing one, or (``force=False``) when nothing changed since the newest."""
    async with uows.read() as uow:
        if not await _writer_lock(uow):
            return None
        previous = store.newest()
        watermark = int(await uow.session.scalar(select(func.max(EVENTS.c.id))) or 0)
        scan_from = int(previous.header["priorWatermark"]) if previous else 0
        heads = await _changed_heads(uow, scan_from)
        if previous is not None and not force and _already_pinned(previous, watermark, heads):
            return None
        legacy = previous.header["legacyUpTo"] if previous else await _newest_unkeyed(uow)
    header = {
        "number": previous.number + 1 if previous else 1,
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "previous": previous.digest if previous else None,
        "watermark": watermark,
        "priorWatermark": int(previous.header["watermark"]) if previous else 0,
        "scanFrom": scan_from,
        "legacyUpTo": int(legacy),
    }
    return store.publish(header, heads)


async def _writer_lock(uow: UnitOfWork) -> bool:
    """PostgreSQL: one writer at a time (released with the transaction). SQLite: one host."""
    if uow.session.get_bind().dialect.name != "postgresql":
        return True
    locked = await uow.session.scalar(select(func.pg_try_advisory_xact_lock(ADVISORY_LOCK_KEY)))
    return bool(locked)


async def _changed_heads(uow: UnitOfWork, scan_from: int) -> list[Head]:
    changed = select(EVENTS.c.kit_id).where(EVENTS.c.id > scan_from)
    query = (
        select(HEADS.c.kit_id, HEADS.c.length, HEADS.c.last_hash)
        .where(HEADS.c.kit_id.in_(changed), HEADS.c.length > 0)
        .order_by(HEADS.c.kit_id)
    )
    return [(row.kit_id, row.length, row.last_hash) for row in await uow.session.execute(query)]


async def _newest_unkeyed(uow: UnitOfWork) -> int:
    """Once, for the first checkpoint: unkeyed events newer than this are forgeries."""
    query = select(func.max(EVENTS.c.id)).where(EVENTS.c.key_id.is_(None))
    return int(await uow.session.scalar(query) or 0)


def _already_pinned(previous: Checkpoint, watermark: int, heads: list[Head]) -> bool:
    return watermark == int(previous.header["watermark"]) and set(heads) <= set(previous.heads)


class AuditCheckpointer:
    """A Lifecycle that makes a checkpoint at least every interval, and one when it stops."""

    def __init__(
        self, uows: UnitOfWorkFactory, store: CheckpointStore, *, interval_seconds: float
    ) -> None:
        self._uows = uows
        self._store = store
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await stop_tasks([self._task])
        await self._checkpoint()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        try:
            made = await make_checkpoint(self._uows, self._store, force=False)
        except Exception:
            logger.warning("audit.checkpoint_failed", exc_info=True)
        else:
            if made is not None:
                logger.info(
                    "audit.checkpoint", extra={"number": made.number, "heads": len(made.heads)}
                )
