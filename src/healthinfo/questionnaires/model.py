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
from datetime import date
from typing import Any, Final, Literal, get_args

ItemType = Literal[
    "boolean",
    "integer",
    "decimal",
    "date",
    "string",
    "text",
    "single-choice",
    "multiple-choice",
]
Bound = int | float | str

ITEM_TYPES: Final[frozenset[str]] = frozenset(get_args(ItemType))
CHOICE_TYPES: Final[frozenset[str]] = frozenset({"single-choice", "multiple-choice"})
NUMERIC_TYPES: Final[frozenset[str]] = frozenset({"integer", "decimal"})
TEXT_TYPES: Final[frozenset[str]] = frozenset({"string", "text"})

# Without a limit a single answer could be megabytes; these are the limits when a text item
# does not set its own.
DEFAULT_MAX_LENGTH: Final[Mapping[str, int]] = {"string": 200, "text": 4000}

TODAY: Final = "today"
"""A date bound meaning "the current date (UTC) when the answer is checked"."""

_ID_PATTERN: Final = re.compile(r"[a-z][A-Za-z0-9]{0,63}")
_ISO_DATE_PATTERN: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

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
    }
)
_REQUIRED_ITEM_KEYS: Final = frozenset({"id", "text", "type", "required", "section"})
_QUESTIONNAIRE_KEYS: Final = frozenset({"id", "version", "title", "items"})


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


def _is_finite_number(value: object) -> bool:
    # bool is an int subclass; True as a bound is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not isinstance(value, float) or math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Option:
    """One choice: ``value`` is what is stored and sent back, ``label`` what people read."""

    value: str
    label: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not self.value:
            raise ValueError("option value must be a non-empty string")
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"option {self.value!r} needs a non-empty label")


@dataclass(frozen=True, slots=True)
class Item:
    """One question.

    ``minimum``/``maximum`` are numbers for numeric items and ISO dates (or ``"today"``) for
    date items. For string and text items ``max_length`` is filled with the default limit, so
    it always states the limit actually enforced.
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

    def __post_init__(self) -> None:
        try:
            self._check()
        except ValueError as exc:
            raise ValueError(f"item {self.id!r}: {exc}") from None
        if self.type in TEXT_TYPES and self.max_length is None:
            object.__setattr__(self, "max_length", DEFAULT_MAX_LENGTH[self.type])

    def _check(self) -> None:
        if not isinstance(self.id, str) or not _ID_PATTERN.fullmatch(self.id):
            # The id becomes part of the error path ``answers.<id>``, so no dots or spaces.
            raise ValueError("id must be lowerCamelCase letters and digits (at most 64)")
        if not isinstance(self.type, str) or self.type not in ITEM_TYPES:
            raise ValueError(f"unknown type {self.type!r}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("text must be a non-empty string")
        if not isinstance(self.section, str) or not self.section.strip():
            raise ValueError("section must be a non-empty string")
        if not isinstance(self.required, bool):
            raise ValueError("required must be true or false")
        self._check_options()
        self._check_bounds()
        self._check_limits()

    def _check_options(self) -> None:
        if self.type in CHOICE_TYPES:
            if not self.options:
                raise ValueError(f"a {self.type} item needs options")
            values = [option.value for option in self.options]
            if len(set(values)) != len(values):
                raise ValueError("option values must be distinct")
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
        else:
            raise ValueError(f"a {self.type} item cannot have minimum or maximum")
        low, high = self._comparable_bounds()
        if low is not None and high is not None and low > high:
            raise ValueError("minimum is greater than maximum")

    def _comparable_bounds(self) -> tuple[Any, Any]:
        """Bounds as comparable values; ``"today"`` moves, so it is left out of the check."""
        if self.type != "date":
            return self.minimum, self.maximum

        def fixed(bound: object) -> date | None:
            return parse_iso_date(bound) if isinstance(bound, str) and bound != TODAY else None

        return fixed(self.minimum), fixed(self.maximum)

    def _check_limits(self) -> None:
        if self.max_length is not None:
            if self.type not in TEXT_TYPES:
                raise ValueError(f"a {self.type} item cannot have maxLength")
            if not _is_positive_int(self.max_length):
                raise ValueError("maxLength must be a positive integer")
        if self.max_items is not None:
            if self.type != "multiple-choice":
                raise ValueError(f"a {self.type} item cannot have maxItems")
            if not _is_positive_int(self.max_items):
                raise ValueError("maxItems must be a positive integer")

    def to_public_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "type": self.type,
            "required": self.required,
            "section": self.section,
        }
        if self.options:
            data["options"] = [{"value": o.value, "label": o.label} for o in self.options]
        optional = {
            "minimum": self.minimum,
            "maximum": self.maximum,
            "maxLength": self.max_length,
            "maxItems": self.max_items,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data

    @classmethod
    def from_dict(cls, data: object, position: int) -> Item:
        """Build from the definition's camelCase JSON; ``position`` names items without an id."""
        if not isinstance(data, Mapping):
            raise ValueError(f"item #{position}: must be an object")
        name = f"item {data['id']!r}" if "id" in data else f"item #{position}"
        missing = _REQUIRED_ITEM_KEYS - data.keys()
        if missing:
            raise ValueError(f"{name}: missing {', '.join(sorted(missing))}")
        unknown = data.keys() - _ITEM_KEYS
        if unknown:
            # A misspelt "maxlength" would otherwise silently drop a limit.
            raise ValueError(f"{name}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        raw_options = data.get("options", [])
        if not isinstance(raw_options, list) or not all(
            isinstance(o, Mapping) and o.keys() == {"value", "label"} for o in raw_options
        ):
            raise ValueError(f"{name}: options must be a list of {{value, label}} objects")
        try:
            options = tuple(Option(value=o["value"], label=o["label"]) for o in raw_options)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        return cls(
            id=data["id"],
            text=data["text"],
            type=data["type"],
            required=data["required"],
            section=data["section"],
            options=options,
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            max_length=data.get("maxLength"),
            max_items=data.get("maxItems"),
        )


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, slots=True)
class Questionnaire:
    """A versioned list of items; answers are validated against exactly one version."""

    id: str
    version: str
    title: str
    items: tuple[Item, ...]
    _by_id: Mapping[str, Item] = field(init=False, repr=False, compare=False)
    _required_ids: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("id", "version", "title"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"questionnaire {name} must be a non-empty string")
        if not self.items:
            raise ValueError(f"questionnaire {self.id!r} has no items")
        by_id: dict[str, Item] = {}
        for item in self.items:
            if item.id in by_id:
                raise ValueError(f"item {item.id!r} is defined twice")
            by_id[item.id] = item
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(
            self, "_required_ids", tuple(item.id for item in self.items if item.required)
        )

    def item(self, question_id: str) -> Item | None:
        return self._by_id.get(question_id)

    @property
    def required_ids(self) -> tuple[str, ...]:
        """Required question ids in definition order."""
        return self._required_ids

    def to_public_dict(self) -> dict[str, Any]:
        """The shape served by ``GET /v1/questionnaires/{id}``; ``from_dict`` reads it back."""
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "items": [item.to_public_dict() for item in self.items],
        }

    @classmethod
    def from_dict(cls, data: object) -> Questionnaire:
        """Parse a definition strictly: anything unexpected is a ``ValueError``, never ignored."""
        if not isinstance(data, Mapping):
            raise ValueError("questionnaire definition must be an object")
        missing = _QUESTIONNAIRE_KEYS - data.keys()
        if missing:
            raise ValueError(f"questionnaire definition is missing {', '.join(sorted(missing))}")
        unknown = data.keys() - _QUESTIONNAIRE_KEYS
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            raise ValueError(f"questionnaire definition has unknown keys {names}")
        raw_items = data["items"]
        if not isinstance(raw_items, list):
            raise ValueError("questionnaire items must be a list")
        items = tuple(Item.from_dict(raw, position) for position, raw in enumerate(raw_items, 1))
        return cls(id=data["id"], version=data["version"], title=data["title"], items=items)
