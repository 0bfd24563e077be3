"""The shipped questionnaire definition, its strict parsing, serialisation and the registry."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, get_args

import pytest

from healthinfo.errors import NotFound
from healthinfo.questionnaires.model import Item, ItemType, Option, Questionnaire
from healthinfo.questionnaires.registry import QuestionnaireRegistry


def shipped() -> Questionnaire:
    return QuestionnaireRegistry.builtin().default


def minimal_definition() -> dict[str, Any]:
    return {
        "id": "tiny",
        "version": "1",
        "title": "Tiny",
        "items": [
            {"id": "age", "text": "Age?", "type": "integer", "required": True, "section": "s"},
            {
                "id": "colour",
                "text": "Colour?",
                "type": "single-choice",
                "required": False,
                "section": "s",
                "options": [{"value": "red", "label": "Red"}, {"value": "blue", "label": "Blue"}],
            },
        ],
    }


def with_item(**item: Any) -> dict[str, Any]:
    definition = minimal_definition()
    definition["items"].append(
        {"id": "extra", "text": "Extra?", "required": False, "section": "s"} | item
    )
    return definition


# --- the shipped definition ---------------------------------------------------------------


def test_registry_default_is_the_health_information_questionnaire() -> None:
    q = shipped()
    assert (q.id, q.version) == ("health-information", "1")
    assert q.title


def test_shipped_definition_has_between_25_and_40_items() -> None:
    assert 25 <= len(shipped().items) <= 40


def test_shipped_definition_uses_all_eight_question_types() -> None:
    # dateTime and time came with FHIR import, after the shipped definition.
    question_types = set(get_args(ItemType)) - {"display", "group", "dateTime", "time"}
    assert {item.type for item in shipped().items} == question_types


def test_shipped_definition_has_at_least_8_required_items() -> None:
    assert len(shipped().required_ids) >= 8


def test_shipped_item_ids_are_lower_camel_case() -> None:
    for item in shipped().items:
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", item.id), item.id


def test_shipped_definition_states_the_key_clinical_bounds() -> None:
    q = shipped()
    height, weight, birth = q.item("heightCm"), q.item("weightKg"), q.item("dateOfBirth")
    assert height is not None
    assert (height.type, height.required, height.minimum, height.maximum) == (
        "integer",
        True,
        30,
        272,
    )
    assert weight is not None
    assert (weight.type, weight.minimum, weight.maximum) == ("decimal", 1, 650)
    assert birth is not None
    assert (birth.type, birth.minimum, birth.maximum) == ("date", "1900-01-01", "today")


def test_shipped_choice_items_all_have_options_with_distinct_values() -> None:
    for item in shipped().items:
        if item.type in ("single-choice", "multiple-choice"):
            values = [option.value for option in item.options]
            assert values, item.id
            assert len(values) == len(set(values)), item.id


# --- lookups --------------------------------------------------------------------------------


def test_item_looks_up_a_question_by_id() -> None:
    item = shipped().item("smokingStatus")
    assert item is not None
    assert item.type == "single-choice"


def test_item_returns_none_for_an_unknown_id() -> None:
    assert shipped().item("noSuchQuestion") is None


def test_required_ids_lists_exactly_the_required_items_in_order() -> None:
    q = shipped()
    assert q.required_ids == tuple(item.id for item in q.items if item.required)
    assert "heightCm" in q.required_ids
    assert "waistCm" not in q.required_ids


# --- public serialisation -------------------------------------------------------------------


def test_public_dict_round_trips_through_json_and_from_dict() -> None:
    q = shipped()
    public = json.loads(json.dumps(q.to_public_dict()))
    assert public == q.to_public_dict()
    assert Questionnaire.from_dict(public) == q


def test_public_dict_uses_camel_case_keys() -> None:
    items = {item["id"]: item for item in shipped().to_public_dict()["items"]}
    assert items["additionalNotes"]["maxLength"] == 4000
    assert "max_length" not in items["additionalNotes"]


def test_public_dict_omits_absent_bounds_and_empty_options() -> None:
    items = {item["id"]: item for item in shipped().to_public_dict()["items"]}
    assert items["vaping"] == {
        "id": "vaping",
        "text": items["vaping"]["text"],
        "type": "boolean",
        "required": False,
        "section": "smoking",
    }


def test_public_dict_lists_options_as_value_and_label() -> None:
    items = {item["id"]: item for item in shipped().to_public_dict()["items"]}
    assert {"value": "never", "label": "I have never smoked"} in items["smokingStatus"]["options"]


def test_public_dict_shows_the_default_length_limit_actually_enforced() -> None:
    item = Item(id="note", text="Note?", type="text", required=False, section="s")
    assert item.max_length == 4000
    assert item.to_public_dict()["maxLength"] == 4000
    short = Item(id="name", text="Name?", type="string", required=False, section="s")
    assert short.max_length == 200


def test_max_items_is_serialised_as_max_items() -> None:
    item = Item(
        id="pick",
        text="Pick?",
        type="multiple-choice",
        required=False,
        section="s",
        options=(Option("a", "A"), Option("b", "B")),
        max_items=1,
    )
    assert item.to_public_dict()["maxItems"] == 1


# --- strict parsing -------------------------------------------------------------------------


def test_from_dict_accepts_a_minimal_definition() -> None:
    q = Questionnaire.from_dict(minimal_definition())
    assert [item.id for item in q.items] == ["age", "colour"]
    assert q.item("colour") == Item(
        id="colour",
        text="Colour?",
        type="single-choice",
        required=False,
        section="s",
        options=(Option("red", "Red"), Option("blue", "Blue")),
    )


def test_from_dict_rejects_duplicate_item_ids() -> None:
    definition = minimal_definition()
    definition["items"].append(copy.deepcopy(definition["items"][0]))
    with pytest.raises(ValueError, match="'age' is defined twice"):
        Questionnaire.from_dict(definition)


def test_from_dict_rejects_a_choice_item_without_options() -> None:
    with pytest.raises(ValueError, match="item 'extra': a single-choice item needs options"):
        Questionnaire.from_dict(with_item(type="single-choice"))


def test_from_dict_rejects_a_multiple_choice_item_with_an_empty_option_list() -> None:
    with pytest.raises(ValueError, match="item 'extra': a multiple-choice item needs options"):
        Questionnaire.from_dict(with_item(type="multiple-choice", options=[]))


def test_from_dict_rejects_options_on_a_non_choice_item() -> None:
    options = [{"value": "a", "label": "A"}]
    with pytest.raises(ValueError, match="item 'extra': a boolean item cannot have options"):
        Questionnaire.from_dict(with_item(type="boolean", options=options))


def test_from_dict_rejects_an_unknown_type() -> None:
    with pytest.raises(ValueError, match="item 'extra': unknown type 'number'"):
        Questionnaire.from_dict(with_item(type="number"))


def test_from_dict_rejects_an_unknown_item_key() -> None:
    with pytest.raises(ValueError, match="item 'extra': unknown keys maxlength"):
        Questionnaire.from_dict(with_item(type="string", maxlength=10))


def test_from_dict_rejects_an_item_missing_a_key_naming_it_by_position() -> None:
    definition = minimal_definition()
    definition["items"].append({"text": "No id", "type": "boolean", "required": False})
    with pytest.raises(ValueError, match="item #3: missing id, section"):
        Questionnaire.from_dict(definition)


def test_from_dict_rejects_duplicate_option_values() -> None:
    options = [{"value": "a", "label": "A"}, {"value": "a", "label": "Also A"}]
    with pytest.raises(ValueError, match="item 'extra': option values must be distinct"):
        Questionnaire.from_dict(with_item(type="single-choice", options=options))


def test_from_dict_rejects_bounds_on_a_type_without_bounds() -> None:
    with pytest.raises(ValueError, match="item 'extra': a string item cannot have minimum"):
        Questionnaire.from_dict(with_item(type="string", minimum=1))


def test_from_dict_rejects_a_float_bound_on_an_integer_item() -> None:
    with pytest.raises(ValueError, match="item 'extra': minimum and maximum must be integers"):
        Questionnaire.from_dict(with_item(type="integer", minimum=0.5))


def test_from_dict_rejects_a_boolean_bound_on_a_numeric_item() -> None:
    with pytest.raises(ValueError, match="item 'extra'"):
        Questionnaire.from_dict(with_item(type="decimal", maximum=True))


def test_from_dict_rejects_a_date_bound_not_in_iso_format() -> None:
    with pytest.raises(ValueError, match="item 'extra': minimum and maximum must be dates"):
        Questionnaire.from_dict(with_item(type="date", minimum="01/02/1900"))


def test_from_dict_rejects_minimum_greater_than_maximum() -> None:
    with pytest.raises(ValueError, match="item 'extra': minimum is greater than maximum"):
        Questionnaire.from_dict(with_item(type="integer", minimum=10, maximum=1))


def test_from_dict_rejects_max_length_on_a_non_text_item() -> None:
    with pytest.raises(ValueError, match="item 'extra': a integer item cannot have maxLength"):
        Questionnaire.from_dict(with_item(type="integer", maxLength=10))


def test_from_dict_rejects_a_non_positive_max_length() -> None:
    with pytest.raises(ValueError, match="item 'extra': maxLength must be a positive integer"):
        Questionnaire.from_dict(with_item(type="text", maxLength=0))


def test_from_dict_rejects_max_items_on_a_single_choice_item() -> None:
    options = [{"value": "a", "label": "A"}]
    with pytest.raises(ValueError, match="a single-choice item cannot have maxItems"):
        Questionnaire.from_dict(with_item(type="single-choice", options=options, maxItems=1))


def test_from_dict_rejects_a_non_boolean_required_flag() -> None:
    with pytest.raises(ValueError, match="item 'extra': required must be true or false"):
        Questionnaire.from_dict(with_item(type="boolean", required="yes"))


@pytest.mark.parametrize("bad_id", ["", " age", "age\n", "a" * 256, "tab\tin"])
def test_from_dict_rejects_an_id_that_is_not_1_to_255_printable_characters(bad_id: str) -> None:
    definition = minimal_definition()
    definition["items"][0]["id"] = bad_id
    with pytest.raises(ValueError, match="id must be 1 to 255 printable characters"):
        Questionnaire.from_dict(definition)


@pytest.mark.parametrize("fhir_link_id", ["1.1", "/69671-6", "a b"])
def test_from_dict_keeps_a_fhir_link_id_as_the_item_id(fhir_link_id: str) -> None:
    definition = minimal_definition()
    definition["items"][0]["id"] = fhir_link_id
    assert Questionnaire.from_dict(definition).item(fhir_link_id) is not None


def test_from_dict_rejects_an_unknown_top_level_key() -> None:
    with pytest.raises(ValueError, match="unknown keys description"):
        Questionnaire.from_dict(minimal_definition() | {"description": "x"})


def test_from_dict_rejects_a_questionnaire_without_items() -> None:
    with pytest.raises(ValueError, match="has no items"):
        Questionnaire.from_dict(minimal_definition() | {"items": []})


# --- registry -------------------------------------------------------------------------------


def test_registry_get_returns_a_questionnaire_by_id() -> None:
    registry = QuestionnaireRegistry.builtin()
    assert registry.get("health-information") is registry.default


def test_registry_get_raises_not_found_for_an_unknown_id() -> None:
    with pytest.raises(NotFound) as raised:
        QuestionnaireRegistry.builtin().get("nope")
    assert raised.value.detail == "No questionnaire 'nope'."


def test_registry_rejects_two_questionnaires_with_the_same_id() -> None:
    q = Questionnaire.from_dict(minimal_definition())
    with pytest.raises(ValueError, match="'tiny' is defined twice"):
        QuestionnaireRegistry([q, q])


def test_registry_without_the_default_questionnaire_reports_not_found() -> None:
    registry = QuestionnaireRegistry([Questionnaire.from_dict(minimal_definition())])
    assert "tiny" in registry
    with pytest.raises(NotFound):
        _ = registry.default
