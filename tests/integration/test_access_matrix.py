"""Who may call which route: every route of the API × every kind of caller, as one table.

The table (``MATRIX``) is the reviewable statement of the access rules; the tests only replay
it. ``test_matrix_covers_every_route_of_the_app`` fails when a route is added to the app
without a row here, so a new route cannot ship without an explicit access decision.

Every case runs against the same arrangement (``arrange``): an owner who saved incomplete
answers (version 1) and added an editor, a viewer and a spare viewer (the target of DELETE).
Payloads are chosen so an authorised call has one deterministic result: PUT and PATCH change an
answer (200), submit lacks required answers (422, which proves the call got past access
control), PUT members names a newcomer (201), DELETE members removes the spare viewer (204).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from healthinfo.auth.tokens import mint_token
from healthinfo.questionnaires.registry import QuestionnaireRegistry
from tests.support.asgi import http_status, websocket_answer
from tests.support.legacy import DEPRECATION
from tests.support.tokens import TEST_SECRET, auth

pytestmark = pytest.mark.asyncio

WRONG_SECRET = b"not-the-configured-secret-but-long-enough-0123456789"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as the app declares it, without the /v1 prefix
    # Identity is method + path; the payload is how the case calls it.
    body: dict[str, Any] | None = field(default=None, compare=False)
    content_type: str = field(default="application/json", compare=False)
    # Problem codes of this route where they differ from PROBLEM_CODES (by status).
    codes: dict[int, str] = field(default_factory=dict, compare=False)
    # "http", or a stream answered without a body to read: "sse" (its HTTP status) or
    # "websocket" (open = 200; a close code 4000 + status, e.g. 4404 = 404).
    kind: str = field(default="http", compare=False)
    # Path parameters of this route where they differ from url_for's defaults.
    params: dict[str, str] = field(default_factory=dict, compare=False)
    # Request headers the route needs besides the token (FHIR Bulk Data: Prefer).
    headers: dict[str, str] = field(default_factory=dict, compare=False)

    def code_for(self, status: int) -> str | None:
        """Routes under /fhir/ carry the code in an OperationOutcome, the others in a problem."""
        if self.kind != "http":
            return None
        return self.codes.get(status, PROBLEM_CODES.get(status))

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


HI_GET = Route("GET", "/kits/{kitId}/health-information")
HI_PUT = Route("PUT", "/kits/{kitId}/health-information", {"answers": {"heightCm": 181}})
HI_PATCH = Route(
    "PATCH", "/kits/{kitId}/health-information", {"answers": {"weightKg": 70}}, MERGE_PATCH
)
HI_SUBMIT = Route("POST", "/kits/{kitId}/health-information/submit")
HISTORY = Route("GET", "/kits/{kitId}/health-information/history")
HISTORY_VERSION = Route("GET", "/kits/{kitId}/health-information/history/{version}")
CLAIM = Route("POST", "/kits/{kitId}/claim")
MEMBERS = Route("GET", "/kits/{kitId}/members")
MEMBER_PUT = Route("PUT", "/kits/{kitId}/members/{userId}", {"role": "viewer"})
MEMBER_DELETE = Route("DELETE", "/kits/{kitId}/members/{userId}")
AUDIT_EVENTS = Route("GET", "/kits/{kitId}/audit-events")
QUESTIONNAIRE = Route("GET", "/questionnaires/{questionnaireId}")
QUESTIONNAIRES = Route("GET", "/questionnaires")
Q_VERSIONS = Route("GET", "/questionnaires/{questionnaireId}/versions")
Q_VERSION = Route("GET", "/questionnaires/{questionnaireId}/versions/{version}")
# Publishing the shipped definition again: 200 (it is published at start-up).
Q_PUBLISH = Route(
    "POST", "/questionnaires", QuestionnaireRegistry.builtin().default.to_public_dict()
)
# An unknown questionnaire, so that no case retires the one every other test uses.
Q_RETIRE = Route(
    "POST",
    "/questionnaires/{questionnaireId}/versions/{version}/retire",
    params={"questionnaireId": "no-such-questionnaire"},
)
HI_QUESTIONNAIRE = Route("GET", "/kits/{kitId}/health-information/questionnaire")
HI_MOVE = Route("POST", "/kits/{kitId}/health-information/questionnaire", {"version": "1"})
HI_ERASE = Route("DELETE", "/kits/{kitId}/health-information")
AMEND = Route(
    "POST",
    "/kits/{kitId}/health-information/amendments",
    {"answers": {"heightCm": 170}, "reason": "matrix"},
    codes={409: "not-submitted"},
)
EXPORT = Route("GET", "/kits/{kitId}/export")
EVENTS = Route("GET", "/kits/{kitId}/health-information/events", kind="sse")
SOCKET = Route("WEBSOCKET", "/kits/{kitId}/health-information/ws", kind="websocket")
CLAIM_CODES = Route("POST", "/kits/{kitId}/claim-codes")
OWNER_PUT = Route("PUT", "/kits/{kitId}/owner", {"userId": "new-owner"})
DELIVERIES = Route("GET", "/admin/deliveries")
DELIVERY_RETRY = Route("POST", "/admin/deliveries/{id}/retry")
# The FHIR base (/v1/fhir, no legacy twin); its refusals are OperationOutcome resources.
FHIR_JSON = "application/fhir+json"
KIT = "<the arranged kit>"  # a path parameter url_for replaces with the arranged kit's id
FHIR_METADATA = Route("GET", "/fhir/metadata")
FHIR_Q_READ = Route("GET", "/fhir/Questionnaire/{id}", params={"id": "health-information"})
FHIR_Q_VREAD = Route(
    "GET", "/fhir/Questionnaire/{id}/_history/{vid}", params={"id": "health-information"}
)
FHIR_Q_SEARCH = Route("GET", "/fhir/Questionnaire")
FHIR_QR_READ = Route("GET", "/fhir/QuestionnaireResponse/{id}", params={"id": KIT})
FHIR_QR_VREAD = Route("GET", "/fhir/QuestionnaireResponse/{id}/_history/{vid}", params={"id": KIT})
FHIR_QR_SEARCH = Route("GET", "/fhir/QuestionnaireResponse")
FHIR_QR_PUT = Route(
    "PUT",
    "/fhir/QuestionnaireResponse/{id}",
    {
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "item": [{"linkId": "heightCm", "answer": [{"valueInteger": 181}]}],
    },
    FHIR_JSON,
    params={"id": KIT},
)
# FHIR Bulk Data export (errors as OperationOutcome, as on the base); the status and file routes
# name an export nobody started, so an exporter gets past the role check to 404.
BULK_KICKOFF = Route("GET", "/fhir/$export", headers={"Prefer": "respond-async"})
BULK_STATUS = Route("GET", "/fhir/bulk-status/{jobId}")
BULK_CANCEL = Route("DELETE", "/fhir/bulk-status/{jobId}")
BULK_FILE = Route("GET", "/fhir/bulk-files/{jobId}/{fileName}")

# The callers, in the order of the table's columns. The first five carry no valid token; the
# forged ones claim to be an admin, so a 401 there proves the token, not the role, was refused.
CALLERS = (
    "anonymous",  # no Authorization header
    "expired",  # correctly signed, expired an hour ago
    "bad-signature",  # signed with another secret
    "tampered",  # a valid token whose payload was edited to add the admin role
    "alg-none",  # unsigned, header {"alg": "none"}
    "stranger",  # valid token, no relation to the kit
    "viewer",
    "editor",
    "owner",
    "admin",  # roles: ["admin"], not a member
    "auditor",  # roles: ["auditor"], not a member
    "researcher",  # roles: ["researcher"], not a member; the arranged data is in progress
)

# fmt: off
_TABLE: dict[Route, tuple[int, ...]] = {
    #                 anon expd bsig tamp none strg view edit ownr admn audt rsch
    HI_GET:          (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    HI_PUT:          (401, 401, 401, 401, 401, 404, 403, 200, 200, 200, 403, 404),
    HI_PATCH:        (401, 401, 401, 401, 401, 404, 403, 200, 200, 200, 403, 404),
    HI_SUBMIT:       (401, 401, 401, 401, 401, 404, 403, 422, 422, 422, 403, 404),
    HISTORY:         (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    HISTORY_VERSION: (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    # Claiming a kit someone else owns is 409 for everyone but the owner (contract).
    CLAIM:           (401, 401, 401, 401, 401, 409, 409, 409, 200, 409, 409, 409),
    # The arranged kit has an owner: an admin gets past access control to 409.
    CLAIM_CODES:     (401, 401, 401, 401, 401, 404, 403, 403, 403, 409, 403, 404),
    OWNER_PUT:       (401, 401, 401, 401, 401, 404, 403, 403, 403, 200, 403, 404),
    MEMBERS:         (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    MEMBER_PUT:      (401, 401, 401, 401, 401, 404, 403, 403, 201, 201, 403, 404),
    MEMBER_DELETE:   (401, 401, 401, 401, 401, 404, 403, 403, 204, 204, 403, 404),
    AUDIT_EVENTS:    (401, 401, 401, 401, 401, 404, 403, 403, 403, 200, 200, 404),
    HI_ERASE:        (401, 401, 401, 401, 401, 404, 403, 403, 204, 204, 403, 404),
    # The arranged data is in progress: an admin gets past access control to 409.
    AMEND:           (401, 401, 401, 401, 401, 404, 403, 403, 403, 409, 403, 404),
    EXPORT:          (401, 401, 401, 401, 401, 404, 403, 403, 200, 200, 403, 404),
    # Streams: the same rules as reading; a WebSocket closes with 4000 + the status.
    EVENTS:          (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    SOCKET:          (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    # Admin routes name no kit: everyone but an admin is 403 (an unknown delivery: 404).
    DELIVERIES:      (401, 401, 401, 401, 401, 403, 403, 403, 403, 200, 403, 403),
    DELIVERY_RETRY:  (401, 401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 403),
    # Not a kit route: any authenticated caller reads the questionnaire.
    QUESTIONNAIRE:   (401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200),
    QUESTIONNAIRES:  (401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200),
    Q_VERSIONS:      (401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200),
    Q_VERSION:       (401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200),
    # Publishing and retiring are for admins only.
    Q_PUBLISH:       (401, 401, 401, 401, 401, 403, 403, 403, 403, 200, 403, 403),
    Q_RETIRE:        (401, 401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 403),
    # The kit's questionnaire version: the same rules as reading its health information.
    HI_QUESTIONNAIRE: (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    # Moving a kit to another questionnaire version is a write (here: to the one it has).
    # The FHIR base: the same rules as the routes it adapts. metadata needs no token (forged
    # ones are not even looked at); a search answers every caller, with the kits they may
    # read (none, for a stranger or an auditor: tests/integration/test_fhir_api.py).
    FHIR_METADATA:   (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    FHIR_Q_READ:     (401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200),
    FHIR_Q_VREAD:    (401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200),
    FHIR_Q_SEARCH:   (401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200),
    FHIR_QR_READ:    (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    FHIR_QR_VREAD:   (401, 401, 401, 401, 401, 404, 200, 200, 200, 200, 403, 404),
    FHIR_QR_SEARCH:  (401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200),
    FHIR_QR_PUT:     (401, 401, 401, 401, 401, 404, 403, 200, 200, 200, 403, 404),
    HI_MOVE:         (401, 401, 401, 401, 401, 404, 403, 200, 200, 200, 403, 404),
    # Bulk export: admins and researchers only; an unknown export is 404 even to them.
    BULK_KICKOFF:    (401, 401, 401, 401, 401, 403, 403, 403, 403, 202, 403, 202),
    BULK_STATUS:     (401, 401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 404),
    BULK_CANCEL:     (401, 401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 404),
    BULK_FILE:       (401, 401, 401, 401, 401, 403, 403, 403, 403, 404, 403, 404),
}
# fmt: on

MATRIX: dict[Route, dict[str, int]] = {
    route: dict(zip(CALLERS, row, strict=True)) for route, row in _TABLE.items()
}

# The problem code that must accompany each refusal status (RFC 9457 body, contract table).
PROBLEM_CODES = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    409: "kit-already-claimed",
    422: "validation-failed",
}

CASES = [
    pytest.param(route, caller, status, id=f"{route.label} as {caller}")
    for route, row in MATRIX.items()
    for caller, status in row.items()
]

LEGACY_CASES = [
    pytest.param(route, caller, id=f"{route.label} as {caller}")
    for route, caller in [
        (HI_GET, "anonymous"),
        (HI_GET, "stranger"),
        (HI_GET, "viewer"),
        (HI_GET, "auditor"),
        (HI_PUT, "viewer"),
        (HI_PUT, "editor"),
        (HI_PATCH, "alg-none"),
        (HI_SUBMIT, "stranger"),
        (HISTORY_VERSION, "expired"),
        (CLAIM, "stranger"),
        (MEMBER_PUT, "editor"),
        (MEMBER_DELETE, "owner"),
        (AUDIT_EVENTS, "owner"),
        (AUDIT_EVENTS, "auditor"),
        (QUESTIONNAIRE, "bad-signature"),
        (DELIVERIES, "admin"),
        (DELIVERY_RETRY, "owner"),
        (HI_ERASE, "viewer"),
    ]
]


@dataclass(frozen=True)
class Arrangement:
    kit_id: str
    owner: str
    editor: str
    viewer: str
    spare: str  # a viewer, removed by the DELETE members case
    newcomer: str  # not yet a member, added by the PUT members case
    stranger: str
    admin: str
    auditor: str
    researcher: str


def fresh_user(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def expired_token(sub: str, roles: list[str]) -> str:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    return mint_token(TEST_SECRET.encode(), sub=sub, roles=roles, ttl_seconds=60, now=an_hour_ago)


def tampered_token(sub: str, roles: list[str]) -> str:
    header, _payload, signature = mint_token(TEST_SECRET.encode(), sub=sub).split(".")
    exp = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    return ".".join([header, b64({"sub": sub, "roles": roles, "exp": exp}), signature])


def unsigned_token(sub: str, roles: list[str]) -> str:
    exp = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': sub, 'roles': roles, 'exp': exp})}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def headers_for(caller: str, kit: Arrangement) -> dict[str, str]:
    forged = {"sub": kit.admin, "roles": ["admin"]}
    if caller == "anonymous":
        return {}
    if caller == "expired":
        return bearer(expired_token(**forged))
    if caller == "bad-signature":
        return bearer(mint_token(WRONG_SECRET, **forged))
    if caller == "tampered":
        return bearer(tampered_token(**forged))
    if caller == "alg-none":
        return bearer(unsigned_token(**forged))
    if caller == "admin":
        return auth(kit.admin, "admin")
    if caller == "auditor":
        return auth(kit.auditor, "auditor")
    if caller == "researcher":
        return auth(kit.researcher, "researcher")
    return auth(getattr(kit, caller))


def url_for(route: Route, kit: Arrangement, prefix: str = "/v1") -> str:
    target = kit.spare if route.method == "DELETE" else kit.newcomer
    params = {
        "kitId": kit.kit_id,
        "version": "1",
        "userId": target,
        "questionnaireId": "health-information",
        "id": "no-such-delivery",
        "vid": "1",
        "jobId": "0" * 32,
        "fileName": "QuestionnaireResponse.ndjson",
    } | route.params
    params = {name: kit.kit_id if value == KIT else value for name, value in params.items()}
    path = route.path.format(**params)
    return prefix + path


async def stream_status(
    app: FastAPI, route: Route, caller: str, kit: Arrangement, prefix: str = "/v1"
) -> int:
    """How a streaming route answered, as an HTTP status (a WebSocket close 4404 is 404)."""
    headers = headers_for(caller, kit)
    if route.kind == "sse":
        return await http_status(app, "GET", url_for(route, kit, prefix), headers)
    answer = await websocket_answer(app, url_for(route, kit, prefix), headers)
    return 200 if answer == "open" else int(answer) - 4000


async def call(
    client: httpx.AsyncClient, route: Route, caller: str, kit: Arrangement, prefix: str = "/v1"
) -> httpx.Response:
    headers = {**route.headers, **headers_for(caller, kit)}
    content = None
    if route.body is not None:
        headers["Content-Type"] = route.content_type
        content = json.dumps(route.body)
    return await client.request(
        route.method, url_for(route, kit, prefix), headers=headers, content=content
    )


async def arrange(client: httpx.AsyncClient) -> Arrangement:
    kit = Arrangement(
        kit_id=f"KIT-{uuid.uuid4().hex[:12]}",
        owner=fresh_user("owner"),
        editor=fresh_user("editor"),
        viewer=fresh_user("viewer"),
        spare=fresh_user("spare"),
        newcomer=fresh_user("newcomer"),
        stranger=fresh_user("stranger"),
        admin=fresh_user("admin"),
        auditor=fresh_user("auditor"),
        researcher=fresh_user("researcher"),
    )
    owner = auth(kit.owner)
    base = f"/v1/kits/{kit.kit_id}"
    saved = await client.put(
        f"{base}/health-information", json={"answers": {"heightCm": 180}}, headers=owner
    )
    assert saved.status_code == 201, saved.text
    for member, role in [(kit.editor, "editor"), (kit.viewer, "viewer"), (kit.spare, "viewer")]:
        added = await client.put(f"{base}/members/{member}", json={"role": role}, headers=owner)
        assert added.status_code == 201, added.text
    return kit


async def kit_state(client: httpx.AsyncClient, kit: Arrangement) -> tuple[Any, Any]:
    """What a refused call must leave untouched: the answers and the owner and members."""
    admin = auth(kit.admin, "admin")
    data = await client.get(f"/v1/kits/{kit.kit_id}/health-information", headers=admin)
    members = await client.get(f"/v1/kits/{kit.kit_id}/members", headers=admin)
    return data.json(), members.json()


def app_routes(app: FastAPI, prefix: str) -> set[tuple[str, str]]:
    """(method, path without prefix) of every route the app serves under ``prefix``."""
    found = set()
    for route in iter_route_contexts(app.routes):
        path = route.path
        if path is None or not path.startswith(prefix):
            continue
        for method in route.methods or {"WEBSOCKET"}:
            found.add((method, path.removeprefix(prefix.rstrip("/"))))
    return found


def matrix_routes() -> set[tuple[str, str]]:
    return {(route.method, route.path) for route in MATRIX}


async def test_matrix_covers_every_route_of_the_app(app: FastAPI) -> None:
    served = app_routes(app, "/v1/")
    assert served, "no /v1 route found: the route listing itself is broken"
    missing = sorted(served - matrix_routes())
    assert not missing, f"routes without a row in MATRIX: {missing}"


async def test_matrix_names_only_routes_the_app_serves(app: FastAPI) -> None:
    stale = sorted(matrix_routes() - app_routes(app, "/v1/"))
    assert not stale, f"MATRIX rows for routes the app does not serve: {stale}"


async def test_every_v1_route_has_a_legacy_twin(app: FastAPI) -> None:
    """The FHIR base is new in /v1: it has no unversioned twin (docs/fhir.md)."""
    legacy = app_routes(app, "/")
    versioned = {r for r in app_routes(app, "/v1/") if not r[1].startswith("/fhir/")}
    missing = sorted(route for route in versioned if route not in legacy)
    """Except the FHIR base (/v1/fhir), which FHIR clients never used unprefixed."""
    legacy = app_routes(app, "/")
    missing = sorted(
        route
        for route in app_routes(app, "/v1/")
        if route not in legacy and not route[1].startswith("/fhir/")
    )
    assert not missing, f"/v1 routes without an unversioned legacy route: {missing}"


@pytest.mark.parametrize(("route", "caller", "expected"), CASES)
async def test_route_answers_caller_as_the_matrix_says(
    app: FastAPI, client: httpx.AsyncClient, route: Route, caller: str, expected: int
) -> None:
    kit = await arrange(client)
    before = await kit_state(client, kit)
    if route.kind in ("sse", "websocket"):
        assert await stream_status(app, route, caller, kit) == expected
        assert await kit_state(client, kit) == before
        return
    response = await call(client, route, caller, kit)
    assert response.status_code == expected, response.text
    if route.code_for(expected) is not None and route.path.startswith("/fhir/"):
        assert response.headers["content-type"].startswith(FHIR_JSON)
        coding = response.json()["issue"][0]["details"]["coding"][0]
        assert coding["code"] == route.code_for(expected)
    elif route.code_for(expected) is not None:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == route.code_for(expected)
    if expected >= 400:
        assert await kit_state(client, kit) == before


@pytest.mark.parametrize(("route", "caller"), LEGACY_CASES)
async def test_legacy_route_answers_caller_as_the_matrix_says(
    client: httpx.AsyncClient, route: Route, caller: str
) -> None:
    kit = await arrange(client)
    response = await call(client, route, caller, kit, prefix="")
    expected = MATRIX[route][caller]
    assert response.status_code == expected, response.text
    if route.code_for(expected) is not None:
        assert response.json()["code"] == route.code_for(expected)
    assert response.headers["deprecation"] == DEPRECATION
    assert response.headers["link"] == f'<{url_for(route, kit)}>; rel="successor-version"'


async def test_unauthenticated_answer_asks_for_a_bearer_token(
    client: httpx.AsyncClient,
) -> None:
    kit = await arrange(client)
    response = await call(client, HI_GET, "anonymous", kit)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("caller", "reason"),
    [
        ("expired", "The token has expired."),
        ("bad-signature", "The token signature is invalid."),
        ("tampered", "The token signature is invalid."),
        ("alg-none", "The token's algorithm is not accepted."),
    ],
)
async def test_forged_token_is_refused_for_its_own_reason(
    client: httpx.AsyncClient, caller: str, reason: str
) -> None:
    kit = await arrange(client)
    response = await call(client, HI_GET, caller, kit)
    assert response.status_code == 401
    assert response.json()["detail"] == reason


async def test_stranger_gets_the_same_404_for_an_owned_and_a_missing_kit(
    client: httpx.AsyncClient,
) -> None:
    kit = await arrange(client)
    owned = await call(client, HI_GET, "stranger", kit)
    missing_kit = dataclasses.replace(kit, kit_id=f"KIT-{uuid.uuid4().hex[:12]}")
    missing = await call(client, HI_GET, "stranger", missing_kit)
    assert owned.status_code == missing.status_code == 404
    assert owned.json()["detail"].replace(kit.kit_id, "K") == missing.json()["detail"].replace(
        missing_kit.kit_id, "K"
    )


@pytest.mark.parametrize("membership", ["viewer", "editor"])
async def test_auditor_who_is_also_a_member_still_reads_audit_events(
    client: httpx.AsyncClient, membership: str
) -> None:
    kit = await arrange(client)
    added = await client.put(
        f"/v1/kits/{kit.kit_id}/members/{kit.auditor}",
        json={"role": membership},
        headers=auth(kit.owner),
    )
    assert added.status_code == 201
    response = await client.get(
        f"/v1/kits/{kit.kit_id}/audit-events", headers=auth(kit.auditor, "auditor")
    )
    assert response.status_code == 200, response.text


async def test_auditor_who_owns_a_kit_still_reads_its_audit_events(
    client: httpx.AsyncClient,
) -> None:
    kit_id = f"KIT-{uuid.uuid4().hex[:12]}"
    auditor = auth(fresh_user("auditor"), "auditor")
    claimed = await client.post(f"/v1/kits/{kit_id}/claim", headers=auditor)
    assert claimed.status_code == 201
    response = await client.get(f"/v1/kits/{kit_id}/audit-events", headers=auditor)
    assert response.status_code == 200, response.text


# -- the researcher on a submitted kit ------------------------------------------------------
# The matrix's kit is in progress, which a researcher cannot see at all. Once submitted, a
# researcher reads it (data, history, the stream) and nothing else: no write, no members, no
# audit trail, no per-kit export.
RESEARCHER_ON_SUBMITTED: dict[Route, int] = {
    HI_GET: 200,
    HI_QUESTIONNAIRE: 200,
    HISTORY: 200,
    EVENTS: 200,
    SOCKET: 200,
    HI_PUT: 403,
    HI_PATCH: 403,
    HI_SUBMIT: 403,
    AMEND: 403,
    HI_MOVE: 403,
    HI_ERASE: 403,
    MEMBERS: 403,
    MEMBER_PUT: 403,
    MEMBER_DELETE: 403,
    AUDIT_EVENTS: 403,
    EXPORT: 403,
    CLAIM_CODES: 403,
    OWNER_PUT: 403,
}


async def arrange_submitted(client: httpx.AsyncClient) -> Arrangement:
    """The matrix's arrangement, then complete answers submitted: version 1 is the draft,
    the submitted data is the newest version."""
    from tests.support.answers import COMPLETE

    kit = await arrange(client)
    owner = auth(kit.owner)
    base = f"/v1/kits/{kit.kit_id}/health-information"
    saved = await client.put(base, json={"answers": COMPLETE}, headers=owner)
    assert saved.status_code == 200, saved.text
    submitted = await client.post(f"{base}/submit", headers=owner)
    assert submitted.status_code == 200, submitted.text
    return kit


@pytest.mark.parametrize(
    ("route", "expected"),
    [pytest.param(r, s, id=r.label) for r, s in RESEARCHER_ON_SUBMITTED.items()],
)
async def test_researcher_reads_a_submitted_kit_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, route: Route, expected: int
) -> None:
    kit = await arrange_submitted(client)
    before = await kit_state(client, kit)
    if route.kind in ("sse", "websocket"):
        assert await stream_status(app, route, "researcher", kit) == expected
    else:
        response = await call(client, route, "researcher", kit)
        assert response.status_code == expected, response.text
    assert await kit_state(client, kit) == before


async def test_researcher_cannot_read_a_submitted_kits_earlier_draft(
    client: httpx.AsyncClient,
) -> None:
    kit = await arrange_submitted(client)
    researcher = auth(kit.researcher, "researcher")
    history = f"/v1/kits/{kit.kit_id}/health-information/history"
    assert (await client.get(f"{history}/1", headers=researcher)).status_code == 404
    current = await client.get(f"/v1/kits/{kit.kit_id}/health-information", headers=researcher)
    version = current.json()["version"]
    assert (await client.get(f"{history}/{version}", headers=researcher)).status_code == 200
