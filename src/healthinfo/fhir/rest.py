"""HTTP side of the FHIR representations: content negotiation, responses, OpenAPI snippets.

The REST routes stay in their own modules; they call these helpers when a client asks for
(``Accept``) or sends (``Content-Type``) ``application/fhir+json``. See docs/fhir.md.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, NamedTuple

from starlette.responses import Response

from healthinfo.fhir.mapping import DEFAULT_BASE_URL, questionnaire_to_fhir, response_to_fhir
from healthinfo.health_information.model import HealthInformationState
from healthinfo.questionnaires.model import Questionnaire

FHIR_JSON: Final = "application/fhir+json"
FHIR_CONTENT_TYPE: Final = "application/fhir+json; fhirVersion=4.0"
VARY: Final = "Accept"
"""Responses of routes that negotiate on Accept say so, for caches (``Vary: Accept``)."""

_WEAK_TAG: Final = re.compile(r'(^|,)(\s*)W/"')


class _Range(NamedTuple):
    type: str
    subtype: str
    params: dict[str, str]
    quality: float


class _Match(NamedTuple):
    specificity: int  # 2: type/subtype, 1: type/*, 0: */*
    quality: float


def media_type(content_type: str | None) -> str:
    """``application/fhir+json; charset=utf-8`` → ``application/fhir+json``."""
    return (content_type or "").split(";")[0].strip().lower()


def is_fhir(content_type: str | None) -> bool:
    return media_type(content_type) == FHIR_JSON


def prefers_fhir(accept: str | None, *, default: bool = False) -> bool:
    """Should the response be FHIR rather than the plain JSON representation?

    FHIR when the client names ``application/fhir+json`` (with no ``fhirVersion`` or a 4.0 one)
    and does not rate ``application/json`` higher. When FHIR is acceptable only through a
    wildcard (``*/*``, ``application/*``, no Accept at all) and JSON is not named either,
    ``default`` decides: the format of the request body for a write, JSON for a read.
    """
    if accept is None or not accept.strip():
        return default
    ranges = _parse_accept(accept)
    fhir = _best_match(ranges, "application", "fhir+json", fhir=True)
    plain = _best_match(ranges, "application", "json", fhir=False)
    if fhir is None or fhir.quality <= 0:
        return False
    if fhir.specificity == 2:
        return plain is None or fhir.quality >= plain.quality
    if plain is not None and plain.specificity == 2 and plain.quality > 0:
        return False
    return default


def _parse_accept(header: str) -> list[_Range]:
    ranges = []
    for part in header.split(","):
        media, *raw_params = (piece.strip() for piece in part.split(";"))
        kind, slash, subtype = media.lower().partition("/")
        if not slash or not kind or not subtype:
            continue
        params = {}
        for raw in raw_params:
            name, _, value = raw.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            continue
        if 0 <= quality <= 1:
            ranges.append(_Range(kind, subtype, params, quality))
    return ranges


def _best_match(ranges: list[_Range], kind: str, subtype: str, *, fhir: bool) -> _Match | None:
    """The most specific range matching ``kind/subtype`` (RFC 9110 §12.5.1), if any."""
    best: _Match | None = None
    for media in ranges:
        if media.type == "*" and media.subtype == "*":
            specificity = 0
        elif media.type == kind and media.subtype == "*":
            specificity = 1
        elif media.type == kind and media.subtype == subtype:
            version = media.params.get("fhirversion")
            if fhir and version is not None and not version.startswith("4.0"):
                continue  # another FHIR release: not what we serve
            specificity = 2
        else:
            continue
        match = _Match(specificity, media.quality)
        if best is None or match > best:
            best = match
    return best


def fhir_etag(version: int) -> str:
    """FHIR's ETag for a version: weak, ``W/"<versionId>"`` (FHIR R4 http.html#versioning)."""
    return f'W/"{version}"'


def fhir_if_match(header: str | None) -> str | None:
    """FHIR clients send ``If-Match: W/"<versionId>"`` for a version-aware update; FHIR defines
    that as "update only at this version", so for a FHIR body it is read as the strong tag."""
    if header is None:
        return None
    return _WEAK_TAG.sub(r'\1\2"', header)


def fhir_response(
    resource: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=json.dumps(resource, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        media_type=FHIR_CONTENT_TYPE,
        headers={"Vary": VARY, **(headers or {})},
    )


def render_health_information(
    state: HealthInformationState,
    q: Questionnaire,
    *,
    status: int = 200,
    base_url: str = DEFAULT_BASE_URL,
) -> Response:
    """The state as a ``QuestionnaireResponse`` of ``q`` (its questionnaire), with its ETag."""
    return fhir_response(
        response_to_fhir(state, q, base_url=base_url),
        status=status,
        headers={"ETag": fhir_etag(state.version)},
    )


def render_questionnaire(q: Questionnaire, *, base_url: str = DEFAULT_BASE_URL) -> Response:
    return fhir_response(questionnaire_to_fhir(q, base_url=base_url))


def not_modified(version: int, *, fhir: bool) -> Response:
    """A 304 carrying the ETag of the representation the client asked for."""
    tag = fhir_etag(version) if fhir else f'"{version}"'
    return Response(status_code=304, headers={"ETag": tag, "Vary": VARY})


def openapi_content(resource_type: str) -> dict[str, Any]:
    """An OpenAPI ``content`` entry for a FHIR R4 resource served as ``application/fhir+json``."""
    return {
        FHIR_JSON: {
            "schema": {
                "type": "object",
                "description": (
                    f"A FHIR R4 {resource_type} "
                    f"(http://hl7.org/fhir/R4/{resource_type.lower()}.html); see docs/fhir.md."
                ),
                "required": ["resourceType"],
                "properties": {"resourceType": {"type": "string", "enum": [resource_type]}},
            }
        }
    }
