"""Is an emitted resource valid FHIR R4? Checked twice.

Structurally with the ``fhir.resources`` models (its ``R4B`` package: FHIR 4.3, whose
Questionnaire and QuestionnaireResponse are the R4 4.0.1 ones; there is no maintained
4.0.1-only package), which must take the resource and give back exactly the same JSON (so
nothing was dropped or coerced), and by the R4 rules those models do not check (code lists,
the ``que-*`` invariants, value[x] types against the questionnaire) here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fhir.resources.R4B.questionnaire import Questionnaire as FhirQuestionnaire
from fhir.resources.R4B.questionnaireresponse import (
    QuestionnaireResponse as FhirQuestionnaireResponse,
)

from healthinfo.fhir.mapping import MAX_OCCURS, MAX_VALUE, MIN_VALUE, SECTION, TODAY_BOUND

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
R4_QUESTIONNAIRE_STATUS = {"draft", "active", "retired", "unknown"}
R4_RESPONSE_STATUS = {"in-progress", "completed", "amended", "entered-in-error", "stopped"}
R4_ITEM_TYPES = {
    "group",
    "display",
    "boolean",
    "decimal",
    "integer",
    "date",
    "dateTime",
    "time",
    "string",
    "text",
    "url",
    "choice",
    "open-choice",
    "attachment",
    "reference",
    "quantity",
}
# que-10: maxLength only on simple question types.
MAX_LENGTH_TYPES = {"boolean", "decimal", "integer", "string", "text", "url", "open-choice"}
# The value[x] an answer to each R4 item type carries (choices: by their options).
ANSWER_KEY = {
    "boolean": "valueBoolean",
    "decimal": "valueDecimal",
    "integer": "valueInteger",
    "date": "valueDate",
    "dateTime": "valueDateTime",
    "time": "valueTime",
    "string": "valueString",
    "text": "valueString",
}
CONDITION_KEY = {key: "answer" + value.removeprefix("value") for key, value in ANSWER_KEY.items()}
# minValue/maxValue must have the item's own type.
BOUND_KEY = {
    "integer": "valueInteger",
    "decimal": "valueDecimal",
    "date": "valueDate",
    "dateTime": "valueDateTime",
    "time": "valueTime",
}
OPTION_KEYS = {"valueCoding", "valueString", "valueInteger"}
DATE = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
)
DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?")


def normalised(value: Any) -> Any:
    """JSON with FHIR instants as datetimes: fhir.resources re-prints ``.123Z`` as ``.123000Z``."""
    if isinstance(value, dict):
        return {key: normalised(entry) for key, entry in value.items()}
    if isinstance(value, list):
        return [normalised(entry) for entry in value]
    if isinstance(value, str) and DATETIME.fullmatch(value):
        return datetime.fromisoformat(value)
    return value


def assert_no_empty_elements(value: Any, path: str = "") -> None:
    """ele-1 and FHIR JSON: no empty objects, arrays or strings, no nulls; valid strings."""
    assert value is not None, path
    if isinstance(value, dict):
        assert value, path
        for key, entry in value.items():
            assert_no_empty_elements(entry, f"{path}.{key}")
    elif isinstance(value, list):
        assert value, path
        for position, entry in enumerate(value):
            assert_no_empty_elements(entry, f"{path}[{position}]")
    elif isinstance(value, str):
        assert value.strip(), path
        # R4 string: [ \r\n\t\S]+ in XML Schema terms, i.e. no other control characters.
        assert not any(ord(char) < 32 and char not in "\t\r\n" for char in value), path


def assert_parses_unchanged(model: Any, resource: dict[str, Any]) -> None:
    parsed = model.model_validate(resource)
    dumped = parsed.model_dump(mode="json", exclude_none=True, by_alias=True)
    assert normalised(dumped) == normalised(resource)


def walk_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every item at any depth, parents first."""
    result = []
    for item in items:
        result.append(item)
        result += walk_items(item.get("item", []))
    return result


def option_keys(question: dict[str, Any]) -> set[str]:
    return {key for option in question.get("answerOption", []) for key in option}


def assert_valid_questionnaire(resource: dict[str, Any]) -> None:
    assert_parses_unchanged(FhirQuestionnaire, resource)
    assert_no_empty_elements(resource)
    assert resource["resourceType"] == "Questionnaire"
    assert resource["status"] in R4_QUESTIONNAIRE_STATUS
    if "id" in resource:
        assert FHIR_ID.fullmatch(resource["id"])
    if "name" in resource:  # que-0
        assert re.fullmatch(r"[A-Z][A-Za-z0-9_]{0,254}", resource["name"])
    every = walk_items(resource["item"])
    by_link = {item["linkId"]: item for item in every}
    assert len(by_link) == len(every)  # que-2
    for item in every:
        _assert_valid_item(item, by_link)


def _assert_valid_item(item: dict[str, Any], by_link: dict[str, dict[str, Any]]) -> None:
    kind = item["type"]
    where = item["linkId"]
    assert kind in R4_ITEM_TYPES, where
    if kind == "group":
        assert item["item"], where  # que-1
    else:
        assert "item" not in item, where  # display: que-1; questions: not emitted
    if kind == "display":
        assert not {"required", "repeats", "readOnly"} & item.keys(), where  # que-6, que-9
    assert "maxLength" not in item or kind in MAX_LENGTH_TYPES, where  # que-10
    assert "answerOption" not in item or kind in {"choice", "open-choice"}, where  # que-5
    for option in item.get("answerOption", []):
        assert len(option) == 1, where
        assert option.keys() <= OPTION_KEYS, where
        if "valueCoding" in option:
            assert {"system", "code", "display"} >= option["valueCoding"].keys() >= {"code"}
    for extension in item.get("extension", []):
        value_keys = [key for key in extension if key.startswith("value")]
        assert len(value_keys) == 1 or "extension" in extension, extension  # ext-1
        if extension["url"] in (MIN_VALUE, MAX_VALUE):
            assert value_keys == [BOUND_KEY[kind]], (where, extension)
            if kind == "date":
                assert DATE.fullmatch(extension["valueDate"])
        elif extension["url"] == MAX_OCCURS:
            assert value_keys == ["valueInteger"]
            assert item.get("repeats") is True
        elif extension["url"] == SECTION:
            assert value_keys == ["valueString"]
        elif extension["url"] == TODAY_BOUND:
            assert kind == "date"
            assert extension["valueCode"] in ("minValue", "maxValue")
    conditions = item.get("enableWhen", [])
    if len(conditions) > 1:
        assert item["enableBehavior"] in ("all", "any"), where  # que-12
    for condition in conditions:
        target = by_link[condition["question"]]
        answer_keys = [key for key in condition if key.startswith("answer")]
        assert len(answer_keys) == 1, where
        if condition["operator"] == "exists":
            assert answer_keys == ["answerBoolean"], where  # que-7
        elif target["type"] in ("choice", "open-choice"):
            allowed = {"answer" + key.removeprefix("value") for key in option_keys(target)}
            if target["type"] == "open-choice":
                allowed.add("answerString")
            assert answer_keys[0] in allowed, where
        else:
            assert answer_keys == [CONDITION_KEY[target["type"]]], where


def assert_valid_response(resource: dict[str, Any], questionnaire: dict[str, Any]) -> None:
    """Valid R4, and valid against ``questionnaire`` as the FHIR validator would check it."""
    assert_parses_unchanged(FhirQuestionnaireResponse, resource)
    assert_no_empty_elements(resource)
    assert resource["resourceType"] == "QuestionnaireResponse"
    assert resource["status"] in R4_RESPONSE_STATUS
    if "id" in resource:
        assert FHIR_ID.fullmatch(resource["id"])
    assert isinstance(resource["identifier"], dict)  # 0..1 in R4 (a list in R5)
    assert resource["questionnaire"] == f"{questionnaire['url']}|{questionnaire['version']}"
    assert FHIR_ID.fullmatch(resource["meta"]["versionId"])
    assert DATETIME.fullmatch(resource["meta"]["lastUpdated"])
    assert DATETIME.fullmatch(resource["authored"])
    _assert_valid_level(resource.get("item", []), questionnaire["item"])


def _assert_valid_level(items: list[dict[str, Any]], questions: list[dict[str, Any]]) -> None:
    """One level of response items against the questionnaire's items of that level."""
    by_link = {question["linkId"]: question for question in questions}
    order = list(by_link)
    positions = []
    for item in items:
        question = by_link[item["linkId"]]
        positions.append(order.index(item["linkId"]))
        if question["type"] == "group":
            assert "answer" not in item
            _assert_valid_level(item["item"], question["item"])
            continue
        assert "item" not in item
        answers = item["answer"]
        assert len(answers) == 1 or question.get("repeats") is True
        for answer in answers:
            _assert_valid_answer(answer, question)
    # Items in questionnaire order; only a repeating group's linkId may come again.
    assert positions == sorted(positions)
    for position in set(positions):
        if positions.count(position) > 1:
            assert by_link[order[position]].get("repeats") is True


def _assert_valid_answer(answer: dict[str, Any], question: dict[str, Any]) -> None:
    kind = question["type"]
    [key] = list(answer)
    if kind in ("choice", "open-choice"):
        if kind == "open-choice" and key == "valueString":
            return
        assert key in option_keys(question), (question["linkId"], answer)
        options = [option[key] for option in question["answerOption"] if key in option]
        assert answer[key] in options
        return
    assert key == ANSWER_KEY[kind]
    value = answer[key]
    if kind == "date":
        assert DATE.fullmatch(value)
    elif kind == "dateTime":
        assert DATETIME.fullmatch(value)
    elif kind == "time":
        assert TIME.fullmatch(value)
    elif kind == "integer":
        assert -(2**31) <= value < 2**31
