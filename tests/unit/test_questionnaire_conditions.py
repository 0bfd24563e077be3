"""The definition language: groups, repeating groups, enableWhen with FHIR R4's meaning."""

from __future__ import annotations

from typing import Any

import pytest

from healthinfo.questionnaires.model import DefinitionError, Questionnaire
from healthinfo.questionnaires.validation import (
    missing_required,
    remove_disabled,
    validate_answers,
)


def q(*items: dict[str, Any]) -> Questionnaire:
    return Questionnaire.from_dict({"id": "t", "version": "1", "title": "T", "items": list(items)})


def boolean(item_id: str, **extra: Any) -> dict[str, Any]:
    return question(item_id, "boolean", **extra)


def question(item_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    base = {"id": item_id, "text": item_id, "type": kind, "required": False, "section": "s"}
    return base | extra


def integer(item_id: str, **extra: Any) -> dict[str, Any]:
    return question(item_id, "integer", **extra)


def when(question: str, operator: str, answer: Any) -> dict[str, Any]:
    return {"question": question, "operator": operator, "answer": answer}


SYMPTOMS = {
    "id": "symptoms",
    "text": "Symptoms?",
    "type": "multiple-choice",
    "required": False,
    "section": "s",
    "options": [{"value": "cough", "label": "Cough"}, {"value": "fever", "label": "Fever"}],
}

MEDICATIONS = {
    "id": "medications",
    "text": "Medications",
    "type": "group",
    "section": "s",
    "repeats": True,
    "maxItems": 3,
    "items": [
        {"id": "name", "text": "Name", "type": "string", "required": True},
        integer("doseMg", minimum=1, maximum=1000),
        boolean("daily"),
        integer("timesPerDay", enableWhen=[when("daily", "=", True)], required=True),
    ],
}


def errors_of(definition: dict[str, Any], *more: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        q(definition, *more)
    return info.value.errors


def disabled(questionnaire: Questionnaire, answers: dict[str, Any]) -> set[str]:
    return questionnaire.plan.disabled(answers)


# --- FHIR semantics -----------------------------------------------------------------------


def test_equals_on_a_multiple_choice_answer_holds_when_any_selected_option_equals() -> None:
    form = q(SYMPTOMS, integer("feverDays", enableWhen=[when("symptoms", "=", "fever")]))
    assert "feverDays" not in disabled(form, {"symptoms": ["cough", "fever"]})
    assert "feverDays" in disabled(form, {"symptoms": ["cough"]})


def test_not_equals_on_an_unanswered_item_is_true_per_fhir() -> None:
    form = q(boolean("smoker"), integer("why", enableWhen=[when("smoker", "!=", True)]))
    assert "why" not in disabled(form, {})
    assert "why" in disabled(form, {"smoker": True})


def test_exists_true_and_false() -> None:
    form = q(
        boolean("smoker"),
        integer("a", enableWhen=[when("smoker", "exists", True)]),
        integer("b", enableWhen=[when("smoker", "exists", False)]),
    )
    assert disabled(form, {}) == {"a"}
    assert disabled(form, {"smoker": False}) == {"b"}


@pytest.mark.parametrize(
    ("operator", "answer", "enabled"),
    [(">", 10, False), ("<", 10, True), (">=", 5, True), ("<=", 4, False), ("=", 5, True)],
)
def test_ordering_operators_compare_the_answer(operator: str, answer: int, enabled: bool) -> None:
    form = q(integer("n"), boolean("x", enableWhen=[when("n", operator, answer)]))
    assert ("x" not in disabled(form, {"n": 5})) is enabled


def test_an_ordering_operator_on_an_unanswered_item_is_false() -> None:
    form = q(integer("n"), boolean("x", enableWhen=[when("n", "<", 10)]))
    assert "x" in disabled(form, {})


def test_enable_behavior_any_needs_one_condition_and_all_needs_every_one() -> None:
    conditions = [when("a", "=", True), when("b", "=", True)]
    form = q(
        boolean("a"),
        boolean("b"),
        integer("anyOf", enableWhen=conditions, enableBehavior="any"),
        integer("allOf", enableWhen=conditions, enableBehavior="all"),
    )
    assert disabled(form, {"a": True}) == {"allOf"}


def test_disabling_cascades_through_a_chain_of_conditions() -> None:
    form = q(
        boolean("a"),
        boolean("b", enableWhen=[when("a", "=", True)]),
        boolean("c", enableWhen=[when("b", "=", True)]),
        boolean("d", enableWhen=[when("c", "exists", True)]),
    )
    answers = {"a": False, "b": True, "c": True, "d": True}
    kept, errors = remove_disabled(form, answers, written=["a"])
    assert kept == {"a": False}
    assert errors == []


def test_a_disabled_group_disables_its_children() -> None:
    group = {
        "id": "smoking",
        "text": "Smoking",
        "type": "group",
        "enableWhen": [when("smoker", "=", True)],
        "items": [integer("perDay", section="s")],
    }
    form = q(boolean("smoker"), group)
    assert form.item("perDay") is not None
    assert "perDay" in disabled(form, {"smoker": False})


def test_a_condition_inside_a_repetition_looks_at_the_same_row() -> None:
    form = q(MEDICATIONS)
    rows = [{"name": "a", "daily": True, "timesPerDay": 2}, {"name": "b", "timesPerDay": 1}]
    kept, errors = remove_disabled(form, {"medications": rows}, written=["medications"])
    assert [e.field for e in errors] == ["answers.medications[1].timesPerDay"]
    assert errors[0].message == "not enabled"
    assert kept["medications"] == [rows[0], {"name": "b"}]


def test_answering_a_disabled_item_is_not_enabled() -> None:
    form = q(boolean("smoker"), integer("perDay", enableWhen=[when("smoker", "=", True)]))
    _kept, errors = remove_disabled(form, {"smoker": False, "perDay": 3}, written=["perDay"])
    assert [(e.field, e.message) for e in errors] == [("answers.perDay", "not enabled")]


def test_required_applies_only_to_enabled_items() -> None:
    form = q(
        boolean("smoker"),
        integer("perDay", required=True, enableWhen=[when("smoker", "=", True)]),
    )
    assert missing_required(form, {"smoker": False}) == []
    assert [e.field for e in missing_required(form, {"smoker": True})] == ["answers.perDay"]


def test_required_in_a_repeating_group_is_checked_row_by_row() -> None:
    form = q(MEDICATIONS)
    rows = [{"name": "a"}, {"daily": True, "name": "b"}]
    fields = [e.field for e in missing_required(form, {"medications": rows})]
    assert fields == ["answers.medications[1].timesPerDay"]


# --- repeating groups, row by row ---------------------------------------------------------


def test_rows_are_validated_child_by_child_naming_the_row() -> None:
    form = q(MEDICATIONS)
    rows = [{"name": "a"}, {"name": "b"}, {"name": "c", "doseMg": 0, "colour": "red"}]
    errors = validate_answers(form, {"medications": rows})
    assert [e.field for e in errors] == [
        "answers.medications[2].colour",
        "answers.medications[2].doseMg",
    ]


def test_a_repeating_group_holds_at_most_max_items_rows() -> None:
    form = q(MEDICATIONS)
    errors = validate_answers(form, {"medications": [{"name": "x"}] * 4})
    assert [(e.field, e.message) for e in errors] == [
        ("answers.medications", "must have at most 3 rows")
    ]


def test_a_repeating_group_answer_must_be_a_list_of_objects() -> None:
    form = q(MEDICATIONS)
    assert [e.field for e in validate_answers(form, {"medications": {"name": "x"}})] == [
        "answers.medications"
    ]
    assert [e.field for e in validate_answers(form, {"medications": ["x"]})] == [
        "answers.medications[0]"
    ]


def test_items_in_a_repeating_group_are_not_top_level_answers() -> None:
    form = q(MEDICATIONS)
    assert [e.message for e in validate_answers(form, {"doseMg": 5})] == ["unknown question id"]


def test_display_items_are_never_answered() -> None:
    form = q({"id": "intro", "text": "Welcome", "type": "display"}, boolean("a"))
    assert [e.message for e in validate_answers(form, {"intro": "x"})] == ["unknown question id"]


# --- errors at publication, each naming its path -------------------------------------------


def test_a_condition_naming_an_unknown_id_names_its_path() -> None:
    errors = errors_of(boolean("a"), boolean("b", enableWhen=[when("nope", "=", True)]))
    assert errors == [("items[1].enableWhen[0].question", "names no item of this questionnaire")]


def test_a_cycle_of_conditions_is_refused() -> None:
    errors = errors_of(
        boolean("a", enableWhen=[when("b", "=", True)]),
        boolean("b", enableWhen=[when("a", "=", True)]),
    )
    assert [message for _path, message in errors] == ["forms a cycle of conditions"]
    assert errors[0][0].endswith(".enableWhen[0].question")


def test_a_condition_on_its_own_item_is_a_cycle() -> None:
    errors = errors_of(boolean("a", enableWhen=[when("a", "exists", True)]))
    assert errors == [("items[0].enableWhen[0].question", "forms a cycle of conditions")]


def test_duplicate_ids_across_groups_are_refused() -> None:
    group = {"id": "g", "text": "G", "type": "group", "items": [boolean("a", section="s")]}
    errors = errors_of(boolean("a"), group)
    assert errors == [("items[1].items[0].id", "item 'a' is defined twice")]


def test_an_answer_of_the_wrong_type_for_the_named_item_is_refused() -> None:
    errors = errors_of(integer("n"), boolean("b", enableWhen=[when("n", "=", "five")]))
    assert errors == [("items[1].enableWhen[0].answer", "is not a possible answer to 'n'")]


def test_an_option_the_named_choice_item_does_not_have_is_refused() -> None:
    errors = errors_of(SYMPTOMS, boolean("b", enableWhen=[when("symptoms", "=", "rash")]))
    assert errors == [("items[1].enableWhen[0].answer", "is not a possible answer to 'symptoms'")]


def test_an_operator_that_does_not_fit_the_named_item_is_refused() -> None:
    errors = errors_of(boolean("a"), boolean("b", enableWhen=[when("a", ">", True)]))
    assert errors == [("items[1].enableWhen[0].operator", "> does not fit a boolean item")]


def test_exists_needs_a_boolean_answer() -> None:
    errors = errors_of(boolean("a"), boolean("b", enableWhen=[when("a", "exists", 1)]))
    assert errors == [("items[1].enableWhen[0].answer", "must be true or false for exists")]


def test_two_conditions_need_enable_behavior() -> None:
    conditions = [when("a", "=", True), when("a", "=", False)]
    errors = errors_of(boolean("a"), boolean("b", enableWhen=conditions))
    assert errors[0][0] == "items[1]"
    assert "enableBehavior is required" in errors[0][1]


def test_a_condition_cannot_reach_into_another_repeating_group() -> None:
    errors = errors_of(MEDICATIONS, boolean("b", enableWhen=[when("daily", "=", True)]))
    assert errors == [
        (
            "items[1].enableWhen[0].question",
            "names an item inside a repeating group this item is not in",
        )
    ]


def test_a_condition_on_a_display_item_is_refused() -> None:
    display = {"id": "intro", "text": "Hi", "type": "display"}
    errors = errors_of(display, boolean("b", enableWhen=[when("intro", "exists", True)]))
    assert errors == [
        ("items[1].enableWhen[0].question", "names a display item, which has no answer")
    ]


def test_every_error_of_a_definition_is_reported_at_once() -> None:
    errors = errors_of(
        boolean("a", enableWhen=[when("x", "=", True)]),
        boolean("b", enableWhen=[when("y", "=", True)]),
    )
    assert [path for path, _ in errors] == [
        "items[0].enableWhen[0].question",
        "items[1].enableWhen[0].question",
    ]


def test_a_definition_with_groups_round_trips_through_its_public_dict() -> None:
    form = q(boolean("daily0"), MEDICATIONS, {"id": "intro", "text": "Hi", "type": "display"})
    assert Questionnaire.from_dict(form.to_public_dict()) == form
