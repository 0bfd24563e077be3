"""The ``CapabilityStatement`` at ``GET /v1/fhir/metadata``, generated from the routes.

Nothing here lists what the server can do: every HTTP route mounted under ``/v1/fhir`` is
read from the application's routes when the statement is asked for, and its method and path
template say which FHIR interaction it is (``GET /{type}/{id}`` is ``read``, ``PUT`` of it
``update``, ``/{type}/{id}/_history/{vid}`` ``vread``, ``GET /{type}`` ``search-type``,
``/$name`` a system operation, ``/{type}/$name`` a type operation). A route's search
parameters are its query parameters that declare a FHIR type (``SEARCH_TYPE`` in
``json_schema_extra``). So a route added later, by any module, appears without an edit here,
and one removed disappears: the statement cannot drift from what is served.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from healthinfo.common.clock import to_rfc3339
from healthinfo.fhir.mapping import FHIR_VERSION
from healthinfo.fhir.outcome import FHIR_PREFIX

SEARCH_TYPE: Final = "x-fhir-search-type"
"""Key in a query parameter's ``json_schema_extra``: its FHIR search parameter type."""
_RESOURCE: Final = re.compile(r"[A-Z][A-Za-z]+")
_PLACEHOLDER: Final = re.compile(r"\{[^}]+\}")
# Operations whose definition is published by HL7; others get one under this server's base.
KNOWN_OPERATIONS: Final = {
    "export": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
}
# Interactions R4 lists under rest.resource.interaction (others are system or operations).
_TYPE_INTERACTIONS: Final = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)


@dataclass
class _Resource:
    interactions: set[str] = field(default_factory=set)
    search: dict[str, str] = field(default_factory=dict)
    operations: set[str] = field(default_factory=set)


@dataclass
class _Server:
    resources: dict[str, _Resource] = field(default_factory=dict)
    operations: set[str] = field(default_factory=set)

    def resource(self, name: str) -> _Resource:
        return self.resources.setdefault(name, _Resource())


def _is_placeholder(segment: str) -> bool:
    return bool(_PLACEHOLDER.fullmatch(segment))


def _classify(server: _Server, route: APIRoute, methods: set[str], segments: list[str]) -> None:
    if not segments or segments == ["metadata"]:
        return
    if len(segments) == 1 and segments[0].startswith("$"):
        server.operations.add(segments[0][1:])
        return
    kind = segments[0]
    if not _RESOURCE.fullmatch(kind):
        return  # not a FHIR interaction (e.g. a Bulk Data status or file URL)
    rest = segments[1:]
    found: set[str] = set()
    if not rest:
        found |= {"search-type"} if "GET" in methods else set()
        found |= {"create"} if "POST" in methods else set()
    elif len(rest) == 1 and rest[0].startswith("$"):
        server.resource(kind).operations.add(rest[0][1:])
    elif len(rest) == 1 and rest[0] == "_history" and "GET" in methods:
        found.add("history-type")
    elif len(rest) == 1 and _is_placeholder(rest[0]):
        mapping = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        found |= {mapping[m] for m in methods if m in mapping}
    elif len(rest) == 2 and _is_placeholder(rest[0]) and rest[1] == "_history":
        found |= {"history-instance"} if "GET" in methods else set()
    elif len(rest) == 2 and _is_placeholder(rest[0]) and rest[1].startswith("$"):
        server.resource(kind).operations.add(rest[1][1:])
    elif (
        len(rest) == 3
        and _is_placeholder(rest[0])
        and rest[1] == "_history"
        and _is_placeholder(rest[2])
        and "GET" in methods
    ):
        found.add("vread")
    if not found:
        return
    resource = server.resource(kind)
    resource.interactions |= found
    if "search-type" in found:
        for parameter in route.dependant.query_params:
            extra = parameter.field_info.json_schema_extra
            if isinstance(extra, dict) and isinstance(extra.get(SEARCH_TYPE), str):
                resource.search[parameter.alias] = str(extra[SEARCH_TYPE])


def served(routes: Iterable[BaseRoute], prefix: str = FHIR_PREFIX) -> _Server:
    """What the routes serve under ``prefix``, each with the path and methods it is mounted
    with (routers included with a prefix keep their own relative paths)."""
    server = _Server()
    for context in iter_route_contexts(list(routes)):
        route, path = context.original_route, context.path
        if isinstance(route, APIRoute) and path and path.startswith(prefix + "/"):
            methods = {method.upper() for method in context.methods or ()}
            _classify(server, route, methods, path[len(prefix) :].strip("/").split("/"))
    return server


def _operation(name: str, base_url: str) -> dict[str, str]:
    definition = KNOWN_OPERATIONS.get(name, f"{base_url}/OperationDefinition/{name}")
    return {"name": name, "definition": definition}


def capability_statement(
    routes: Iterable[BaseRoute],
    *,
    base_url: str,
    software_version: str,
    date: datetime,
) -> dict[str, Any]:
    """R4 ``CapabilityStatement`` (kind ``instance``) of what ``routes`` serve under the base.

    ``base_url`` is the FHIR base clients called (``implementation.url``).
    """
    server = served(routes)
    resources = []
    for name in sorted(server.resources):
        found = server.resources[name]
        entry: dict[str, Any] = {"type": name}
        interactions = [code for code in _TYPE_INTERACTIONS if code in found.interactions]
        if interactions:
            entry["interaction"] = [{"code": code} for code in interactions]
        if "vread" in found.interactions or "update" in found.interactions:
            entry["versioning"] = (
                "versioned-update" if "update" in found.interactions else "versioned"
            )
            entry["readHistory"] = "vread" in found.interactions
        if "update" in found.interactions:
            entry["updateCreate"] = True
        if found.search:
            entry["searchParam"] = [
                {"name": param, "type": kind} for param, kind in sorted(found.search.items())
            ]
        if found.operations:
            entry["operation"] = [_operation(op, base_url) for op in sorted(found.operations)]
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "security": {
            "description": "Authorization: Bearer <JWT> on every interaction but this one "
            "(see docs/fhir.md). Errors are OperationOutcome resources.",
        },
    }
    if resources:
        rest["resource"] = resources
    if server.operations:
        rest["operation"] = [_operation(op, base_url) for op in sorted(server.operations)]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": to_rfc3339(date),
        "publisher": "Health Information Service",
        "kind": "instance",
        "software": {"name": "healthinfo", "version": software_version},
        "implementation": {
            "description": "Health Information Service FHIR R4 API",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }
