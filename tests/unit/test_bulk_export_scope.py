"""Which data an export holds: the access rule's scope for its requester (fhir/bulk/kickoff.py).

An export must never hold data a read of that kit would refuse its requester, so the statuses
it covers are checked against ``kit_roles``/``can`` for every status of the data.
"""

from __future__ import annotations

import pytest

from healthinfo.auth.access import Permission, can, kit_roles
from healthinfo.auth.actor import ADMIN, AUDITOR, RESEARCHER, Actor
from healthinfo.errors import Forbidden
from healthinfo.fhir.bulk.kickoff import exported_statuses
from healthinfo.health_information.model import Status

ADMIN_ACTOR = Actor("admin-1", frozenset({ADMIN}))
RESEARCHER_ACTOR = Actor("researcher-1", frozenset({RESEARCHER}))


def test_an_admins_export_holds_data_of_every_status() -> None:
    assert exported_statuses(ADMIN_ACTOR, completed_only=False) == ()


def test_a_researchers_export_holds_exactly_the_data_a_researcher_may_read() -> None:
    statuses = set(exported_statuses(RESEARCHER_ACTOR, completed_only=False))
    readable = {
        status.value
        for status in Status
        if can(
            kit_roles(
                RESEARCHER_ACTOR, owner_id=None, member_role=None, data_final=status.is_final
            ),
            Permission.READ,
        )
    }
    assert statuses == readable == {Status.SUBMITTED.value, Status.AMENDED.value}


@pytest.mark.parametrize("actor", [ADMIN_ACTOR, RESEARCHER_ACTOR])
def test_completed_only_narrows_any_export_to_submitted_data(actor: Actor) -> None:
    assert exported_statuses(actor, completed_only=True) == (Status.SUBMITTED.value,)


@pytest.mark.parametrize(
    "actor", [Actor("owner-1"), Actor("auditor-1", frozenset({AUDITOR}))], ids=["user", "auditor"]
)
def test_nobody_else_may_export(actor: Actor) -> None:
    with pytest.raises(Forbidden):
        exported_statuses(actor, completed_only=False)
