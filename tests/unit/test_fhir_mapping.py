"""FHIR R4 mapping: what the service emits is valid FHIR, and FHIR answers read back exactly.

Validity (``tests/support/fhir_validity.py``) is checked with the ``fhir.resources`` models and
by the R4 rules those models do not check. Groups, repetitions, the FHIR import and the round
trips of generated definitions are in ``test_fhir_questionnaire_import.py``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthinfo.errors import MalformedRequest, ValidationFailed
from healthinfo.fhir.mapping import (
    MAX_OCCURS,
    MAX_VALUE,
    MIN_VALUE,
    SECTION,
    TODAY_BOUND,
    FhirAnswers,
    answers_from_fhir,
    code_system_url,
    questionnaire_canonical,
    questionnaire_to_fhir,
    questionnaire_url,
    response_to_fhir,
)
from healthinfo.fhir.rest import fhir_etag, fhir_if_match, is_fhir, prefers_fhir
from healthinfo.health_information.model import HealthInformationState, Status
from healthinfo.questionnaires.model import Item, Option, Questionnaire
from healthinfo.questionnaires.registry import QuestionnaireRegistry
from healthinfo.questionnaires.validation import validate_answers
from tests.support.fhir_validity import assert_valid_questionnaire, assert_valid_response

SHIPPED = QuestionnaireRegistry.builtin().default
NOW = datetime(2026, 11, 24, 10, 0, 0, 123000, tzinfo=UTC)
TODAY = NOW.date()

EVERY_TYPE = Questionnaire(
    id="every-type",
    version="2",
    title="Every item type",
    items=(
        Item(id="flag", text="Flag?", type="boolean", required=True, section="a"),
        Item(
            id="height",
            text="Height?",
            type="integer",
            required=True,
            section="a",
            minimum=30,
            maximum=272,
        ),
        Item(id="count", text="Count?", type="integer", required=False, section="a"),
        Item(
            id="weight",
            text="Weight?",
            type="decimal",
            required=False,
            section="a",
            minimum=0.5,
            maximum=650,
        ),
        Item(
            id="born",
            text="Born?",
            type="date",
            required=False,
            section="b",
            minimum="1900-01-01",
            maximum="today",
        ),
        Item(
            id="visit",
            text="Visit?",
            type="date",
            required=False,
            section="b",
            minimum="today",
            maximum="2100-12-31",
        ),
        Item(id="name", text="Name?", type="string", required=False, section="b", max_length=5),
        Item(id="notes", text="Notes?", type="text", required=False, section="b"),
        Item(
            id="colour",
            text="Colour?",
            type="single-choice",
            required=True,
            section="c",
            options=(Option("red", "Red"), Option("blue", "Blue")),
        ),
        Item(
            id="pets",
            text="Pets?",
            type="multiple-choice",
            required=False,
            section="c",
            options=(Option("cat", "Cat"), Option("dog", "Dog"), Option("fish", "Fish")),
            max_items=2,
        ),
    ),
)

EVERY_ANSWER: dict[str, Any] = {
    "flag": False,
    "height": 180,
    "count": -3,
    "weight": 72.5,
    "born": "1980-02-29",
    "visit": "2030-01-01",
    "name": "Alex",
    "notes": "Line one\nLine two\twith a tab, and ünïcödé ✓",
    "colour": "blue",
    "pets": ["dog", "cat"],
}


def state_of(
    answers: dict[str, Any],
    q: Questionnaire = SHIPPED,
    *,
    status: Status = Status.IN_PROGRESS,
    kit_id: str = "KIT-1",
    version: int = 3,
    updated_by: str = "user-1",
) -> HealthInformationState:
    return HealthInformationState(
        kit_id=kit_id,
        questionnaire_id=q.id,
        questionnaire_version=q.version,
        status=status,
        answers=answers,
        version=version,
        created_at=NOW,
        updated_at=NOW,
        updated_by=updated_by,
        submitted_at=NOW if status.is_final else None,
    )


# --- Questionnaire ----------------------------------------------------------------------------


def test_shipped_questionnaire_is_valid_r4() -> None:
    assert_valid_questionnaire(questionnaire_to_fhir(SHIPPED))


def test_questionnaire_with_every_item_type_is_valid_r4() -> None:
    assert_valid_questionnaire(questionnaire_to_fhir(EVERY_TYPE))


def test_questionnaire_header() -> None:
    resource = questionnaire_to_fhir(SHIPPED, base_url="https://api.example.org/fhir/")
    assert resource["resourceType"] == "Questionnaire"
    assert resource["id"] == "health-information"
    assert resource["url"] == "https://api.example.org/fhir/Questionnaire/health-information"
    assert resource["version"] == "1"
    assert resource["name"] == "HealthInformation"
    assert resource["title"] == SHIPPED.title
    assert resource["status"] == "active"
    assert [item["linkId"] for item in resource["item"]] == [item.id for item in SHIPPED.items]


def test_default_base_url() -> None:
    assert questionnaire_url(SHIPPED) == "urn:healthinfo/Questionnaire/health-information"
    assert questionnaire_canonical(SHIPPED) == "urn:healthinfo/Questionnaire/health-information|1"


def test_item_types_map_to_r4_types() -> None:
    items = {item["linkId"]: item for item in questionnaire_to_fhir(EVERY_TYPE)["item"]}
    assert {link_id: item["type"] for link_id, item in items.items()} == {
        "flag": "boolean",
        "height": "integer",
        "count": "integer",
        "weight": "decimal",
        "born": "date",
        "visit": "date",
        "name": "string",
        "notes": "text",
        "colour": "choice",
        "pets": "choice",
    }
    assert items["pets"]["repeats"] is True
    assert "repeats" not in items["colour"]
    assert items["flag"]["required"] is True
    assert "required" not in items["count"]  # FHIR's default
    assert items["flag"]["text"] == "Flag?"


def test_options_become_answer_options_with_code_and_display() -> None:
    items = {item["linkId"]: item for item in questionnaire_to_fhir(EVERY_TYPE)["item"]}
    system = "urn:healthinfo/CodeSystem/every-type-colour"
    assert items["colour"]["answerOption"] == [
        {"valueCoding": {"system": system, "code": "red", "display": "Red"}},
        {"valueCoding": {"system": system, "code": "blue", "display": "Blue"}},
    ]


def bounds(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The item's bound extensions (the section extension is another test's)."""
    return [e for e in item.get("extension", []) if e["url"] in (MIN_VALUE, MAX_VALUE, TODAY_BOUND)]


def test_bounds_become_min_and_max_value_extensions_of_the_items_type() -> None:
    items = {item["linkId"]: item for item in questionnaire_to_fhir(EVERY_TYPE)["item"]}
    assert bounds(items["height"]) == [
        {"url": MIN_VALUE, "valueInteger": 30},
        {"url": MAX_VALUE, "valueInteger": 272},
    ]
    assert bounds(items["weight"]) == [
        {"url": MIN_VALUE, "valueDecimal": 0.5},
        {"url": MAX_VALUE, "valueDecimal": 650},
    ]
    # "today" moves, so it has no fixed minValue/maxValue: the service's own extension says it.
    assert bounds(items["born"]) == [
        {"url": MIN_VALUE, "valueDate": "1900-01-01"},
        {"url": TODAY_BOUND, "valueCode": "maxValue"},
    ]
    assert bounds(items["visit"]) == [
        {"url": TODAY_BOUND, "valueCode": "minValue"},
        {"url": MAX_VALUE, "valueDate": "2100-12-31"},
    ]
    assert bounds(items["count"]) == []
    assert bounds(items["flag"]) == []


def test_a_section_is_stated_where_it_differs_from_the_enclosing_one() -> None:
    items = {item["linkId"]: item for item in questionnaire_to_fhir(EVERY_TYPE)["item"]}
    assert {"url": SECTION, "valueString": "c"} in items["pets"]["extension"]
    assert {"url": SECTION, "valueString": "a"} in items["flag"]["extension"]


def test_max_length_and_max_items() -> None:
    items = {item["linkId"]: item for item in questionnaire_to_fhir(EVERY_TYPE)["item"]}
    assert items["name"]["maxLength"] == 5
    assert items["notes"]["maxLength"] == 4000  # the default limit, which is enforced
    assert "maxLength" not in items["height"]
    assert {"url": MAX_OCCURS, "valueInteger": 2} in items["pets"]["extension"]


# --- QuestionnaireResponse --------------------------------------------------------------------


def test_response_with_every_item_type_is_valid_r4() -> None:
    resource = response_to_fhir(state_of(EVERY_ANSWER, EVERY_TYPE), EVERY_TYPE)
    assert_valid_response(resource, questionnaire_to_fhir(EVERY_TYPE))


def test_response_with_every_answer_of_the_shipped_questionnaire_is_valid_r4() -> None:
    answers = {
        "dateOfBirth": "1975-04-12",
        "sexAtBirth": "female",
        "genderIdentity": "Woman",
        "ethnicity": "mixed",
        "heightCm": 168,
        "weightKg": 64.3,
        "waistCm": 80,
        "smokingStatus": "former",
        "cigarettesPerDay": 10,
        "yearsSmoked": 12,
        "vaping": False,
        "alcoholFrequency": "2-3-times-a-week",
        "drinksPerWeek": 6,
        "takesMedication": True,
        "medications": "Levothyroxine 50µg daily",
        "anticoagulants": False,
        "recentAntibiotics": False,
        "conditions": ["thyroid-disorder", "asthma"],
        "otherConditions": "None",
        "hasAllergies": True,
        "allergies": ["penicillin", "other"],
        "allergyDetails": "Rash",
        "isPregnant": "no",
        "weeksPregnant": 12,
        "breastfeeding": False,
        "symptoms": ["none"],
        "symptomOnsetDate": "2024-01-01",
        "feverTemperatureC": 37.5,
        "sampleCollectionDate": "2024-06-01",
        "fastingHours": 8,
        "additionalNotes": "Thanks",
        "consentToResearch": True,
    }
    assert {item.id for item in SHIPPED.items} == answers.keys()
    assert validate_answers(SHIPPED, answers, today=TODAY) == []
    resource = response_to_fhir(state_of(answers, status=Status.SUBMITTED), SHIPPED)
    assert_valid_response(resource, questionnaire_to_fhir(SHIPPED))
    assert len(resource["item"]) == len(SHIPPED.items)
    assert answers_from_fhir(resource, SHIPPED) == FhirAnswers(answers, completed=True)


def test_response_header() -> None:
    resource = response_to_fhir(
        state_of({"heightCm": 180}, version=7, kit_id="K-9", updated_by="user-2"), SHIPPED
    )
    assert resource["resourceType"] == "QuestionnaireResponse"
    assert resource["id"] == "K-9"
    assert resource["identifier"] == {"system": "urn:healthinfo/kit-id", "value": "K-9"}
    assert resource["questionnaire"] == "urn:healthinfo/Questionnaire/health-information|1"
    assert resource["meta"] == {"versionId": "7", "lastUpdated": "2026-11-24T10:00:00.123Z"}
    assert resource["authored"] == "2026-11-24T10:00:00.123Z"
    assert resource["author"] == {
        "identifier": {"system": "urn:healthinfo/user-id", "value": "user-2"}
    }


def test_answers_become_typed_values() -> None:
    resource = response_to_fhir(state_of(EVERY_ANSWER, EVERY_TYPE), EVERY_TYPE)
    items = {item["linkId"]: item for item in resource["item"]}
    assert items["flag"] == {"linkId": "flag", "text": "Flag?", "answer": [{"valueBoolean": False}]}
    assert items["height"]["answer"] == [{"valueInteger": 180}]
    assert items["weight"]["answer"] == [{"valueDecimal": 72.5}]
    assert items["born"]["answer"] == [{"valueDate": "1980-02-29"}]
    assert items["name"]["answer"] == [{"valueString": "Alex"}]
    assert items["notes"]["answer"] == [{"valueString": EVERY_ANSWER["notes"]}]
    colours = "urn:healthinfo/CodeSystem/every-type-colour"
    assert items["colour"]["answer"] == [
        {"valueCoding": {"system": colours, "code": "blue", "display": "Blue"}}
    ]
    pets = code_system_url(EVERY_TYPE, EVERY_TYPE.items[-1])
    assert items["pets"]["answer"] == [
        {"valueCoding": {"system": pets, "code": "dog", "display": "Dog"}},
        {"valueCoding": {"system": pets, "code": "cat", "display": "Cat"}},
    ]


def test_items_follow_the_questionnaire_order_and_only_answered_questions_appear() -> None:
    resource = response_to_fhir(state_of({"pets": ["fish"], "flag": True}, EVERY_TYPE), EVERY_TYPE)
    assert [item["linkId"] for item in resource["item"]] == ["flag", "pets"]


def test_nothing_answered_has_no_item_element() -> None:
    resource = response_to_fhir(state_of({}), SHIPPED)
    assert "item" not in resource
    assert_valid_response(resource, questionnaire_to_fhir(SHIPPED))
    assert answers_from_fhir(resource, SHIPPED) == FhirAnswers({}, completed=False)


def test_an_empty_selection_is_no_answer_in_fhir() -> None:
    resource = response_to_fhir(state_of({"pets": [], "flag": True}, EVERY_TYPE), EVERY_TYPE)
    assert [item["linkId"] for item in resource["item"]] == ["flag"]


@pytest.mark.parametrize(
    ("status", "fhir_status"),
    [
        (Status.IN_PROGRESS, "in-progress"),
        (Status.SUBMITTED, "completed"),
        (Status.AMENDED, "amended"),
    ],
)
def test_status_mapping(status: Status, fhir_status: str) -> None:
    resource = response_to_fhir(state_of({"heightCm": 180}, status=status), SHIPPED)
    assert resource["status"] == fhir_status


@pytest.mark.parametrize("updated_by", ["", "   ", "user\x00one"])
def test_an_updater_that_is_no_fhir_string_is_left_out(updated_by: str) -> None:
    resource = response_to_fhir(state_of({}, updated_by=updated_by), SHIPPED)
    assert "author" not in resource
    assert_valid_response(resource, questionnaire_to_fhir(SHIPPED))


def test_a_kit_id_that_is_no_fhir_id_stays_in_the_identifier_only() -> None:
    resource = response_to_fhir(state_of({}, kit_id="KIT_1"), SHIPPED)
    assert "id" not in resource
    assert resource["identifier"]["value"] == "KIT_1"
    assert_valid_response(resource, questionnaire_to_fhir(SHIPPED))


def test_the_state_must_answer_the_given_questionnaire() -> None:
    with pytest.raises(ValueError, match="every-type"):
        response_to_fhir(state_of({}, EVERY_TYPE), SHIPPED)


def test_a_stored_answer_that_breaks_its_question_is_a_bug_and_its_value_is_not_shown() -> None:
    with pytest.raises(ValueError, match="heightCm") as raised:
        response_to_fhir(state_of({"heightCm": "SECRET-180"}), SHIPPED)
    assert "SECRET" not in str(raised.value)
    with pytest.raises(ValueError, match="unknown"):
        response_to_fhir(state_of({"SECRETquestion": 1}), SHIPPED)


# --- answers from FHIR ------------------------------------------------------------------------


def response(*items: dict[str, Any], status: str = "in-progress", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "QuestionnaireResponse", "status": status}
    if items:
        resource["item"] = list(items)
    return {**resource, **extra}


def item(link_id: str, *answers: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "answer": list(answers)}


def failures(resource: Any, q: Questionnaire = EVERY_TYPE) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as raised:
        answers_from_fhir(resource, q)
    return [(error.field, error.message) for error in raised.value.errors]


def fields(resource: Any, q: Questionnaire = EVERY_TYPE) -> list[str]:
    return [field for field, _ in failures(resource, q)]


def test_round_trip_of_every_item_type() -> None:
    resource = response_to_fhir(state_of(EVERY_ANSWER, EVERY_TYPE), EVERY_TYPE)
    assert answers_from_fhir(resource, EVERY_TYPE) == FhirAnswers(EVERY_ANSWER, completed=False)


@pytest.mark.parametrize(
    ("status", "completed"),
    [(Status.IN_PROGRESS, False), (Status.SUBMITTED, True)],
)
def test_completed_means_submit(status: Status, completed: bool) -> None:
    resource = response_to_fhir(state_of({"heightCm": 180}, status=status), SHIPPED)
    assert answers_from_fhir(resource, SHIPPED).completed is completed


def test_amended_cannot_be_written_back() -> None:
    """Amendments are an admin's route of their own; a FHIR write only saves or submits."""
    resource = response_to_fhir(state_of({"heightCm": 180}, status=Status.AMENDED), SHIPPED)
    assert fields(resource, SHIPPED) == ["status"]


def test_minimal_response_without_systems_or_questionnaire_is_read() -> None:
    resource = response(
        item("colour", {"valueCoding": {"code": "red"}}),
        item("pets", {"valueCoding": {"code": "fish", "display": "anything"}}),
        item("flag", {"valueBoolean": True}),
        status="completed",
    )
    assert answers_from_fhir(resource, EVERY_TYPE) == FhirAnswers(
        {"colour": "red", "pets": ["fish"], "flag": True}, completed=True
    )


def test_questionnaire_reference_with_or_without_version_is_accepted() -> None:
    url = questionnaire_url(EVERY_TYPE)
    for reference in (url, f"{url}|2"):
        assert answers_from_fhir(response(questionnaire=reference), EVERY_TYPE).answers == {}


def test_items_without_answers_are_unanswered_questions() -> None:
    resource = response({"linkId": "flag"}, item("height"), item("count", {"valueInteger": 1}))
    assert answers_from_fhir(resource, EVERY_TYPE).answers == {"count": 1}


def test_elements_the_service_does_not_use_are_ignored() -> None:
    resource = response(
        {
            "linkId": "name",
            "text": "Name?",
            "id": "x",
            "extension": [{"url": "http://example.org/x", "valueString": "y"}],
            "answer": [{"valueString": "Al", "_valueString": {"id": "a"}}],
        },
        id="KIT-1",
        meta={"versionId": "5"},
        subject={"reference": "Patient/1"},
        authored="2024-01-01T00:00:00Z",
    )
    assert answers_from_fhir(resource, EVERY_TYPE).answers == {"name": "Al"}


def test_not_an_object_is_malformed() -> None:
    for body in ([], "QuestionnaireResponse", None):
        with pytest.raises(MalformedRequest):
            answers_from_fhir(body, EVERY_TYPE)


def test_another_resource_type_is_refused() -> None:
    assert failures({"resourceType": "Patient", "status": "completed"}) == [
        ("resourceType", "must be QuestionnaireResponse")
    ]
    assert fields({"status": "completed"}) == ["resourceType"]


@pytest.mark.parametrize("status", ["amended", "entered-in-error", "stopped", "done", 1])
def test_only_in_progress_and_completed_can_be_written(status: object) -> None:
    assert failures(response(status="x") | {"status": status}) == [
        ("status", "must be in-progress or completed")
    ]


def test_status_is_required() -> None:
    assert failures({"resourceType": "QuestionnaireResponse"}) == [("status", "is required")]


def test_a_reference_to_another_questionnaire_is_refused() -> None:
    url = questionnaire_url(EVERY_TYPE)
    for reference in (f"{url}|1", "http://example.org/Questionnaire/every-type", 7):
        assert fields(response(questionnaire=reference)) == ["questionnaire"]


def test_unknown_link_ids_are_refused_without_echoing_them() -> None:
    result = failures(response(item("SECRETid", {"valueBoolean": True}), item("flag")))
    assert result == [("item[0].linkId", "unknown question id")]


def test_missing_link_id_and_non_object_items() -> None:
    assert fields(response({"answer": []}, "flag", 3)) == ["item[0].linkId", "item[1]", "item[2]"]
    assert fields(response() | {"item": {"linkId": "flag"}}) == ["item"]


def test_a_question_answered_twice_is_refused() -> None:
    resource = response(item("flag", {"valueBoolean": True}), item("flag", {"valueBoolean": True}))
    assert fields(resource) == ["item[1].linkId"]


@pytest.mark.parametrize(
    ("link_id", "answer"),
    [
        ("flag", {"valueString": "true"}),
        ("height", {"valueDecimal": 180}),
        ("weight", {"valueInteger": 70}),
        ("born", {"valueDateTime": "1980-01-01T00:00:00Z"}),
        ("name", {"valueCoding": {"code": "Al"}}),
        ("notes", {"valueBoolean": True}),
        ("colour", {"valueString": "red"}),
        ("pets", {"valueString": "cat"}),
        ("flag", {}),
        ("flag", {"valueBoolean": True, "valueString": "x"}),
    ],
)
def test_a_value_of_another_type_is_refused(link_id: str, answer: dict[str, Any]) -> None:
    [(field, message)] = failures(response(item(link_id, answer)))
    assert field == "item[0].answer[0]"
    assert "exactly one value" in message


@pytest.mark.parametrize(
    ("link_id", "answer"),
    [
        ("flag", {"valueBoolean": "SECRET"}),
        ("flag", {"valueBoolean": 1}),
        ("height", {"valueInteger": "180"}),
        ("height", {"valueInteger": 180.5}),
        ("height", {"valueInteger": True}),
        ("height", {"valueInteger": 2**31}),
        ("weight", {"valueDecimal": "70.5"}),
        ("weight", {"valueDecimal": False}),
        ("born", {"valueDate": 19800101}),
        ("name", {"valueString": ["SECRET"]}),
        ("colour", {"valueCoding": "SECRET"}),
        ("colour", {"valueCoding": {"display": "Red"}}),
        ("colour", {"valueCoding": {"code": 1}}),
        ("colour", {"valueCoding": {"system": "http://SECRET.example", "code": "red"}}),
        ("pets", {"valueCoding": {"system": "urn:healthinfo/CodeSystem/every-type-colour"}}),
        ("flag", "SECRET"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_refused_without_echoing_it(
    link_id: str, answer: Any
) -> None:
    [(field, message)] = failures(response(item(link_id, answer)))
    assert field == "item[0].answer[0]"
    assert "SECRET" not in message
    assert "180" not in message


def test_values_are_not_checked_against_bounds_or_options_here() -> None:
    """The service validates every write's answers; FHIR adds only the structure."""
    resource = response(
        item("height", {"valueInteger": 9999}),
        item("colour", {"valueCoding": {"code": "green"}}),
        item("born", {"valueDate": "1980"}),
        item("name", {"valueString": ""}),
    )
    answers = answers_from_fhir(resource, EVERY_TYPE).answers
    assert answers == {"height": 9999, "colour": "green", "born": "1980", "name": ""}
    assert sorted(e.field for e in validate_answers(EVERY_TYPE, answers, today=TODAY)) == [
        "answers.born",
        "answers.colour",
        "answers.height",
        "answers.name",
    ]


def test_several_answers_only_for_multiple_choice() -> None:
    resource = response(item("flag", {"valueBoolean": True}, {"valueBoolean": False}))
    assert failures(resource) == [
        ("item[0].answer", "linkId 'flag': this question takes a single answer")
    ]
    resource = response(
        item("pets", {"valueCoding": {"code": "cat"}}, {"valueCoding": {"code": "dog"}})
    )
    assert answers_from_fhir(resource, EVERY_TYPE).answers == {"pets": ["cat", "dog"]}


def test_items_nested_under_a_question_or_an_answer_are_not_supported() -> None:
    group = {"linkId": "flag", "item": [item("height", {"valueInteger": 180})]}
    assert failures(response(group)) == [
        ("item[0].item", "linkId 'flag': items nested under a question are not supported")
    ]
    nested = item("flag", {"valueBoolean": True, "item": [item("height")]})
    assert failures(response(nested)) == [
        ("item[0].answer[0]", "linkId 'flag': items nested under an answer are not supported")
    ]


def test_modifier_extensions_are_refused() -> None:
    extension = [{"url": "http://example.org/negated", "valueBoolean": True}]
    resource = response(
        {"linkId": "flag", "modifierExtension": extension},
        item("count", {"valueInteger": 1, "modifierExtension": extension}),
    ) | {"modifierExtension": extension}
    assert fields(resource) == [
        "modifierExtension",
        "item[0].modifierExtension",
        "item[1].answer[0]",
    ]


def test_answer_must_be_a_list() -> None:
    assert fields(response({"linkId": "flag", "answer": {"valueBoolean": True}})) == [
        "item[0].answer"
    ]


def test_one_error_per_problem_in_document_order() -> None:
    resource = {
        "resourceType": "QuestionnaireResponse",
        "status": "amended",
        "item": [
            item("flag", {"valueString": "yes"}),
            item("unknownQuestion", {"valueBoolean": True}),
            item("height", {"valueInteger": 180}),
            item("pets", {"valueCoding": {"code": "cat"}}, {"valueBoolean": True}),
        ],
    }
    with pytest.raises(ValidationFailed) as raised:
        answers_from_fhir(resource, EVERY_TYPE)
    assert [e.field for e in raised.value.errors] == [
        "status",
        "item[0].answer[0]",
        "item[1].linkId",
        "item[3].answer[1]",
    ]
    assert raised.value.code == "validation-failed"


# --- property: round trip and validity for any valid answers of the shipped questionnaire -----

_TEXT = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=("Cc", "Cs")), st.sampled_from("\t\n\r")),
    min_size=1,
).filter(lambda text: bool(text.strip()))


def _bound_date(bound: object, default: date) -> date:
    return (
        TODAY
        if bound == "today"
        else date.fromisoformat(bound)
        if isinstance(bound, str)
        else default
    )


def answer_strategy(question: Item) -> st.SearchStrategy[Any]:
    low, high = question.minimum, question.maximum
    if question.type == "boolean":
        return st.booleans()
    if question.type == "integer":
        return st.integers(
            min_value=low if isinstance(low, int) else -(2**31),
            max_value=high if isinstance(high, int) else 2**31 - 1,
        )
    if question.type == "decimal":
        lo = low if isinstance(low, int | float) else -1e9
        hi = high if isinstance(high, int | float) else 1e9
        return st.one_of(
            st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False),
            st.integers(min_value=int(lo) if lo == int(lo) else int(lo) + 1, max_value=int(hi)),
        )
    if question.type == "date":
        return st.dates(
            min_value=_bound_date(low, date(1, 1, 1)), max_value=_bound_date(high, date(9999, 1, 1))
        ).map(date.isoformat)
    if question.type in ("string", "text"):
        assert question.max_length is not None
        return _TEXT.filter(lambda text: len(text) <= (question.max_length or 0))
    values = [option.value for option in question.options]
    if question.type == "single-choice":
        return st.sampled_from(values)
    return st.lists(st.sampled_from(values), unique=True, max_size=question.max_items)


def answers_strategy(q: Questionnaire) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={i.id: answer_strategy(i) for i in q.items})


SHIPPED_FHIR = questionnaire_to_fhir(SHIPPED)
EVERY_TYPE_FHIR = questionnaire_to_fhir(EVERY_TYPE)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers=answers_strategy(SHIPPED),
    status=st.sampled_from([Status.IN_PROGRESS, Status.SUBMITTED]),
    kit_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z"),
    version=st.integers(min_value=1, max_value=2**31 - 1),
    updated_by=st.text(min_size=1, max_size=40).filter(lambda s: bool(s.strip())),
)
def test_any_valid_answers_of_the_shipped_questionnaire_round_trip_as_valid_fhir(
    answers: dict[str, Any], status: Status, kit_id: str, version: int, updated_by: str
) -> None:
    assert validate_answers(SHIPPED, answers, today=TODAY) == []
    state = state_of(answers, status=status, kit_id=kit_id, version=version, updated_by=updated_by)
    resource = response_to_fhir(state, SHIPPED)
    assert_valid_response(resource, SHIPPED_FHIR)
    read = answers_from_fhir(resource, SHIPPED)
    assert read.answers == {key: value for key, value in answers.items() if value != []}
    assert read.completed is (status is Status.SUBMITTED)
    printable = not any(ord(char) < 32 and char not in "\t\r\n" for char in updated_by)
    assert ("author" in resource) is printable


@settings(max_examples=100, deadline=None)
@given(answers=answers_strategy(EVERY_TYPE))
def test_any_valid_answers_of_every_item_type_round_trip(answers: dict[str, Any]) -> None:
    assert validate_answers(EVERY_TYPE, answers, today=TODAY) == []
    resource = response_to_fhir(state_of(answers, EVERY_TYPE), EVERY_TYPE)
    assert_valid_response(resource, EVERY_TYPE_FHIR)
    expected = {key: value for key, value in answers.items() if value != []}
    assert answers_from_fhir(resource, EVERY_TYPE).answers == expected


# --- content negotiation helpers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "default", "expected"),
    [
        (None, False, False),
        (None, True, True),
        ("", True, True),
        ("application/fhir+json", False, True),
        ("Application/FHIR+JSON; charset=utf-8", False, True),
        ("application/fhir+json; fhirVersion=4.0", False, True),
        ("application/fhir+json; fhirVersion=5.0", False, False),
        ("application/json", True, False),
        ("application/json, application/fhir+json", False, True),
        ("application/json, application/fhir+json;q=0.5", False, False),
        ("application/json;q=0.5, application/fhir+json", False, True),
        ("application/fhir+json;q=0", True, False),
        ("application/fhir+json;q=0.5, */*", False, False),
        ("*/*", False, False),
        ("*/*", True, True),
        ("application/*", True, True),
        ("application/json, */*", True, False),
        ("text/html", True, False),
        ("application/fhir+json;q=bad, application/json", True, False),
        ("garbage", True, False),
    ],
)
def test_prefers_fhir(accept: str | None, default: bool, expected: bool) -> None:
    assert prefers_fhir(accept, default=default) is expected


def test_fhir_etag_and_if_match() -> None:
    assert fhir_etag(3) == 'W/"3"'
    assert fhir_if_match('W/"3"') == '"3"'
    assert fhir_if_match(' W/"3", W/"4"') == ' "3", "4"'
    assert fhir_if_match('"3"') == '"3"'
    assert fhir_if_match("*") == "*"
    assert fhir_if_match(None) is None


def test_is_fhir() -> None:
    assert is_fhir("application/fhir+json")
    assert is_fhir("application/fhir+json; fhirVersion=4.0; charset=utf-8")
    assert not is_fhir("application/json")
    assert not is_fhir(None)
