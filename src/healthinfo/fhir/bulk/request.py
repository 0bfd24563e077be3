"""The kick-off's parameters, checked against what this server supports (Bulk Data v2).

Unsupported parameters are refused (400) rather than ignored: a client that asks for
``patient=`` or ``_elements=`` and silently gets everything would export more than it meant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from healthinfo.errors import MalformedRequest

QUESTIONNAIRE = "Questionnaire"
QUESTIONNAIRE_RESPONSE = "QuestionnaireResponse"
TYPES = (QUESTIONNAIRE, QUESTIONNAIRE_RESPONSE)
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
COMPLETED_FILTER = "QuestionnaireResponse?status=completed"
SUPPORTED = frozenset({"_type", "_since", "_typeFilter", "_outputFormat"})


@dataclass(frozen=True, slots=True)
class ExportRequest:
    types: tuple[str, ...]
    since: datetime | None
    completed_only: bool


def parse_kickoff(params: Sequence[tuple[str, str]], *, prefer: str | None) -> ExportRequest:
    """``params``: the query string's (name, value) pairs, repeats kept."""
    if prefer is None or "respond-async" not in [p.strip() for p in prefer.split(",")]:
        raise MalformedRequest("A Bulk Data kick-off needs the header 'Prefer: respond-async'.")
    unsupported = sorted({name for name, _ in params} - SUPPORTED)
    if unsupported:
        raise MalformedRequest(f"Unsupported parameters: {', '.join(unsupported)}.")
    types: list[str] = []
    since: datetime | None = None
    completed_only = False
    for name, value in params:
        if name == "_type":
            for kind in (part.strip() for part in value.split(",")):
                if kind not in TYPES:
                    raise MalformedRequest(
                        f"_type may name only {' and '.join(TYPES)}; not {kind[:64]!r}."
                    )
                if kind not in types:
                    types.append(kind)
        elif name == "_since":
            since = _instant(value)
        elif name == "_typeFilter":
            for query in (part.strip() for part in value.split(",")):
                if query != COMPLETED_FILTER:
                    raise MalformedRequest(f"_typeFilter supports only {COMPLETED_FILTER!r}.")
            completed_only = True
        elif value not in OUTPUT_FORMATS:
            raise MalformedRequest("_outputFormat must be application/fhir+ndjson.")
    ordered = tuple(kind for kind in TYPES if kind in types) if types else TYPES
    return ExportRequest(ordered, since, completed_only)


def _instant(value: str) -> datetime:
    """A FHIR ``instant``: a date-time with seconds and a time zone."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedRequest(
            "_since must be a FHIR instant, e.g. 2026-01-01T00:00:00Z."
        ) from None
    if parsed.tzinfo is None or "T" not in value:
        raise MalformedRequest("_since must be a FHIR instant with a time zone.")
    return parsed.astimezone(UTC)
