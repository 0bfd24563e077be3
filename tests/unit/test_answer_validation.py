"""Strict validation of answers: no coercion, inclusive bounds, no values in messages."""

from __future__ import annotations

from datetime import date

import pytest

from healthinfo.errors import FieldError
from healthinfo.questionnaires.model import Item, Option, Questionnaire
from healthinfo.questionnaires.registry import QuestionnaireRegistry
from healthinfo.questionnaires.validation import missing_required, validate_answers

TODAY = date(2024, 6, 15)

Q = Questionnaire(
    id="test",
    version="1",
    title="Test",
    items=(
        Item(id="flag", text="Flag?", type="boolean", required=True, section="s"),
        Item(
            id="height",
            text="Height?",
            type="integer",
            required=True,
            section="s",
            minimum=30,
            maximum=272,
        ),
        Item(id="count", text="Count?", type="integer", required=False, section="s"),
        Item(
            id="weight",
            text="Weight?",
            type="decimal",
            required=False,
            section="s",
            minimum=1,
            maximum=650,
        ),
        Item(
            id="born",
            text="Born?",
            type="date",
            required=True,
            section="s",
            minimum="1900-01-01",
            maximum="today",
        ),
        Item(id="anyDate", text="Any date?", type="date", required=False, section="s"),
        Item(id="name", text="Name?", type="string", required=False, section="s", max_length=5),
        Item(id="longName", text="Name?", type="string", required=False, section="s"),
        Item(id="notes", text="Notes?", type="text", required=False, section="s"),
        Item(
            id="colour",
            text="Colour?",
            type="single-choice",
            required=False,
            section="s",
            options=(Option("red", "Red"), Option("blue", "Blue")),
        ),
        Item(
            id="pets",
            text="Pets?",
            type="multiple-choice",
            required=False,
            section="s",
            options=(Option("cat", "Cat"), Option("dog", "Dog"), Option("fish", "Fish")),
            max_items=2,
        ),
    ),
)

VALID: dict[str, object] = {
    "flag": False,
    "height": 180,
    "count": -3,
    "weight": 72.5,
    "born": "1980-02-29",
    "anyDate": "2999-12-31",
    "name": "Alex",
    "longName": "A" * 200,
    "notes": "Line one\nLine two\twith a tab",
    "colour": "blue",
    "pets": ["cat", "dog"],
}


def errors_for(question_id: str, value: object) -> list[FieldError]:
    return validate_answers(Q, {question_id: value}, today=TODAY)


def message_for(question_id: str, value: object) -> str:
    errors = errors_for(question_id, value)
    assert len(errors) == 1, errors
    assert errors[0].field == f"answers.{question_id}"
    return errors[0].message


# --- whole answer sets ----------------------------------------------------------------------


def test_valid_answers_of_every_type_produce_no_errors() -> None:
    assert validate_answers(Q, VALID, today=TODAY) == []


def test_empty_answers_are_valid_for_a_draft() -> None:
    assert validate_answers(Q, {}, today=TODAY) == []


def test_a_realistic_answer_set_passes_the_shipped_questionnaire() -> None:
    q = QuestionnaireRegistry.builtin().default
    answers: dict[str, object] = {
        "dateOfBirth": "1975-04-12",
        "sexAtBirth": "female",
        "heightCm": 168,
        "weightKg": 64.3,
        "smokingStatus": "former",
        "yearsSmoked": 12,
        "alcoholFrequency": "2-3-times-a-week",
        "drinksPerWeek": 6,
        "takesMedication": True,
        "medications": "Levothyroxine 50 micrograms daily",
        "conditions": ["thyroid-disorder"],
        "hasAllergies": True,
        "allergies": ["penicillin", "latex"],
        "isPregnant": "no",
        "symptoms": [],
        "sampleCollectionDate": "2024-06-14",
        "fastingHours": 10,
        "consentToResearch": False,
    }
    assert validate_answers(q, answers, today=TODAY) == []
    assert missing_required(q, answers) == []


def test_all_bad_fields_are_reported_not_just_the_first() -> None:
    bad = {"height": 10, "flag": "yes", "colour": "green", "nope": 1, "pets": "cat"}
    errors = validate_answers(Q, VALID | bad, today=TODAY)
    assert {error.field for error in errors} == {f"answers.{qid}" for qid in bad}


def test_errors_are_sorted_by_field() -> None:
    bad = {"weight": 0, "born": "x", "pets": 1, "anyDate": 5}
    fields = [error.field for error in validate_answers(Q, bad, today=TODAY)]
    assert fields == sorted(fields)
    assert len(fields) == 4


def test_a_field_with_several_problems_gets_one_error() -> None:
    # Unknown option, duplicated and too many at once.
    assert len(errors_for("pets", ["cat", "cat", "bird", "dog"])) == 1


# --- unknown ids and nulls ------------------------------------------------------------------


def test_unknown_question_id_is_rejected() -> None:
    assert message_for("shoeSize", 42) == "unknown question id"


def test_null_answer_is_reported_instead_of_crashing() -> None:
    assert message_for("height", None) == "null is not an answer; omit the question instead"


# --- boolean --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_boolean_accepts_true_and_false(value: bool) -> None:
    assert errors_for("flag", value) == []


@pytest.mark.parametrize("value", [0, 1, "true", "false", "yes", [True]])
def test_boolean_rejects_numbers_and_strings(value: object) -> None:
    assert message_for("flag", value) == "must be true or false"


# --- integer --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [False, True])
def test_integer_rejects_booleans(value: bool) -> None:
    # True == 1 and False == 0 in Python; both must still be refused.
    assert errors_for("count", value) != []


def test_integer_rejects_a_float_with_an_integral_value() -> None:
    assert message_for("height", 180.0) == "must be an integer between 30 and 272"


@pytest.mark.parametrize("value", ["180", "180cm", [180], {"cm": 180}])
def test_integer_rejects_non_numbers(value: object) -> None:
    assert errors_for("height", value) != []


@pytest.mark.parametrize("value", [30, 272])
def test_integer_bounds_are_inclusive(value: int) -> None:
    assert errors_for("height", value) == []


@pytest.mark.parametrize("value", [29, 273, -1, 10**100])
def test_integer_outside_bounds_is_rejected_with_the_expected_range(value: int) -> None:
    assert message_for("height", value) == "must be an integer between 30 and 272"


def test_integer_without_bounds_accepts_any_int() -> None:
    assert errors_for("count", -(10**30)) == []


# --- decimal --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 650, 72.5, 1.0, 649.999])
def test_decimal_accepts_ints_and_floats_within_inclusive_bounds(value: float) -> None:
    assert errors_for("weight", value) == []


@pytest.mark.parametrize("value", [True, False])
def test_decimal_rejects_booleans(value: bool) -> None:
    assert errors_for("weight", value) != []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_decimal_rejects_non_finite_numbers(value: float) -> None:
    assert message_for("weight", value) == "must be a number between 1 and 650"


@pytest.mark.parametrize("value", [0.999, 650.001, 0, 10**400])
def test_decimal_outside_bounds_is_rejected(value: float) -> None:
    assert message_for("weight", value) == "must be a number between 1 and 650"


def test_decimal_rejects_a_numeric_string() -> None:
    assert errors_for("weight", "72.5") != []


# --- date -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1900-01-01", "2024-06-15", "2000-02-29"])
def test_date_accepts_dates_within_inclusive_bounds(value: str) -> None:
    assert errors_for("born", value) == []


def test_date_after_today_is_rejected() -> None:
    assert message_for("born", "2024-06-16") == (
        "must be a date YYYY-MM-DD between 1900-01-01 and today"
    )


def test_date_before_minimum_is_rejected() -> None:
    assert errors_for("born", "1899-12-31") != []


@pytest.mark.parametrize("value", ["2023-02-29", "2024-13-01", "2024-04-31", "0000-01-01"])
def test_date_rejects_impossible_calendar_dates(value: str) -> None:
    assert errors_for("anyDate", value) != []


@pytest.mark.parametrize(
    "value",
    [
        "20240102",
        "2024-1-2",
        "2024-01-02T00:00:00",
        "2024-01-02 ",
        "2024-01-02\n",
        "2024-W01-1",
        "２０２４-01-02",
        "02/01/2024",
    ],
)
def test_date_rejects_anything_but_exactly_yyyy_mm_dd(value: str) -> None:
    assert message_for("anyDate", value) == "must be a date YYYY-MM-DD"


@pytest.mark.parametrize("value", [date(2024, 1, 2), 20240102, ["2024-01-02"]])
def test_date_rejects_non_strings(value: object) -> None:
    assert errors_for("anyDate", value) != []


def test_date_bound_today_follows_the_given_day() -> None:
    assert errors_for("born", "2024-06-16") != []
    assert validate_answers(Q, {"born": "2024-06-16"}, today=date(2024, 6, 16)) == []


def test_date_without_today_keyword_uses_the_current_date() -> None:
    assert validate_answers(Q, {"born": "9999-12-31"}) != []
    assert validate_answers(Q, {"born": "2000-01-01"}) == []


def test_shipped_symptom_onset_date_must_not_be_after_today() -> None:
    q = QuestionnaireRegistry.builtin().default
    errors = validate_answers(q, {"symptomOnsetDate": "2024-06-16"}, today=TODAY)
    assert errors == [
        FieldError(
            "answers.symptomOnsetDate", "must be a date YYYY-MM-DD between 1900-01-01 and today"
        )
    ]


# --- string and text ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", " ", "\n\t  "])
def test_empty_or_whitespace_text_is_rejected(value: str) -> None:
    assert message_for("name", value) == "must not be empty; remove the answer instead"


def test_string_at_max_length_is_accepted() -> None:
    assert errors_for("name", "abcde") == []


def test_string_over_max_length_is_rejected() -> None:
    assert message_for("name", "abcdef") == "must be text of at most 5 characters"


def test_string_default_limit_is_200_characters() -> None:
    assert errors_for("longName", "a" * 200) == []
    assert errors_for("longName", "a" * 201) != []


def test_text_default_limit_is_4000_characters() -> None:
    assert errors_for("notes", "a" * 4000) == []
    assert errors_for("notes", "a" * 4001) != []


@pytest.mark.parametrize("value", [5, True, ["abc"], {"a": "b"}])
def test_text_rejects_non_strings(value: object) -> None:
    assert errors_for("notes", value) != []


@pytest.mark.parametrize("value", ["a\x00b", "a\x07b", "a\x1bb", "a\ud800b"])
def test_text_rejects_control_characters_and_lone_surrogates(value: str) -> None:
    message = message_for("notes", value)
    assert message == "must not contain control characters or unpaired surrogates"


def test_text_allows_line_breaks_tabs_and_non_ascii() -> None:
    assert errors_for("notes", "Première ligne\r\nzweite Zeile\t— 😷") == []


# --- single choice --------------------------------------------------------------------------


def test_single_choice_accepts_an_option_value() -> None:
    assert errors_for("colour", "red") == []


@pytest.mark.parametrize("value", ["Red", "green", "RED", "", ["red"], 1, True])
def test_single_choice_rejects_anything_but_an_option_value(value: object) -> None:
    assert message_for("colour", value) == "must be one of the listed options"


# --- multiple choice ------------------------------------------------------------------------


def test_multiple_choice_accepts_an_empty_list() -> None:
    assert errors_for("pets", []) == []


def test_multiple_choice_accepts_up_to_max_items_distinct_options() -> None:
    assert errors_for("pets", ["fish", "cat"]) == []


@pytest.mark.parametrize("value", ["cat", {"cat": True}, ("cat",), 1])
def test_multiple_choice_rejects_anything_but_a_list(value: object) -> None:
    assert message_for("pets", value) == "must be a list of the listed options"


@pytest.mark.parametrize("value", [["bird"], ["cat", "Dog"], ["cat", 1], [None], [["cat"]]])
def test_multiple_choice_rejects_entries_that_are_not_option_values(value: object) -> None:
    assert message_for("pets", value) == "must contain only the listed options"


def test_multiple_choice_rejects_a_repeated_option() -> None:
    assert message_for("pets", ["cat", "cat"]) == "must not list the same option twice"


def test_multiple_choice_rejects_more_than_max_items() -> None:
    assert message_for("pets", ["cat", "dog", "fish"]) == "must list at most 2 options"


# --- no health data in messages -------------------------------------------------------------


@pytest.mark.parametrize(
    ("question_id", "value", "marker"),
    [
        ("height", 987654321, "987654321"),
        ("height", 181.5, "181.5"),
        ("count", "QXZMARKER", "QXZMARKER"),
        ("weight", 98765.4321, "98765.4321"),
        ("weight", "QXZMARKER", "QXZMARKER"),
        ("born", "1777-07-07", "1777-07-07"),
        ("born", "2099-09-09", "2099-09-09"),
        ("anyDate", "QXZMARKER", "QXZMARKER"),
        ("name", "QXZMARKER-TOO-LONG", "QXZMARKER"),
        ("notes", "QXZMARKER\x00", "QXZMARKER"),
        ("flag", "QXZMARKER", "QXZMARKER"),
        ("colour", "QXZMARKER", "QXZMARKER"),
        ("pets", ["QXZMARKER"], "QXZMARKER"),
        ("pets", ["cat", "cat"], "cat"),
        ("pets", "QXZMARKER", "QXZMARKER"),
    ],
)
def test_error_message_never_contains_the_submitted_value(
    question_id: str, value: object, marker: str
) -> None:
    errors = errors_for(question_id, value)
    assert errors, "the value should have been rejected"
    assert all(marker not in error.message for error in errors)
    assert marker not in repr(errors)


# --- missing required -----------------------------------------------------------------------


def test_missing_required_lists_every_absent_required_question_sorted() -> None:
    assert missing_required(Q, {"height": 180}) == [
        FieldError("answers.born", "is required to submit"),
        FieldError("answers.flag", "is required to submit"),
    ]


def test_missing_required_counts_false_as_an_answer() -> None:
    assert missing_required(Q, {"flag": False, "height": 180, "born": "2000-01-01"}) == []


def test_missing_required_ignores_optional_questions() -> None:
    fields = {error.field for error in missing_required(Q, {})}
    assert fields == {"answers.flag", "answers.height", "answers.born"}


def test_shipped_questionnaire_requires_every_required_item_on_submit() -> None:
    q = QuestionnaireRegistry.builtin().default
    assert [e.field for e in missing_required(q, {})] == sorted(
        f"answers.{qid}" for qid in q.required_ids
    )
