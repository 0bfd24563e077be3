"""Strict checking of questionnaire answers.

Answers are medical data that researchers and clinicians read later, so nothing is coerced:
``"180"``, ``180.0`` or ``true`` for a height is a client bug to report, not a value to
guess at. Error messages say what is expected and never repeat the submitted value, because
error bodies end up in logs and monitoring where health data must not go.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

from healthinfo.errors import FieldError
from healthinfo.questionnaires.model import (
    TEMPORAL_PHRASE,
    TODAY,
    Item,
    ItemType,
    Questionnaire,
    is_option_value,
    parse_iso_date,
    parse_temporal,
)

Check = Callable[[Item, object, date], str | None]
"""Returns why ``value`` is not a valid answer to ``item``, or ``None`` when it is."""

UNKNOWN_QUESTION: Final = "unknown question id"
NULL_ANSWER: Final = "null is not an answer; omit the question instead"
EMPTY_TEXT: Final = "must not be empty; remove the answer instead"
REQUIRED: Final = "is required to submit"
NOT_ENABLED: Final = "not enabled"
# Tab, line feed and carriage return are ordinary in free text; other control characters and
# lone surrogates (which JSON can encode) cannot be stored as UTF-8 text in PostgreSQL.
_ALLOWED_CONTROLS: Final = frozenset("\t\n\r")


def validate_answers(
    q: Questionnaire, answers: Mapping[str, object], *, today: date | None = None
) -> list[FieldError]:
    """Every invalid answer, one error per field, sorted by field.

    All errors are collected so a client can fix a whole form in one round trip. ``today``
    defaults to the current UTC date and exists so tests do not depend on the clock.
    """
    if today is None:
        today = datetime.now(UTC).date()
    errors = []
    for question_id, value in answers.items():
        item = q.item(question_id)
        if item is not None and item.repeats and value is not None:
            errors += _check_rows(q, item, value, today)
            continue
        message = _check_answer(q, question_id, value, today)
        if message is not None:
            errors.append(FieldError(_field(question_id), message))
    return sorted(errors, key=lambda error: error.field)


def missing_required(q: Questionnaire, answers: Mapping[str, object]) -> list[FieldError]:
    """Required enabled questions without an answer; drafts may lack them, submissions not.

    In a repeating group every row must answer the group's required (enabled) questions.
    """
    off = q.plan.disabled(answers)
    errors = [
        FieldError(_field(qid), REQUIRED)
        for qid in q.required_ids
        if qid not in answers and qid not in off
    ]
    for group_id, rows in _answered_rows(q, answers):
        required = [cid for cid, child in q.row_items(group_id).items() if child.required]
        for index, row in enumerate(rows):
            row_off = q.plan.disabled_in_row(group_id, row, answers, off)
            errors += [
                FieldError(f"{_field(group_id)}[{index}].{cid}", REQUIRED)
                for cid in required
                if cid not in row and cid not in row_off
            ]
    return sorted(errors, key=lambda error: error.field)


def remove_disabled(
    q: Questionnaire, answers: Mapping[str, object], written: Collection[str]
) -> tuple[dict[str, object], list[FieldError]]:
    """The answers without those to disabled items, and "not enabled" for those just written.

    ``written`` are the ids this write answered: answering a disabled item is the writer's
    error; an answer saved earlier that this write disabled is removed instead.
    """
    off = q.plan.disabled(answers)
    errors = [FieldError(_field(qid), NOT_ENABLED) for qid in written if qid in off]
    kept: dict[str, object] = {k: v for k, v in answers.items() if k not in off}
    for group_id, rows in _answered_rows(q, kept):
        kept_rows = []
        for index, row in enumerate(rows):
            row_off = q.plan.disabled_in_row(group_id, row, answers, off)
            if group_id in written:
                errors += [
                    FieldError(f"{_field(group_id)}[{index}].{cid}", NOT_ENABLED)
                    for cid in row
                    if cid in row_off
                ]
            kept_rows.append({k: v for k, v in row.items() if k not in row_off})
        kept[group_id] = kept_rows
    return kept, sorted(errors, key=lambda error: error.field)


def _answered_rows(
    q: Questionnaire, answers: Mapping[str, object]
) -> list[tuple[str, list[Mapping[str, object]]]]:
    """Repeating groups that have a (valid) answer and may need a look row by row."""
    return [
        (group_id, value)
        for group_id in q.repeating_ids
        if isinstance(value := answers.get(group_id), list)
    ]


def _field(question_id: str) -> str:
    return f"answers.{question_id}"


def _check_answer(q: Questionnaire, question_id: str, value: object, today: date) -> str | None:
    item = q.item(question_id)
    if item is None:
        return UNKNOWN_QUESTION
    if value is None:
        return NULL_ANSWER
    return _CHECKS[item.type](item, value, today)


def _check_rows(q: Questionnaire, group: Item, value: object, today: date) -> list[FieldError]:
    """A repeating group's answer, row by row: each child's type, options and bounds."""
    path = _field(group.id)
    if not isinstance(value, list) or not value:
        return [FieldError(path, "must be a non-empty list of rows (objects)")]
    if group.max_items is not None and len(value) > group.max_items:
        return [FieldError(path, f"must have at most {group.max_items} rows")]
    children = q.row_items(group.id)
    errors = []
    for index, row in enumerate(value):
        if not isinstance(row, Mapping) or not row:
            errors.append(FieldError(f"{path}[{index}]", "must be an object of answers"))
            continue
        for child_id, answer in row.items():
            child = children.get(child_id)
            if child is None:
                message: str | None = UNKNOWN_QUESTION
            elif answer is None:
                message = NULL_ANSWER
            else:
                message = _CHECKS[child.type](child, answer, today)
            if message is not None:
                errors.append(FieldError(f"{path}[{index}].{child_id}", message))
    return errors


def _bounds_phrase(item: Item) -> str:
    low, high = item.minimum, item.maximum
    if low is not None and high is not None:
        return f" between {low} and {high}"
    if low is not None:
        return f" not less than {low}" if item.type != "date" else f" not before {low}"
    if high is not None:
        return f" not greater than {high}" if item.type != "date" else f" not after {high}"
    return ""


def _within_numeric_bounds(item: Item, value: int | float) -> bool:
    low, high = item.minimum, item.maximum
    if isinstance(low, int | float) and value < low:
        return False
    return not (isinstance(high, int | float) and value > high)


def _check_boolean(item: Item, value: object, today: date) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _check_integer(item: Item, value: object, today: date) -> str | None:
    # bool is an int subclass, and True is not a height.
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and _within_numeric_bounds(item, value)
    ):
        return None
    return f"must be an integer{_bounds_phrase(item)}"


def _check_decimal(item: Item, value: object, today: date) -> str | None:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        # math.isfinite would overflow on a huge int; ints are always finite.
        and (isinstance(value, int) or math.isfinite(value))
        and _within_numeric_bounds(item, value)
    ):
        return None
    return f"must be a number{_bounds_phrase(item)}"


def _date_bound(bound: int | float | str | None, today: date) -> date | None:
    if bound == TODAY:
        return today
    return parse_iso_date(bound) if isinstance(bound, str) else None


def _check_date(item: Item, value: object, today: date) -> str | None:
    answer = parse_iso_date(value) if isinstance(value, str) else None
    low, high = _date_bound(item.minimum, today), _date_bound(item.maximum, today)
    if answer is not None and (low is None or answer >= low) and (high is None or answer <= high):
        return None
    return f"must be a date YYYY-MM-DD{_bounds_phrase(item)}"


def _check_temporal(item: Item, value: object, today: date) -> str | None:
    """dateTime and time: one spelling per value (see ``model``), bounds compared as values."""
    answer: Any = parse_temporal(item.type, value)
    low, high = parse_temporal(item.type, item.minimum), parse_temporal(item.type, item.maximum)
    # One type per item (a dateTime is always zoned), so the comparisons never mix types.
    if answer is not None and (low is None or answer >= low) and (high is None or answer <= high):
        return None
    return f"must be {TEMPORAL_PHRASE[item.type]}{_bounds_phrase(item)}"


def _has_forbidden_characters(value: str) -> bool:
    return any(
        unicodedata.category(char) in ("Cc", "Cs") and char not in _ALLOWED_CONTROLS
        for char in value
    )


def _check_text(item: Item, value: object, today: date) -> str | None:
    limit = item.max_length
    expected = f"must be text of at most {limit} characters"
    if not isinstance(value, str) or (limit is not None and len(value) > limit):
        return expected
    if not value.strip():
        return EMPTY_TEXT
    if _has_forbidden_characters(value):
        return "must not contain control characters or unpaired surrogates"
    return None


def _is_listed(item: Item, value: object) -> bool:
    # is_option_value first: True == 1 would otherwise find the integer option 1.
    return is_option_value(value) and value in item.option_values


def _choice_error(item: Item, value: object) -> str | None:
    """Why ``value`` is not one choice of ``item`` (an option, or free text if open)."""
    if _is_listed(item, value):
        return None
    if item.open_choice and isinstance(value, str):
        return _check_text(item, value, date.min)
    return "must be one of the listed options" + (" or text" if item.open_choice else "")


def _check_single_choice(item: Item, value: object, today: date) -> str | None:
    return _choice_error(item, value)


def _check_multiple_choice(item: Item, value: object, today: date) -> str | None:
    if not isinstance(value, list):
        return "must be a list of the listed options"
    for entry in value:
        message = _choice_error(item, entry)
        if message is not None:
            return message if item.open_choice else "must contain only the listed options"
    if len({(type(entry), entry) for entry in value}) != len(value):
        return "must not list the same option twice"
    if item.max_items is not None and len(value) > item.max_items:
        return f"must list at most {item.max_items} options"
    return None


_CHECKS: Final[Mapping[ItemType, Check]] = {
    "boolean": _check_boolean,
    "integer": _check_integer,
    "decimal": _check_decimal,
    "date": _check_date,
    "dateTime": _check_temporal,
    "time": _check_temporal,
    "string": _check_text,
    "text": _check_text,
    "single-choice": _check_single_choice,
    "multiple-choice": _check_multiple_choice,
}
