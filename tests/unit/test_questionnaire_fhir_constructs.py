"""Definition constructs that came with FHIR import, in plain JSON definitions too.

dateTime and time items, open choices, integer and plain-string options, readOnly, FHIR
extensions carried unchanged, and questions without a section.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from healthinfo.questionnaires.model import Questionnaire
from healthinfo.questionnaires.validation import validate_answers

TODAY = date(2026, 11, 24)


def definition(*items: dict[str, Any]) -> Questionnaire:
    return Questionnaire.from_dict({"id": "c", "version": "1", "title": "C", "items": list(items)})


def question(item_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "text": item_id, "type": kind, "required": False, "section": "s"} | extra


def errors(q: Questionnaire, answers: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e.field, e.message) for e in validate_answers(q, answers, today=TODAY)]


AT = definition(
    question("at", "dateTime", minimum="2024-01-01T00:00:00Z", maximum="2024-12-31T23:59:59+01:00"),
    question("wake", "time", minimum="04:00:00"),
)


@pytest.mark.parametrize(
    "value", ["2024-06-01T10:00:00Z", "2024-06-01T10:00:00.5+02:00", "2024-01-01T00:30:00-01:00"]
)
def test_a_datetime_with_a_zone_inside_the_bounds_is_an_answer(value: str) -> None:
    assert errors(AT, {"at": value}) == []


@pytest.mark.parametrize(
    "value",
    [
        "2024-06-01T10:00:00",  # no zone: FHIR requires one with a time
        "2024-06-01",
        "2024-06-01T10:00Z",
        "2024-01-01T00:30:00+01:00",  # 2023-12-31T23:30Z: before the minimum instant
        1717236000,
    ],
)
def test_other_datetimes_are_refused_with_the_expected_format(value: object) -> None:
    [(field, message)] = errors(AT, {"at": value})
    assert field == "answers.at"
    assert message.startswith("must be a date and time YYYY-MM-DDThh:mm:ss with a zone")


@pytest.mark.parametrize("value", ["04:00:00", "23:59:59", "12:30:00.25"])
def test_a_time_is_hh_mm_ss(value: str) -> None:
    assert errors(AT, {"wake": value}) == []


@pytest.mark.parametrize("value", ["03:59:59", "24:00:00", "10:00", "10:00:00Z", 36000])
def test_other_times_are_refused(value: object) -> None:
    assert errors(AT, {"wake": value}) == [
        ("answers.wake", "must be a time hh:mm:ss not less than 04:00:00")
    ]


def test_datetime_bounds_must_be_datetimes_in_order() -> None:
    with pytest.raises(ValueError, match="must be a date and time"):
        definition(question("at", "dateTime", minimum="2024-01-01"))
    with pytest.raises(ValueError, match="minimum is greater than maximum"):
        definition(
            question(
                "at",
                "dateTime",
                minimum="2024-01-01T01:00:00Z",
                maximum="2024-01-01T01:30:00+01:00",
            )
        )


OPEN = definition(
    question(
        "who",
        "single-choice",
        openChoice=True,
        maxLength=10,
        options=[{"value": "mother", "label": "Mother"}, {"value": "father", "label": "Father"}],
    ),
    question(
        "pets", "multiple-choice", openChoice=True, options=[{"value": "cat"}, {"value": "dog"}]
    ),
    question("count", "single-choice", options=[{"value": 0}, {"value": 1}, {"value": 3}]),
)


def test_an_open_choice_takes_an_option_or_free_text() -> None:
    assert errors(OPEN, {"who": "mother", "pets": ["cat", "hamster"]}) == []
    assert errors(OPEN, {"who": "Step-uncle"}) == []


def test_the_free_text_of_an_open_choice_is_limited_and_not_blank() -> None:
    assert errors(OPEN, {"who": "A very long relation"}) == [
        ("answers.who", "must be text of at most 10 characters")
    ]
    assert errors(OPEN, {"who": "  "}) == [
        ("answers.who", "must not be empty; remove the answer instead")
    ]
    assert errors(OPEN, {"who": 3}) == [
        ("answers.who", "must be one of the listed options or text")
    ]


def test_an_open_choice_without_max_length_gets_the_string_limit() -> None:
    pets = OPEN.item("pets")
    assert pets is not None
    assert pets.max_length == 200


def test_integer_options_are_answered_with_integers_never_booleans_or_strings() -> None:
    assert errors(OPEN, {"count": 3}) == []
    for value in ("3", True, 2, 3.0):
        assert errors(OPEN, {"count": value}) == [
            ("answers.count", "must be one of the listed options")
        ]


def test_options_are_coded_plain_strings_or_integers() -> None:
    kinds = [[o.kind for o in item.options] for item in OPEN.items]
    assert kinds == [["coding", "coding"], ["string", "string"], ["integer"] * 3]
    assert OPEN.to_public_dict()["items"][2]["options"] == [
        {"value": 0},
        {"value": 1},
        {"value": 3},
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([{"value": 1, "label": "One"}], "neither label nor system"),
        ([{"value": True}], "non-empty string or a 32-bit integer"),
        ([{"value": 2**31}], "non-empty string or a 32-bit integer"),
        ([{"value": "a", "label": " "}], "non-empty label"),
        ([{"value": "a", "colour": "red"}], "value, label, system"),
    ],
)
def test_malformed_options_are_refused(options: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        definition(question("x", "single-choice", options=options))


def test_an_open_choice_cannot_have_integer_options_or_be_another_type() -> None:
    with pytest.raises(ValueError, match="cannot have integer options"):
        definition(question("x", "single-choice", openChoice=True, options=[{"value": 1}]))
    with pytest.raises(ValueError, match="cannot be an open choice"):
        definition(question("x", "string", openChoice=True))


def test_conditions_on_integer_options_and_free_text_of_open_choices() -> None:
    q = definition(
        *OPEN.to_public_dict()["items"],
        question(
            "many", "boolean", enableWhen=[{"question": "count", "operator": "=", "answer": 3}]
        ),
        question(
            "other",
            "boolean",
            enableWhen=[{"question": "who", "operator": "=", "answer": "Step-uncle"}],
        ),
    )
    assert q.plan.disabled({"count": 3, "who": "Step-uncle"}) == set()
    assert q.plan.disabled({"count": 1, "who": "mother"}) == {"many", "other"}
    with pytest.raises(ValueError, match="is not a possible answer"):
        definition(
            *OPEN.to_public_dict()["items"],
            question(
                "bad", "boolean", enableWhen=[{"question": "count", "operator": "=", "answer": "3"}]
            ),
        )


def test_read_only_is_kept_and_not_on_display_items() -> None:
    q = definition(question("score", "integer", readOnly=True))
    assert q.to_public_dict()["items"][0]["readOnly"] is True
    assert errors(q, {"score": 4}) == []  # a form may fill it in (a calculated value)
    with pytest.raises(ValueError, match="cannot be read-only"):
        definition({"id": "d", "text": "D", "type": "display", "readOnly": True})


def test_fhir_extensions_are_kept_unchanged_but_not_the_ones_the_mapping_derives() -> None:
    control = {
        "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl",
        "valueCodeableConcept": {"coding": [{"code": "drop-down"}]},
    }
    q = Questionnaire.from_dict(
        {
            "id": "c",
            "version": "1",
            "title": "C",
            "fhirExtensions": [{"url": "http://example.org/x", "valueString": "y"}],
            "items": [question("x", "boolean", fhirExtensions=[control])],
        }
    )
    data = q.to_public_dict()
    assert data["fhirExtensions"] == [{"url": "http://example.org/x", "valueString": "y"}]
    assert data["items"][0]["fhirExtensions"] == [control]
    assert Questionnaire.from_dict(data) == q
    for bad in (
        [{"valueString": "no url"}],
        [{"url": "http://hl7.org/fhir/StructureDefinition/minValue", "valueInteger": 1}],
    ):
        with pytest.raises(ValueError, match="fhirExtensions"):
            definition(question("x", "integer", fhirExtensions=bad))


def test_a_question_may_have_no_section_except_inside_a_group_with_one() -> None:
    q = definition(question("x", "boolean", section=""))
    assert q.to_public_dict()["items"][0]["section"] == ""
    with pytest.raises(ValueError, match="must not be empty inside a group with a section"):
        definition(
            {
                "id": "g",
                "text": "G",
                "type": "group",
                "section": "s",
                "items": [question("x", "boolean", section="")],
            }
        )
