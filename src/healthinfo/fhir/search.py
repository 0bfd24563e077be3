"""FHIR R4 search parameters (http.html#search, search.html) → the service's search query.

Pure functions: parse ``status``, ``questionnaire``, ``_lastUpdated`` and ``_count`` as FHIR
clients send them, and the opaque page cursor of ``next`` links. Anything malformed is a
``422 validation-failed`` naming the parameter (never repeating its value). What is supported
and what is not: docs/fhir.md, "Search".
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from healthinfo.errors import FieldError, ValidationFailed
from healthinfo.fhir.mapping import STATUS_TO_FHIR
from healthinfo.health_information.model import Status
from healthinfo.health_information.search import QuestionnaireRef, UpdatedBound

DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 500
QR_STATUSES: Final = frozenset(
    {"in-progress", "completed", "amended", "entered-in-error", "stopped"}
)
"""R4's QuestionnaireResponseStatus codes: the valid ``status`` values (the last two are never
stored, so they match nothing)."""
QUESTIONNAIRE_STATUSES: Final = frozenset({"draft", "active", "retired", "unknown"})
_FROM_FHIR: Final = {fhir: status for status, fhir in STATUS_TO_FHIR.items()}
_PREFIXES: Final = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_SUPPORTED_PREFIXES: Final = frozenset({"eq", "gt", "lt", "ge", "le"})
# FHIR dateTime: YYYY, YYYY-MM, YYYY-MM-DD, or with a time (a zone is then required).
_DATE_TIME: Final = re.compile(
    r"(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T(?P<hour>\d{2}):(?P<minute>\d{2})(:(?P<second>\d{2})(?P<fraction>\.\d{1,9})?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2}))?)?)?"
)


def invalid(parameter: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(parameter, message)])


def values_of(raw: Sequence[str]) -> list[str]:
    """Repeated parameters are AND, commas within one are OR (search.html#combining):
    this flattens the ORs of one occurrence."""
    return [value.strip() for value in raw for value in value.split(",")]


def parse_statuses(raw: Sequence[str]) -> frozenset[Status] | None:
    """``status=completed,amended``: any of them. None: no condition."""
    codes = parse_tokens("status", raw, QR_STATUSES)
    if codes is None:
        return None
    return frozenset(_FROM_FHIR[code] for code in codes if code in _FROM_FHIR)


def parse_questionnaire_refs(
    raw: Sequence[str], *, canonical_base: str
) -> tuple[QuestionnaireRef, ...] | None:
    """``questionnaire=<base>/Questionnaire/<id>`` (any version) or ``…|<version>``.

    A canonical outside this service's base names no questionnaire stored here: it matches
    nothing rather than being an error (FHIR search semantics).
    """
    if not raw:
        return None
    refs: list[QuestionnaireRef] = []
    for value in values_of(raw):
        url, bar, version = value.partition("|")
        prefix = f"{canonical_base.rstrip('/')}/Questionnaire/"
        if not url.startswith(prefix) or not url[len(prefix) :]:
            continue
        if bar and not version:
            raise invalid("questionnaire", "a version after '|' must not be empty")
        refs.append(QuestionnaireRef(url[len(prefix) :], version or None))
    return tuple(refs)


def parse_last_updated(raw: Sequence[str]) -> tuple[UpdatedBound, ...]:
    """``_lastUpdated=ge2026-12-01&_lastUpdated=lt2026-12-02T10:00:00Z``: every one applies.

    A value stands for the range of its precision (``2026-12`` is the whole month, in UTC when
    it has no zone). Against the instant ``meta.lastUpdated``: ``eq`` is inside the range,
    ``ge`` at or after its start, ``gt`` at or after its end, ``le`` before its end, ``lt``
    before its start (search.html#prefix). ``ne``, ``sa``, ``eb``, ``ap`` are not supported.
    """
    bounds: list[UpdatedBound] = []
    for value in raw:
        if "," in value:
            raise invalid("_lastUpdated", "several values (OR) are not supported")
        prefix, text = _split_prefix(value.strip())
        start, end = _date_range(text)
        if prefix == "eq":
            bounds += [UpdatedBound("ge", start), UpdatedBound("lt", end)]
        elif prefix == "ge":
            bounds.append(UpdatedBound("ge", start))
        elif prefix == "gt":
            bounds.append(UpdatedBound("ge", end))
        elif prefix == "le":
            bounds.append(UpdatedBound("lt", end))
        else:  # lt
            bounds.append(UpdatedBound("lt", start))
    return tuple(bounds)


def _split_prefix(value: str) -> tuple[str, str]:
    prefix = value[:2]
    if prefix in _PREFIXES:
        if prefix not in _SUPPORTED_PREFIXES:
            raise invalid("_lastUpdated", "supported prefixes are eq, ge, gt, le and lt")
        return prefix, value[2:]
    return "eq", value


def _date_range(text: str) -> tuple[datetime, datetime]:
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise invalid("_lastUpdated", "must be a FHIR dateTime (a zone is required with a time)")
    parts = match.groupdict()
    try:
        year = int(parts["year"])
        if parts["month"] is None:
            start = datetime(year, 1, 1, tzinfo=UTC)
            return start, datetime(year + 1, 1, 1, tzinfo=UTC)
        month = int(parts["month"])
        if parts["day"] is None:
            start = datetime(year, month, 1, tzinfo=UTC)
            after = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return start, after
        day = int(parts["day"])
        if parts["hour"] is None:
            start = datetime(year, month, day, tzinfo=UTC)
            return start, start + timedelta(days=1)
        zone = parts["zone"]
        iso = f"{year:04d}-{month:02d}-{day:02d}T{parts['hour']}:{parts['minute']}"
        if parts["second"] is None:
            moment = datetime.fromisoformat(f"{iso}:00{_offset(zone)}")
            return moment.astimezone(UTC), (moment + timedelta(minutes=1)).astimezone(UTC)
        fraction = (parts["fraction"] or "")[:7]  # Python keeps microseconds
        moment = datetime.fromisoformat(f"{iso}:{parts['second']}{fraction}{_offset(zone)}")
        digits = len(parts["fraction"] or ".") - 1
        step = timedelta(seconds=10 ** -min(digits, 6)) if digits else timedelta(seconds=1)
        return moment.astimezone(UTC), (moment + step).astimezone(UTC)
    except ValueError:
        raise invalid("_lastUpdated", "is not a valid date or time") from None


def _offset(zone: str) -> str:
    return "+00:00" if zone == "Z" else zone


def parse_count(raw: Sequence[str]) -> int:
    """``_count``: 1 and up; more than ``MAX_COUNT`` is served as ``MAX_COUNT`` (FHIR lets a
    server return fewer than asked; the ``next`` link carries on)."""
    if not raw:
        return DEFAULT_COUNT
    if len(raw) > 1:
        raise invalid("_count", "must be given once")
    text = raw[0].strip()
    if not text.isdigit() or int(text) < 1:
        raise invalid("_count", "must be a whole number of at least 1")
    return min(int(text), MAX_COUNT)


def parse_tokens(parameter: str, raw: Sequence[str], allowed: Iterable[str]) -> set[str] | None:
    """A token parameter with a fixed set of codes; repeated occurrences intersect."""
    if not raw:
        return None
    allowed = frozenset(allowed)
    result: set[str] | None = None
    for occurrence in raw:
        codes = {code.strip() for code in occurrence.split(",")}
        if not codes <= allowed:
            raise invalid(parameter, f"must be one of {', '.join(sorted(allowed))}")
        result = codes if result is None else result & codes
    return result


def encode_cursor(key: str) -> str:
    """The opaque ``_cursor`` of a ``next`` link: the last key of the page."""
    return base64.urlsafe_b64encode(f"f1:{key}".encode()).decode().rstrip("=")


def decode_cursor(raw: Sequence[str]) -> str | None:
    if not raw:
        return None
    try:
        padded = raw[0] + "=" * (-len(raw[0]) % 4)
        prefix, _, key = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        prefix, key = "", ""
    if prefix != "f1" or not key or len(raw) > 1:
        raise bad_cursor()
    return key


def bad_cursor() -> ValidationFailed:
    return invalid("_cursor", "is not a cursor this server returned")
