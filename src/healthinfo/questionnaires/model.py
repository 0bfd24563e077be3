"""Questionnaire definitions as immutable values.

Definitions are shipped as JSON data so that wording and options can change without touching
code, which makes a malformed file the main risk: every invariant the validator relies on is
checked when an ``Item`` or ``Questionnaire`` is built, so a bad definition fails at start-up,
naming the item, instead of producing odd validation results for real answers later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Final, Literal, get_args

ItemType = Literal[
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
    "display",
    "group",
]
Bound = int | float | str

ITEM_TYPES: Final[frozenset[str]] = frozenset(get_args(ItemType))
CHOICE_TYPES: Final[frozenset[str]] = frozenset({"single-choice", "multiple-choice"})
NUMERIC_TYPES: Final[frozenset[str]] = frozenset({"integer", "decimal"})
TEXT_TYPES: Final[frozenset[str]] = frozenset({"string", "text"})
STRUCTURAL_TYPES: Final[frozenset[str]] = frozenset({"display", "group"})
"""Items that are never answered by their own id (a repeating group is, as a list of rows)."""
OPERATORS: Final[frozenset[str]] = frozenset({"exists", "=", "!=", ">", "<", ">=", "<="})
ORDERED_TYPES: Final[frozenset[str]] = frozenset({"integer", "decimal", "date", "dateTime", "time"})
TEMPORAL_TYPES: Final[frozenset[str]] = frozenset({"date", "dateTime", "time"})
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
RESERVED_EXTENSIONS: Final[frozenset[str]] = frozenset(
    {
        "http://hl7.org/fhir/StructureDefinition/minValue",
        "http://hl7.org/fhir/StructureDefinition/maxValue",
        "http://hl7.org/fhir/StructureDefinition/questionnaire-maxOccurs",
    }
)
"""FHIR extensions the FHIR mapping derives from the definition itself (bounds, ``maxItems``):
``fhirExtensions`` may not carry them, or an exported item would state its bounds twice."""

# Without a limit a single answer could be megabytes; these are the limits when a text item
# does not set its own.
DEFAULT_MAX_LENGTH: Final[Mapping[str, int]] = {"string": 200, "text": 4000}
OPEN_CHOICE_MAX_LENGTH: Final = 200
"""The limit on the free text of an open choice when the definition sets none."""

TEMPORAL_PHRASE: Final[Mapping[str, str]] = {
    "date": "a date YYYY-MM-DD",
    "dateTime": "a date and time YYYY-MM-DDThh:mm:ss with a zone (Z or +hh:mm)",
    "time": "a time hh:mm:ss",
}

TODAY: Final = "today"
"""A date bound meaning "the current date (UTC) when the answer is checked"."""

# 1–255 printable characters, so that a FHIR linkId ("1.1", "/69671-6") is kept as it is.
_ID_PATTERN: Final = re.compile(r"(?=\S)[^\x00-\x1f\x7f]{1,255}(?<=\S)")
_ISO_DATE_PATTERN: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# FHIR R4 dateTime with a time: "If hours and minutes are specified, a time zone SHALL be
# populated"; seconds are required here so that one instant has few spellings.
_DATETIME_PATTERN: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# FHIR R4 time (without the leap second 60, which Python cannot represent).
_TIME_PATTERN: Final = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?")

_ITEM_KEYS: Final = frozenset(
    {
        "id",
        "text",
        "type",
        "required",
        "section",
        "options",
        "minimum",
        "maximum",
        "maxLength",
        "maxItems",
        "items",
        "openChoice",
        "readOnly",
        "fhirExtensions",
        "repeats",
        "enableWhen",
        "enableBehavior",
    }
)
_REQUIRED_ITEM_KEYS: Final = frozenset({"id", "text", "type", "required", "section"})
# display and group items need neither; children of a group inherit its section.
_STRUCTURAL_REQUIRED_KEYS: Final = frozenset({"id", "text", "type"})
_CONDITION_KEYS: Final = frozenset({"question", "operator", "answer"})
_QUESTIONNAIRE_KEYS: Final = frozenset({"id", "version", "title", "items"})
_OPTIONAL_QUESTIONNAIRE_KEYS: Final = frozenset({"url", "fhirExtensions"})
_OPTION_KEYS: Final = frozenset({"value", "label", "system"})


def parse_iso_date(value: str) -> date | None:
    """Read exactly ``YYYY-MM-DD``; ``None`` otherwise.

    ``date.fromisoformat`` alone also takes ``20240102`` and other ISO 8601 spellings, which
    would let two spellings of one answer coexist in storage.
    """
    if not _ISO_DATE_PATTERN.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_datetime(value: str) -> datetime | None:
    """Read a FHIR dateTime with date, time and zone (``2024-01-02T10:00:00+01:00``)."""
    if not _DATETIME_PATTERN.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_time(value: str) -> time | None:
    """Read a FHIR time ``hh:mm:ss`` (fractions of a second allowed)."""
    if not _TIME_PATTERN.fullmatch(value):
        return None
    try:
        return time.fromisoformat(value)
    except ValueError:
        return None


def parse_temporal(kind: str, value: object) -> date | datetime | time | None:
    """A date, dateTime or time answer (or bound) as a comparable value; ``None``: not one."""
    if not isinstance(value, str):
        return None
    if kind == "date":
        return parse_iso_date(value)
    if kind == "dateTime":
        return parse_datetime(value)
    return parse_time(value)


def is_option_value(value: object) -> bool:
    """An option value: a non-empty string, or a 32-bit integer (never a boolean)."""
    if isinstance(value, str):
        return bool(value)
    return (
        isinstance(value, int) and not isinstance(value, bool) and INT32_MIN <= value <= INT32_MAX
    )


def _is_finite_number(value: object) -> bool:
    # bool is an int subclass; True as a bound is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not isinstance(value, float) or math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Option:
    """One choice: ``value`` is what is stored and sent back, ``label`` what people read.

    Three kinds, as FHIR's ``answerOption``: a coded option (a string ``value`` with a
    ``label`` and/or a code ``system``: ``valueCoding``), a plain string (a string ``value``
    alone: ``valueString``) and an integer (``valueInteger``, no label or system).
    """

    value: str | int
    label: str | None = None
    system: str | None = None

    @property
    def kind(self) -> Literal["coding", "string", "integer"]:
        if isinstance(self.value, int):
            return "integer"
        return "coding" if self.label is not None or self.system is not None else "string"

    @property
    def shown(self) -> str:
        """What people read: the label, else the value itself."""
        return self.label if self.label is not None else str(self.value)

    def __post_init__(self) -> None:
        if not is_option_value(self.value):
            raise ValueError("option value must be a non-empty string or a 32-bit integer")
        if self.label is not None and (not isinstance(self.label, str) or not self.label.strip()):
            raise ValueError(f"option {self.value!r} needs a non-empty label")
        if self.system is not None and (
            not isinstance(self.system, str) or not self.system.strip()
        ):
            raise ValueError(f"option {self.value!r}: system must be a non-empty string")
        if isinstance(self.value, int) and (self.label is not None or self.system is not None):
            raise ValueError(f"integer option {self.value!r} has neither label nor system")

    def to_public_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value}
        if self.label is not None:
            data["label"] = self.label
        if self.system is not None:
            data["system"] = self.system
        return data

    @classmethod
    def from_dict(cls, data: object) -> Option:
        if not isinstance(data, Mapping) or "value" not in data or data.keys() - _OPTION_KEYS:
            raise ValueError("options must be a list of {value, label, system} objects")
        return cls(value=data["value"], label=data.get("label"), system=data.get("system"))


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``enableWhen`` entry, with FHIR R4's meaning (see ``questionnaires.conditions``).

    ``answer`` is a boolean for ``exists``; otherwise a value of the named item's type (an
    option value for choice items). Whether it fits the named item is checked by the
    questionnaire, which knows every item.
    """

    question: str
    operator: str
    answer: Any

    @classmethod
    def from_dict(cls, data: object) -> Condition:
        if not isinstance(data, Mapping) or data.keys() != _CONDITION_KEYS:
            raise ValueError("must be an object with question, operator and answer")
        if not isinstance(data["question"], str) or not data["question"]:
            raise ValueError("question must be an item id")
        if data["operator"] not in OPERATORS:
            raise ValueError(f"operator must be one of {', '.join(sorted(OPERATORS))}")
        if data["answer"] is None:
            raise ValueError("answer must not be null")
        return cls(question=data["question"], operator=data["operator"], answer=data["answer"])

    def to_public_dict(self) -> dict[str, Any]:
        return {"question": self.question, "operator": self.operator, "answer": self.answer}


@dataclass(frozen=True, slots=True)
class Item:
    """One question.

    ``minimum``/``maximum`` are numbers for numeric items, ISO dates (or ``"today"``) for
    date items, dateTimes and times for those. For string and text items, and the free text
    of an open choice, ``max_length`` is filled with the default limit, so it always states
    the limit actually enforced. ``open_choice``: a choice that also takes free text (FHIR's
    ``open-choice``). ``read_only`` and ``fhir_extensions`` are carried for forms and FHIR
    (``readOnly``, other ``extension``s) and not enforced: an answer to a read-only item may
    come from the form's own calculation.
    """

    id: str
    text: str
    type: ItemType
    required: bool
    section: str
    options: tuple[Option, ...] = ()
    minimum: int | float | str | None = None
    maximum: int | float | str | None = None
    max_length: int | None = None
    max_items: int | None = None
    items: tuple[Item, ...] = ()
    repeats: bool = False
    enable_when: tuple[Condition, ...] = ()
    enable_behavior: Literal["all", "any"] | None = None
    open_choice: bool = False
    read_only: bool = False
    fhir_extensions: tuple[Any, ...] = field(default=(), hash=False)
    option_values: frozenset[str | int] = field(init=False, repr=False, compare=False)

    @property
    def is_answerable(self) -> bool:
        """Answered by its own id: every question, and a repeating group (a list of rows)."""
        return self.type not in STRUCTURAL_TYPES or self.repeats

    def __post_init__(self) -> None:
        try:
            self._check()
        except ValueError as exc:
            raise ValueError(f"item {self.id!r}: {exc}") from None
        if self.type in TEXT_TYPES and self.max_length is None:
            object.__setattr__(self, "max_length", DEFAULT_MAX_LENGTH[self.type])
        if self.open_choice and self.max_length is None:
            object.__setattr__(self, "max_length", OPEN_CHOICE_MAX_LENGTH)
        # Looked up for every choice answer validated: built once, not per answer.
        object.__setattr__(self, "option_values", frozenset(o.value for o in self.options))

    def _check(self) -> None:
        if not isinstance(self.id, str) or not _ID_PATTERN.fullmatch(self.id):
            # The id becomes part of the error path ``answers.<id>``, so no dots or spaces.
            raise ValueError("id must be 1 to 255 printable characters")
        if not isinstance(self.type, str) or self.type not in ITEM_TYPES:
            raise ValueError(f"unknown type {self.type!r}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("text must be a non-empty string")
        if not isinstance(self.section, str) or (self.section and not self.section.strip()):
            raise ValueError('section must be a string (not blank; "" for none)')
        if not isinstance(self.required, bool):
            raise ValueError("required must be true or false")
        self._check_flags()
        self._check_structure()
        self._check_options()
        self._check_bounds()
        self._check_limits()

    def _check_structure(self) -> None:
        if not isinstance(self.repeats, bool):
            raise ValueError("repeats must be true or false")
        if self.type == "group":
            if not self.items:
                raise ValueError("a group needs items")
        elif self.items:
            raise ValueError(f"a {self.type} item cannot have items")
        if self.repeats and self.type != "group":
            raise ValueError("only a group can repeat")
        if self.type == "display" and self.required:
            raise ValueError("a display item is never answered, so it cannot be required")
        if self.enable_behavior not in (None, "all", "any"):
            raise ValueError('enableBehavior must be "all" or "any"')
        if len(self.enable_when) > 1 and self.enable_behavior is None:
            raise ValueError("enableBehavior is required with two or more conditions")
        if self.enable_behavior is not None and not self.enable_when:
            raise ValueError("enableBehavior needs enableWhen")

    def _check_flags(self) -> None:
        if not isinstance(self.open_choice, bool):
            raise ValueError("openChoice must be true or false")
        if self.open_choice and self.type not in CHOICE_TYPES:
            raise ValueError(f"a {self.type} item cannot be an open choice")
        if not isinstance(self.read_only, bool):
            raise ValueError("readOnly must be true or false")
        if self.read_only and self.type == "display":
            raise ValueError("a display item is never answered, so it cannot be read-only")
        extensions = self.fhir_extensions
        if not isinstance(extensions, tuple) or not all(
            isinstance(e, Mapping) and isinstance(e.get("url"), str) and e["url"]
            for e in extensions
        ):
            raise ValueError("fhirExtensions must be a list of objects with a url")
        if any(e["url"] in RESERVED_EXTENSIONS for e in extensions):
            raise ValueError("fhirExtensions cannot carry bounds or maxOccurs: use the item's own")

    def _check_options(self) -> None:
        if self.type in CHOICE_TYPES:
            if not self.options:
                raise ValueError(f"a {self.type} item needs options")
            values = [option.value for option in self.options]
            if len(set(values)) != len(values):
                raise ValueError("option values must be distinct")
            if self.open_choice and any(isinstance(value, int) for value in values):
                # free text and an integer option would need two JSON types for one answer
                raise ValueError("an open choice cannot have integer options")
        elif self.options:
            raise ValueError(f"a {self.type} item cannot have options")

    def _check_bounds(self) -> None:
        bounds = [bound for bound in (self.minimum, self.maximum) if bound is not None]
        if not bounds:
            return
        if self.type == "integer":
            if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
                raise ValueError("minimum and maximum must be integers")
        elif self.type == "decimal":
            if not all(_is_finite_number(b) for b in bounds):
                raise ValueError("minimum and maximum must be finite numbers")
        elif self.type == "date":
            if not all(isinstance(b, str) and (b == TODAY or parse_iso_date(b)) for b in bounds):
                raise ValueError('minimum and maximum must be dates YYYY-MM-DD or "today"')
        elif self.type in ("dateTime", "time"):
            if not all(parse_temporal(self.type, b) is not None for b in bounds):
                raise ValueError(f"minimum and maximum must be {TEMPORAL_PHRASE[self.type]}")
        else:
            raise ValueError(f"a {self.type} item cannot have minimum or maximum")
        low, high = self._comparable_bounds()
        if low is not None and high is not None and low > high:
            raise ValueError("minimum is greater than maximum")

    def _comparable_bounds(self) -> tuple[Any, Any]:
        """Bounds as comparable values; ``"today"`` moves, so it is left out of the check."""
        if self.type in ("dateTime", "time"):
            return parse_temporal(self.type, self.minimum), parse_temporal(self.type, self.maximum)
        if self.type != "date":
            return self.minimum, self.maximum

        def fixed(bound: object) -> date | None:
            return parse_iso_date(bound) if isinstance(bound, str) and bound != TODAY else None

        return fixed(self.minimum), fixed(self.maximum)

    def _check_limits(self) -> None:
        if self.max_length is not None:
            if self.type not in TEXT_TYPES and not self.open_choice:
                raise ValueError(f"a {self.type} item cannot have maxLength")
            if not _is_positive_int(self.max_length):
                raise ValueError("maxLength must be a positive integer")
        if self.max_items is not None:
            if self.type != "multiple-choice" and not self.repeats:
                raise ValueError(f"a {self.type} item cannot have maxItems")
            if not _is_positive_int(self.max_items):
                raise ValueError("maxItems must be a positive integer")

    def to_public_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "text": self.text, "type": self.type}
        if self.type not in STRUCTURAL_TYPES or self.required:
            data["required"] = self.required
        if self.section or self.type not in STRUCTURAL_TYPES:
            data["section"] = self.section
        if self.items:
            data["items"] = [child.to_public_dict() for child in self.items]
        if self.repeats:
            data["repeats"] = True
        if self.enable_when:
            data["enableWhen"] = [condition.to_public_dict() for condition in self.enable_when]
        if self.enable_behavior is not None:
            data["enableBehavior"] = self.enable_behavior
        if self.options:
            data["options"] = [option.to_public_dict() for option in self.options]
        if self.open_choice:
            data["openChoice"] = True
        if self.read_only:
            data["readOnly"] = True
        if self.fhir_extensions:
            data["fhirExtensions"] = list(self.fhir_extensions)
        optional = {
            "minimum": self.minimum,
            "maximum": self.maximum,
            "maxLength": self.max_length,
            "maxItems": self.max_items,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data

    @classmethod
    def from_dict(cls, data: object, position: int, *, section: str | None = None) -> Item:
        """Build from the definition's camelCase JSON; ``position`` names items without an id.

        ``section`` is the enclosing group's: its children need not repeat it.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"item #{position}: must be an object")
        name = f"item {data['id']!r}" if "id" in data else f"item #{position}"
        structural = data.get("type") in STRUCTURAL_TYPES
        needed = _STRUCTURAL_REQUIRED_KEYS if structural else _REQUIRED_ITEM_KEYS
        if section is not None:
            needed = needed - {"section"}
        missing = needed - data.keys()
        if missing:
            raise ValueError(f"{name}: missing {', '.join(sorted(missing))}")
        unknown = data.keys() - _ITEM_KEYS
        if unknown:
            # A misspelt "maxlength" would otherwise silently drop a limit.
            raise ValueError(f"{name}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        raw_options = data.get("options", [])
        if not isinstance(raw_options, list):
            raise ValueError(f"{name}: options must be a list of {{value, label, system}} objects")
        try:
            options = tuple(Option.from_dict(o) for o in raw_options)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        extensions = data.get("fhirExtensions", [])
        if not isinstance(extensions, list):
            raise ValueError(f"{name}: fhirExtensions must be a list")
        own_section = data.get("section", section if section is not None else "")
        if section and own_section == "":
            # "" is "no section"; inside a group that has one, an item is in it or in another.
            raise ValueError(f"{name}: section must not be empty inside a group with a section")
        return cls(
            id=data["id"],
            text=data["text"],
            type=data["type"],
            required=data.get("required", False),
            section=own_section,
            options=options,
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            max_length=data.get("maxLength"),
            max_items=data.get("maxItems"),
            items=_children(data.get("items", []), name, own_section),
            repeats=data.get("repeats", False),
            enable_when=_conditions(data.get("enableWhen", []), name),
            enable_behavior=data.get("enableBehavior"),
            open_choice=data.get("openChoice", False),
            read_only=data.get("readOnly", False),
            fhir_extensions=tuple(extensions),
        )


class DefinitionError(ValueError):
    """Every error of a definition, each with the path of the key at fault.

    ``str()`` lists them as ``path: message``, so code that only knows ``ValueError`` (the
    start-up loader) still reports where the definition is wrong.
    """

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))


def _children(raw: object, name: str, section: str) -> tuple[Item, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"{name}: items must be a list")
    errors: list[tuple[str, str]] = []
    children = []
    for index, child in enumerate(raw):
        try:
            children.append(Item.from_dict(child, index + 1, section=section))
        except DefinitionError as exc:
            errors += [(f"items[{index}].{path}", message) for path, message in exc.errors]
        except ValueError as exc:
            errors.append((f"items[{index}]", str(exc)))
    if errors:
        raise DefinitionError(errors)
    return tuple(children)


def _conditions(raw: object, name: str) -> tuple[Condition, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"{name}: enableWhen must be a list")
    errors: list[tuple[str, str]] = []
    conditions = []
    for index, entry in enumerate(raw):
        try:
            conditions.append(Condition.from_dict(entry))
        except ValueError as exc:
            errors.append((f"enableWhen[{index}]", f"{name}: {exc}"))
    if errors:
        raise DefinitionError(errors)
    return tuple(conditions)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, slots=True)
class Questionnaire:
    """A versioned tree of items; answers are validated against exactly one version.

    Building one checks it whole (conditions included) and compiles its conditions, once:
    a published version is immutable, so nothing here is ever recomputed.
    """

    id: str
    version: str
    title: str
    items: tuple[Item, ...]
    url: str | None = None
    fhir_extensions: tuple[Any, ...] = field(default=(), hash=False)
    _by_id: Mapping[str, Item] = field(init=False, repr=False, compare=False)
    _answerable: Mapping[str, Item] = field(init=False, repr=False, compare=False)
    _required_ids: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _rows: Mapping[str, Mapping[str, Item]] = field(init=False, repr=False, compare=False)
    _plan: EnablementPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("id", "version", "title"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"questionnaire {name} must be a non-empty string")
        if not self.items:
            raise ValueError(f"questionnaire {self.id!r} has no items")
        if not isinstance(self.fhir_extensions, tuple) or not all(
            isinstance(e, Mapping) and isinstance(e.get("url"), str) and e["url"]
            for e in self.fhir_extensions
        ):
            raise ValueError("questionnaire fhirExtensions must be a list of objects with a url")
        plan = compile_plan(self.items)
        by_id = {node.item.id: node.item for node in plan.nodes.values()}
        answerable = {
            node.item.id: node.item
            for node in plan.nodes.values()
            if node.row_group is None and node.item.is_answerable
        }
        rows: dict[str, dict[str, Item]] = {}
        for node in plan.nodes.values():
            if node.row_group is not None and node.item.type not in STRUCTURAL_TYPES:
                rows.setdefault(node.row_group, {})[node.item.id] = node.item
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_answerable", answerable)
        object.__setattr__(self, "_rows", rows)
        object.__setattr__(self, "_plan", plan)
        object.__setattr__(
            self, "_required_ids", tuple(i for i, item in answerable.items() if item.required)
        )

    def item(self, question_id: str) -> Item | None:
        """The item answered by the top-level key ``question_id`` of ``answers``.

        Items inside a repeating group are answered in its rows, so they are not found here.
        """
        return self._answerable.get(question_id)

    @property
    def repeating_ids(self) -> frozenset[str]:
        """Ids of the repeating groups (answered as lists of rows)."""
        return frozenset(self._rows)

    def row_items(self, group_id: str) -> Mapping[str, Item]:
        """The questions answered in each row of a repeating group, by id."""
        return self._rows.get(group_id, {})

    def any_item(self, item_id: str) -> Item | None:
        """Any item at any depth, answered or not."""
        return self._by_id.get(item_id)

    @property
    def plan(self) -> EnablementPlan:
        return self._plan

    @property
    def required_ids(self) -> tuple[str, ...]:
        """Required top-level answer ids in definition order (enabled or not)."""
        return self._required_ids

    def to_public_dict(self) -> dict[str, Any]:
        """The shape served by ``GET /v1/questionnaires/{id}``; ``from_dict`` reads it back."""
        data: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "items": [item.to_public_dict() for item in self.items],
        }
        if self.url is not None:
            data["url"] = self.url
        if self.fhir_extensions:
            data["fhirExtensions"] = list(self.fhir_extensions)
        return data

    @classmethod
    def from_dict(cls, data: object) -> Questionnaire:
        """Parse a definition strictly: anything unexpected is a ``ValueError``, never ignored.

        Item errors are a ``DefinitionError`` naming each path (``items[3].enableWhen[0]``).
        """
        if not isinstance(data, Mapping):
            raise ValueError("questionnaire definition must be an object")
        missing = _QUESTIONNAIRE_KEYS - data.keys()
        if missing:
            raise ValueError(f"questionnaire definition is missing {', '.join(sorted(missing))}")
        unknown = data.keys() - _QUESTIONNAIRE_KEYS - _OPTIONAL_QUESTIONNAIRE_KEYS
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            raise ValueError(f"questionnaire definition has unknown keys {names}")
        raw_items = data["items"]
        if not isinstance(raw_items, list):
            raise ValueError("questionnaire items must be a list")
        errors: list[tuple[str, str]] = []
        items = []
        for index, raw in enumerate(raw_items):
            try:
                items.append(Item.from_dict(raw, index + 1))
            except DefinitionError as exc:
                errors += [(f"items[{index}].{path}", message) for path, message in exc.errors]
            except ValueError as exc:
                errors.append((f"items[{index}]", str(exc)))
        if errors:
            raise DefinitionError(errors)
        url = data.get("url")
        if url is not None and (not isinstance(url, str) or not url.strip()):
            raise ValueError("questionnaire url must be a non-empty string")
        extensions = data.get("fhirExtensions", [])
        if not isinstance(extensions, list):
            raise ValueError("questionnaire fhirExtensions must be a list")
        return cls(
            id=data["id"],
            version=data["version"],
            title=data["title"],
            items=tuple(items),
            url=url,
            fhir_extensions=tuple(extensions),
        )


from healthinfo.questionnaires.conditions import EnablementPlan, compile_plan  # noqa: E402
