"""The Bulk Data kick-off's parameters: what is accepted, and what is refused, not ignored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from healthinfo.errors import MalformedRequest
from healthinfo.fhir.bulk.request import COMPLETED_FILTER, TYPES, parse_kickoff

ASYNC = "respond-async"


def test_no_parameters_export_every_type() -> None:
    assert parse_kickoff([], prefer=ASYNC).types == TYPES


def test_type_keeps_only_the_named_types_in_a_fixed_order() -> None:
    wanted = parse_kickoff([("_type", "QuestionnaireResponse,Questionnaire")], prefer=ASYNC)
    assert wanted.types == ("Questionnaire", "QuestionnaireResponse")
    only = parse_kickoff([("_type", "QuestionnaireResponse")], prefer=ASYNC)
    assert only.types == ("QuestionnaireResponse",)


def test_since_is_read_as_utc() -> None:
    wanted = parse_kickoff([("_since", "2026-01-02T03:04:05+02:00")], prefer=ASYNC)
    assert wanted.since == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)


def test_the_completed_type_filter_is_understood() -> None:
    assert parse_kickoff([("_typeFilter", COMPLETED_FILTER)], prefer=ASYNC).completed_only


def test_prefer_may_carry_other_preferences() -> None:
    assert parse_kickoff([], prefer="handling=lenient, respond-async").types == TYPES


@pytest.mark.parametrize(
    ("params", "prefer"),
    [
        ([], None),
        ([], "return=minimal"),
        ([("patient", "Patient/1")], ASYNC),
        ([("_type", "Patient")], ASYNC),
        ([("_typeFilter", "QuestionnaireResponse?status=in-progress")], ASYNC),
        ([("_since", "2026-01-02")], ASYNC),
        ([("_since", "2026-01-02T03:04:05")], ASYNC),
        ([("_outputFormat", "application/json")], ASYNC),
    ],
)
def test_unsupported_or_malformed_kickoffs_are_refused(
    params: list[tuple[str, str]], prefer: str | None
) -> None:
    with pytest.raises(MalformedRequest):
        parse_kickoff(params, prefer=prefer)
