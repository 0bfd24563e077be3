"""The health information service: every rule for reading and changing a kit's answers.

REST, SSE and WebSocket call these methods and nothing else, so validation, locking,
immutability, access and audit hold identically on every channel. Methods take the caller's
``UnitOfWork`` and never commit.

A write is optimistic: read the current state, compute the new answers, then one conditional
``UPDATE … WHERE version = :seen`` (or an insert-if-absent for the first save) whose row count
decides. A writer that lost the race re-reads and tries again (last-writer-wins and
``baseVersion`` writes) or gets 412 (``If-Match``): two writes are never both acknowledged
against the same version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from healthinfo.audit import chain
from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.auth.access import Permission, reads_final_only
from healthinfo.auth.actor import Actor
from healthinfo.common.audit_actions import READ as READ  # re-exported: the action is ours
from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.context import RequestContext
from healthinfo.common.flags import OFF, ON, Rollout
from healthinfo.common.pagination import Page, decode_cursor, encode_cursor
from healthinfo.common.uow import UnitOfWork
from healthinfo.errors import (
    AlreadySubmitted,
    FieldError,
    Forbidden,
    NotFound,
    NotSubmitted,
    PreconditionRequired,
    QuestionnaireMismatch,
    Unavailable,
    ValidationFailed,
    VersionConflict,
)
from healthinfo.health_information.cache import HealthInformationCache
from healthinfo.health_information.merge import (
    apply_merge_patch,
    bump_field_versions,
    changed_ids,
    desired_from_replacement,
    rebase,
    without_nulls,
)
from healthinfo.health_information.model import (
    Answers,
    HealthInformationState,
    RevisionSummary,
    Status,
    WriteResult,
)
from healthinfo.health_information.preconditions import if_match_satisfied, if_none_match_hits
from healthinfo.health_information.repository import HealthInformationRepository
from healthinfo.health_information.search import SearchPage, SearchQuery
from healthinfo.kits.service import ClaimResult, KitService
from healthinfo.questionnaires.model import Questionnaire
from healthinfo.questionnaires.store import RETIRED, QuestionnaireStore
from healthinfo.questionnaires.validation import (
    missing_required,
    remove_disabled,
    validate_answers,
)

SAVE = "health-information.save"
SUBMIT = "health-information.submit"
AMEND = "health-information.amend"
ERASE = "health-information.erase"
MOVE = "health-information.move-questionnaire"
UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class ServiceFlags:
    """Feature flags the service consults per kit (see common/flags.py)."""

    strict_preconditions: Rollout = OFF
    audit_reads: Rollout = OFF
    amendments: Rollout = ON


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A committed change, for whoever follows the kit live (cache, event bus)."""

    state: HealthInformationState
    changed: list[str]
    channel: str
    submitted: bool
    request_id: str | None = None
    stored_answers: str | None = None  # the answers as the write stored them (encrypted)


class ChangeListener(Protocol):
    """Runs after the commit (cache, live events): best effort, the write is already durable."""

    async def __call__(self, event: ChangeEvent) -> None: ...


class TransactionalListener(Protocol):
    """Runs inside the write's transaction (the outbox): commits or rolls back with it."""

    async def __call__(self, uow: UnitOfWork, event: ChangeEvent) -> None: ...


ErasureHook = Callable[[UnitOfWork, str], Awaitable[None]]


async def _forget(cache: HealthInformationCache, kit_id: str) -> None:
    await cache.forget(kit_id)


@dataclass(frozen=True, slots=True)
class QuestionnaireChoice:
    """What a first write (or a claim) may name: an id, and a version or the newest active."""

    id: str
    version: str | None = None


# Computes the new answers from the current state (None before the first save).
Planner = Callable[[HealthInformationState | None], Awaitable[Answers]]


class HealthInformationService:
    def __init__(
        self,
        *,
        kits: KitService,
        repository: HealthInformationRepository,
        questionnaires: QuestionnaireStore,
        audit: AuditLog,
        flags: ServiceFlags | None = None,
        max_answers: int = 200,
        retry_attempts: int = 50,
        cache: HealthInformationCache | None = None,
        listeners: Sequence[ChangeListener] = (),
        transactional_listeners: Sequence[TransactionalListener] = (),
        clock: Clock = utc_now,
    ) -> None:
        self._kits = kits
        self._repo = repository
        self._questionnaires = questionnaires
        self._audit = audit
        self._flags = flags or ServiceFlags()
        self._max_answers = max_answers
        self._attempts = retry_attempts
        self._cache = cache
        self._listeners = [(listener, True) for listener in listeners]
        self._transactional_listeners = list(transactional_listeners)
        self._erasure_hooks: list[ErasureHook] = []
        self._clock = clock

    @property
    def repository(self) -> HealthInformationRepository:
        return self._repo

    def add_listener(self, listener: ChangeListener, *, background: bool = True) -> None:
        """``background``: run after the response (``_notify_after_commit``); False: after the
        commit but before the client hears of it (a guarantee depends on it having run)."""
        self._listeners.append((listener, background))

    def add_transactional_listener(self, listener: TransactionalListener) -> None:
        self._transactional_listeners.append(listener)

    # -- reads ---------------------------------------------------------------------------

    async def get(self, uow: UnitOfWork, actor: Actor, kit_id: str) -> HealthInformationState:
        """Cache first, but only an entry at the version the database reports right now."""
        access = await self._kits.authorize(uow, actor, kit_id, Permission.READ)
        if access.version is None or access.data_created_at is None:
            raise NotFound(f"Nothing is saved for kit {kit_id!r} yet.")
        if self._cache is not None:
            cached = await self._cache.lookup(
                kit_id, version=access.version, created_at=access.data_created_at
            )
            if cached is not None:
                return cached
        state = await self._existing(uow, kit_id)
        if self._cache is not None:
            await self._cache.remember(state)
        return state

    async def search(
        self, uow: UnitOfWork, actor: Actor, query: SearchQuery, *, after: str | None, limit: int
    ) -> SearchPage:
        """The saved health information of the kits ``actor`` may read that match ``query``.

        Access is the kit service's rule for many kits at once (``scope_clause``), so a kit a
        single read would refuse with 404 never shows here. Auditing what is disclosed is the
        caller's (``disclosure.search_and_disclose``), as for single reads.
        """
        access = self._kits.scope_clause(actor, Permission.READ)
        rows = await self._repo.search(uow, query, access=access, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [state for _, state in rows if state is not None]
        return SearchPage(items, rows[-1][0] if more and rows else None)

    async def warm(self, uow: UnitOfWork, kit_id: str) -> None:
        """Fill the cache ahead of reads (a subscriber joined, or the kit was recently active)."""
        if self._cache is None:
            return
        state = await self._repo.get(uow, kit_id)
        if state is not None:
            await self._cache.remember(state)

    async def get_version(
        self, uow: UnitOfWork, actor: Actor, kit_id: str, version: int
    ) -> HealthInformationState:
        access = await self._kits.authorize(uow, actor, kit_id, Permission.READ)
        current = await self._existing(uow, kit_id)
        revision = await self._repo.get_revision(
            uow, kit_id, version, created_at=current.created_at
        )
        if revision is None or (reads_final_only(access.roles) and not revision.status.is_final):
            # A researcher reads submitted data only: an earlier draft does not exist for them.
            raise NotFound(f"Kit {kit_id!r} has no version {version}.")
        return dataclasses.replace(
            revision,
            questionnaire_id=current.questionnaire_id,
            questionnaire_version=current.questionnaire_version,
        )

    async def history(
        self, uow: UnitOfWork, actor: Actor, kit_id: str, *, limit: int, cursor: str | None
    ) -> Page[RevisionSummary]:
        await self._kits.authorize(uow, actor, kit_id, Permission.READ)
        await self._existing(uow, kit_id)
        before = decode_cursor(cursor) if cursor else None
        items = await self._repo.list_revisions(uow, kit_id, limit=limit + 1, before_version=before)
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].version) if more and items else None)

    async def revisions_after(
        self, uow: UnitOfWork, actor: Actor, kit_id: str, version: int
    ) -> list[HealthInformationState]:
        """Every version after ``version``, oldest first: what a reconnecting stream missed.

        One authorization and one query, however many versions were missed.
        """
        access = await self._kits.authorize(uow, actor, kit_id, Permission.READ)
        current = await self._existing(uow, kit_id)
        revisions = await self._repo.revisions_after(
            uow, kit_id, version, created_at=current.created_at
        )
        if reads_final_only(access.roles):
            revisions = [revision for revision in revisions if revision.status.is_final]
        return [
            dataclasses.replace(
                revision,
                questionnaire_id=current.questionnaire_id,
                questionnaire_version=current.questionnaire_version,
            )
            for revision in revisions
        ]

    async def changes_after(
        self, uow: UnitOfWork, actor: Actor, kit_id: str, version: int
    ) -> list[ChangeEvent]:
        """Every committed change after ``version``, oldest first, as live streams replay it.

        The same events the after-commit listeners saw (who, which channel, which questions),
        rebuilt from the revision history: resume after a reconnect is served from here.
        """
        states = await self.revisions_after(uow, actor, kit_id, version)
        if not states:
            return []
        summaries = {
            summary.version: summary
            for summary in await self._repo.list_revisions(
                uow, kit_id, limit=len(states), before_version=states[-1].version + 1
            )
        }
        changes = []
        for state in states:
            summary = summaries.get(state.version)
            if summary is None:  # erased meanwhile: nothing more to replay
                break
            submitted = summary.status is Status.SUBMITTED
            changes.append(ChangeEvent(state, list(summary.changed), summary.channel, submitted))
        return changes

    # -- writes --------------------------------------------------------------------------

    async def replace(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        kit_id: str,
        answers: Mapping[str, Any],
        *,
        submit: bool = False,
        if_match: str | None = None,
        if_none_match: str | None = None,
        base_version: int | None = None,
        questionnaire: QuestionnaireChoice | None = None,
    ) -> WriteResult:
        """PUT: the answers become exactly ``answers`` (rebased when ``base_version`` is given).

        ``if_none_match="*"`` makes it create-only: 412 when anything is saved already.
        """
        replacement = without_nulls(answers)

        async def plan(current: HealthInformationState | None) -> Answers:
            if base_version is None or current is None:
                return replacement
            base = await self._base_answers(uow, kit_id, base_version)
            return rebase(
                current.answers,
                current.field_versions,
                base_version=base_version,
                current_version=current.version,
                desired=desired_from_replacement(base, replacement),
            )

        return await self._write(
            uow,
            ctx,
            kit_id,
            plan,
            incoming=replacement,
            submit=submit,
            if_match=if_match,
            if_none_match=if_none_match,
            base_version=base_version,
            questionnaire=questionnaire,
        )

    async def patch(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        kit_id: str,
        patch: Mapping[str, Any],
        *,
        if_match: str | None = None,
        base_version: int | None = None,
        questionnaire: QuestionnaireChoice | None = None,
    ) -> WriteResult:
        """PATCH: an RFC 7396 merge patch of the answers; ``null`` removes an answer."""

        async def plan(current: HealthInformationState | None) -> Answers:
            answers = current.answers if current else {}
            if base_version is None or current is None:
                return apply_merge_patch(answers, patch)
            return rebase(
                answers,
                current.field_versions,
                base_version=base_version,
                current_version=current.version,
                desired=patch,
            )

        return await self._write(
            uow,
            ctx,
            kit_id,
            plan,
            incoming=without_nulls(patch),
            removals=[key for key, value in patch.items() if value is None],
            if_match=if_match,
            base_version=base_version,
            questionnaire=questionnaire,
        )

    async def submit(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str, *, if_match: str | None = None
    ) -> WriteResult:
        """Submit what is saved: checks required answers, then the data is read-only."""

        async def plan(current: HealthInformationState | None) -> Answers:
            if current is None:
                raise NotFound(f"Nothing is saved for kit {kit_id!r} yet, so nothing to submit.")
            return current.answers

        return await self._write(
            uow, ctx, kit_id, plan, incoming={}, submit=True, if_match=if_match, base_version=None
        )

    async def amend(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        kit_id: str,
        patch: Mapping[str, Any],
        *,
        reason: str,
        if_match: str | None = None,
    ) -> WriteResult:
        """Correct submitted data (admin only): a new ``amended`` version, audited with a reason.

        The submitted version stays in the history untouched: amendments append, never rewrite.
        """
        await self._kits.authorize(uow, ctx.actor, kit_id, Permission.AMEND)
        if not self._flags.amendments.enabled_for("amendments", kit_id):
            raise Forbidden("Amendments are not enabled for this kit yet.")
        for _attempt in range(self._attempts):
            current = await self._existing(uow, kit_id)
            if not current.status.is_final:
                raise NotSubmitted()
            if if_match is not None and not if_match_satisfied(if_match, current.version):
                raise VersionConflict(current.version, if_match.strip())
            q = await self._bound(uow, kit_id, current, None)
            incoming = without_nulls(patch)
            self._validate(q, incoming, [k for k, v in patch.items() if v is None], None, current)
            answers = self._enabled_only(q, apply_merge_patch(current.answers, patch), incoming)
            changed = changed_ids(current.answers, answers)
            if not changed:
                return WriteResult(current, False, False, [], current.version)
            if missing := missing_required(q, answers):
                raise ValidationFailed(missing, "An amendment must keep every required answer.")
            state = dataclasses.replace(
                self._next_state(ctx, kit_id, current, answers, changed, q, submit=False),
                status=Status.AMENDED,
                submitted_at=current.submitted_at,
            )
            if await self._repo.update_if_version(uow, state, expected_version=current.version):
                await self._add_revision(uow, ctx, state, changed)
                await self._record(uow, ctx, current, state, changed, AMEND, reason=reason)
                return WriteResult(state, False, True, changed, current.version)
        raise Unavailable("The kit's answers are changing too quickly; try again.")

    async def move_questionnaire(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        kit_id: str,
        version: str,
        *,
        drop_invalid: bool = False,
    ) -> WriteResult:
        """Bind an in-progress kit to another version of its questionnaire, as a new version.

        Answers the target rejects (invalid, unknown or not enabled there) are a 422 listing
        them; with ``drop_invalid`` those answers are removed instead and listed in ``changed``.
        """
        await self._kits.authorize_write(uow, ctx, kit_id)
        for _attempt in range(self._attempts):
            current = await self._existing(uow, kit_id)
            self._check_writable(current, None, None)
            target = await self.choose(uow, QuestionnaireChoice(current.questionnaire_id, version))
            answers = dict(current.answers)
            rejected = validate_answers(target, answers)
            kept, disabled = remove_disabled(target, answers, written=list(answers))
            rejected += disabled
            if rejected and not drop_invalid:
                raise ValidationFailed(
                    sorted(rejected, key=lambda e: e.field),
                    "The new version rejects some answers; fix them or pass dropInvalid.",
                )
            kept = {
                key: value
                for key, value in answers.items()
                if not any(_is_about(error.field, key) for error in rejected)
            }
            kept, _ = remove_disabled(target, kept, written=())
            if (target.id, target.version) == (
                current.questionnaire_id,
                current.questionnaire_version,
            ):
                return WriteResult(current, False, False, [], current.version)
            changed = changed_ids(current.answers, kept)
            state = self._next_state(ctx, kit_id, current, kept, changed, target, submit=False)
            if await self._repo.update_if_version(uow, state, expected_version=current.version):
                await self._add_revision(uow, ctx, state, changed)
                await self._record(uow, ctx, current, state, changed, MOVE)
                return WriteResult(state, False, True, changed, current.version)
        raise Unavailable("The kit's answers are changing too quickly; try again.")

    async def erase(self, uow: UnitOfWork, ctx: RequestContext, kit_id: str) -> int:
        """Erase a kit's answers and their whole history; the audit trail keeps the erasure.

        Returns the version that was erased. The kit, its owner and members remain.
        """
        await self._kits.authorize(uow, ctx.actor, kit_id, Permission.ERASE)
        current = await self._existing(uow, kit_id)
        await self._repo.delete_all(uow, kit_id)
        entry = AuditEntry(
            action=ERASE, kit_id=kit_id, version_before=current.version, version_after=None
        )
        await self._audit.record(uow, ctx, entry)
        for hook in self._erasure_hooks:
            await hook(uow, kit_id)
        if self._cache is not None:
            cache = self._cache
            uow.after_commit(lambda: _forget(cache, kit_id))
        # Live connections of the kit end: what they were shown no longer exists.
        self._kits.access_changed(uow, kit_id, erased=True)
        return current.version

    async def record_read(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str, *, version: int | None
    ) -> None:
        """Audit a disclosure of health data (a read), when read auditing is on."""
        if self.audits_reads(kit_id):
            entry = AuditEntry(action=READ, kit_id=kit_id, version_after=version)
            await self._audit.record(uow, ctx, entry)

    def audits_reads(self, kit_id: str) -> bool:
        return self._flags.audit_reads.enabled_for("audit_reads", kit_id)

    def audits_reads_anywhere(self) -> bool:
        """Read auditing is on for some kits: a search over many may have to audit."""
        return self._flags.audit_reads.anywhere

    def add_erasure_hook(self, hook: ErasureHook) -> None:
        """Run inside the erasure's transaction (cancel pending forwarding, destroy keys)."""
        self._erasure_hooks.append(hook)

    async def _write(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        kit_id: str,
        plan: Planner,
        *,
        incoming: Answers,
        removals: Sequence[str] = (),
        submit: bool = False,
        if_match: str | None,
        if_none_match: str | None = None,
        base_version: int | None,
        questionnaire: QuestionnaireChoice | None = None,
    ) -> WriteResult:
        access = await self._kits.authorize_write(uow, ctx, kit_id)
        strict = self._flags.strict_preconditions.enabled_for("strict_preconditions", kit_id)
        if strict and if_match is None and base_version is None:
            raise PreconditionRequired()
        for attempt in range(self._attempts):
            if attempt == 0 and access.current_read:  # the access query read it already
                row = access.current_row
                current = None if row is None else await self._repo.from_row(kit_id, row)
            else:  # a concurrent writer won: the record as it is now
                current = await self._repo.get(uow, kit_id)
            self._check_writable(current, if_match, if_none_match)
            q = await self._bound(uow, kit_id, current, questionnaire)
            self._validate(q, incoming, removals, base_version, current)
            answers = self._enabled_only(q, await plan(current), incoming)
            result = await self._apply(uow, ctx, kit_id, current, answers, q, submit=submit)
            if result is not None:
                return result
        raise Unavailable("The kit's answers are changing too quickly; try again.")

    def _check_writable(
        self,
        current: HealthInformationState | None,
        if_match: str | None,
        if_none_match: str | None,
    ) -> None:
        """Immutability first: submitted data refuses even a write that changes nothing."""
        if current is not None and current.status.is_final:
            raise AlreadySubmitted()
        version = current.version if current else None
        if if_match is not None and not if_match_satisfied(if_match, version):
            raise VersionConflict(version, if_match.strip())
        if (
            if_none_match is not None
            and version is not None
            and if_none_match_hits(if_none_match, version)
        ):
            raise VersionConflict(version, f"If-None-Match {if_none_match.strip()}")

    async def _bound(
        self,
        uow: UnitOfWork,
        kit_id: str,
        current: HealthInformationState | None,
        choice: QuestionnaireChoice | None,
    ) -> Questionnaire:
        """The kit's questionnaire version; before its first save, the one it gets bound to
        (the claim's, or the one the write names, or the newest active default).

        After the first save this is an in-process cache hit: a version never changes.
        """
        if current is not None:
            if choice is not None and (
                choice.id != current.questionnaire_id
                or (choice.version is not None and choice.version != current.questionnaire_version)
            ):
                raise QuestionnaireMismatch(current.questionnaire_id, current.questionnaire_version)
            return await self._questionnaires.get(
                uow, current.questionnaire_id, current.questionnaire_version
            )
        claimed = await self._kits.bound_questionnaire(uow, kit_id)
        if claimed is None:
            return await self.choose(uow, choice)
        if choice is not None and (
            choice.id != claimed[0] or choice.version not in (None, claimed[1])
        ):
            raise QuestionnaireMismatch(*claimed)
        return await self._questionnaires.get(uow, *claimed)

    async def questionnaire_for_write(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str
    ) -> Questionnaire:
        """The questionnaire version a write to the kit is checked against, once the write's
        own access check passed: a body in another format (a FHIR QuestionnaireResponse) is
        read with it, so its errors tell nothing about a kit the caller may not write."""
        await self._kits.authorize_write(uow, ctx, kit_id)
        return await self._bound(uow, kit_id, await self._repo.get(uow, kit_id), None)

    async def claim(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        kit_id: str,
        choice: QuestionnaireChoice | None = None,
        *,
        claim_code: str | None = None,
    ) -> ClaimResult:
        """Claim a kit, binding it to a questionnaire version when the claim names one."""
        if choice is None:
            return await self._kits.claim(uow, ctx, kit_id, claim_code=claim_code)
        q = await self.choose(uow, choice)
        return await self._kits.claim(
            uow, ctx, kit_id, claim_code=claim_code, questionnaire=(q.id, q.version)
        )

    async def questionnaire_of(self, uow: UnitOfWork, kit_id: str) -> Questionnaire:
        """The kit's questionnaire version: saved, claimed, or the one a first write would get."""
        binding = await self._repo.questionnaire_of(uow, kit_id)
        binding = binding or await self._kits.bound_questionnaire(uow, kit_id)
        if binding is not None:
            return await self._questionnaires.get(uow, *binding)
        try:
            return await self.choose(uow, None)
        except ValidationFailed:
            return self._questionnaires.shipped_default()

    async def matching_version(
        self, uow: UnitOfWork, questionnaire_id: str, answers: Mapping[str, Any]
    ) -> QuestionnaireChoice:
        """The newest active version that accepts ``answers`` as they are (the legacy import).

        When none does, the newest active one: the write then reports what does not fit.
        """
        try:
            versions = await self._questionnaires.versions(uow, questionnaire_id)
        except NotFound:
            return QuestionnaireChoice(questionnaire_id)
        for info in reversed(versions):
            if info.status == RETIRED:
                continue
            q = await self._questionnaires.get(uow, questionnaire_id, info.version)
            clean = without_nulls(answers)
            if not validate_answers(q, clean) and not remove_disabled(q, clean, list(clean))[1]:
                return QuestionnaireChoice(questionnaire_id, info.version)
        return QuestionnaireChoice(questionnaire_id)

    async def choose(self, uow: UnitOfWork, choice: QuestionnaireChoice | None) -> Questionnaire:
        """The version a new kit is bound to: as named, or the newest active of the default.

        A retired version or an unknown id is 422: the request names something unusable.
        """
        questionnaire_id = choice.id if choice else self._questionnaires.default_id
        version = choice.version if choice else None
        if version is None:
            try:
                return await self._questionnaires.newest_active(uow, questionnaire_id)
            except NotFound:
                raise ValidationFailed(
                    [
                        FieldError(
                            "questionnaire.id", "names no questionnaire with an active version"
                        )
                    ]
                ) from None
        status = await self._questionnaires.status(uow, questionnaire_id, version)
        if status is None:
            raise ValidationFailed([FieldError("questionnaire", "names no published version")])
        if status == RETIRED:
            raise ValidationFailed([FieldError("questionnaire.version", "is retired")])
        return await self._questionnaires.get(uow, questionnaire_id, version)

    @staticmethod
    def _enabled_only(q: Questionnaire, answers: Answers, incoming: Answers) -> Answers:
        """Answers to disabled items go; answering one in this very write is refused."""
        if not q.plan.top and not q.plan.rows:
            return answers
        kept, errors = remove_disabled(q, answers, written=list(incoming))
        if errors:
            raise ValidationFailed(errors)
        return kept

    def _validate(
        self,
        q: Questionnaire,
        incoming: Answers,
        removals: Sequence[str],
        base_version: int | None,
        current: HealthInformationState | None,
    ) -> None:
        if len(incoming) + len(removals) > self._max_answers:
            raise ValidationFailed(
                [FieldError("answers", f"must hold at most {self._max_answers} answers")]
            )
        errors = validate_answers(q, incoming)
        errors += [
            FieldError(f"answers.{key}", "unknown question id")
            for key in removals
            if q.item(key) is None
        ]
        current_version = current.version if current else 0
        if base_version is not None and base_version > current_version:
            errors.append(
                FieldError("baseVersion", f"is newer than the current version {current_version}")
            )
        if errors:
            raise ValidationFailed(sorted(errors, key=lambda e: e.field))

    async def _apply(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        kit_id: str,
        current: HealthInformationState | None,
        answers: Answers,
        q: Questionnaire,
        *,
        submit: bool,
    ) -> WriteResult | None:
        """Write the new version; None when a concurrent writer got there first."""
        action = SUBMIT if submit else SAVE
        changed = changed_ids(current.answers if current else {}, answers)
        if current is not None and not changed and not submit:
            await self._audit_write(uow, ctx, action, kit_id, current, current, [], UNCHANGED)
            return WriteResult(current, False, False, [], current.version)
        if submit and (missing := missing_required(q, answers)):
            raise ValidationFailed(missing, "Required answers are missing; nothing was submitted.")
        state = self._next_state(ctx, kit_id, current, answers, changed, q, submit=submit)
        stored = await self._repo.encode(state)  # once, for the row, the revision and the cache
        audited = False
        if current is None:
            if not await self._repo.insert_first(uow, state, stored=stored):
                return None
            await self._add_revision(uow, ctx, state, changed, stored)
        else:
            # PostgreSQL, the audit head locked by the access query: the audit event is linked
            # here and written by the update's own statement (one round trip for all four).
            event, link = None, None
            if uow.dialect == "postgresql" and kit_id in uow.locked_heads:
                event = await self._audit.prepare(ctx, self._entry(current, state, changed, action))
                link = chain.link(uow, self._audit.keys, event)
            if not await self._repo.update_with_revision(
                uow,
                state,
                expected_version=current.version,
                changed=changed,
                channel=ctx.channel.value,
                request_id=ctx.request_id,
                stored=stored,
                audit=link,
            ):
                return None
            if event is not None and link is not None:
                chain.linked(uow, event)
            audited = link is not None
        await self._record(
            uow,
            ctx,
            current,
            state,
            changed,
            action,
            submitted=submit,
            stored=stored,
            audited=audited,
        )
        version_before = current.version if current else None
        return WriteResult(state, current is None, True, changed, version_before)

    async def _record(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        current: HealthInformationState | None,
        state: HealthInformationState,
        changed: list[str],
        action: str,
        *,
        submitted: bool = False,
        reason: str | None = None,
        stored: str | None = None,
        audited: bool = False,
    ) -> None:
        """What every accepted version writes besides itself and its revision: audit (unless
        the write's own statement linked it: ``audited``), events."""
        if not audited:
            await self._audit.record(uow, ctx, self._entry(current, state, changed, action, reason))
        event = ChangeEvent(state, changed, ctx.channel.value, submitted, ctx.request_id, stored)
        for in_transaction in self._transactional_listeners:
            await in_transaction(uow, event)
        self._notify_after_commit(uow, event)

    @staticmethod
    def _entry(
        current: HealthInformationState | None,
        state: HealthInformationState,
        changed: list[str],
        action: str,
        reason: str | None = None,
    ) -> AuditEntry:
        return AuditEntry(
            action=action,
            kit_id=state.kit_id,
            version_before=current.version if current else None,
            version_after=state.version,
            changed=changed,
            reason=reason,
        )

    async def _add_revision(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        state: HealthInformationState,
        changed: list[str],
        stored: str | None = None,
    ) -> None:
        await self._repo.add_revision(
            uow,
            state,
            changed=changed,
            channel=ctx.channel.value,
            request_id=ctx.request_id,
            stored=stored,
        )

    def _next_state(
        self,
        ctx: RequestContext,
        kit_id: str,
        current: HealthInformationState | None,
        answers: Answers,
        changed: list[str],
        q: Questionnaire,
        *,
        submit: bool,
    ) -> HealthInformationState:
        now = self._clock()
        version = current.version + 1 if current else 1
        return HealthInformationState(
            kit_id=kit_id,
            questionnaire_id=q.id,
            questionnaire_version=q.version,
            status=Status.SUBMITTED if submit else Status.IN_PROGRESS,
            answers=answers,
            version=version,
            created_at=current.created_at if current else now,
            updated_at=now,
            updated_by=ctx.actor.user_id,
            submitted_at=now if submit else None,
            field_versions=bump_field_versions(
                current.field_versions if current else {}, changed, version
            ),
        )

    async def _audit_write(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        action: str,
        kit_id: str,
        before: HealthInformationState | None,
        after: HealthInformationState,
        changed: list[str],
        outcome: str,
    ) -> None:
        entry = AuditEntry(
            action=action,
            kit_id=kit_id,
            outcome=outcome,
            version_before=before.version if before else None,
            version_after=after.version,
            changed=changed,
        )
        await self._audit.record(uow, ctx, entry)

    def _notify_after_commit(self, uow: UnitOfWork, event: ChangeEvent) -> None:
        """After the commit, and (``background``) off the response path: the cache is
        version-checked, so a late entry is safe; live events keep commit order
        (common/uow.BackgroundHooks)."""
        for listener, background in self._listeners:
            uow.after_commit(lambda listener=listener: listener(event), background=background)  # type: ignore[misc]

    async def _existing(self, uow: UnitOfWork, kit_id: str) -> HealthInformationState:
        state = await self._repo.get(uow, kit_id)
        if state is None:
            raise NotFound(f"Nothing is saved for kit {kit_id!r} yet.")
        return state

    async def _base_answers(self, uow: UnitOfWork, kit_id: str, base_version: int) -> Answers:
        if base_version == 0:
            return {}
        answers = await self._repo.revision_answers(uow, kit_id, base_version)
        if answers is None:
            raise ValidationFailed([FieldError("baseVersion", "names no stored version")])
        return answers


def _is_about(field: str, key: str) -> bool:
    """Whether the error ``field`` is about the top-level answer ``key`` (or one of its rows)."""
    path = f"answers.{key}"
    return field == path or field.startswith(f"{path}[")
