"""The kit access rules: roles, permissions, and 404 rather than 403 for strangers."""

from __future__ import annotations

import pytest

from healthinfo.auth.access import KitRole, Permission, can, kit_role, require
from healthinfo.auth.actor import Actor
from healthinfo.errors import Forbidden, NotFound

ALICE = Actor("alice")


def test_owner_is_recognised() -> None:
    assert kit_role(ALICE, owner_id="alice", member_role=None) is KitRole.OWNER


def test_member_role_is_used_for_non_owners() -> None:
    assert kit_role(ALICE, owner_id="bob", member_role="viewer") is KitRole.VIEWER


def test_admin_role_applies_to_any_kit_even_unclaimed() -> None:
    assert kit_role(Actor("x", frozenset({"admin"})), owner_id=None, member_role=None) is KitRole.ADMIN


def test_auditor_role_applies_when_no_kit_role() -> None:
    assert kit_role(Actor("x", frozenset({"auditor"})), owner_id="o", member_role=None) is KitRole.AUDITOR


def test_membership_beats_auditor_role() -> None:
    actor = Actor("x", frozenset({"auditor"}))
    assert kit_role(actor, owner_id="o", member_role="editor") is KitRole.EDITOR


def test_stranger_has_no_role() -> None:
    assert kit_role(ALICE, owner_id="bob", member_role=None) is None


def test_no_role_is_not_found_not_forbidden() -> None:
    with pytest.raises(NotFound):
        require(None, Permission.READ, kit_id="K1")


def test_role_without_permission_is_forbidden() -> None:
    with pytest.raises(Forbidden):
        require(KitRole.VIEWER, Permission.WRITE, kit_id="K1")


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (KitRole.OWNER, {"read", "write", "list-members", "manage-members", "export", "erase"}),
        (KitRole.EDITOR, {"read", "write", "list-members"}),
        (KitRole.VIEWER, {"read", "list-members"}),
        (KitRole.AUDITOR, {"read-audit"}),
        (KitRole.ADMIN, {p.value for p in Permission}),
    ],
)
def test_each_role_has_exactly_its_permissions(role: KitRole, allowed: set[str]) -> None:
    assert {p.value for p in Permission if can(role, p)} == allowed
