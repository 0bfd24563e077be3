"""The kit access rules: roles add up, and strangers get 404 rather than 403."""

from __future__ import annotations

import pytest

from healthinfo.auth.access import (
    KitRole,
    Permission,
    can,
    kit_roles,
    may_bulk_export,
    reads_final_only,
    require,
)
from healthinfo.auth.actor import Actor
from healthinfo.errors import Forbidden, NotFound

ALICE = Actor("alice")
ADMIN = Actor("x", frozenset({"admin"}))
AUDITOR = Actor("x", frozenset({"auditor"}))


def test_owner_is_recognised() -> None:
    assert kit_roles(ALICE, owner_id="alice", member_role=None) == {KitRole.OWNER}


def test_member_role_is_used_for_non_owners() -> None:
    assert kit_roles(ALICE, owner_id="bob", member_role="viewer") == {KitRole.VIEWER}


def test_admin_role_applies_to_any_kit_even_unclaimed() -> None:
    assert kit_roles(ADMIN, owner_id=None, member_role=None) == {KitRole.ADMIN}


def test_auditor_role_applies_without_a_kit_role() -> None:
    assert kit_roles(AUDITOR, owner_id="o", member_role=None) == {KitRole.AUDITOR}


def test_an_auditor_who_is_a_member_keeps_both_roles() -> None:
    roles = kit_roles(AUDITOR, owner_id="o", member_role="viewer")
    assert roles == {KitRole.VIEWER, KitRole.AUDITOR}
    assert can(roles, Permission.READ_AUDIT)
    assert can(roles, Permission.READ)
    assert not can(roles, Permission.WRITE)


def test_stranger_has_no_role() -> None:
    assert kit_roles(ALICE, owner_id="bob", member_role=None) == frozenset()


def test_no_role_is_not_found_not_forbidden() -> None:
    with pytest.raises(NotFound):
        require(frozenset(), Permission.READ, kit_id="K1")


def test_roles_without_the_permission_are_forbidden() -> None:
    with pytest.raises(Forbidden):
        require(frozenset({KitRole.VIEWER}), Permission.WRITE, kit_id="K1")


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
    assert {p.value for p in Permission if can(frozenset({role}), p)} == allowed


RESEARCHER = Actor("rita", frozenset({"researcher"}))


def test_researcher_holds_a_role_only_on_kits_whose_data_is_final() -> None:
    assert kit_roles(RESEARCHER, owner_id="o", member_role=None, data_final=True) == {
        KitRole.RESEARCHER
    }
    assert kit_roles(RESEARCHER, owner_id="o", member_role=None, data_final=False) == frozenset()


def test_researcher_may_read_but_not_write_list_members_read_audit_or_export_a_kit() -> None:
    roles = frozenset({KitRole.RESEARCHER})
    assert can(roles, Permission.READ)
    for permission in set(Permission) - {Permission.READ}:
        assert not can(roles, permission), permission


def test_reads_final_only_for_a_researcher_who_holds_no_other_reading_role() -> None:
    assert reads_final_only(frozenset({KitRole.RESEARCHER}))
    assert not reads_final_only(frozenset({KitRole.RESEARCHER, KitRole.VIEWER}))
    assert not reads_final_only(frozenset({KitRole.RESEARCHER, KitRole.ADMIN}))


def test_only_admins_and_researchers_may_bulk_export() -> None:
    assert may_bulk_export(RESEARCHER)
    assert may_bulk_export(Actor("ada", frozenset({"admin"})))
    assert not may_bulk_export(Actor("aud", frozenset({"auditor"})))
    assert not may_bulk_export(Actor("alice"))
