"""FHIR R4 (4.0.1) views of questionnaires and answers, and answers read back from FHIR.

Pure functions, no I/O. What is emitted is plain JSON-ready ``dict``s:

* ``questionnaire_to_fhir``: a ``Questionnaire`` resource, groups nesting their items; its
  inverse, ``questionnaire_from_fhir``, is in ``questionnaire_import``;
* ``response_to_fhir``: a kit's health information as a ``QuestionnaireResponse`` (a group's
  answers nested under it, one group item per row of a repeating group);
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
from healthinfo.questionnaires.model import (
    CHOICE_TYPES,
    INT32_MAX,
    INT32_MIN,
    TODAY,
    Item,
    ItemType,
    Option,
    Questionnaire,
)

FHIR_VERSION: Final = "4.0.1"
DEFAULT_BASE_URL: Final = "urn:healthinfo"

MIN_VALUE: Final = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE: Final = "http://hl7.org/fhir/StructureDefinition/maxValue"
MAX_OCCURS: Final = "http://hl7.org/fhir/StructureDefinition/questionnaire-maxOccurs"
TODAY_BOUND: Final = "urn:healthinfo/StructureDefinition/today-bound"
"""The service's own item extension for a ``"today"`` date bound (``valueCode`` ``minValue`` or
``maxValue``): minValue/maxValue need a fixed date, and SDC's way (``cqf-expression`` on a
value-less ``_valueDate``) is one that many FHIR libraries cannot even parse."""
SECTION: Final = "urn:healthinfo/StructureDefinition/section"
"""The service's own item extension (``valueString``) for a definition's ``section``."""

FHIR_ITEM_TYPE: Final[Mapping[ItemType, str]] = {
    "boolean": "boolean",
    "integer": "integer",
    "decimal": "decimal",
    "date": "date",
    "dateTime": "dateTime",
    "time": "time",
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
    "dateTime": "answerDateTime",
    "time": "answerTime",
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
    "dateTime": "valueDateTime",
    "time": "valueTime",
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
    "dateTime": "valueDateTime",
    "time": "valueTime",
}
_OPTION_KEY: Final[Mapping[str, str]] = {
    "coding": "valueCoding",
    "string": "valueString",
    "integer": "valueInteger",
}
"""An option's kind → its ``answerOption.value[x]`` and an answer's ``value[x]``."""
_CONDITION_OPTION_KEY: Final[Mapping[str, str]] = {
    "coding": "answerCoding",
    "string": "answerString",
    "integer": "answerInteger",
}
_JSON_TYPE_PHRASE: Final[Mapping[str, str]] = {
    "valueBoolean": "true or false",
    "valueInteger": "a JSON integer",
    "valueDecimal": "a JSON number",
    "valueDate": "a string YYYY-MM-DD",
    "valueDateTime": "a string",
    "valueTime": "a string",
    "valueString": "a string",
}
_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_FHIR_NAME: Final = re.compile(r"[A-Z][A-Za-z0-9_]{0,254}")
_INT32_MIN: Final = INT32_MIN
_INT32_MAX: Final = INT32_MAX


class FhirAnswers(NamedTuple):
    """Answers read from a ``QuestionnaireResponse``; ``completed`` means "submit them"."""

    answers: dict[str, Any]
    completed: bool


# -- canonical URLs ----------------------------------------------------------------------------


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def questionnaire_url(q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL) -> str:
    """The questionnaire's canonical URL, without a version: the ``url`` it was published
    with (a FHIR import keeps it), else ``<base>/Questionnaire/<id>``."""
    return q.url if q.url is not None else default_questionnaire_url(q.id, base_url=base_url)


def default_questionnaire_url(questionnaire_id: str, *, base_url: str = DEFAULT_BASE_URL) -> str:
    return f"{_base(base_url)}/Questionnaire/{questionnaire_id}"


def questionnaire_canonical(q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL) -> str:
    """``<url>|<version>``: what ``QuestionnaireResponse.questionnaire`` points at."""
    return f"{questionnaire_url(q, base_url=base_url)}|{q.version}"


def code_system_url(q: Questionnaire, item: Item, *, base_url: str = DEFAULT_BASE_URL) -> str:
    """The code system of one choice question's options that name none of their own."""
    return default_code_system(q.id, item.id, base_url=base_url)


def default_code_system(
    questionnaire_id: str, item_id: str, *, base_url: str = DEFAULT_BASE_URL
) -> str:
    return f"{_base(base_url)}/CodeSystem/{questionnaire_id}-{item_id}"


def kit_identifier_system(base_url: str = DEFAULT_BASE_URL) -> str:
    return f"{_base(base_url)}/kit-id"


def user_identifier_system(base_url: str = DEFAULT_BASE_URL) -> str:
    return f"{_base(base_url)}/user-id"


# -- Questionnaire -----------------------------------------------------------------------------


def questionnaire_to_fhir(q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL) -> dict[str, Any]:
    """A FHIR R4 ``Questionnaire``: groups nest their items, in definition order.

    Everything a definition says is stated, so that ``questionnaire_from_fhir`` reads back the
    same definition (docs/fhir.md has the table): a section with the service's own extension
    ``SECTION`` where it differs from the enclosing group's, a ``"today"`` bound with
    ``TODAY_BOUND``; ``fhirExtensions`` come last.
    """
    resource: dict[str, Any] = {"resourceType": "Questionnaire"}
    if _FHIR_ID.fullmatch(q.id):
        resource["id"] = q.id
    if q.fhir_extensions:
        resource["extension"] = list(q.fhir_extensions)
    resource["url"] = questionnaire_url(q, base_url=base_url)
    resource["version"] = q.version
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", q.id))
    if _FHIR_NAME.fullmatch(name):
        resource["name"] = name
    resource["title"] = q.title
    resource["status"] = "active"
    resource["item"] = [_question(q, item, "", base_url) for item in q.items]
    return resource


def _question(q: Questionnaire, item: Item, section: str, base_url: str) -> dict[str, Any]:
    """One item; ``section`` is the enclosing group's (children inherit it)."""
    extensions = _bound_extensions(item)
    if item.max_items is not None:
        extensions.append({"url": MAX_OCCURS, "valueInteger": item.max_items})
    if item.section != section:
        extensions.append({"url": SECTION, "valueString": item.section})
    extensions += item.fhir_extensions
    result: dict[str, Any] = {"extension": extensions} if extensions else {}
    result |= {"linkId": item.id, "text": item.text, "type": fhir_item_type(item)}
    result |= _conditions(q, item, base_url)
    if item.required:
        result["required"] = True
    if item.repeats or item.type == "multiple-choice":
        result["repeats"] = True
    if item.read_only:
        result["readOnly"] = True
    if item.max_length is not None:
        result["maxLength"] = item.max_length
    if item.options:
        result["answerOption"] = [_answer_option(q, item, o, base_url) for o in item.options]
    if item.items:
        result["item"] = [_question(q, child, item.section, base_url) for child in item.items]
    return result


def fhir_item_type(item: Item) -> str:
    """The R4 ``item.type`` of one of our items."""
    if item.type in CHOICE_TYPES and item.open_choice:
        return "open-choice"
    return FHIR_ITEM_TYPE[item.type]


def _answer_option(q: Questionnaire, item: Item, option: Option, base_url: str) -> dict[str, Any]:
    return {_OPTION_KEY[option.kind]: option_value(q, item, option, base_url=base_url)}


def option_value(
    q: Questionnaire,
    item: Item,
    option: Option,
    *,
    base_url: str = DEFAULT_BASE_URL,
    display: bool = True,
) -> Any:
    """The ``value[x]`` of an option: a Coding (with ``display`` unless told not), or the value."""
    if option.kind != "coding":
        return option.value
    coding: dict[str, Any] = {
        "system": option.system or code_system_url(q, item, base_url=base_url),
        "code": option.value,
    }
    if display and option.label is not None:
        coding["display"] = option.label
    return coding


def find_option(options: tuple[Option, ...], value: object) -> Option | None:
    """The option whose value is ``value`` (of the same JSON type: ``True`` is not ``1``)."""
    return next((o for o in options if type(o.value) is type(value) and o.value == value), None)


def _conditions(q: Questionnaire, item: Item, base_url: str) -> dict[str, Any]:
    """``enableWhen`` with the ``answer[x]`` of the named item's type, and ``enableBehavior``."""
    if not item.enable_when:
        return {}
    conditions = []
    for condition in item.enable_when:
        target = q.any_item(condition.question)
        assert target is not None  # checked at publication
        entry: dict[str, Any] = {"question": condition.question, "operator": condition.operator}
        key, value = _condition_answer(q, target, condition.operator, condition.answer, base_url)
        entry[key] = value
        conditions.append(entry)
    result: dict[str, Any] = {"enableWhen": conditions}
    if item.enable_behavior is not None:
        result["enableBehavior"] = item.enable_behavior
    return result


def _condition_answer(
    q: Questionnaire, target: Item, operator: str, answer: Any, base_url: str
) -> tuple[str, Any]:
    if operator == "exists":
        return "answerBoolean", answer
    if target.type in CHOICE_TYPES:
        option = find_option(target.options, answer)
        if option is None:  # free text of an open choice
            return "answerString", answer
        value = option_value(q, target, option, base_url=base_url, display=False)
        return _CONDITION_OPTION_KEY[option.kind], value
    return ENABLE_WHEN_KEY[target.type], answer


def _bound_extensions(item: Item) -> list[dict[str, Any]]:
    """``minValue``/``maxValue`` with the item's own value type; ``"today"`` has no fixed
    value, so it is the service's ``TODAY_BOUND`` extension."""
    key = _BOUND_KEY.get(item.type)
    if key is None:
        return []
    extensions: list[dict[str, Any]] = []
    for url, bound in ((MIN_VALUE, item.minimum), (MAX_VALUE, item.maximum)):
        if bound == TODAY:
            extensions.append({"url": TODAY_BOUND, "valueCode": url.rsplit("/", 1)[1]})
        elif bound is not None:
            extensions.append({"url": url, key: bound})
    return extensions


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
    if item.type in CHOICE_TYPES:
        option = find_option(item.options, value)
        if option is not None:
            return {_OPTION_KEY[option.kind]: option_value(q, item, option, base_url=base_url)}
        if item.open_choice and isinstance(value, str):
            return {"valueString": value}  # the free text of an open choice
        raise ValueError(f"stored answer to {item.id!r} is none of its options")
    key = VALUE_KEY[item.type]
    if not _json_type_fits(key, value):
        raise ValueError(f"stored answer to {item.id!r} does not fit a {item.type} question")
    return {key: value}


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

    Items nest as the questionnaire nests them: a group's item holds its children's items
    (they are answered by their own ids, at the top level of ``answers``), a repeating group
    has one item per row. Each question's ``answer`` carries the ``value[x]`` of its type
    (``valueCoding.code`` for a coded option, one answer per selected option for a
    multiple-choice question, ``valueString`` for an open choice's free text). Items without
    answers are unanswered questions. ``status`` ``completed`` asks to submit, ``in-progress``
    to save.

    Raises ``MalformedRequest`` when ``resource`` is not a JSON object, ``ValidationFailed``
    with one error per problem (fields such as ``status`` or ``item[2].item[0].answer[0]``)
    otherwise. Values are not checked against the question's bounds or options here: the
    service does that for every write.
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
    reader = _ResponseReader(q, base_url, errors)
    raw_items = resource.get("item", [])
    if isinstance(raw_items, list):
        reader.read_level(raw_items, "item", q.items, answers)
    else:
        errors.append(FieldError("item", "must be a list"))
    if errors:
        raise ValidationFailed(errors)
    return FhirAnswers(answers, status == "completed")


class _ResponseReader:
    """Reads nested response items against the definition, collecting every error.

    An error about an item the questionnaire has names its linkId (definition data, never an
    answer); an unknown linkId is not repeated, as it could be anything.
    """

    def __init__(self, q: Questionnaire, base_url: str, errors: list[FieldError]) -> None:
        self.q = q
        self.base_url = base_url
        self.errors = errors

    def fail(self, path: str, message: str, item: Item | None = None) -> None:
        prefix = f"linkId {item.id!r}: " if item is not None else ""
        self.errors.append(FieldError(path, prefix + message))

    def read_level(
        self, raw_items: list[Any], prefix: str, level: tuple[Item, ...], answers: dict[str, Any]
    ) -> None:
        """The items of one level (the resource, a group, a row) into ``answers``."""
        here = {item.id: item for item in level}
        seen: set[str] = set()
        for position, raw in enumerate(raw_items):
            path = f"{prefix}[{position}]"
            if not isinstance(raw, Mapping):
                self.fail(path, "must be an object")
                continue
            link_id = raw.get("linkId")
            known = self.q.any_item(link_id) if isinstance(link_id, str) else None
            item = here.get(link_id) if isinstance(link_id, str) else None
            if "modifierExtension" in raw:
                self.fail(
                    f"{path}.modifierExtension", "modifier extensions are not supported", known
                )
            if not isinstance(link_id, str):
                self.fail(f"{path}.linkId", "is required")
            elif known is None:
                self.fail(f"{path}.linkId", "unknown question id")
            elif item is None:
                message = "is not an item at this level: nest items as the questionnaire does"
                self.fail(f"{path}.linkId", message, known)
            elif link_id in seen and not item.repeats:
                self.fail(f"{path}.linkId", "this question is already answered above", item)
            else:
                seen.add(link_id)
                self._read(item, raw, path, answers)

    def _read(self, item: Item, raw: Mapping[str, Any], path: str, answers: dict[str, Any]) -> None:
        if item.type in ("group", "display"):
            if raw.get("answer"):
                self.fail(f"{path}.answer", f"a {item.type} item has no answer", item)
            children = raw.get("item", [])
            if not isinstance(children, list):
                self.fail(f"{path}.item", "must be a list", item)
            elif item.type == "display":
                if children:
                    self.fail(f"{path}.item", "a display item has no items", item)
            elif item.repeats:
                row: dict[str, Any] = {}
                self.read_level(children, f"{path}.item", item.items, row)
                if row:  # a repetition with nothing answered is no row
                    rows = answers.setdefault(item.id, [])
                    rows.append(row)
            else:
                self.read_level(children, f"{path}.item", item.items, answers)
            return
        if "item" in raw:
            self.fail(f"{path}.item", "items nested under a question are not supported", item)
        self._read_question(item, raw, path, answers)

    def _read_question(
        self, item: Item, raw: Mapping[str, Any], path: str, answers: dict[str, Any]
    ) -> None:
        errors_before = len(self.errors)
        raw_answers = raw.get("answer", [])
        if not isinstance(raw_answers, list):
            self.fail(f"{path}.answer", "must be a list", item)
            return
        if not raw_answers:
            return  # the question is left unanswered
        if item.type != "multiple-choice" and len(raw_answers) > 1:
            self.fail(f"{path}.answer", "this question takes a single answer", item)
            return
        values = []
        for position, raw_answer in enumerate(raw_answers):
            value, message = _read_answer(self.q, item, raw_answer, self.base_url)
            if message is not None:
                self.fail(f"{path}.answer[{position}]", message, item)
            values.append(value)
        if len(self.errors) == errors_before:
            answers[item.id] = values if item.type == "multiple-choice" else values[0]


def _expected_keys(item: Item) -> list[str]:
    """The ``value[x]`` an answer to ``item`` may carry."""
    if item.type not in CHOICE_TYPES:
        return [VALUE_KEY[item.type]]
    kinds = {option.kind for option in item.options}
    keys = [key for kind, key in _OPTION_KEY.items() if kind in kinds]
    if item.open_choice and "valueString" not in keys:
        keys.append("valueString")
    return keys


def _read_answer(
    q: Questionnaire, item: Item, raw: object, base_url: str
) -> tuple[Any, str | None]:
    """The answer's value, or why it cannot be one (never repeating the value)."""
    if not isinstance(raw, Mapping):
        return None, "must be an object"
    if "item" in raw:
        return None, "items nested under an answer are not supported"
    if "modifierExtension" in raw:
        return None, "modifier extensions are not supported"
    expected = _expected_keys(item)
    keys = [key for key in raw if isinstance(key, str) and key.startswith("value")]
    if len(keys) != 1 or keys[0] not in expected:
        return None, f"must have exactly one value, {' or '.join(expected)}, for this question"
    key = keys[0]
    value = raw[key]
    if key == "valueCoding":
        return _read_coding(q, item, value, base_url)
    if not _json_type_fits(key, value):
        return None, f"{key} must be {_JSON_TYPE_PHRASE[key]}"
    if key == "valueInteger" and not _INT32_MIN <= value <= _INT32_MAX:
        return None, "valueInteger must be a 32-bit integer"
    return value, None


def _read_coding(
    q: Questionnaire, item: Item, coding: object, base_url: str
) -> tuple[Any, str | None]:
    if not isinstance(coding, Mapping):
        return None, "valueCoding must be an object"
    code = coding.get("code")
    if not isinstance(code, str):
        return None, "valueCoding.code must be a string"
    system = coding.get("system")
    option = find_option(item.options, code)
    if option is not None and option.kind == "coding":
        expected_system = option.system or code_system_url(q, item, base_url=base_url)
        if system is not None and system != expected_system:
            return None, f"valueCoding.system must be {expected_system} (or left out)"
        return code, None
    if item.open_choice:
        return None, "valueCoding must be one of the options (free text is a valueString)"
    systems = {o.system or code_system_url(q, item, base_url=base_url) for o in item.options}
    if system is not None and system not in systems:
        return None, "valueCoding.system must be the system of the item's options (or left out)"
    return code, None
