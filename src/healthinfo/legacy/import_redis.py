"""Import the old system's Redis entries as version 1 of each kit's health information.

Assumed old format (override with the options): one Redis *string* per kit, under a key such
as ``health-info:<kitId>``, holding a JSON object ``{"answers": {...}, "userId": "...", ...}``.
``answers_field`` names the member holding the answers (empty: the whole object is the
answers), ``owner_field`` the member naming the user who owned the kit (optional), and
``kit_id_pattern`` a regular expression with a ``kit`` group that takes the kit id from the key.

Every entry goes through the same service as any write: validated against the questionnaire,
audited (channel ``cli``, actor ``legacy-import``), create-only (``If-None-Match: *``) so a kit
that already has data here is skipped, never overwritten, even if its user writes during the
import. Re-running is therefore harmless. The old ``submitted`` flag is not trusted: imported
data is ``in-progress`` and the user submits it again (re-forwarding to the lab is the lab's
call, not ours). Reasons in the report never contain answer values.

An imported kit whose entry names no owner (and that nobody here owns yet) is ownerless and
holds answers, so it cannot be claimed by naming it: the import hands out one one-time claim
code per such kit, in the report (``claimCodes``) and nowhere else (never in a log), for
whoever tells the kit's user. See docs/legacy-import.md.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from healthinfo.auth.actor import ADMIN, Actor
from healthinfo.common.clock import to_rfc3339
from healthinfo.common.context import Channel, RequestContext
from healthinfo.crypto.keystore import DataKey, KeyStore
from healthinfo.errors import DomainError, KitAlreadyClaimed, ValidationFailed, VersionConflict
from healthinfo.kits.claim_codes import IssuedCode
from healthinfo.services import Services

IMPORT_ACTOR = Actor("legacy-import", frozenset({ADMIN}))
KIT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ImportOptions:
    pattern: str = "health-info:*"
    kit_id_pattern: str = r"^.*:(?P<kit>[^:]+)$"
    answers_field: str = "answers"
    owner_field: str | None = "userId"
    dry_run: bool = False
    # Imported kits are bound to the newest active version of it that accepts their answers
    # (None: HEALTHINFO_DEFAULT_QUESTIONNAIRE).
    questionnaire_id: str | None = None


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    claim_codes: list[IssuedCode] = field(default_factory=list)

    def as_dict(self, *, with_claim_codes: bool = True) -> dict[str, Any]:
        report: dict[str, Any] = {
            "imported": len(self.imported),
            "skipped": len(self.skipped),
            "invalid": len(self.invalid),
            "skippedKeys": [{"key": k, "reason": r} for k, r in self.skipped],
            "invalidKeys": [{"key": k, "reason": r} for k, r in self.invalid],
        }
        if with_claim_codes:
            report["claimCodes"] = self.claim_codes_as_list()
        return report

    def claim_codes_as_list(self) -> list[dict[str, str]]:
        return [
            {"kitId": c.kit_id, "claimCode": c.code, "expiresAt": to_rfc3339(c.expires_at)}
            for c in self.claim_codes
        ]


@dataclass(frozen=True, slots=True)
class LegacyEntry:
    key: str
    kit_id: str
    answers: dict[str, Any]
    owner: str | None


class InvalidEntry(Exception):
    """An old entry we cannot import; the message says why, without any value."""


class LegacyImporter:
    def __init__(self, services: Services, options: ImportOptions) -> None:
        self._svc = services
        self._options = options
        self._kit_pattern = re.compile(options.kit_id_pattern)

    async def run(self, redis_url: str) -> ImportReport:
        report = ImportReport()
        client = aioredis.Redis.from_url(redis_url, socket_timeout=10)
        try:
            async for key, raw in _entries(client, self._options.pattern):
                await self._import_one(key, raw, report)
        finally:
            await client.aclose()
        return report

    async def _import_one(self, key: str, raw: bytes | None, report: ImportReport) -> None:
        try:
            entry = self.parse(key, raw)
        except InvalidEntry as exc:
            report.invalid.append((key, str(exc)))
            return
        try:
            if self._options.dry_run:
                await self._check(entry)
            else:
                issued = await self._write(entry)
                if issued is not None:
                    report.claim_codes.append(issued)
        except VersionConflict:
            report.skipped.append((key, "the kit already has data in this service"))
        except ValidationFailed as exc:
            fields = ", ".join(f"{e.field} {e.message}" for e in exc.errors)
            report.invalid.append((key, f"answers do not fit the questionnaire: {fields}"))
        except DomainError as exc:
            report.invalid.append((key, exc.code))
        else:
            report.imported.append(entry.kit_id)

    def parse(self, key: str, raw: bytes | None) -> LegacyEntry:
        match = self._kit_pattern.match(key)
        if match is None or not KIT_ID.fullmatch(match.group("kit")):
            raise InvalidEntry("no valid kit id in the key")
        if raw is None:
            raise InvalidEntry("not a string value (hash, list or set)")
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidEntry("not JSON") from None
        if not isinstance(document, dict):
            raise InvalidEntry("not a JSON object")
        answers = (
            document.get(self._options.answers_field) if self._options.answers_field else document
        )
        if not isinstance(answers, dict):
            raise InvalidEntry(f"no object under {self._options.answers_field!r}")
        owner = document.get(self._options.owner_field) if self._options.owner_field else None
        if owner is not None and (not isinstance(owner, str) or not 0 < len(owner) <= 255):
            raise InvalidEntry(f"{self._options.owner_field!r} is not a user id")
        return LegacyEntry(key, match.group("kit"), answers, owner)

    async def _write(self, entry: LegacyEntry) -> IssuedCode | None:
        """Import the entry; returns the kit's claim code when it is left without an owner."""
        ctx = RequestContext(
            IMPORT_ACTOR, Channel.CLI, request_id=f"legacy-import:{entry.key}"[:128]
        )

        async def operation(uow: Any) -> IssuedCode | None:
            await self._replace(uow, ctx, entry)
            kits = self._svc.kits
            if entry.owner is not None:
                await kits.assign_owner_if_unclaimed(uow, ctx, entry.kit_id, entry.owner)
                return None
            try:
                return await kits.issue_claim_code(uow, ctx, entry.kit_id)
            except KitAlreadyClaimed:  # its user claimed it here before the import: theirs
                return None

        return await self._svc.writes.run(
            ctx, action="health-information.import", kit_id=entry.kit_id, operation=operation
        )

    async def _check(self, entry: LegacyEntry) -> None:
        """Dry run: the same checks in a transaction that is rolled back."""
        ctx = RequestContext(IMPORT_ACTOR, Channel.CLI, request_id="legacy-import:dry-run")
        try:
            async with self._svc.uows.write() as uow:
                await self._replace(uow, ctx, entry)
                raise _RollBack
        except _RollBack:
            return

    async def _replace(self, uow: Any, ctx: RequestContext, entry: LegacyEntry) -> None:
        """Create the kit's version 1, bound to the questionnaire version its answers match."""
        hi = self._svc.health_information
        questionnaire_id = self._options.questionnaire_id or self._svc.questionnaires.default_id
        choice = await hi.matching_version(uow, questionnaire_id, entry.answers)
        await hi.replace(
            uow, ctx, entry.kit_id, entry.answers, if_none_match="*", questionnaire=choice
        )


class _RollBack(Exception):
    pass


class DryRunKeyStore(KeyStore):
    """A dry run's key store: reads the real keys, creates none.

    Checking an entry encrypts its answers like a real write, and a kit without a data key
    would get one, committed in the key store's own transaction even though the data's rolls
    back. Here such a kit gets a key that lives in memory for the run only: the ciphertext it
    makes is rolled back with the rest, so no key is ever needed to read it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_memory: dict[str, DataKey] = {}

    async def current(self, kit_id: str) -> DataKey:
        key = self._in_memory.get(kit_id)
        if key is None:
            key = DataKey(kit_id, str(uuid.uuid4()), AESGCM.generate_key(bit_length=256))
            self._in_memory[kit_id] = key
        return key

    async def by_id(self, kit_id: str, key_id: str) -> DataKey:
        key = self._in_memory.get(kit_id)
        if key is not None and key.key_id == key_id:
            return key
        return await super().by_id(kit_id, key_id)

    async def destroy(self, kit_id: str) -> bool:
        raise RuntimeError("a dry run destroys no key")

    async def rewrap(self) -> int:
        raise RuntimeError("a dry run re-wraps no key")


async def _entries(client: aioredis.Redis, pattern: str) -> AsyncIterator[tuple[str, bytes | None]]:
    async for key in client.scan_iter(match=pattern, count=500):
        name = key.decode() if isinstance(key, bytes) else str(key)
        kind = await client.type(key)
        kind_name = kind.decode() if isinstance(kind, bytes) else str(kind)
        value = await client.get(key) if kind_name == "string" else None
        yield name, value if isinstance(value, bytes) else None
