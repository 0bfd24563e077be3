"""Control characters in identifiers and header values: a 422 (401 for a token), never a 500.

PostgreSQL refuses NUL in text, so an identifier that reached SQL with one was a 500 there;
the other control characters are never part of an id. Every identifier a client sends is
checked before it reaches SQL, on both backends: path segments (member and delivery ids,
questionnaire ids), query cursors, ``Idempotency-Key`` and the token's ``sub``.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.support.tokens import auth, token

BAD = pytest.mark.parametrize("bad", ["a\x00b", "a\x1fb", "a\r\nb", "a\x7fb"], ids=repr)
ADMIN = auth("admin-1", "admin")


def members(kit_id: str, user_id: str) -> str:
    return f"/v1/kits/{kit_id}/members/{quote(user_id, safe='')}"


async def owned(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information", json={"answers": {}}, headers=auth(user)
    )
    assert response.status_code == 201


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


@BAD
async def test_a_member_id_with_control_characters_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, bad: str
) -> None:
    await owned(client, kit_id, user)
    put = await client.put(members(kit_id, bad), json={"role": "editor"}, headers=auth(user))
    assert_problem(put, 422, "validation-failed")
    assert_problem(
        await client.delete(members(kit_id, bad), headers=auth(user)), 422, "validation-failed"
    )


@BAD
async def test_a_delivery_id_with_control_characters_is_422(
    client: httpx.AsyncClient, bad: str
) -> None:
    response = await client.post(f"/v1/admin/deliveries/{quote(bad, safe='')}/retry", headers=ADMIN)
    assert_problem(response, 422, "validation-failed")


@BAD
async def test_a_questionnaire_id_with_control_characters_is_422(
    client: httpx.AsyncClient, user: str, bad: str
) -> None:
    response = await client.get(f"/v1/questionnaires/{quote(bad, safe='')}", headers=auth(user))
    assert_problem(response, 422, "validation-failed")


@BAD
@pytest.mark.parametrize(
    "route", ["/health-information/history", "/audit-events", "/members"], ids=str
)
async def test_a_cursor_with_control_characters_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, bad: str, route: str
) -> None:
    await owned(client, kit_id, user)
    cursor = "djE6MTA" + bad.strip("ab")  # a cursor this API returned, then the character
    response = await client.get(
        f"/v1/kits/{kit_id}{route}", params={"cursor": cursor}, headers=ADMIN
    )
    assert_problem(response, 422, "validation-failed")


@BAD
async def test_an_idempotency_key_with_control_characters_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, bad: str
) -> None:
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {}},
        headers={**auth(user), "Idempotency-Key": bad},
    )
    assert_problem(response, 422, "validation-failed")
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


@BAD
async def test_a_token_whose_sub_has_control_characters_is_401(
    client: httpx.AsyncClient, kit_id: str, bad: str
) -> None:
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {}},
        headers={"Authorization": f"Bearer {token(bad)}"},
    )
    assert_problem(response, 401, "unauthenticated")


@BAD
async def test_a_stream_token_whose_sub_has_control_characters_is_401(
    client: httpx.AsyncClient, kit_id: str, bad: str
) -> None:
    response = await client.get(
        f"/v1/kits/{kit_id}/health-information/events", params={"access_token": token(bad)}
    )
    assert_problem(response, 401, "unauthenticated")


@BAD
async def test_a_request_id_with_control_characters_is_replaced_not_echoed(
    client: httpx.AsyncClient, kit_id: str, user: str, bad: str
) -> None:
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {}},
        headers={**auth(user), "X-Request-ID": bad},
    )
    assert response.status_code == 201
    assert response.headers["x-request-id"] != bad
    assert response.headers["x-request-id"].isprintable()


@BAD
async def test_a_user_agent_with_control_characters_is_audited_without_them(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str, bad: str
) -> None:
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {}},
        headers={**auth(user), "User-Agent": bad},
    )
    assert response.status_code == 201
    async with app.state.services.uows.read() as uow:
        agents = set(
            await uow.session.scalars(
                text("SELECT user_agent FROM audit_events WHERE kit_id = :k"), {"k": kit_id}
            )
        )
    assert agents == {"ab"}
