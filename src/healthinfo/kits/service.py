"""Claiming kits, managing members, and resolving a caller's role on a kit.

Every channel asks ``authorize`` (reads) or ``authorize_write`` (writes, with auto-claim)
before touching a kit, so access is decided here and in ``auth.access`` only.

Claiming by naming a kit (``claim``, or auto-claim on the first write) works only for a kit
that holds no answers yet: the contract's "first write claims it". A kit that holds answers
but has no owner (an admin wrote them, the legacy import brought them) is claimed only with a
one-time claim code (``kits.claim_codes``), or gets its owner from an admin (``set_owner``);
until then it is 404 to everyone but admins (and members an admin added).

A change of who may read a kit (a member added, re-roled or removed, a claim, an owner
assigned, the answers erased) is announced to the *access listeners* after its commit, so live
connections re-authorize at once instead of at their next reconnect (realtime/hub.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    delete,
    exists,
    false,
    or_,
    select,
    true,
    update,
)

from healthinfo.audit import chain
from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.auth.access import (
    MEMBER_ROLES,
    KitRole,
    Permission,
    kit_roles,
    require,
    scope_of,
)
from healthinfo.auth.actor import Actor
from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.context import RequestContext
from healthinfo.common.pagination import Page, decode_cursor, encode_cursor
from healthinfo.common.sql import insert_if_absent, rowcount
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import HealthInformation, Kit, KitMember
from healthinfo.errors import (
    FieldError,
    KitAlreadyClaimed,
    NotFound,
    QuestionnaireMismatch,
    ValidationFailed,
)
from healthinfo.health_information.model import Status
from healthinfo.kits.claim_codes import ClaimCodes, IssuedCode

KITS = cast(Table, Kit.__table__)
MEMBERS = cast(Table, KitMember.__table__)
CURRENT = cast(Table, HealthInformation.__table__)
_MEMBER = MEMBERS.alias("member")
# The answers' row as a scope condition sees it: an alias, so the condition stays correlated
# to ``kits`` alone inside a query that already selects from ``health_information``.
_DATA = CURRENT.alias("scoped_data")
# Built once: every request asks it, and building it (an alias, joins, comparisons) cost more
# CPU than compiling it, which SQLAlchemy caches anyway.
_ACCESS = (
    select(
        KITS.c.owner_id, _MEMBER.c.role, CURRENT.c.version, CURRENT.c.created_at, CURRENT.c.status
    )
    .select_from(KITS)
    .outerjoin(
        _MEMBER,
        (_MEMBER.c.kit_id == KITS.c.kit_id) & (_MEMBER.c.user_id == bindparam("user_id")),
    )
    .outerjoin(CURRENT, CURRENT.c.kit_id == KITS.c.kit_id)
    .where(KITS.c.kit_id == bindparam("kit_id"))
)


# A write's access query: the same decision, the whole current record (the write reads it
# next anyway) and, on PostgreSQL, the kit's audit chain head locked and read (the write's
# audit append needs it): three round trips in one. SQLite has no INSERT in a WITH.
_ACCESS_FOR_WRITE_SQLITE = (
    select(KITS.c.owner_id, _MEMBER.c.role, *CURRENT.columns)
    .select_from(KITS)
    .outerjoin(
        _MEMBER,
        (_MEMBER.c.kit_id == KITS.c.kit_id) & (_MEMBER.c.user_id == bindparam("user_id")),
    )
    .outerjoin(CURRENT, CURRENT.c.kit_id == KITS.c.kit_id)
    .where(KITS.c.kit_id == bindparam("kit_id"))
)
_ACCESS_FOR_WRITE_POSTGRESQL = _ACCESS_FOR_WRITE_SQLITE.add_columns(
    select(chain.HEAD_LOCK_POSTGRESQL.c.last_hash).scalar_subquery().label("audit_last_hash")
)


AccessListener = Callable[[str, bool], Awaitable[None]]
"""Called after the commit with (kit id, erased): who may read the kit may have changed."""


@dataclass(frozen=True, slots=True)
class KitAccess:
    kit_id: str
    owner_id: str | None
    roles: frozenset[KitRole]
    version: int | None = None
    data_created_at: datetime | None = None
    # A write's access query read the current record too (``authorize_write``): its row,
    # None when nothing is saved. ``current_read`` False: not read, ask the repository.
    current_row: Any = None
    current_read: bool = False


@dataclass(frozen=True, slots=True)
class KitRoster:
    """Everyone's standing on a kit, read in one statement: the live connections of a kit
    re-authorize against one roster instead of one query each (realtime/hub.py)."""

    kit_id: str
    owner_id: str | None
    member_roles: Mapping[str, str]
    data_created_at: datetime | None
    data_final: bool = False

    def authorize(self, actor: Actor, permission: Permission) -> None:
        """The same decision as ``KitService.authorize``, from the roster."""
        member_role = self.member_roles.get(actor.user_id)
        roles = kit_roles(
            actor, owner_id=self.owner_id, member_role=member_role, data_final=self.data_final
        )
        require(roles, permission, kit_id=self.kit_id)


_ROSTER = (
    select(
        KITS.c.owner_id, CURRENT.c.created_at, CURRENT.c.status, MEMBERS.c.user_id, MEMBERS.c.role
    )
    .select_from(KITS)
    .outerjoin(CURRENT, CURRENT.c.kit_id == KITS.c.kit_id)
    .outerjoin(MEMBERS, MEMBERS.c.kit_id == KITS.c.kit_id)
    .where(KITS.c.kit_id == bindparam("kit_id"))
)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    kit_id: str
    owner_id: str
    claimed_at: datetime
    created: bool


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    role: str
    added_at: datetime | None
    added_by: str | None


class KitService:
    def __init__(
        self,
        *,
        audit: AuditLog,
        auto_claim: bool,
        claim_codes: ClaimCodes | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._audit = audit
        self._auto_claim = auto_claim
        self._codes = claim_codes or ClaimCodes(clock=clock)
        self._clock = clock
        self._access_listeners: list[AccessListener] = []

    def add_access_listener(self, listener: AccessListener) -> None:
        self._access_listeners.append(listener)

    def access_changed(self, uow: UnitOfWork, kit_id: str, *, erased: bool = False) -> None:
        """Tell the access listeners once ``uow`` commits (nothing if it rolls back)."""
        for listener in self._access_listeners:
            uow.after_commit(lambda listener=listener: listener(kit_id, erased))  # type: ignore[misc]

    async def access(self, uow: UnitOfWork, actor: Actor, kit_id: str) -> KitAccess:
        """One round trip: the owner, the caller's member role and the current data version.

        The version lets readers validate a cached representation against the database in
        the same query that decides access, so the cache can never serve a stale version.
        """
        parameters = {"kit_id": kit_id, "user_id": actor.user_id}
        row = (await uow.session.execute(_ACCESS, parameters)).first()
        if row is None:
            return KitAccess(kit_id, None, kit_roles(actor, owner_id=None, member_role=None))
        roles = kit_roles(
            actor, owner_id=row.owner_id, member_role=row.role, data_final=_final(row.status)
        )
        return KitAccess(kit_id, row.owner_id, roles, row.version, row.created_at)

    @staticmethod
    def scope_clause(actor: Actor, permission: Permission) -> ColumnElement[bool]:
        """A condition on ``kits`` rows: the kits on which ``actor`` holds ``permission``.

        For queries over many kits (a FHIR search); the same grants as :meth:`authorize`,
        from ``auth.access.scope_of``, so a search never shows a kit a read of it would 404.
        """
        scope = scope_of(actor, permission)
        if scope.every_kit:
            return true()
        clauses: list[ColumnElement[bool]] = []
        if scope.as_owner:
            clauses.append(KITS.c.owner_id == actor.user_id)
        if scope.member_roles:
            clauses.append(
                exists().where(
                    MEMBERS.c.kit_id == KITS.c.kit_id,
                    MEMBERS.c.user_id == actor.user_id,
                    MEMBERS.c.role.in_(sorted(scope.member_roles)),
                )
            )
        if scope.final_data:
            clauses.append(
                exists().where(
                    _DATA.c.kit_id == KITS.c.kit_id,
                    _DATA.c.status != Status.IN_PROGRESS.value,
                )
            )
        return or_(*clauses) if clauses else false()

    async def _access_for_write(self, uow: UnitOfWork, actor: Actor, kit_id: str) -> KitAccess:
        """``access`` plus the current record and (PostgreSQL) the audit head, in one statement."""
        postgresql = uow.session.get_bind().dialect.name == "postgresql"
        statement = _ACCESS_FOR_WRITE_POSTGRESQL if postgresql else _ACCESS_FOR_WRITE_SQLITE
        parameters = {"kit_id": kit_id, "user_id": actor.user_id}
        row = (await uow.session.execute(statement, parameters)).first()
        if row is None:
            return KitAccess(kit_id, None, kit_roles(actor, owner_id=None, member_role=None))
        if postgresql:
            chain.head_locked(uow, kit_id, row.audit_last_hash)
        roles = kit_roles(
            actor,
            owner_id=row.owner_id,
            member_role=row.role,
            data_final=_final(row.status),
        )
        current = row if row.kit_id is not None else None
        return KitAccess(
            kit_id,
            row.owner_id,
            roles,
            row.version,
            row.created_at,
            current_row=current,
            current_read=True,
        )

    async def roster(self, uow: UnitOfWork, kit_id: str) -> KitRoster:
        """The owner, every member's role and the answers' creation time, in one statement
        (one consistent snapshot); an unknown kit has no owner and no members."""
        rows = (await uow.session.execute(_ROSTER, {"kit_id": kit_id})).all()
        if not rows:
            return KitRoster(kit_id, None, {}, None)
        roles = {row.user_id: row.role for row in rows if row.user_id is not None}
        return KitRoster(
            kit_id, rows[0].owner_id, roles, rows[0].created_at, _final(rows[0].status)
        )

    async def authorize(
        self, uow: UnitOfWork, actor: Actor, kit_id: str, permission: Permission
    ) -> KitAccess:
        access = await self.access(uow, actor, kit_id)
        require(access.roles, permission, kit_id=kit_id)
        return access

    async def authorize_write(self, uow: UnitOfWork, ctx: RequestContext, kit_id: str) -> KitAccess:
        """Authorize a write; with auto-claim, the first write to an unowned kit claims it.

        Admins never auto-claim: a support tool fixing a kit must not take it from its user.
        Nor does a write to a kit that already holds answers: naming it is no proof it is
        the caller's (a claim code or an admin decides, see the module docstring).
        """
        access = await self._access_for_write(uow, ctx.actor, kit_id)
        claimable = access.owner_id is None and access.version is None
        if claimable and self._auto_claim and not ctx.actor.is_admin:
            await self._claim(uow, ctx, kit_id)
            access = await self.access(uow, ctx.actor, kit_id)
        require(access.roles, Permission.WRITE, kit_id=kit_id)
        if access.owner_id is None:
            await self._ensure_kit(uow, kit_id)  # an admin writing to a kit nobody claimed yet
        return access

    async def _ensure_kit(self, uow: UnitOfWork, kit_id: str) -> None:
        row = {"kit_id": kit_id, "owner_id": None, "claimed_at": None, "created_at": self._clock()}
        await insert_if_absent(uow, KITS, row)

    async def claim(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        kit_id: str,
        *,
        claim_code: str | None = None,
        questionnaire: tuple[str, str] | None = None,
    ) -> ClaimResult:
        """201 semantics when this call claimed it, 200 when it was already the caller's.

        An ownerless kit that holds answers needs its claim code (used up by this claim);
        without a valid one it is 404, as for any kit the caller has no access to.
        ``questionnaire`` (id, version) binds the kit before anything is saved; a claim naming
        another questionnaire than the kit's binding is ``questionnaire-mismatch``.
        """
        access = await self.access(uow, ctx.actor, kit_id)
        if access.owner_id is None and access.version is not None:
            if claim_code is None or not await self._codes.redeem(uow, kit_id, claim_code):
                raise NotFound(f"No kit {kit_id!r}, or no access to it.")
            claimed_now = await self._claim(uow, ctx, kit_id, holding_answers=True)
        else:
            claimed_now = await self._claim(uow, ctx, kit_id)
        row = (
            await uow.session.execute(
                select(
                    KITS.c.owner_id,
                    KITS.c.claimed_at,
                    KITS.c.questionnaire_id,
                    KITS.c.questionnaire_version,
                    CURRENT.c.questionnaire_id.label("saved_id"),
                    CURRENT.c.questionnaire_version.label("saved_version"),
                )
                .select_from(KITS.outerjoin(CURRENT, CURRENT.c.kit_id == KITS.c.kit_id))
                .where(KITS.c.kit_id == kit_id)
            )
        ).one()
        if row.owner_id != ctx.actor.user_id:
            raise KitAlreadyClaimed()
        if questionnaire is not None:
            bound = (row.saved_id, row.saved_version) if row.saved_id else None
            bound = bound or (
                (row.questionnaire_id, row.questionnaire_version) if row.questionnaire_id else None
            )
            if bound is None:
                await uow.session.execute(
                    update(KITS)
                    .where(KITS.c.kit_id == kit_id)
                    .values(
                        questionnaire_id=questionnaire[0], questionnaire_version=questionnaire[1]
                    )
                )
            elif bound != questionnaire:
                raise QuestionnaireMismatch(*bound)
        return ClaimResult(kit_id, row.owner_id, row.claimed_at, created=claimed_now)

    async def bound_questionnaire(self, uow: UnitOfWork, kit_id: str) -> tuple[str, str] | None:
        """The (id, version) a claim bound the kit to before its first save, if any."""
        row = (
            await uow.session.execute(
                select(KITS.c.questionnaire_id, KITS.c.questionnaire_version).where(
                    KITS.c.kit_id == kit_id
                )
            )
        ).first()
        if row is None or row.questionnaire_id is None or row.questionnaire_version is None:
            return None
        return row.questionnaire_id, row.questionnaire_version

    async def _claim(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str, *, holding_answers: bool = False
    ) -> bool:
        """Claim an unowned kit; a member who claims it stops being listed as a member.

        Unless a claim code was redeemed (``holding_answers``), the claim holds only while the
        kit has no answers, checked in the same statement, so a concurrent first write by an
        admin cannot slip in between the check and the claim.
        """
        now = self._clock()
        await self._ensure_kit(uow, kit_id)
        conditions = [KITS.c.kit_id == kit_id, KITS.c.owner_id.is_(None)]
        if not holding_answers:
            conditions.append(~exists().where(CURRENT.c.kit_id == kit_id))
        result = await uow.session.execute(
            update(KITS).where(*conditions).values(owner_id=ctx.actor.user_id, claimed_at=now)
        )
        claimed_now = rowcount(result) == 1
        if claimed_now:
            await uow.session.execute(
                delete(MEMBERS).where(
                    MEMBERS.c.kit_id == kit_id, MEMBERS.c.user_id == ctx.actor.user_id
                )
            )
            await self._audit.record(uow, ctx, AuditEntry(action="kit.claim", kit_id=kit_id))
            self.access_changed(uow, kit_id)
        return claimed_now

    async def issue_claim_code(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str
    ) -> IssuedCode:
        """A one-time code for an ownerless kit (admin only); audited, the code never is."""
        access = await self.authorize(uow, ctx.actor, kit_id, Permission.ASSIGN_OWNER)
        if access.owner_id is not None:
            raise KitAlreadyClaimed()
        await self._ensure_kit(uow, kit_id)
        issued = await self._codes.issue(uow, kit_id, ctx.actor.user_id)
        await self._audit.record(uow, ctx, AuditEntry(action="kit.claim-code.issue", kit_id=kit_id))
        return issued

    async def set_owner(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str, user_id: str
    ) -> ClaimResult:
        """Make ``user_id`` the kit's owner (admin only; audited). ``created``: it had none.

        The new owner stops being a member, and any claim code of the kit stops working.
        """
        access = await self.authorize(uow, ctx.actor, kit_id, Permission.ASSIGN_OWNER)
        if access.owner_id == user_id:
            claimed_at = await uow.session.scalar(
                select(KITS.c.claimed_at).where(KITS.c.kit_id == kit_id)
            )
            return ClaimResult(kit_id, user_id, claimed_at or self._clock(), created=False)
        now = self._clock()
        await self._ensure_kit(uow, kit_id)
        await uow.session.execute(
            update(KITS).where(KITS.c.kit_id == kit_id).values(owner_id=user_id, claimed_at=now)
        )
        await uow.session.execute(
            delete(MEMBERS).where(MEMBERS.c.kit_id == kit_id, MEMBERS.c.user_id == user_id)
        )
        await self._codes.forget(uow, kit_id)
        entry = AuditEntry(action="kit.owner.put", kit_id=kit_id, changed=(user_id,))
        await self._audit.record(uow, ctx, entry)
        self.access_changed(uow, kit_id)  # the old owner's streams must end
        return ClaimResult(kit_id, user_id, now, created=access.owner_id is None)

    async def assign_owner_if_unclaimed(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str, owner_id: str
    ) -> bool:
        """Give an unclaimed kit to a known user (admin only: the legacy import); audited."""
        await self.authorize(uow, ctx.actor, kit_id, Permission.MANAGE_MEMBERS)
        await self._ensure_kit(uow, kit_id)
        result = await uow.session.execute(
            update(KITS)
            .where(KITS.c.kit_id == kit_id, KITS.c.owner_id.is_(None))
            .values(owner_id=owner_id, claimed_at=self._clock())
        )
        assigned = rowcount(result) == 1
        if assigned:
            entry = AuditEntry(action="kit.assign-owner", kit_id=kit_id, changed=(owner_id,))
            await self._audit.record(uow, ctx, entry)
            self.access_changed(uow, kit_id)
        return assigned

    async def list_members(
        self, uow: UnitOfWork, actor: Actor, kit_id: str, *, limit: int, cursor: str | None
    ) -> Page[Member]:
        """The owner first, then members by user id; small lists, but paginated like all lists."""
        access = await self.authorize(uow, actor, kit_id, Permission.LIST_MEMBERS)
        rows = await uow.session.execute(
            select(MEMBERS).where(MEMBERS.c.kit_id == kit_id).order_by(MEMBERS.c.user_id)
        )
        members = [Member(r.user_id, r.role, r.added_at, r.added_by) for r in rows]
        if access.owner_id is not None:
            claimed_at = await uow.session.scalar(
                select(KITS.c.claimed_at).where(KITS.c.kit_id == kit_id)
            )
            members.insert(0, Member(access.owner_id, KitRole.OWNER.value, claimed_at, None))
        start = decode_cursor(cursor) if cursor else 0
        page = members[start : start + limit]
        more = start + limit < len(members)
        return Page(page, encode_cursor(start + limit) if more else None)

    async def put_member(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str, user_id: str, role: str
    ) -> tuple[Member, bool]:
        access = await self.authorize(uow, ctx.actor, kit_id, Permission.MANAGE_MEMBERS)
        if role not in MEMBER_ROLES:
            raise ValidationFailed([FieldError("role", "must be 'editor' or 'viewer'")])
        self._refuse_owner(access, user_id)
        now = self._clock()
        if access.owner_id is None:
            await self._ensure_kit(uow, kit_id)
        values = {"role": role, "added_at": now, "added_by": ctx.actor.user_id}
        created = await insert_if_absent(
            uow, MEMBERS, {"kit_id": kit_id, "user_id": user_id, **values}
        )
        if not created:
            await uow.session.execute(
                update(MEMBERS)
                .where(MEMBERS.c.kit_id == kit_id, MEMBERS.c.user_id == user_id)
                .values(role=role)
            )
        await self._audit.record(
            uow, ctx, AuditEntry(action="kit.member.put", kit_id=kit_id, changed=(user_id,))
        )
        self.access_changed(uow, kit_id)
        row = (
            await uow.session.execute(
                select(MEMBERS).where(MEMBERS.c.kit_id == kit_id, MEMBERS.c.user_id == user_id)
            )
        ).one()
        return Member(row.user_id, row.role, row.added_at, row.added_by), created

    async def delete_member(
        self, uow: UnitOfWork, ctx: RequestContext, kit_id: str, user_id: str
    ) -> None:
        access = await self.authorize(uow, ctx.actor, kit_id, Permission.MANAGE_MEMBERS)
        self._refuse_owner(access, user_id)
        result = await uow.session.execute(
            delete(MEMBERS).where(MEMBERS.c.kit_id == kit_id, MEMBERS.c.user_id == user_id)
        )
        if rowcount(result) == 0:
            raise NotFound(f"No member {user_id!r} on kit {kit_id!r}.")
        await self._audit.record(
            uow, ctx, AuditEntry(action="kit.member.delete", kit_id=kit_id, changed=(user_id,))
        )
        self.access_changed(uow, kit_id)

    @staticmethod
    def _refuse_owner(access: KitAccess, user_id: str) -> None:
        if access.owner_id is not None and user_id == access.owner_id:
            raise ValidationFailed(
                [FieldError("userId", "is the kit's owner, whose role cannot change")]
            )


def _final(status: str | None) -> bool:
    """Submitted or amended data (what a researcher may read); None: nothing saved."""
    return status is not None and Status(status).is_final
