"""FHIR Questionnaire import, lossless export, and nested QuestionnaireResponse items.

The properties generate valid definitions with every item type, groups, repeating groups with
``maxItems``, display items and conditions with every operator (inside repetitions too), and
check that ours → FHIR → ours is the identity, that what is emitted is valid R4, and that any
valid answers survive ``response_to_fhir`` → ``answers_from_fhir``. Hand-written FHIR
resources check FHIR → ours → FHIR, and that every unsupported construct is reported.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
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
    answers_from_fhir,
    questionnaire_to_fhir,
    response_to_fhir,
)
from healthinfo.fhir.questionnaire_import import questionnaire_from_fhir
from healthinfo.health_information.model import HealthInformationState, Status
from healthinfo.questionnaires.model import Item, Questionnaire
from healthinfo.questionnaires.validation import validate_answers
from tests.support.fhir_validity import assert_valid_questionnaire, assert_valid_response

NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
TODAY = NOW.date()
QUESTION_TYPES = [
    "boolean",
    "integer",
    "decimal",
    "date",
    "dateTime",
    "time",
    "string",
    "text",
    "single-choice",
    "multiple-choice",
]
ORDERED = {"integer", "decimal", "date", "dateTime", "time"}
ZONES = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
_TEXT = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=("Cc", "Cs")), st.sampled_from("\t\n")),
    min_size=1,
    max_size=30,
).filter(lambda text: bool(text.strip()))
_LABEL = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=20
).filter(lambda text: bool(text.strip()))


def state_of(answers: dict[str, Any], q: Questionnaire) -> HealthInformationState:
    return HealthInformationState(
        kit_id="KIT-1",
        questionnaire_id=q.id,
        questionnaire_version=q.version,
        status=Status.IN_PROGRESS,
        answers=answers,
        version=1,
        created_at=NOW,
        updated_at=NOW,
        updated_by="user-1",
        submitted_at=None,
    )


# --- generated definitions --------------------------------------------------------------------


def render_datetime(moment: datetime, zone: timezone) -> str:
    text = moment.astimezone(zone).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if zone is UTC else text


@st.composite
def datetimes(draw: st.DrawFn, low: str | None = None, high: str | None = None) -> str:
    """A dateTime of our one spelling (zoned, seconds), between two such bounds."""
    lo = datetime.fromisoformat(low).astimezone(UTC) if low else datetime(1900, 1, 2, tzinfo=UTC)
    hi = datetime.fromisoformat(high).astimezone(UTC) if high else datetime(2100, 1, 1, tzinfo=UTC)
    moment = draw(
        st.datetimes(
            min_value=lo.replace(tzinfo=None) + timedelta(seconds=1),
            max_value=hi.replace(tzinfo=None) - timedelta(seconds=1),
        )
    ).replace(microsecond=0, tzinfo=UTC)
    return render_datetime(moment, draw(st.sampled_from(ZONES)))


def times(low: str | None = None, high: str | None = None) -> st.SearchStrategy[str]:
    return st.times(
        min_value=time.fromisoformat(low) if low else time(0, 0),
        max_value=time.fromisoformat(high) if high else time(23, 59, 59),
    ).map(lambda t: t.replace(microsecond=0).isoformat())


def _date_bound(bound: Any, default: date) -> date:
    if bound == "today":
        return TODAY
    return date.fromisoformat(bound) if isinstance(bound, str) else default


def answer_strategy(item: Item) -> st.SearchStrategy[Any]:
    """Valid answers to one question (a non-empty selection for a multiple choice)."""
    low, high = item.minimum, item.maximum
    kind = item.type
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(
            min_value=low if isinstance(low, int) else -(2**31),
            max_value=high if isinstance(high, int) else 2**31 - 1,
        )
    if kind == "decimal":
        lo = low if isinstance(low, int | float) else -1e6
        hi = high if isinstance(high, int | float) else 1e6
        return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
    if kind == "date":
        return st.dates(
            min_value=_date_bound(low, date(1, 1, 1)), max_value=_date_bound(high, date(9999, 1, 1))
        ).map(date.isoformat)
    if kind == "dateTime":
        return datetimes(
            low if isinstance(low, str) else None, high if isinstance(high, str) else None
        )
    if kind == "time":
        return times(low if isinstance(low, str) else None, high if isinstance(high, str) else None)
    if kind in ("string", "text"):
        return _TEXT.filter(lambda text: len(text) <= (item.max_length or 0))
    one = st.sampled_from([option.value for option in item.options])
    if item.open_choice:
        one = st.one_of(one, _TEXT.filter(lambda text: len(text) <= (item.max_length or 0)))
    if kind == "single-choice":
        return one
    return st.lists(one, min_size=1, max_size=item.max_items, unique_by=lambda v: (type(v), v))


@st.composite
def options(draw: st.DrawFn, open_choice: bool) -> list[dict[str, Any]]:
    kinds = ["coding", "string"] if open_choice else ["coding", "string", "integer"]
    kind = draw(st.sampled_from(kinds))
    count = draw(st.integers(min_value=1, max_value=4))
    if kind == "integer":
        values = draw(st.lists(st.integers(-5, 100), min_size=count, max_size=count, unique=True))
        return [{"value": value} for value in values]
    values = draw(
        st.lists(
            st.from_regex(r"\A[A-Za-z0-9-]{1,8}\Z"), min_size=count, max_size=count, unique=True
        )
    )
    if kind == "string":
        return [{"value": value} for value in values]
    system = draw(st.sampled_from([None, "http://loinc.org", "urn:oid:2.16.840.1.113883.6.96"]))
    result = []
    for value in values:
        option: dict[str, Any] = {"value": value, "label": draw(_LABEL)}
        if system is not None:
            option["system"] = system
        result.append(option)
    return result


@st.composite
def bounds(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    if kind not in ORDERED or not draw(st.booleans()):
        return {}
    if kind == "integer":
        values: list[Any] = sorted(draw(st.lists(st.integers(-1000, 1000), min_size=2, max_size=2)))
    elif kind == "decimal":
        values = sorted(draw(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=2)))
        if values[0] == values[1]:
            values[1] += 1.0
    elif kind == "date":
        low, high = sorted(
            draw(st.lists(st.dates(date(1900, 1, 1), date(2020, 1, 1)), min_size=2, max_size=2))
        )
        values = [low.isoformat(), draw(st.sampled_from([high.isoformat(), "today"]))]
    elif kind == "dateTime":
        moments = sorted(
            draw(
                st.lists(
                    st.datetimes(datetime(1950, 1, 1), datetime(2050, 1, 1)), min_size=2, max_size=2
                )
            )
        )
        if moments[1] - moments[0] < timedelta(seconds=10):
            moments[1] = moments[0] + timedelta(days=1)
        values = [
            render_datetime(m.replace(microsecond=0, tzinfo=UTC), draw(st.sampled_from(ZONES)))
            for m in moments
        ]
    else:
        low_t, high_t = sorted(draw(st.lists(st.times(), min_size=2, max_size=2)))
        values = [
            low_t.replace(microsecond=0).isoformat(),
            high_t.replace(microsecond=0).isoformat(),
        ]
        if values[0] == values[1]:
            values = ["00:00:00", "23:59:59"]
    which = draw(st.sampled_from(["minimum", "maximum", "both"]))
    result = {}
    if which in ("minimum", "both"):
        result["minimum"] = values[0]
    if which in ("maximum", "both"):
        result["maximum"] = values[1]
    return result


EXTRA_EXTENSIONS = [
    {
        "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl",
        "valueCodeableConcept": {
            "coding": [
                {"system": "http://hl7.org/fhir/questionnaire-item-control", "code": "drop-down"}
            ]
        },
    },
    {"url": "http://example.org/fhir/StructureDefinition/note", "valueString": "kept as is"},
]


class _Ids:
    def __init__(self) -> None:
        self.count = 0

    def next(self, style: int) -> str:
        self.count += 1
        # plain, LHC-Forms dotted, LOINC-like with a slash
        return [f"q{self.count}", f"1.{self.count}", f"/6967{self.count}-6"][style]


@st.composite
def question(draw: st.DrawFn, ids: _Ids, section: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(QUESTION_TYPES))
    item: dict[str, Any] = {
        "id": ids.next(draw(st.integers(0, 2))),
        "text": draw(_LABEL),
        "type": kind,
        "required": draw(st.booleans()),
        "section": draw(
            st.sampled_from([section, section, "other"] + ([""] if not section else []))
        ),
    }
    item |= draw(bounds(kind))
    if kind in ("string", "text") and draw(st.booleans()):
        item["maxLength"] = draw(st.integers(5, 300))
    if kind in ("single-choice", "multiple-choice"):
        open_choice = draw(st.booleans())
        item["options"] = draw(options(open_choice))
        if open_choice:
            item["openChoice"] = True
            if draw(st.booleans()):
                item["maxLength"] = draw(st.integers(5, 300))
        if kind == "multiple-choice" and draw(st.booleans()):
            item["maxItems"] = draw(st.integers(1, 4))
    if draw(st.integers(0, 4)) == 0:
        item["readOnly"] = True
    if draw(st.integers(0, 4)) == 0:
        item["fhirExtensions"] = [draw(st.sampled_from(EXTRA_EXTENSIONS))]
    return item


@st.composite
def items(
    draw: st.DrawFn, ids: _Ids, section: str, depth: int, in_row: bool
) -> list[dict[str, Any]]:
    result = []
    for _ in range(draw(st.integers(1, 4))):
        shape = draw(st.sampled_from(["question"] * 4 + ["display", "group", "rows"]))
        if shape == "display":
            result.append({"id": ids.next(0), "text": draw(_LABEL), "type": "display"})
        elif shape in ("group", "rows") and depth < 2 and not (shape == "rows" and in_row):
            own = draw(st.sampled_from([section, "grouped"]))
            group: dict[str, Any] = {"id": ids.next(draw(st.integers(0, 2))), "text": draw(_LABEL)}
            group |= {"type": "group", "section": own}
            if draw(st.booleans()):
                group["required"] = True
            if shape == "rows":
                group["repeats"] = True
                if draw(st.booleans()):
                    group["maxItems"] = draw(st.integers(1, 5))
            group["items"] = draw(items(ids, own, depth + 1, in_row or shape == "rows"))
            result.append(group)
        else:
            result.append(draw(question(ids, section)))
    return result


def _preorder(
    raw: list[dict[str, Any]], row: str | None = None, ancestors: tuple[str, ...] = ()
) -> list[tuple[dict[str, Any], str | None, tuple[str, ...]]]:
    """(item, its repeating group, its ancestors' ids), parents before children."""
    result = []
    for item in raw:
        result.append((item, row, ancestors))
        inner = item["id"] if item.get("repeats") else row
        result += _preorder(item.get("items", []), inner, (*ancestors, item["id"]))
    return result


@st.composite
def definitions(draw: st.DrawFn) -> Questionnaire:
    """Valid definitions; conditions name earlier items only, so there is never a cycle."""
    ids = _Ids()
    raw = draw(items(ids, draw(st.sampled_from(["main", ""])), 0, False))
    order = _preorder(raw)
    built = Questionnaire.from_dict({"id": "g", "version": "1", "title": "T", "items": raw})
    for position, (item, row, ancestors) in enumerate(order):
        candidates = [
            (target, target_row)
            for target, target_row, _ in order[:position]
            if target["type"] not in ("display", "group") or target.get("repeats")
            if target_row in (None, row) and target["id"] not in ancestors
        ]
        if not candidates or not draw(st.booleans()):
            continue
        conditions = []
        for _ in range(draw(st.integers(1, 3))):
            target, _target_row = draw(st.sampled_from(candidates))
            conditions.append(draw(condition(built, target)))
        item["enableWhen"] = conditions
        if len(conditions) > 1 or draw(st.booleans()):
            item["enableBehavior"] = draw(st.sampled_from(["all", "any"]))
    url = draw(st.sampled_from([None, "http://example.org/fhir/Questionnaire/generated"]))
    definition: dict[str, Any] = {
        "id": "generated",
        "version": "3",
        "title": "Generated",
        "items": raw,
    }
    if url is not None:
        definition["url"] = url
    if draw(st.booleans()):
        definition["fhirExtensions"] = [EXTRA_EXTENSIONS[1]]
    return Questionnaire.from_dict(definition)


@st.composite
def condition(draw: st.DrawFn, built: Questionnaire, target: dict[str, Any]) -> dict[str, Any]:
    item = built.any_item(target["id"])
    assert item is not None
    operators = ["exists"]
    if item.type != "group":
        operators += ["=", "!="]
    if item.type in ORDERED:
        operators += [">", "<", ">=", "<="]
    operator = draw(st.sampled_from(operators))
    if operator == "exists":
        return {"question": item.id, "operator": operator, "answer": draw(st.booleans())}
    answer = draw(answer_strategy(item))
    if isinstance(answer, list):
        answer = answer[0]
    return {"question": item.id, "operator": operator, "answer": answer}


@st.composite
def answer_sets(draw: st.DrawFn, q: Questionnaire) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for item_id in _answerable_ids(q):
        item = q.item(item_id)
        assert item is not None
        if not draw(st.booleans()):
            continue
        if item.repeats:
            children = q.row_items(item_id)
            if not children:
                continue  # display items only: nothing to answer in a row
            rows = []
            for _ in range(draw(st.integers(1, item.max_items or 3))):
                row = {
                    cid: draw(answer_strategy(child))
                    for cid, child in children.items()
                    if draw(st.booleans())
                }
                if not row:
                    cid, child = next(iter(children.items()))
                    row = {cid: draw(answer_strategy(child))}
                rows.append(row)
            answers[item_id] = rows
        else:
            answers[item_id] = draw(answer_strategy(item))
    return answers


def _answerable_ids(q: Questionnaire) -> list[str]:
    result = []

    def visit(level: tuple[Item, ...]) -> None:
        for item in level:
            if q.item(item.id) is not None:
                result.append(item.id)
            if not item.repeats:
                visit(item.items)

    visit(q.items)
    return result


@st.composite
def definitions_with_answers(draw: st.DrawFn) -> tuple[Questionnaire, dict[str, Any]]:
    q = draw(definitions())
    return q, draw(answer_sets(q))


PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(definitions())
def test_any_definition_is_the_same_after_fhir_and_back(q: Questionnaire) -> None:
    resource = questionnaire_to_fhir(q)
    back = questionnaire_from_fhir(json.loads(json.dumps(resource)))
    assert back.to_public_dict() == q.to_public_dict()
    assert back == q


@PROPERTY
@given(definitions())
def test_any_definition_is_exported_as_valid_r4(q: Questionnaire) -> None:
    assert_valid_questionnaire(questionnaire_to_fhir(q))


@PROPERTY
@given(definitions_with_answers())
def test_any_valid_answers_round_trip_through_a_nested_questionnaire_response(
    case: tuple[Questionnaire, dict[str, Any]],
) -> None:
    q, answers = case
    assert validate_answers(q, answers, today=TODAY) == []
    resource = response_to_fhir(state_of(answers, q), q)
    assert_valid_response(resource, questionnaire_to_fhir(q))
    assert answers_from_fhir(json.loads(json.dumps(resource)), q).answers == answers


# --- hand-written FHIR: FHIR → ours → FHIR ----------------------------------------------------

LOINC = "http://loinc.org"
ITEM_CONTROL = EXTRA_EXTENSIONS[0]


def lhc_like() -> dict[str, Any]:
    """A Questionnaire shaped like LHC-Forms' exports, in the form the service emits."""
    frequency = [
        {"valueCoding": {"system": LOINC, "code": "LA6568-5", "display": "Not at all"}},
        {"valueCoding": {"system": LOINC, "code": "LA6569-3", "display": "Several days"}},
        {"valueCoding": {"system": LOINC, "code": "LA6570-1", "display": "More than half"}},
    ]
    return {
        "resourceType": "Questionnaire",
        "id": "phq-2-lhc",
        "extension": [{"url": "http://example.org/lformsVersion", "valueString": "29.0.0"}],
        "url": "http://example.org/fhir/Questionnaire/phq-2-lhc",
        "version": "2.1",
        "name": "Phq2Lhc",
        "title": "PHQ-2 and family history",
        "status": "active",
        "item": [
            {"linkId": "/intro", "text": "Over the last 2 weeks:", "type": "display"},
            {
                "extension": [{"url": SECTION, "valueString": "mood"}],
                "linkId": "/55757-9",
                "text": "PHQ-2",
                "type": "group",
                "required": True,
                "item": [
                    {
                        "extension": [ITEM_CONTROL],
                        "linkId": "/55757-9/44250-9",
                        "text": "Little interest or pleasure in doing things",
                        "type": "choice",
                        "required": True,
                        "answerOption": frequency,
                    },
                    {
                        "linkId": "/55757-9/44255-8",
                        "text": "Feeling down, depressed, or hopeless",
                        "type": "choice",
                        "enableWhen": [
                            {
                                "question": "/55757-9/44250-9",
                                "operator": "!=",
                                "answerCoding": {"system": LOINC, "code": "LA6568-5"},
                            }
                        ],
                        "answerOption": frequency,
                    },
                    {
                        "linkId": "/55757-9/score",
                        "text": "Score",
                        "type": "integer",
                        "readOnly": True,
                        "extension": [
                            {"url": MIN_VALUE, "valueInteger": 0},
                            {"url": MAX_VALUE, "valueInteger": 6},
                        ],
                    },
                ],
            },
            {
                "extension": [
                    {"url": MAX_OCCURS, "valueInteger": 10},
                    {"url": SECTION, "valueString": "family"},
                ],
                "linkId": "/54114-4",
                "text": "Family member health history",
                "type": "group",
                "repeats": True,
                "item": [
                    {
                        "linkId": "/54114-4/54136-7",
                        "text": "Relationship",
                        "type": "open-choice",
                        "required": True,
                        "maxLength": 200,
                        "answerOption": [
                            {
                                "valueCoding": {
                                    "system": LOINC,
                                    "code": "LA10415-0",
                                    "display": "Brother",
                                }
                            },
                            {
                                "valueCoding": {
                                    "system": LOINC,
                                    "code": "LA10416-8",
                                    "display": "Father",
                                }
                            },
                        ],
                    },
                    {"linkId": "/54114-4/living", "text": "Living?", "type": "boolean"},
                    {
                        "linkId": "/54114-4/died",
                        "text": "Date and time of death",
                        "type": "dateTime",
                        "enableWhen": [
                            {
                                "question": "/54114-4/living",
                                "operator": "=",
                                "answerBoolean": False,
                            },
                            {
                                "question": "/54114-4/living",
                                "operator": "exists",
                                "answerBoolean": True,
                            },
                        ],
                        "enableBehavior": "all",
                    },
                    {
                        "linkId": "/54114-4/conditions",
                        "text": "Conditions",
                        "type": "choice",
                        "repeats": True,
                        "answerOption": [{"valueString": "diabetes"}, {"valueString": "cancer"}],
                    },
                ],
            },
            {
                "linkId": "/wake",
                "text": "Usual wake-up time",
                "type": "time",
                "extension": [{"url": MIN_VALUE, "valueTime": "04:00:00"}],
                "enableWhen": [{"question": "/children", "operator": "!=", "answerInteger": 0}],
            },
            {
                "linkId": "/children",
                "text": "Number of children (0 to 3 or more)",
                "type": "choice",
                "answerOption": [{"valueInteger": 0}, {"valueInteger": 1}, {"valueInteger": 3}],
            },
            {"linkId": "/notes", "text": "Anything else?", "type": "text", "maxLength": 500},
        ],
    }


def test_a_questionnaire_in_the_services_form_is_the_same_after_import_and_export() -> None:
    source = lhc_like()
    assert_valid_questionnaire(source)
    q = questionnaire_from_fhir(copy.deepcopy(source))
    assert questionnaire_to_fhir(q) == source


def test_an_imported_questionnaire_keeps_id_version_url_and_extensions() -> None:
    q = questionnaire_from_fhir(lhc_like())
    assert (q.id, q.version, q.url) == ("phq-2-lhc", "2.1", lhc_like()["url"])
    assert q.fhir_extensions == (
        {"url": "http://example.org/lformsVersion", "valueString": "29.0.0"},
    )
    relation = q.any_item("/54114-4/54136-7")
    assert relation is not None
    assert (relation.type, relation.open_choice) == ("single-choice", True)
    interest = q.any_item("/55757-9/44250-9")
    assert interest is not None
    assert interest.fhir_extensions == (ITEM_CONTROL,)
    assert q.repeating_ids == {"/54114-4"}
    family = q.item("/54114-4")
    assert family is not None
    assert family.max_items == 10
    conditions = q.any_item("/54114-4/conditions")
    assert conditions is not None
    assert conditions.type == "multiple-choice"
    assert [o.kind for o in conditions.options] == ["string", "string"]


def test_the_version_defaults_to_1_and_the_services_own_url_is_not_stored() -> None:
    source = lhc_like()
    del source["version"]
    source["url"] = "urn:healthinfo/Questionnaire/phq-2-lhc"
    q = questionnaire_from_fhir(source)
    assert (q.version, q.url) == ("1", None)
    assert "url" not in q.to_public_dict()


def test_what_the_export_adds_or_restates_is_the_documented_normalisation() -> None:
    """Defaults made explicit, a contained ValueSet as answerOption, server-owned elements."""
    source: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": "normalised",
        "meta": {"profile": ["http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire"]},
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        "name": "SomethingElse",
        "title": "Normalised",
        "status": "draft",
        "contained": [
            {
                "resourceType": "ValueSet",
                "id": "yesno",
                "status": "active",
                "compose": {
                    "include": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0136",
                            "concept": [
                                {"code": "Y", "display": "Yes"},
                                {"code": "N", "display": "No"},
                            ],
                        }
                    ]
                },
            },
            {
                "resourceType": "ValueSet",
                "id": "colours",
                "expansion": {
                    "contains": [
                        {"system": "http://example.org/colours", "code": "red", "display": "Red"},
                        {"system": "http://example.org/colours", "code": "blue"},
                    ]
                },
            },
        ],
        "item": [
            {
                "linkId": "a",
                "text": "Agree?",
                "type": "choice",
                "required": False,
                "answerValueSet": "#yesno",
            },
            {"linkId": "b", "text": "Colour", "type": "open-choice", "answerValueSet": "#colours"},
            {"linkId": "c", "text": "Name", "type": "string"},
            {
                "linkId": "d",
                "text": "Plain code",
                "type": "choice",
                "answerOption": [{"valueCoding": {"code": "x"}}],
            },
        ],
    }
    exported = questionnaire_to_fhir(questionnaire_from_fhir(copy.deepcopy(source)))
    assert_valid_questionnaire(exported)
    yes_no = "http://terminology.hl7.org/CodeSystem/v2-0136"
    colours = "http://example.org/colours"
    assert exported == {
        "resourceType": "Questionnaire",
        "id": "normalised",
        "url": "urn:healthinfo/Questionnaire/normalised",
        "version": "1",
        "name": "Normalised",
        "title": "Normalised",
        "status": "active",
        "item": [
            {
                "linkId": "a",
                "text": "Agree?",
                "type": "choice",
                "answerOption": [
                    {"valueCoding": {"system": yes_no, "code": "Y", "display": "Yes"}},
                    {"valueCoding": {"system": yes_no, "code": "N", "display": "No"}},
                ],
            },
            {
                "linkId": "b",
                "text": "Colour",
                "type": "open-choice",
                "maxLength": 200,
                "answerOption": [
                    {"valueCoding": {"system": colours, "code": "red", "display": "Red"}},
                    {"valueCoding": {"system": colours, "code": "blue"}},
                ],
            },
            {"linkId": "c", "text": "Name", "type": "string", "maxLength": 200},
            {
                "linkId": "d",
                "text": "Plain code",
                "type": "choice",
                "answerOption": [
                    {
                        "valueCoding": {
                            "system": "urn:healthinfo/CodeSystem/normalised-d",
                            "code": "x",
                            "display": "x",
                        }
                    }
                ],
            },
        ],
    }


def test_answers_to_the_lhc_like_questionnaire_nest_groups_and_rows() -> None:
    q = questionnaire_from_fhir(lhc_like())
    answers: dict[str, Any] = {
        "/55757-9/44250-9": "LA6569-3",
        "/55757-9/44255-8": "LA6570-1",
        "/54114-4": [
            {
                "/54114-4/54136-7": "LA10416-8",
                "/54114-4/living": False,
                "/54114-4/died": "2001-02-03T04:05:06+01:00",
            },
            {"/54114-4/54136-7": "Step-uncle", "/54114-4/conditions": ["cancer", "diabetes"]},
        ],
        "/children": 3,
        "/wake": "06:30:00",
    }
    assert validate_answers(q, answers, today=TODAY) == []
    resource = response_to_fhir(state_of(answers, q), q)
    assert_valid_response(resource, questionnaire_to_fhir(q))
    assert resource["questionnaire"] == "http://example.org/fhir/Questionnaire/phq-2-lhc|2.1"
    [phq, first, second, wake, children] = resource["item"]
    assert phq["linkId"] == "/55757-9"
    assert [i["linkId"] for i in phq["item"]] == ["/55757-9/44250-9", "/55757-9/44255-8"]
    assert phq["item"][0]["answer"] == [
        {"valueCoding": {"system": LOINC, "code": "LA6569-3", "display": "Several days"}}
    ]
    assert first["linkId"] == second["linkId"] == "/54114-4"
    assert [i["linkId"] for i in first["item"]] == [
        "/54114-4/54136-7",
        "/54114-4/living",
        "/54114-4/died",
    ]
    assert first["item"][2]["answer"] == [{"valueDateTime": "2001-02-03T04:05:06+01:00"}]
    assert second["item"][0]["answer"] == [{"valueString": "Step-uncle"}]
    assert second["item"][1]["answer"] == [{"valueString": "cancer"}, {"valueString": "diabetes"}]
    assert wake["answer"] == [{"valueTime": "06:30:00"}]
    assert children["answer"] == [{"valueInteger": 3}]
    assert answers_from_fhir(resource, q).answers == answers


def test_a_condition_on_a_datetime_compares_instants() -> None:
    q = Questionnaire.from_dict(
        {
            "id": "t",
            "version": "1",
            "title": "T",
            "items": [
                {"id": "at", "text": "At?", "type": "dateTime", "required": False, "section": ""},
                {
                    "id": "late",
                    "text": "Late?",
                    "type": "boolean",
                    "required": False,
                    "section": "",
                    "enableWhen": [
                        {"question": "at", "operator": ">", "answer": "2024-01-01T09:00:00Z"}
                    ],
                },
            ],
        }
    )
    # As strings these two would compare the other way round.
    assert q.plan.disabled({"at": "2024-01-01T09:30:00+01:00"}) == {"late"}  # 08:30Z
    assert q.plan.disabled({"at": "2024-01-01T08:30:00-01:00"}) == set()  # 09:30Z
    assert q.plan.disabled({"at": "2024-01-01T10:00:00+01:00"}) == {"late"}  # 09:00Z, not later


# --- what is not supported: a 422 naming each linkId and construct ----------------------------


def faults(resource: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as raised:
        questionnaire_from_fhir(resource)
    assert raised.value.code == "validation-failed"
    return [(error.field, error.message) for error in raised.value.errors]


def minimal(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": "m",
        "title": "M",
        "status": "active",
    }
    resource["item"] = list(items) or [{"linkId": "a", "text": "A", "type": "boolean"}]
    return resource | extra


# --- repeats on a question -------------------------------------------------------------------
#
# The definition language repeats groups only (docs/api.md: "A group with "repeats": true … is
# answered as a list of objects"); an item with several answers is a multiple choice. So FHIR's
# repeating choice is our multiple-choice (an open-choice our open multiple-choice), both ways,
# and a repeating question of any other type has nothing to map onto: a 422 naming its linkId.

NOT_REPEATABLE = ["boolean", "decimal", "integer", "date", "dateTime", "time", "string", "text"]


def test_a_repeating_choice_is_a_multiple_choice_and_a_repeating_open_choice_an_open_one() -> None:
    options = [{"valueString": "a"}, {"valueString": "b"}]
    resource = minimal(
        {"linkId": "one", "text": "One", "type": "choice", "answerOption": options},
        {
            "linkId": "many",
            "text": "Many",
            "type": "choice",
            "repeats": True,
            "extension": [{"url": MAX_OCCURS, "valueInteger": 2}],
            "answerOption": options,
        },
        {
            "linkId": "free",
            "text": "Free",
            "type": "open-choice",
            "repeats": True,
            "answerOption": options,
        },
    )
    q = questionnaire_from_fhir(copy.deepcopy(resource))
    kinds = {i.id: (i.type, i.open_choice, i.max_items) for i in q.items}
    assert kinds == {
        "one": ("single-choice", False, None),
        "many": ("multiple-choice", False, 2),
        "free": ("multiple-choice", True, None),
    }
    exported = {item["linkId"]: item for item in questionnaire_to_fhir(q)["item"]}
    assert "repeats" not in exported["one"]
    assert (exported["many"]["type"], exported["many"]["repeats"]) == ("choice", True)
    assert exported["many"]["extension"] == [{"url": MAX_OCCURS, "valueInteger": 2}]
    assert (exported["free"]["type"], exported["free"]["repeats"]) == ("open-choice", True)
    assert validate_answers(q, {"many": ["a", "b"], "free": ["a", "my own"]}, today=TODAY) == []


@pytest.mark.parametrize("kind", NOT_REPEATABLE)
def test_a_repeating_question_that_is_not_a_choice_is_refused_naming_its_link_id(
    kind: str,
) -> None:
    question = {"linkId": "/1.2", "text": "Several", "type": kind}
    questionnaire_from_fhir(minimal(question))  # accepted as one answer: only repeats is at fault

    found = faults(minimal(question | {"repeats": True}))

    message = f"linkId '/1.2': repeats is supported on groups and choices, not on {kind} items"
    assert found == [("item[0].repeats", message)]


@PROPERTY
@given(definitions(), st.data())
def test_repeats_on_any_exported_question_but_a_choice_is_a_422_naming_that_item(
    q: Questionnaire, data: st.DataObject
) -> None:
    resource = questionnaire_to_fhir(q)
    questions: list[tuple[str, dict[str, Any]]] = []

    def visit(level: list[dict[str, Any]], prefix: str) -> None:
        for index, item in enumerate(level):
            path = f"{prefix}item[{index}]"
            if item["type"] in NOT_REPEATABLE:
                questions.append((path, item))
            visit(item.get("item", []), f"{path}.")

    visit(resource["item"], "")
    if not questions:
        return
    path, item = data.draw(st.sampled_from(questions))
    item["repeats"] = True

    found = faults(json.loads(json.dumps(resource)))

    expected = f"repeats is supported on groups and choices, not on {item['type']} items"
    assert found == [(f"{path}.repeats", f"linkId {item['linkId']!r}: {expected}")]


def test_a_questionnaire_without_an_id_is_refused() -> None:
    resource = minimal()
    del resource["id"]
    assert faults(resource) == [("id", "is required: it becomes the questionnaire's id")]


def test_not_an_object_is_malformed_and_another_resource_is_refused() -> None:
    with pytest.raises(MalformedRequest):
        questionnaire_from_fhir([])
    assert faults({"resourceType": "QuestionnaireResponse"}) == [
        ("resourceType", "must be Questionnaire")
    ]


def test_every_unsupported_construct_is_listed_with_its_link_id() -> None:
    negation = {"url": "http://example.org/negation", "valueBoolean": True}
    resource = minimal(
        {"linkId": "code", "text": "Coded", "type": "boolean", "code": [{"code": "x"}]},
        {"linkId": "mod", "text": "Mod", "type": "boolean", "modifierExtension": [negation]},
        {
            "linkId": "vs",
            "text": "VS",
            "type": "choice",
            "answerValueSet": "http://loinc.org/vs/LL358-3",
        },
        {
            "linkId": "two",
            "text": "Two",
            "type": "boolean",
            "enableWhen": [
                {"question": "code", "operator": "=", "answerBoolean": True},
                {"question": "mod", "operator": "=", "answerBoolean": True},
            ],
        },
        {"linkId": "file", "text": "File", "type": "attachment"},
        {"linkId": "many", "text": "Many", "type": "string", "repeats": True},
        {"linkId": "len", "text": "Len", "type": "integer", "maxLength": 3},
        {
            "linkId": "opts",
            "text": "Opts",
            "type": "string",
            "answerOption": [{"valueString": "x"}],
        },
        {
            "linkId": "ex",
            "text": "Ex",
            "type": "boolean",
            "enableWhen": [{"question": "code", "operator": "exists", "answerString": "yes"}],
        },
        {
            "linkId": "fit",
            "text": "Fit",
            "type": "boolean",
            "enableWhen": [{"question": "code", "operator": "=", "answerInteger": 1}],
        },
        {
            "linkId": "nowhere",
            "text": "Nowhere",
            "type": "boolean",
            "enableWhen": [{"question": "missing", "operator": "exists", "answerBoolean": True}],
        },
        {"linkId": "show", "text": "Show", "type": "display", "readOnly": True},
        {
            "linkId": "date",
            "text": "Date",
            "type": "choice",
            "answerOption": [{"valueDate": "2020-01-01"}],
        },
        modifierExtension=[negation],
        publisher="Someone",
    )
    found = faults(resource)
    expected = [
        ("modifierExtension[0]", "modifierExtension http://example.org/negation is not understood"),
        ("publisher", "is not supported by this service (docs/fhir.md)"),
        ("item[0].code", "linkId 'code': code is not supported (docs/fhir.md)"),
        (
            "item[1].modifierExtension[0]",
            "linkId 'mod': modifierExtension http://example.org/negation is not understood",
        ),
        (
            "item[2].answerValueSet",
            "linkId 'vs': must name a ValueSet contained in this Questionnaire (#id)",
        ),
        ("item[4].type", "linkId 'file': type 'attachment' is not supported"),
        (
            "item[5].repeats",
            "linkId 'many': repeats is supported on groups and choices, not on string items",
        ),
        ("item[6].maxLength", "linkId 'len': is not supported on integer items"),
        ("item[7]", "linkId 'opts': only choice items have answerOption or answerValueSet (que-5)"),
        ("item[8].enableWhen[0]", "linkId 'ex': exists takes answerBoolean (que-7)"),
        (
            "item[9].enableWhen[0]",
            "linkId 'fit': answerInteger does not fit 'code': use answerBoolean",
        ),
        (
            "item[12].answerOption[0]",
            "linkId 'date': an answerOption is one valueCoding, valueString or valueInteger only",
        ),
    ]
    for fault in expected:
        assert fault in found
    # and the two the definition rules find in the items themselves: que-12, que-9
    assert (
        "item[3]",
        "linkId 'two': enableBehavior is required with two or more conditions",
    ) in found
    assert (
        "item[11]",
        "linkId 'show': a display item is never answered, so it cannot be read-only",
    ) in found
    assert len(found) == len(expected) + 2


def test_faults_across_items_are_named_with_the_item_they_are_in() -> None:
    """Conditions are checked across the whole definition once every item reads well."""
    resource = minimal(
        {
            "linkId": "g",
            "text": "G",
            "type": "group",
            "item": [
                {
                    "linkId": "nowhere",
                    "text": "Nowhere",
                    "type": "boolean",
                    "enableWhen": [
                        {"question": "missing", "operator": "exists", "answerBoolean": True}
                    ],
                },
                {
                    "linkId": "onGroup",
                    "text": "On group",
                    "type": "boolean",
                    "enableWhen": [{"question": "g", "operator": "exists", "answerBoolean": True}],
                },
            ],
        },
    )
    assert faults(resource) == [
        (
            "item[0].item[0].enableWhen[0].question",
            "linkId 'nowhere': names no item of this questionnaire",
        ),
        (
            "item[0].item[1].enableWhen[0].question",
            "linkId 'onGroup': names a group item, which has no answer",
        ),
    ]


def test_answer_value_sets_must_be_contained_and_contained_value_sets_used() -> None:
    value_set = {
        "resourceType": "ValueSet",
        "id": "used",
        "expansion": {"contains": [{"code": "a"}]},
    }
    resource = minimal(
        {"linkId": "x", "text": "X", "type": "choice", "answerValueSet": "#absent"},
        {
            "linkId": "y",
            "text": "Y",
            "type": "choice",
            "answerValueSet": "#used",
            "answerOption": [{"valueString": "b"}],
        },
        contained=[
            value_set,
            {"resourceType": "Patient", "id": "p"},
            {"resourceType": "ValueSet", "id": "spare", "compose": {"include": []}},
        ],
    )
    found = faults(resource)
    assert (
        "item[0].answerValueSet",
        "linkId 'x': names no ValueSet contained in this Questionnaire",
    ) in found
    assert (
        "item[1]",
        "linkId 'y': answerOption and answerValueSet cannot both be given (que-4)",
    ) in found
    assert ("contained[1]", "only ValueSets (for answerValueSet) are supported") in found
    assert ("contained", "ValueSet 'spare' is contained but no item uses it") in found


def test_duplicate_link_ids_are_refused() -> None:
    resource = minimal(
        {"linkId": "a", "text": "A", "type": "boolean"},
        {
            "linkId": "g",
            "text": "G",
            "type": "group",
            "item": [{"linkId": "a", "text": "A2", "type": "string"}],
        },
    )
    assert faults(resource) == [("item[1].item[0].id", "linkId 'a': item 'a' is defined twice")]


def test_a_group_without_items_is_refused() -> None:
    resource = minimal({"linkId": "empty", "text": "Empty", "type": "group"})
    assert faults(resource) == [("item[0]", "linkId 'empty': a group needs items")]


def test_a_retired_questionnaire_is_not_published_as_active() -> None:
    assert faults(minimal(status="retired")) == [
        ("status", "publish it, then retire it with the retire route")
    ]


# --- QuestionnaireResponse items read against the nesting ------------------------------------

NESTED = Questionnaire.from_dict(
    {
        "id": "nested",
        "version": "1",
        "title": "Nested",
        "items": [
            {
                "id": "about",
                "text": "About you",
                "type": "group",
                "section": "s",
                "items": [
                    {"id": "age", "text": "Age", "type": "integer", "required": False},
                    {"id": "note", "text": "Read this", "type": "display"},
                ],
            },
            {
                "id": "meds",
                "text": "Medications",
                "type": "group",
                "section": "s",
                "repeats": True,
                "items": [
                    {"id": "name", "text": "Name", "type": "string", "required": True},
                    {"id": "daily", "text": "Daily?", "type": "boolean", "required": False},
                ],
            },
        ],
    }
)


def read(*items: dict[str, Any]) -> dict[str, Any]:
    resource = {
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "item": list(items),
    }
    return answers_from_fhir(resource, NESTED).answers


def response_faults(*items: dict[str, Any]) -> list[tuple[str, str]]:
    resource = {
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "item": list(items),
    }
    with pytest.raises(ValidationFailed) as raised:
        answers_from_fhir(resource, NESTED)
    return [(error.field, error.message) for error in raised.value.errors]


def test_a_groups_children_are_answered_by_their_own_ids() -> None:
    about = {
        "linkId": "about",
        "item": [{"linkId": "age", "answer": [{"valueInteger": 40}]}, {"linkId": "note"}],
    }
    assert read(about) == {"age": 40}


def test_each_repetition_of_a_repeating_group_is_a_row() -> None:
    first = {
        "linkId": "meds",
        "item": [
            {"linkId": "name", "answer": [{"valueString": "aspirin"}]},
            {"linkId": "daily", "answer": [{"valueBoolean": True}]},
        ],
    }
    second = {"linkId": "meds", "item": [{"linkId": "name", "answer": [{"valueString": "statin"}]}]}
    empty = {"linkId": "meds", "item": [{"linkId": "daily"}]}
    assert read(first, empty, second) == {
        "meds": [{"name": "aspirin", "daily": True}, {"name": "statin"}]
    }


def test_items_must_nest_as_the_questionnaire_does() -> None:
    assert response_faults(
        {"linkId": "age", "answer": [{"valueInteger": 40}]},
        {"linkId": "meds", "item": [{"linkId": "age", "answer": [{"valueInteger": 1}]}]},
        {"linkId": "about", "answer": [{"valueBoolean": True}], "item": []},
        {"linkId": "about", "item": [{"linkId": "note", "item": [{"linkId": "age"}]}]},
    ) == [
        (
            "item[0].linkId",
            "linkId 'age': is not an item at this level: nest items as the questionnaire does",
        ),
        (
            "item[1].item[0].linkId",
            "linkId 'age': is not an item at this level: nest items as the questionnaire does",
        ),
        ("item[2].answer", "linkId 'about': a group item has no answer"),
        ("item[3].linkId", "linkId 'about': this question is already answered above"),
    ]


def test_unsupported_constructs_in_a_response_are_listed_with_their_link_id() -> None:
    negation = [{"url": "http://example.org/negation", "valueBoolean": True}]
    assert response_faults(
        {
            "linkId": "about",
            "modifierExtension": negation,
            "item": [
                {"linkId": "note", "item": [{"linkId": "x"}]},
                {"linkId": "age", "answer": [{"valueInteger": 1, "item": [{"linkId": "name"}]}]},
            ],
        },
        {
            "linkId": "meds",
            "item": [{"linkId": "name", "answer": [{"valueQuantity": {"value": 1}}]}],
        },
    ) == [
        ("item[0].modifierExtension", "linkId 'about': modifier extensions are not supported"),
        ("item[0].item[0].item", "linkId 'note': a display item has no items"),
        (
            "item[0].item[1].answer[0]",
            "linkId 'age': items nested under an answer are not supported",
        ),
        (
            "item[1].item[0].answer[0]",
            "linkId 'name': must have exactly one value, valueString, for this question",
        ),
    ]


# --- any input: a 422 or a definition, never a crash -------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    result = [prefix]
    if isinstance(value, dict):
        for key, entry in value.items():
            result += _paths(entry, (*prefix, key))
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            result += _paths(entry, (*prefix, index))
    return result


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copied = copy.copy(value)
    copied[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copied


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_damaged_questionnaire_is_a_422_or_a_definition_never_an_error(
    data: st.DataObject,
) -> None:
    source = lhc_like()
    path = data.draw(st.sampled_from(_paths(source)[1:]))
    damaged = _replaced(source, path, data.draw(JSON_VALUES))
    try:
        q = questionnaire_from_fhir(damaged)
    except ValidationFailed as exc:
        faults = exc.errors
    else:
        # Accepted (say, another value inside a kept extension): stored and given back as it was.
        assert questionnaire_from_fhir(questionnaire_to_fhir(q)) == q
        return
    assert faults


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_damaged_questionnaire_response_is_a_422_or_answers_never_an_error(
    data: st.DataObject,
) -> None:
    q = questionnaire_from_fhir(lhc_like())
    answers = {
        "/55757-9/44250-9": "LA6569-3",
        "/54114-4": [{"/54114-4/54136-7": "Aunt"}],
        "/children": 3,
    }
    source = response_to_fhir(state_of(answers, q), q)
    path = data.draw(st.sampled_from(_paths(source)[1:]))
    damaged = _replaced(source, path, data.draw(JSON_VALUES))
    try:
        read = answers_from_fhir(damaged, q)
    except ValidationFailed as exc:
        faults = exc.errors
    else:
        assert isinstance(read.answers, dict)
        return
    assert faults


def test_the_openapi_example_of_a_fhir_questionnaire_publishes() -> None:
    from healthinfo.health_information.examples import PUBLISH_FHIR_QUESTIONNAIRE

    example = PUBLISH_FHIR_QUESTIONNAIRE["fhir"]["value"]
    q = questionnaire_from_fhir(copy.deepcopy(example))
    assert q.repeating_ids == {"medications"}
    assert_valid_questionnaire(questionnaire_to_fhir(q))
