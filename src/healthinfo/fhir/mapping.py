"""FHIR R4 (4.0.1) views of questionnaires and answers, and answers read back from FHIR.

Pure functions, no I/O. What is emitted is plain JSON-ready ``dict``s:

* ``questionnaire_to_fhir``: a ``Questionnaire`` resource: one flat ``item`` per question;
* ``response_to_fhir``: a kit's health information as a ``QuestionnaireResponse``;
* ``answers_from_fhir``: the inverse of ``response_to_fhir``, for writes sent as FHIR.

``answers_from_fhir`` checks only the FHIR structure (which question, which ``value[x]``, JSON
types); whether a value is a valid answer (bounds, options, lengths) stays the job of the
questionnaire validation every write goes through, exactly as for plain JSON writes. Error
messages never repeat a submitted value. See docs/fhir.md for the mapping table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from healthinfo.common.clock import to_rfc3339
from healthinfo.errors import FieldError, MalformedRequest, ValidationFailed
from healthinfo.health_information.model import HealthInformationState, Status
from healthinfo.questionnaires.model import TODAY, Item, ItemType, Questionnaire

FHIR_VERSION: Final = "4.0.1"
DEFAULT_BASE_URL: Final = "urn:healthinfo"

MIN_VALUE: Final = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE: Final = "http://hl7.org/fhir/StructureDefinition/maxValue"
MAX_OCCURS: Final = "http://hl7.org/fhir/StructureDefinition/questionnaire-maxOccurs"

FHIR_ITEM_TYPE: Final[Mapping[ItemType, str]] = {
    "boolean": "boolean",
    "integer": "integer",
    "decimal": "decimal",
    "date": "date",
    "string": "string",
    "text": "text",
    "single-choice": "choice",
    "multiple-choice": "choice",
    "display": "display",
    "group": "group",
}
"""Our item type → R4 ``Questionnaire.item.type``."""

ENABLE_WHEN_KEY: Final[Mapping[str, str]] = {
    "boolean": "answerBoolean",
    "integer": "answerInteger",
    "decimal": "answerDecimal",
    "date": "answerDate",
    "string": "answerString",
    "text": "answerString",
    "single-choice": "answerCoding",
    "multiple-choice": "answerCoding",
}
"""The named item's type → the ``enableWhen.answer[x]`` that carries a condition's value."""

VALUE_KEY: Final[Mapping[ItemType, str]] = {
    "boolean": "valueBoolean",
    "integer": "valueInteger",
    "decimal": "valueDecimal",
    "date": "valueDate",
    "string": "valueString",
    "text": "valueString",
    "single-choice": "valueCoding",
    "multiple-choice": "valueCoding",
}
"""Our item type → the ``QuestionnaireResponse.item.answer.value[x]`` that carries it."""

STATUS_TO_FHIR: Final[Mapping[Status, str]] = {
    Status.IN_PROGRESS: "in-progress",
    Status.SUBMITTED: "completed",
    Status.AMENDED: "amended",
}
WRITABLE_STATUSES: Final = frozenset({"in-progress", "completed"})
"""What a FHIR write may say: ``completed`` submits; amendments have their own route."""

_BOUND_KEY: Final[Mapping[str, str]] = {
    "integer": "valueInteger",
    "decimal": "valueDecimal",
    "date": "valueDate",
}
_JSON_TYPE_PHRASE: Final[Mapping[str, str]] = {
    "valueBoolean": "true or false",
    "valueInteger": "a JSON integer",
    "valueDecimal": "a JSON number",
    "valueDate": "a string YYYY-MM-DD",
    "valueString": "a string",
}
_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_FHIR_NAME: Final = re.compile(r"[A-Z][A-Za-z0-9_]{0,254}")
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


class FhirAnswers(NamedTuple):
    """Answers read from a ``QuestionnaireResponse``; ``completed`` means "submit them"."""

    answers: dict[str, Any]
    completed: bool


# -- canonical URLs ----------------------------------------------------------------------------


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def questionnaire_url(q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL) -> str:
    """The questionnaire's canonical URL, without a version."""
    return f"{_base(base_url)}/Questionnaire/{q.id}"


def questionnaire_canonical(q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL) -> str:
    """``<url>|<version>``: what ``QuestionnaireResponse.questionnaire`` points at."""
    return f"{questionnaire_url(q, base_url=base_url)}|{q.version}"


def code_system_url(q: Questionnaire, item: Item, *, base_url: str = DEFAULT_BASE_URL) -> str:
    """The code system of one choice question's options (its codes are the option values)."""
    return f"{_base(base_url)}/CodeSystem/{q.id}-{item.id}"


def kit_identifier_system(base_url: str = DEFAULT_BASE_URL) -> str:
    return f"{_base(base_url)}/kit-id"


def user_identifier_system(base_url: str = DEFAULT_BASE_URL) -> str:
    return f"{_base(base_url)}/user-id"


# -- Questionnaire -----------------------------------------------------------------------------


def questionnaire_to_fhir(q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL) -> dict[str, Any]:
    """A FHIR R4 ``Questionnaire``: one flat item per question, in definition order."""
    resource: dict[str, Any] = {"resourceType": "Questionnaire"}
    if _FHIR_ID.fullmatch(q.id):
        resource["id"] = q.id
    resource["url"] = questionnaire_url(q, base_url=base_url)
    resource["version"] = q.version
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", q.id))
    if _FHIR_NAME.fullmatch(name):
        resource["name"] = name
    resource["title"] = q.title
    resource["status"] = "active"
    resource["item"] = [_question(q, item, base_url) for item in q.items]
    return resource


def _question(q: Questionnaire, item: Item, base_url: str) -> dict[str, Any]:
    if item.type == "display":
        display: dict[str, Any] = {"linkId": item.id, "text": item.text, "type": "display"}
        return display | _conditions(q, item, base_url)
    if item.type == "group":
        group: dict[str, Any] = {}
        if item.max_items is not None:
            group["extension"] = [{"url": MAX_OCCURS, "valueInteger": item.max_items}]
        group |= {"linkId": item.id, "text": item.text, "type": "group"}
        group |= _conditions(q, item, base_url)
        group["required"] = item.required
        if item.repeats:
            group["repeats"] = True
        group["item"] = [_question(q, child, base_url) for child in item.items]
        return group
    return _answerable_question(q, item, base_url) | _conditions(q, item, base_url)


def _conditions(q: Questionnaire, item: Item, base_url: str) -> dict[str, Any]:
    """``enableWhen`` with the ``answer[x]`` of the named item's type, and ``enableBehavior``."""
    if not item.enable_when:
        return {}
    conditions = []
    for condition in item.enable_when:
        target = q.any_item(condition.question)
        assert target is not None  # checked at publication
        entry: dict[str, Any] = {"question": condition.question, "operator": condition.operator}
        if condition.operator == "exists":
            entry["answerBoolean"] = condition.answer
        elif ENABLE_WHEN_KEY[target.type] == "answerCoding":
            system = code_system_url(q, target, base_url=base_url)
            entry["answerCoding"] = {"system": system, "code": condition.answer}
        else:
            entry[ENABLE_WHEN_KEY[target.type]] = condition.answer
        conditions.append(entry)
    result: dict[str, Any] = {"enableWhen": conditions}
    if item.enable_behavior is not None:
        result["enableBehavior"] = item.enable_behavior
    return result


def _answerable_question(q: Questionnaire, item: Item, base_url: str) -> dict[str, Any]:
    question: dict[str, Any] = {}
    extensions = _bound_extensions(item)
    if item.max_items is not None:
        extensions.append({"url": MAX_OCCURS, "valueInteger": item.max_items})
    if extensions:
        question["extension"] = extensions
    question.update(
        {
            "linkId": item.id,
            "text": item.text,
            "type": FHIR_ITEM_TYPE[item.type],
            "required": item.required,
        }
    )
    if item.type == "multiple-choice":
        question["repeats"] = True
    if item.max_length is not None:
        question["maxLength"] = item.max_length
    if item.options:
        system = code_system_url(q, item, base_url=base_url)
        question["answerOption"] = [
            {"valueCoding": {"system": system, "code": option.value, "display": option.label}}
            for option in item.options
        ]
    return question


def _bound_extensions(item: Item) -> list[dict[str, Any]]:
    """``minValue``/``maxValue`` with the item's own value type; ``"today"`` moves, so it is
    left out (FHIR can only say that with an expression, see docs/fhir.md)."""
    key = _BOUND_KEY.get(item.type)
    if key is None:
        return []
    return [
        {"url": url, key: bound}
        for url, bound in ((MIN_VALUE, item.minimum), (MAX_VALUE, item.maximum))
        if bound is not None and bound != TODAY
    ]


# -- QuestionnaireResponse ---------------------------------------------------------------------


def response_to_fhir(
    state: HealthInformationState, q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL
) -> dict[str, Any]:
    """A kit's health information as a FHIR R4 ``QuestionnaireResponse``.

    ``q`` must be the questionnaire (id and version) the state was answered against. Items come
    in definition order, only for answered questions. Stored answers were validated when they
    were written, so one that does not fit its question is a bug: ``ValueError``, naming the
    question but never the value.
    """
    if (state.questionnaire_id, state.questionnaire_version) != (q.id, q.version):
        raise ValueError(
            f"health information answers questionnaire {state.questionnaire_id!r} version "
            f"{state.questionnaire_version!r}, not {q.id!r} version {q.version!r}"
        )
    unknown = sorted(str(qid) for qid in state.answers if q.item(qid) is None)
    if unknown:
        raise ValueError(f"stored answers to unknown questions: {', '.join(unknown)}")
    resource: dict[str, Any] = {"resourceType": "QuestionnaireResponse"}
    if _FHIR_ID.fullmatch(state.kit_id):
        # Kit ids may contain "_", which a FHIR id may not; the identifier always has it.
        resource["id"] = state.kit_id
    resource["meta"] = {
        "versionId": str(state.version),
        "lastUpdated": to_rfc3339(state.updated_at),
    }
    resource["identifier"] = {"system": kit_identifier_system(base_url), "value": state.kit_id}
    resource["questionnaire"] = questionnaire_canonical(q, base_url=base_url)
    resource["status"] = STATUS_TO_FHIR[state.status]
    resource["authored"] = to_rfc3339(state.updated_at)
    if _is_fhir_string(state.updated_by):  # a token's subject could be any text
        resource["author"] = {
            "identifier": {"system": user_identifier_system(base_url), "value": state.updated_by}
        }
    items = _response_items(q, q.items, state.answers, base_url)
    if items:
        resource["item"] = items
    return resource


def _response_items(
    q: Questionnaire, items: tuple[Item, ...], answers: Mapping[str, Any], base_url: str
) -> list[dict[str, Any]]:
    """Answered items in definition order, nested as the definition nests them.

    A group is an item holding its children's items; a repeating group is one such item per
    row (FHIR repeats a group's ``linkId`` for each repetition). Groups with no answer inside,
    display items and unanswered questions are left out.
    """
    result: list[dict[str, Any]] = []
    for item in items:
        if item.type == "display":
            continue
        if item.type == "group" and item.repeats:
            rows = answers.get(item.id)
            if not isinstance(rows, list):
                continue
            for row in rows:
                children = _response_items(q, item.items, row, base_url)
                if children:
                    result.append({"linkId": item.id, "text": item.text, "item": children})
        elif item.type == "group":
            children = _response_items(q, item.items, answers, base_url)
            if children:
                result.append({"linkId": item.id, "text": item.text, "item": children})
        elif item.id in answers:
            values = _fhir_answers(q, item, answers[item.id], base_url)
            if values:  # an empty multiple-choice selection is no answer in FHIR
                result.append({"linkId": item.id, "text": item.text, "answer": values})
    return result


def _is_fhir_string(value: str) -> bool:
    """R4 ``string``: not blank, no control characters but tab, carriage return, line feed."""
    return bool(value.strip()) and not any(
        ord(char) < 32 and char not in "\t\r\n" for char in value
    )


def _fhir_answers(q: Questionnaire, item: Item, value: Any, base_url: str) -> list[dict[str, Any]]:
    if item.type == "multiple-choice":
        if not isinstance(value, list):
            raise ValueError(f"stored answer to {item.id!r} is not a list")
        return [_fhir_answer(q, item, entry, base_url) for entry in value]
    return [_fhir_answer(q, item, value, base_url)]


def _fhir_answer(q: Questionnaire, item: Item, value: Any, base_url: str) -> dict[str, Any]:
    key = VALUE_KEY[item.type]
    if not _json_type_fits(key, value):
        raise ValueError(f"stored answer to {item.id!r} does not fit a {item.type} question")
    if key != "valueCoding":
        return {key: value}
    coding = {"system": code_system_url(q, item, base_url=base_url), "code": value}
    label = next((option.label for option in item.options if option.value == value), None)
    if label is not None:
        coding["display"] = label
    return {key: coding}


def _json_type_fits(key: str, value: object) -> bool:
    """Does ``value`` have the JSON type of ``key`` (the code, for ``valueCoding``)?"""
    if key == "valueBoolean":
        return isinstance(value, bool)
    if key == "valueInteger":
        return isinstance(value, int) and not isinstance(value, bool)
    if key == "valueDecimal":
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value))
        )
    return isinstance(value, str)


# -- answers from a QuestionnaireResponse ------------------------------------------------------


def answers_from_fhir(
    resource: Any, q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL
) -> FhirAnswers:
    """Read the answers of a FHIR R4 ``QuestionnaireResponse`` written against ``q``.

    Each item's ``linkId`` is a question id and its ``answer`` carries the ``value[x]`` of that
    question's type (``valueCoding.code`` for choices, one answer per selected option for a
    multiple-choice question). Items without answers are unanswered questions. ``status``
    ``completed`` asks to submit, ``in-progress`` to save.

    Raises ``MalformedRequest`` when ``resource`` is not a JSON object, ``ValidationFailed``
    with one error per problem (fields such as ``status`` or ``item[2].answer[0]``) otherwise.
    Values are not checked against the question's bounds or options here: the service does
    that for every write.
    """
    if not isinstance(resource, Mapping):
        raise MalformedRequest("The body must be a FHIR QuestionnaireResponse (a JSON object).")
    if resource.get("resourceType") != "QuestionnaireResponse":
        raise ValidationFailed(
            [FieldError("resourceType", "must be QuestionnaireResponse")],
            "Only a FHIR QuestionnaireResponse can be written here.",
        )
    errors: list[FieldError] = []
    if "modifierExtension" in resource:
        errors.append(FieldError("modifierExtension", "modifier extensions are not supported"))
    status = resource.get("status")
    if status is None:
        errors.append(FieldError("status", "is required"))
    elif not isinstance(status, str) or status not in WRITABLE_STATUSES:
        errors.append(FieldError("status", "must be in-progress or completed"))
    reference = resource.get("questionnaire")
    if reference is not None:
        url = questionnaire_url(q, base_url=base_url)
        if reference not in (url, f"{url}|{q.version}"):
            errors.append(FieldError("questionnaire", f"must be {url} or {url}|{q.version}"))
    answers: dict[str, Any] = {}
    seen: set[str] = set()
    raw_items = resource.get("item", [])
    if isinstance(raw_items, list):
        for position, raw_item in enumerate(raw_items):
            _read_item(q, raw_item, f"item[{position}]", answers, seen, errors, base_url)
    else:
        errors.append(FieldError("item", "must be a list"))
    if errors:
        raise ValidationFailed(errors)
    return FhirAnswers(answers, status == "completed")


def _read_item(
    q: Questionnaire,
    raw: object,
    path: str,
    answers: dict[str, Any],
    seen: set[str],
    errors: list[FieldError],
    base_url: str,
) -> None:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, "must be an object"))
        return
    errors_before = len(errors)
    link_id = raw.get("linkId")
    item = q.item(link_id) if isinstance(link_id, str) else None
    if not isinstance(link_id, str):
        errors.append(FieldError(f"{path}.linkId", "is required"))
    elif item is None:
        errors.append(FieldError(f"{path}.linkId", "unknown question id"))
    elif link_id in seen:
        errors.append(FieldError(f"{path}.linkId", "this question is already answered above"))
    else:
        seen.add(link_id)
    if "item" in raw:
        errors.append(FieldError(f"{path}.item", "nested items (groups) are not supported"))
    if "modifierExtension" in raw:
        errors.append(
            FieldError(f"{path}.modifierExtension", "modifier extensions are not supported")
        )
    raw_answers = raw.get("answer", [])
    if not isinstance(raw_answers, list):
        errors.append(FieldError(f"{path}.answer", "must be a list"))
        return
    if item is None or not raw_answers:
        return  # no question to answer, or the question is left unanswered
    if item.type != "multiple-choice" and len(raw_answers) > 1:
        errors.append(FieldError(f"{path}.answer", "this question takes a single answer"))
        return
    values = []
    for position, raw_answer in enumerate(raw_answers):
        value, message = _read_answer(q, item, raw_answer, base_url)
        if message is not None:
            errors.append(FieldError(f"{path}.answer[{position}]", message))
        values.append(value)
    if len(errors) == errors_before:
        answers[item.id] = values if item.type == "multiple-choice" else values[0]


def _read_answer(
    q: Questionnaire, item: Item, raw: object, base_url: str
) -> tuple[Any, str | None]:
    """The answer's value, or why it cannot be one (never repeating the value)."""
    if not isinstance(raw, Mapping):
        return None, "must be an object"
    if "item" in raw:
        return None, "nested items (groups) are not supported"
    if "modifierExtension" in raw:
        return None, "modifier extensions are not supported"
    expected = VALUE_KEY[item.type]
    keys = [key for key in raw if isinstance(key, str) and key.startswith("value")]
    if keys != [expected]:
        return None, f"must have exactly one value, {expected}, for a {item.type} question"
    value = raw[expected]
    if expected == "valueCoding":
        return _read_coding(q, item, value, base_url)
    if not _json_type_fits(expected, value):
        return None, f"{expected} must be {_JSON_TYPE_PHRASE[expected]}"
    if expected == "valueInteger" and not _INT32_MIN <= value <= _INT32_MAX:
        return None, "valueInteger must be a 32-bit integer"
    return value, None


def _read_coding(
    q: Questionnaire, item: Item, coding: object, base_url: str
) -> tuple[Any, str | None]:
    if not isinstance(coding, Mapping):
        return None, "valueCoding must be an object"
    system = coding.get("system")
    expected_system = code_system_url(q, item, base_url=base_url)
    if system is not None and system != expected_system:
        return None, f"valueCoding.system must be {expected_system} (or left out)"
    code = coding.get("code")
    if not isinstance(code, str):
        return None, "valueCoding.code must be a string"
    return code, None
