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
