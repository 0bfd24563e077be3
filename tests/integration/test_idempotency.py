"""Idempotency-Key: the same request twice is performed once, as the contract says."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from healthinfo.common.clock import utc_now
from healthinfo.health_information.codec import JsonAnswerCodec
from healthinfo.idempotency.store import IdempotencyStore
from tests.support.tokens import auth


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


def headers(user: str, key: str, **extra: str) -> dict[str, str]:
    return {**auth(user), "Idempotency-Key": key, **extra}


async def versions(client: httpx.AsyncClient, kit_id: str, user: str) -> list[int]:
    page = (await client.get(url(kit_id, "/history"), headers=auth(user))).json()
    return [item["version"] for item in page["items"]]


async def test_the_same_request_twice_is_performed_once_and_replayed(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = {"answers": {"heightCm": 170}}
    first = await client.patch(url(kit_id), json=body, headers=headers(user, "k-1"))
    await client.patch(url(kit_id), json={"answers": {"weightKg": 60}}, headers=auth(user))
    second = await client.patch(url(kit_id), json=body, headers=headers(user, "k-1"))
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await versions(client, kit_id, user) == [2, 1]


async def test_a_replayed_first_save_is_201_again(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = {"answers": {"heightCm": 170}}
    first = await client.put(url(kit_id), json=body, headers=headers(user, "k-put"))
    second = await client.put(url(kit_id), json=body, headers=headers(user, "k-put"))
    assert (first.status_code, second.status_code) == (201, 201)


async def test_the_same_key_with_a_different_request_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.patch(
        url(kit_id), json={"answers": {"heightCm": 170}}, headers=headers(user, "k-2")
    )
    response = await client.patch(
        url(kit_id), json={"answers": {"heightCm": 171}}, headers=headers(user, "k-2")
    )
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency-key-reused"
    assert (await client.get(url(kit_id), headers=auth(user))).json()["answers"] == {
        "heightCm": 170
    }


async def test_a_different_precondition_is_a_different_request(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
    body = {"answers": {"heightCm": 171}}
    await client.patch(url(kit_id), json=body, headers=headers(user, "k-3", **{"If-Match": '"1"'}))
    response = await client.patch(
        url(kit_id), json=body, headers=headers(user, "k-3", **{"If-Match": '"2"'})
    )
    assert response.json()["code"] == "idempotency-key-reused"


async def test_a_key_still_being_processed_is_409(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = {"answers": {"heightCm": 170}}
    request = client.build_request("PATCH", url(kit_id), json=body, headers=headers(user, "k-4"))
    from starlette.requests import Request

    from healthinfo.api.idempotent import fingerprint

    scope = {
        "type": "http",
        "method": "PATCH",
        "path": url(kit_id),
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": request.content, "more_body": False}

    store: IdempotencyStore = app.state.services.idempotency
    assert (
        await store.begin(user, "k-4", await fingerprint(Request(scope, receive)), kit_id=kit_id)
        is None
    )
    response = await client.send(request)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency-key-in-use"
    assert (await client.get(url(kit_id), headers=auth(user))).status_code == 404


async def test_concurrent_duplicates_write_once(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {}}, headers=auth(user))
    body = {"answers": {"heightCm": 170}}
    responses = await asyncio.gather(
        *(client.patch(url(kit_id), json=body, headers=headers(user, "k-5")) for _ in range(8))
    )
    assert {r.status_code for r in responses} <= {200, 409}
    assert any(r.status_code == 200 for r in responses)
    assert await versions(client, kit_id, user) == [2, 1]


async def test_a_refusal_is_replayed_too(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    body = {"answers": {"heightCm": 999}}
    first = await client.patch(url(kit_id), json=body, headers=headers(user, "k-6"))
    second = await client.patch(url(kit_id), json=body, headers=headers(user, "k-6"))
    assert first.status_code == second.status_code == 422
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["errors"] == first.json()["errors"]


async def test_keys_are_scoped_to_the_user(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {}}, headers=auth(user))
    await client.put(
        f"/v1/kits/{kit_id}/members/carer", json={"role": "editor"}, headers=auth(user)
    )
    await client.patch(
        url(kit_id), json={"answers": {"heightCm": 170}}, headers=headers(user, "shared")
    )
    other = await client.patch(
        url(kit_id), json={"answers": {"weightKg": 70}}, headers=headers("carer", "shared")
    )
    assert other.status_code == 200
    assert "idempotent-replayed" not in other.headers


async def test_an_overlong_key_is_422(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    response = await client.put(url(kit_id), json={"answers": {}}, headers=headers(user, "k" * 256))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_the_response_is_stored_with_the_write(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=headers(user, "k-7"))
    async with app.state.services.uows.read() as uow:
        row = (
            await uow.session.execute(
                text(
                    "SELECT state, response_status FROM idempotency_keys"
                    " WHERE user_id = :u AND key = :k"
                ),
                {"u": user, "k": "k-7"},
            )
        ).one()
    assert tuple(row) == ("done", 201)


async def test_submit_claim_and_member_routes_honour_keys(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    claim = [
        await client.post(f"/v1/kits/{kit_id}/claim", headers=headers(user, "c")) for _ in range(2)
    ]
    assert [r.status_code for r in claim] == [201, 201]
    assert claim[1].headers["idempotent-replayed"] == "true"
    member = [
        await client.put(
            f"/v1/kits/{kit_id}/members/m", json={"role": "viewer"}, headers=headers(user, "m")
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in member] == [201, 201]


async def test_an_expired_key_can_be_used_again(app: FastAPI, user: str) -> None:
    services = app.state.services
    now = utc_now()
    clock_times = [now, now + timedelta(hours=25)]
    store = IdempotencyStore(
        uows=services.uows, codec=JsonAnswerCodec(), clock=lambda: clock_times[0]
    )
    assert await store.begin(user, "k-old", "a" * 64, kit_id="K") is None
    clock_times[0] = clock_times[1]
    assert await store.begin(user, "k-old", "b" * 64, kit_id="K") is None


async def test_a_crashed_request_releases_its_key_after_the_lease(app: FastAPI, user: str) -> None:
    services = app.state.services
    moments = [utc_now()]
    store = IdempotencyStore(
        uows=services.uows,
        codec=JsonAnswerCodec(),
        lease=timedelta(seconds=30),
        clock=lambda: moments[0],
    )
    assert await store.begin(user, "k-crash", "f" * 64, kit_id="K") is None
    moments[0] = moments[0] + timedelta(seconds=31)
    assert await store.begin(user, "k-crash", "f" * 64, kit_id="K") is None


async def test_expired_keys_are_purged(app: FastAPI, user: str) -> None:
    services = app.state.services
    moments = [utc_now()]
    store = IdempotencyStore(uows=services.uows, codec=JsonAnswerCodec(), clock=lambda: moments[0])
    await store.begin(user, "k-purge", "c" * 64, kit_id="K")
    moments[0] = moments[0] + timedelta(hours=25)
    assert await store.purge_expired() >= 1


async def test_a_replay_after_losing_access_is_404_not_the_stored_response(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    carer = f"carer-{kit_id}"
    await client.put(url(kit_id), json={"answers": {}}, headers=auth(user))
    await client.put(
        f"/v1/kits/{kit_id}/members/{carer}", json={"role": "editor"}, headers=auth(user)
    )
    body = {"answers": {"heightCm": 170}}
    first = await client.patch(url(kit_id), json=body, headers=headers(carer, "k-gone"))
    assert first.status_code == 200
    await client.delete(f"/v1/kits/{kit_id}/members/{carer}", headers=auth(user))
    replay = await client.patch(url(kit_id), json=body, headers=headers(carer, "k-gone"))
    assert replay.status_code == 404
    assert replay.json()["code"] == "not-found"
    assert "heightCm" not in replay.text
