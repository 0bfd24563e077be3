"""Kit access rules: the only place that decides who may do what with a kit.

A caller's *kit roles* come from the kit (owner, member role) and from their global roles
(admin, auditor, researcher); their permissions add up, so an auditor who is also a viewer of
a kit keeps reading its audit trail. No kit role at all means the kit does not exist for them:
``NotFound``, so a stranger cannot probe which kit ids are in use. Roles without the
permission are ``Forbidden``.

A researcher reads submitted data only: the role applies to a kit only while its current data
is final (submitted or amended), so an in-progress kit does not exist for a researcher, and
earlier in-progress versions are refused by the service (``reads_final_only``). Bulk export is
not a kit permission: ``may_bulk_export`` decides it from the global roles alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from healthinfo.auth.actor import Actor
from healthinfo.errors import Forbidden, NotFound


class KitRole(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"
    ADMIN = "admin"
    AUDITOR = "auditor"
    RESEARCHER = "researcher"


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    LIST_MEMBERS = "list-members"
    MANAGE_MEMBERS = "manage-members"
    READ_AUDIT = "read-audit"
    EXPORT = "export"
    ERASE = "erase"
    AMEND = "amend"
    ASSIGN_OWNER = "assign-owner"  # set a kit's owner, hand out claim codes: admins only


MEMBER_ROLES = frozenset({KitRole.EDITOR, KitRole.VIEWER})

_GRANTS: dict[KitRole, frozenset[Permission]] = {
    KitRole.OWNER: frozenset(
        {
            Permission.READ,
            Permission.WRITE,
            Permission.LIST_MEMBERS,
            Permission.MANAGE_MEMBERS,
            Permission.EXPORT,
            Permission.ERASE,
        }
    ),
    KitRole.EDITOR: frozenset({Permission.READ, Permission.WRITE, Permission.LIST_MEMBERS}),
    KitRole.VIEWER: frozenset({Permission.READ, Permission.LIST_MEMBERS}),
    KitRole.ADMIN: frozenset(Permission),
    KitRole.AUDITOR: frozenset({Permission.READ_AUDIT}),
    KitRole.RESEARCHER: frozenset({Permission.READ}),
}


def kit_roles(
    actor: Actor, *, owner_id: str | None, member_role: str | None, data_final: bool = False
) -> frozenset[KitRole]:
    """Every role the actor holds on a kit; global roles apply to every kit id (a researcher's
    only to kits whose current data is ``data_final``)."""
    roles: set[KitRole] = set()
    if actor.is_admin:
        roles.add(KitRole.ADMIN)
    if owner_id is not None and owner_id == actor.user_id:
        roles.add(KitRole.OWNER)
    elif member_role is not None:
        roles.add(KitRole(member_role))
    if actor.is_auditor:
        roles.add(KitRole.AUDITOR)
    if actor.is_researcher and data_final:
        roles.add(KitRole.RESEARCHER)
    return frozenset(roles)


@dataclass(frozen=True, slots=True)
class KitScope:
    """Which kits grant an actor a permission, as a rule a query can apply to many kits at once.

    ``every_kit``: a global role grants it on every kit; otherwise the kits the actor owns
    (``as_owner``), those where their member role is in ``member_roles``, and, when
    ``final_data``, every kit whose current data is final (a researcher's grant). Derived from
    the same grants as :func:`kit_roles` and :func:`can`, so a search and a single-kit check
    can never disagree (kits/service.py turns it into SQL).
    """

    every_kit: bool
    as_owner: bool
    member_roles: frozenset[str]
    final_data: bool = False


def scope_of(actor: Actor, permission: Permission) -> KitScope:
    """The kits on which ``actor`` holds ``permission`` (see :class:`KitScope`)."""
    global_roles = kit_roles(actor, owner_id=None, member_role=None)
    on_final_data = kit_roles(actor, owner_id=None, member_role=None, data_final=True)
    return KitScope(
        every_kit=can(global_roles, permission),
        as_owner=permission in _GRANTS[KitRole.OWNER],
        member_roles=frozenset(role.value for role in MEMBER_ROLES if permission in _GRANTS[role]),
        final_data=can(on_final_data, permission),
    )


def reads_final_only(roles: frozenset[KitRole]) -> bool:
    """Whether the caller reads the kit only as a researcher: submitted versions only."""
    return KitRole.RESEARCHER in roles and not any(
        Permission.READ in _GRANTS[role] for role in roles - {KitRole.RESEARCHER}
    )


def may_bulk_export(actor: Actor) -> bool:
    """FHIR Bulk Data export (every kit at once): admins and researchers only."""
    return actor.is_admin or actor.is_researcher


def can(roles: frozenset[KitRole], permission: Permission) -> bool:
    return any(permission in _GRANTS[role] for role in roles)


def require(roles: frozenset[KitRole], permission: Permission, *, kit_id: str) -> None:
    """Raise the error the contract prescribes when the roles do not grant the permission."""
    if not roles:
        raise NotFound(f"No kit {kit_id!r}, or no access to it.")
    if not can(roles, permission):
        names = " and ".join(sorted(role.value for role in roles))
        raise Forbidden(f"The {names} role may not {permission.value.replace('-', ' ')}.")
