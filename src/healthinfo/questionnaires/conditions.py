"""``enableWhen``: checked once at publication, compiled into an order, evaluated linearly.

A definition is checked whole when it is built (unknown ids, answers of the wrong type,
operators that do not fit, cycles, conditions reaching into another repeating group), so a
published version can never fail at answer time. The conditions are then put in topological
order once; deciding which items are enabled is a single pass over the items that have a
condition (or sit in a group that has one), whatever the size of the definition.

Semantics are FHIR R4's (as LHC-Forms implements them):

* ``exists`` with ``true``/``false``: the item has (has no) answer;
* ``=``: some answer equals the value (for a multiple-choice item, some selected option);
* ``!=``: no answer equals the value, so it holds for an unanswered item;
* ``>``, ``<``, ``>=``, ``<=``: some answer compares so (never for an unanswered item);
* a disabled item's answer counts as absent for the conditions that name it, so disabling
  cascades through a chain of conditions, and a disabled group disables its children;
* inside a repeating group a condition on a sibling looks at the same row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from healthinfo.questionnaires.model import (
    CHOICE_TYPES,
    ORDERED_TYPES,
    DefinitionError,
    is_option_value,
    parse_iso_date,
    parse_temporal,
)

if TYPE_CHECKING:
    from healthinfo.questionnaires.model import Condition, Item

_ORDER_OPERATORS: Final = frozenset({">", "<", ">=", "<="})


@dataclass(frozen=True, slots=True)
class Node:
    """An item with where it sits: its enclosing group and repeating group, its path."""

    item: Item
    parent: str | None
    row_group: str | None
    path: str


def walk(items: tuple[Item, ...]) -> Iterator[Node]:
    """Every item at any depth, parents before children, with its ``items[i].items[j]`` path."""

    def visit(
        children: tuple[Item, ...], parent: Item | None, row_group: str | None, prefix: str
    ) -> Iterator[Node]:
        for index, item in enumerate(children):
            path = f"{prefix}items[{index}]"
            yield Node(item, parent.id if parent else None, row_group, path)
            inner = item.id if item.repeats else row_group
            yield from visit(item.items, item, inner, f"{path}.")

    return visit(items, None, None, "")


@dataclass(frozen=True, slots=True)
class EnablementPlan:
    """The conditional items in topological order, at the top level and per repeating group.

    Items not listed are always enabled (no condition on them or any enclosing group).
    """

    top: tuple[Node, ...]
    rows: Mapping[str, tuple[Node, ...]]
    nodes: Mapping[str, Node]

    def disabled(self, answers: Mapping[str, Any]) -> set[str]:
        """Ids of the top-level items (outside repeating groups) that are not enabled.

        One pass in topological order: what a condition names was decided before it.
        """
        off: set[str] = set()
        for node in self.top:
            if node.parent in off or not self._holds(node.item, answers, off, None, None):
                off.add(node.item.id)
        return off

    def disabled_in_row(
        self, group: str, row: Mapping[str, Any], answers: Mapping[str, Any], off: set[str]
    ) -> set[str]:
        """Ids of a repeating group's descendants not enabled in ``row``; ``off``: top level."""
        row_off: set[str] = set()
        for node in self.rows.get(group, ()):
            if node.parent in row_off or not self._holds(node.item, answers, off, row, row_off):
                row_off.add(node.item.id)
        return row_off

    def _holds(
        self,
        item: Item,
        answers: Mapping[str, Any],
        off: set[str],
        row: Mapping[str, Any] | None,
        row_off: set[str] | None,
    ) -> bool:
        conditions = item.enable_when
        if not conditions:
            return True
        wanted = item.enable_behavior == "any"
        for condition in conditions:
            question = condition.question
            target = self.nodes[question]
            if row is not None and row_off is not None and target.row_group:
                value = None if question in row_off else row.get(question)
            else:
                value = None if question in off else answers.get(question)
            if holds(condition, value, target.item.type) is wanted:
                return wanted
        return not wanted


_INSTANT_TYPES: Final = frozenset({"dateTime", "time"})


def holds(condition: Condition, value: Any, kind: str | None = None) -> bool:
    """One condition against the named item's answer (``None``: no answer, or disabled).

    ``kind`` is the named item's type: dateTimes and times are compared as instants and
    times of day (``10:00:00+01:00`` equals ``09:00:00Z``), not as strings.
    """
    operator, expected = condition.operator, condition.answer
    if operator == "exists":
        return (value is not None and value != []) is expected
    values = value if isinstance(value, list) else ([] if value is None else [value])
    if kind in _INSTANT_TYPES:
        expected = parse_temporal(kind, expected)
        values = [parsed for v in values if (parsed := parse_temporal(kind, v)) is not None]
    if operator == "=":
        return any(_same(v, expected) for v in values)
    if operator == "!=":
        return not any(_same(v, expected) for v in values)
    return any(_compare(operator, v, expected) for v in values)


def _same(value: Any, expected: Any) -> bool:
    # True == 1 in Python; an answer and a condition of different JSON types never match.
    return (type(value) is type(expected) and value == expected) or (
        _is_number(value) and _is_number(expected) and value == expected
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(operator: str, value: Any, expected: Any) -> bool:
    if not (
        (_is_number(value) and _is_number(expected))
        or (type(value) is type(expected) and not _is_number(value) and value is not None)
    ):
        return False
    if operator == ">":
        return bool(value > expected)
    if operator == "<":
        return bool(value < expected)
    if operator == ">=":
        return bool(value >= expected)
    return bool(value <= expected)


def compile_plan(items: tuple[Item, ...]) -> EnablementPlan:
    """Check every condition of a definition and order them; ``DefinitionError`` lists faults."""
    nodes: dict[str, Node] = {}
    errors: list[tuple[str, str]] = []
    for node in walk(items):
        if node.item.id in nodes:
            errors.append((f"{node.path}.id", f"item {node.item.id!r} is defined twice"))
            continue
        nodes[node.item.id] = node
        if node.item.repeats and node.row_group is not None:
            errors.append((f"{node.path}.repeats", "a repeating group cannot be inside another"))
    if errors:
        raise DefinitionError(errors)
    for node in nodes.values():
        for index, condition in enumerate(node.item.enable_when):
            path = f"{node.path}.enableWhen[{index}]"
            errors += _condition_errors(node, condition, nodes, path)
    if errors:
        raise DefinitionError(errors)
    order = _topological(nodes, errors)
    if errors:
        raise DefinitionError(errors)
    conditional = _conditional(nodes)
    top = tuple(n for n in order if n.item.id in conditional and n.row_group is None)
    rows: dict[str, list[Node]] = {}
    for n in order:
        if n.row_group is not None and n.item.id in conditional:
            rows.setdefault(n.row_group, []).append(n)
    return EnablementPlan(top, {g: tuple(ns) for g, ns in rows.items()}, nodes)


def _conditional(nodes: Mapping[str, Node]) -> set[str]:
    """Items that may be disabled: with a condition, or inside a group that may be."""
    result: set[str] = set()
    for node in nodes.values():  # parents come before children
        if node.item.enable_when or (node.parent is not None and node.parent in result):
            result.add(node.item.id)
    return result


def _condition_errors(
    node: Node, condition: Condition, nodes: Mapping[str, Node], path: str
) -> list[tuple[str, str]]:
    target = nodes.get(condition.question)
    if target is None:
        return [(f"{path}.question", "names no item of this questionnaire")]
    if not target.item.is_answerable:
        return [(f"{path}.question", f"names a {target.item.type} item, which has no answer")]
    if target.row_group is not None and target.row_group != node.row_group:
        return [(f"{path}.question", "names an item inside a repeating group this item is not in")]
    return _fit_errors(target.item, condition, path)


def _fit_errors(target: Item, condition: Condition, path: str) -> list[tuple[str, str]]:
    operator, answer = condition.operator, condition.answer
    if operator == "exists":
        ok = isinstance(answer, bool)
        return [] if ok else [(f"{path}.answer", "must be true or false for exists")]
    if target.repeats:
        return [(f"{path}.operator", "only exists fits a repeating group")]
    if operator in _ORDER_OPERATORS and target.type not in ORDERED_TYPES:
        return [(f"{path}.operator", f"{operator} does not fit a {target.type} item")]
    if not _answer_fits(target, answer):
        return [(f"{path}.answer", f"is not a possible answer to {target.id!r}")]
    return []


def _answer_fits(target: Item, answer: Any) -> bool:
    kind = target.type
    if kind == "boolean":
        return isinstance(answer, bool)
    if kind == "integer":
        return isinstance(answer, int) and not isinstance(answer, bool)
    if kind == "decimal":
        return _is_number(answer) and (isinstance(answer, int) or math.isfinite(answer))
    if kind == "date":
        return isinstance(answer, str) and parse_iso_date(answer) is not None
    if kind in _INSTANT_TYPES:
        return parse_temporal(kind, answer) is not None
    if kind in CHOICE_TYPES:
        listed = is_option_value(answer) and answer in target.option_values
        return listed or (target.open_choice and isinstance(answer, str) and bool(answer.strip()))
    return isinstance(answer, str) and bool(answer)


def _topological(nodes: Mapping[str, Node], errors: list[tuple[str, str]]) -> list[Node]:
    """Depth-first order: each item after its group and the items its conditions name."""
    order: list[Node] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def dependencies(node: Node) -> Iterator[tuple[str, str]]:
        if node.parent is not None:
            yield node.parent, f"{node.path}.id"
        for index, condition in enumerate(node.item.enable_when):
            yield condition.question, f"{node.path}.enableWhen[{index}].question"

    def visit(node: Node) -> None:
        state[node.item.id] = 1
        for dependency, path in dependencies(node):
            seen = state.get(dependency)
            if seen == 1:
                errors.append((path, "forms a cycle of conditions"))
            elif seen is None:
                visit(nodes[dependency])
        state[node.item.id] = 2
        order.append(node)

    for node in nodes.values():
        if node.item.id not in state:
            visit(node)
    return order
