"""FHIR search parameters as the FHIR base reads them (fhir/search.py), and the access scope a
search applies (auth/access.py ``scope_of``), without a database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from healthinfo.auth.access import MEMBER_ROLES, Permission, can, kit_roles, scope_of
from healthinfo.auth.actor import Actor
from healthinfo.errors import ValidationFailed
from healthinfo.fhir.outcome import PROBLEM_SYSTEM, operation_outcome
from healthinfo.fhir.search import (
    MAX_COUNT,
    decode_cursor,
    encode_cursor,
    parse_count,
    parse_last_updated,
    parse_questionnaire_refs,
    parse_statuses,
)
from healthinfo.health_information.model import Status
from healthinfo.health_information.search import QuestionnaireRef, UpdatedBound


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2026", at(2026, 1, 1), at(2027, 1, 1)),
        ("2026-12", at(2026, 12, 1), at(2027, 1, 1)),
        ("2026-02", at(2026, 2, 1), at(2026, 3, 1)),
        ("2026-12-07", at(2026, 12, 7), at(2026, 12, 8)),
        ("2026-12-07T10:30Z", at(2026, 12, 7, 10, 30), at(2026, 12, 7, 10, 31)),
        ("2026-12-07T10:30:05+01:00", at(2026, 12, 7, 9, 30, 5), at(2026, 12, 7, 9, 30, 6)),
        (
            "2026-12-07T10:30:05.123Z",
            at(2026, 12, 7, 10, 30, 5, 123000),
            at(2026, 12, 7, 10, 30, 5, 124000),
        ),
    ],
)
def test_a_value_stands_for_the_range_of_its_precision(
    value: str, start: datetime, end: datetime
) -> None:
    assert parse_last_updated([value]) == (UpdatedBound("ge", start), UpdatedBound("lt", end))


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("ge", ("ge", "start")),
        ("gt", ("ge", "end")),
        ("le", ("lt", "end")),
        ("lt", ("lt", "start")),
    ],
)
def test_prefixes_compare_the_instant_with_the_range(
    prefix: str, expected: tuple[str, str]
) -> None:
    bounds = {"start": at(2026, 12, 7), "end": at(2026, 12, 8)}
    assert parse_last_updated([f"{prefix}2026-12-07"]) == (
        UpdatedBound(expected[0], bounds[expected[1]]),  # type: ignore[arg-type]
    )


def test_repeated_last_updated_values_all_apply() -> None:
    bounds = parse_last_updated(["ge2026-12-01", "lt2026-12-02"])
    assert bounds == (UpdatedBound("ge", at(2026, 12, 1)), UpdatedBound("lt", at(2026, 12, 2)))


@pytest.mark.parametrize(
    "value",
    ["ne2026", "sa2026", "ap2026", "2026-12-07T10:30", "2026-13", "2026-02-30", "x", "ge2026,2027"],
)
def test_unsupported_or_malformed_dates_are_refused(value: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_last_updated([value])
    assert [e.field for e in refused.value.errors] == ["_lastUpdated"]


def test_statuses_are_r4_codes_or_in_one_occurrence_and_across_occurrences() -> None:
    assert parse_statuses([]) is None
    assert parse_statuses(["completed,in-progress"]) == {Status.SUBMITTED, Status.IN_PROGRESS}
    assert parse_statuses(["completed,in-progress", "completed"]) == {Status.SUBMITTED}
    assert parse_statuses(["stopped"]) == frozenset()
    with pytest.raises(ValidationFailed):
        parse_statuses(["submitted"])  # ours, not FHIR's


def test_questionnaire_references_are_canonicals_of_this_base() -> None:
    base = "urn:healthinfo"
    assert parse_questionnaire_refs(
        [f"{base}/Questionnaire/q1|2,{base}/Questionnaire/q2"], canonical_base=base
    ) == (
        QuestionnaireRef("q1", "2"),
        QuestionnaireRef("q2"),
    )
    assert parse_questionnaire_refs(["http://other/Questionnaire/q1"], canonical_base=base) == ()


def test_count_defaults_caps_and_refuses() -> None:
    assert parse_count([]) == 50
    assert parse_count(["7"]) == 7
    assert parse_count([str(MAX_COUNT * 10)]) == MAX_COUNT
    for bad in (["0"], ["-1"], ["x"], ["1", "2"]):
        with pytest.raises(ValidationFailed):
            parse_count(bad)


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_cursor([encode_cursor("KIT-1")]) == "KIT-1"
    assert decode_cursor([]) is None
    for bad in (["KIT-1"], ["%%%"], [encode_cursor("a"), encode_cursor("b")]):
        with pytest.raises(ValidationFailed):
            decode_cursor(bad)


def test_an_operation_outcome_carries_the_problem_code_and_each_field_error() -> None:
    outcome = operation_outcome(
        {
            "status": 422,
            "code": "validation-failed",
            "title": "Validation failed",
            "detail": "2 field(s) are invalid.",
            "requestId": "r1",
            "errors": [{"field": "a", "message": "bad"}, {"field": "b", "message": "worse"}],
        }
    )
    first, *fields = outcome["issue"]
    assert first["code"] == "invalid"
    assert first["details"]["coding"] == [
        {"system": PROBLEM_SYSTEM, "code": "validation-failed", "display": "Validation failed"}
    ]
    assert first["diagnostics"] == "requestId r1"
    assert [(f["expression"], f["details"]["text"]) for f in fields] == [
        (["a"], "bad"),
        (["b"], "worse"),
    ]


ROLE_SETS = [
    frozenset(c)
    for n in range(3)
    for c in itertools.combinations(("admin", "auditor", "researcher", "other"), n)
]


@pytest.mark.parametrize("roles", ROLE_SETS)
@pytest.mark.parametrize("permission", list(Permission))
def test_the_search_scope_grants_exactly_what_a_single_kit_check_does(
    roles: frozenset[str], permission: Permission
) -> None:
    """For every standing on a kit: scope_of admits it iff kit_roles + can grant it."""
    actor = Actor("u1", roles)
    scope = scope_of(actor, permission)
    standings: list[tuple[str | None, str | None]] = [(None, None), ("u1", None), ("u2", None)]
    standings += [("u2", role.value) for role in MEMBER_ROLES]
    for (owner_id, member_role), final in itertools.product(standings, (False, True)):
        held = kit_roles(actor, owner_id=owner_id, member_role=member_role, data_final=final)
        many = (
            scope.every_kit
            or (scope.as_owner and owner_id == "u1")
            or (member_role is not None and member_role in scope.member_roles)
            or (scope.final_data and final)
        )
        assert many == can(held, permission), (owner_id, member_role, final)
