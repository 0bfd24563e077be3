"""Kit access rules: the only place that decides who may do what with a kit.

A caller's *kit role* comes from the kit (owner, member role) or from their global roles
(admin, auditor). No kit role at all means the kit does not exist for them: ``NotFound``, so a
stranger cannot probe which kit ids are in use. A kit role without the permission is
``Forbidden``.
"""

from __future__ import annotations

from enum import StrEnum

from healthinfo.auth.actor import Actor
from healthinfo.errors import Forbidden, NotFound


class KitRole(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"
    ADMIN = "admin"
    AUDITOR = "auditor"


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    LIST_MEMBERS = "list-members"
    MANAGE_MEMBERS = "manage-members"
    READ_AUDIT = "read-audit"
    EXPORT = "export"
    ERASE = "erase"
    AMEND = "amend"


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
}


def kit_role(actor: Actor, *, owner_id: str | None, member_role: str | None) -> KitRole | None:
    """The strongest role the actor holds on a kit; global roles apply to every kit id."""
    if actor.is_admin:
        return KitRole.ADMIN
    if owner_id is not None and owner_id == actor.user_id:
        return KitRole.OWNER
    if member_role is not None:
        return KitRole(member_role)
    if actor.is_auditor:
        return KitRole.AUDITOR
    return None


def can(role: KitRole | None, permission: Permission) -> bool:
    return role is not None and permission in _GRANTS[role]


def require(role: KitRole | None, permission: Permission, *, kit_id: str) -> KitRole:
    """Raise the error the contract prescribes, or return the role that allowed it."""
    if role is None:
        raise NotFound(f"No kit {kit_id!r}, or no access to it.")
    if permission not in _GRANTS[role]:
        raise Forbidden(f"The {role.value} role may not {permission.value.replace('-', ' ')}.")
    return role
