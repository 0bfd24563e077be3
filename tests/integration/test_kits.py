"""Claiming kits and managing their members over REST, with auto-claim on and off."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
async def manual_claim_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """A second app on the same database, with auto-claim turned off."""
    application = create_app(make_settings(auto_claim=False))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def manual_client(manual_claim_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(manual_claim_app) as http:
        yield http


def new_kit() -> str:
    return f"KIT-{uuid.uuid4().hex[:12]}"


def new_user(role: str = "user") -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def data_url(kit_id: str) -> str:
    return f"/v1/kits/{kit_id}/health-information"


def member_url(kit_id: str, user_id: str) -> str:
    return f"/v1/kits/{kit_id}/members/{user_id}"


async def claim(client: httpx.AsyncClient, kit_id: str, user: str) -> httpx.Response:
    return await client.post(f"/v1/kits/{kit_id}/claim", headers=auth(user))


async def put_answers(
    client: httpx.AsyncClient, kit_id: str, user: str, answers: dict[str, Any], *roles: str
) -> httpx.Response:
    return await client.put(data_url(kit_id), json={"answers": answers}, headers=auth(user, *roles))


async def read(client: httpx.AsyncClient, kit_id: str, user: str) -> httpx.Response:
    return await client.get(data_url(kit_id), headers=auth(user))


async def put_member(
    client: httpx.AsyncClient, kit_id: str, by: str, user_id: str, role: str, *roles: str
) -> httpx.Response:
    return await client.put(
        member_url(kit_id, user_id), json={"role": role}, headers=auth(by, *roles)
    )


async def delete_member(
    client: httpx.AsyncClient, kit_id: str, by: str, user_id: str, *roles: str
) -> httpx.Response:
    return await client.delete(member_url(kit_id, user_id), headers=auth(by, *roles))


async def members(
    client: httpx.AsyncClient, kit_id: str, user: str, query: str = ""
) -> dict[str, Any]:
    response = await client.get(f"/v1/kits/{kit_id}/members{query}", headers=auth(user))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def roles_of(client: httpx.AsyncClient, kit_id: str) -> list[tuple[str, str]]:
    """(userId, role) of everyone on the kit, as an admin sees it."""
    response = await client.get(f"/v1/kits/{kit_id}/members", headers=auth("ops", "admin"))
    assert response.status_code == 200, response.text
    return [(m["userId"], m["role"]) for m in response.json()["items"]]


async def owned_kit(client: httpx.AsyncClient) -> tuple[str, str]:
    kit_id, owner = new_kit(), new_user("owner")
    assert (await claim(client, kit_id, owner)).status_code == 201
    return kit_id, owner


# -- claim --------------------------------------------------------------------------------


async def test_first_claim_is_201_and_makes_the_caller_owner(client: httpx.AsyncClient) -> None:
    kit_id, user = new_kit(), new_user()
    response = await claim(client, kit_id, user)
    assert response.status_code == 201
    body = response.json()
    assert body["kitId"] == kit_id
    assert body["ownerId"] == user
    assert body["claimedAt"].endswith("Z")
    assert await roles_of(client, kit_id) == [(user, "owner")]


async def test_claim_again_by_the_owner_is_200_with_the_same_claim(
    client: httpx.AsyncClient,
) -> None:
    kit_id, user = new_kit(), new_user()
    first = await claim(client, kit_id, user)
    again = await claim(client, kit_id, user)
    assert again.status_code == 200
    assert again.json() == first.json()


async def test_claim_by_another_user_is_409_and_keeps_the_owner(
    client: httpx.AsyncClient,
) -> None:
    kit_id, owner = await owned_kit(client)
    response = await claim(client, kit_id, new_user("other"))
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "kit-already-claimed"
    assert await roles_of(client, kit_id) == [(owner, "owner")]


async def test_claim_of_a_kit_with_an_invalid_id_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/kits/-bad!id/claim", headers=auth(new_user()))
    assert response.status_code == 422
    assert response.json()["code"] == "validation-failed"


# -- auto-claim (on by default) -----------------------------------------------------------


async def test_first_write_makes_the_writer_the_owner(client: httpx.AsyncClient) -> None:
    kit_id, writer = new_kit(), new_user("writer")
    assert (await put_answers(client, kit_id, writer, {"heightCm": 180})).status_code == 201
    assert await roles_of(client, kit_id) == [(writer, "owner")]
    assert (await claim(client, kit_id, writer)).status_code == 200


@pytest.mark.parametrize("attempt", ["read", "write", "claim"])
async def test_after_auto_claim_another_user_cannot_take_the_kit(
    client: httpx.AsyncClient, attempt: str
) -> None:
    kit_id, writer, other = new_kit(), new_user("writer"), new_user("other")
    await put_answers(client, kit_id, writer, {"heightCm": 180})
    if attempt == "read":
        response = await read(client, kit_id, other)
        expected = 404
    elif attempt == "write":
        response = await put_answers(client, kit_id, other, {"heightCm": 150})
        expected = 404
    else:
        response = await claim(client, kit_id, other)
        expected = 409
    assert response.status_code == expected
    assert (await read(client, kit_id, writer)).json()["answers"] == {"heightCm": 180}
    assert await roles_of(client, kit_id) == [(writer, "owner")]


async def test_refused_first_write_does_not_claim_the_kit(client: httpx.AsyncClient) -> None:
    kit_id, writer = new_kit(), new_user("writer")
    assert (await put_answers(client, kit_id, writer, {"heightCm": 999})).status_code == 422
    assert (await claim(client, kit_id, new_user("other"))).status_code == 201


async def test_admin_write_does_not_claim_the_kit(client: httpx.AsyncClient) -> None:
    kit_id, admin, user = new_kit(), new_user("admin"), new_user()
    # An admin adding a member to a kit nobody claimed yet records the kit, unclaimed.
    assert (
        await put_member(client, kit_id, admin, new_user(), "viewer", "admin")
    ).status_code == 201
    response = await put_answers(client, kit_id, admin, {"heightCm": 180}, "admin")
    assert response.status_code == 201
    # Now it holds answers: naming it claims nothing (tests/integration/test_claiming.py);
    # the admin's claim code does.
    assert (await claim(client, kit_id, user)).status_code == 404
    issued = await client.post(f"/v1/kits/{kit_id}/claim-codes", headers=auth(admin, "admin"))
    claimed = await client.post(
        f"/v1/kits/{kit_id}/claim",
        json={"claimCode": issued.json()["claimCode"]},
        headers=auth(user),
    )
    assert claimed.status_code == 201
    assert (await read(client, kit_id, user)).json()["answers"] == {"heightCm": 180}


async def test_admin_first_write_to_a_kit_never_seen_before_is_201(
    client: httpx.AsyncClient,
) -> None:
    kit_id, admin = new_kit(), new_user("admin")
    response = await put_answers(client, kit_id, admin, {"heightCm": 180}, "admin")
    assert response.status_code == 201, response.text
    assert response.json()["updatedBy"] == admin


# -- members ------------------------------------------------------------------------------


async def test_adding_a_member_is_201_with_the_member(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    member = new_user("member")
    response = await put_member(client, kit_id, owner, member, "editor")
    assert response.status_code == 201
    body = response.json()
    assert body["userId"] == member
    assert body["role"] == "editor"
    assert body["addedBy"] == owner
    assert body["addedAt"].endswith("Z")


async def test_changing_a_members_role_is_200(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    member = new_user("member")
    await put_member(client, kit_id, owner, member, "editor")
    response = await put_member(client, kit_id, owner, member, "viewer")
    assert response.status_code == 200
    assert response.json()["role"] == "viewer"
    assert (member, "viewer") in await roles_of(client, kit_id)


async def test_removing_a_member_is_204_and_drops_them_from_the_list(
    client: httpx.AsyncClient,
) -> None:
    kit_id, owner = await owned_kit(client)
    member = new_user("member")
    await put_member(client, kit_id, owner, member, "viewer")
    response = await delete_member(client, kit_id, owner, member)
    assert response.status_code == 204
    assert response.content == b""
    assert await roles_of(client, kit_id) == [(owner, "owner")]


async def test_removing_someone_who_is_not_a_member_is_404(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    response = await delete_member(client, kit_id, owner, new_user("nobody"))
    assert response.status_code == 404
    assert response.json()["code"] == "not-found"


async def test_removing_a_member_twice_is_404_the_second_time(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    member = new_user("member")
    await put_member(client, kit_id, owner, member, "viewer")
    assert (await delete_member(client, kit_id, owner, member)).status_code == 204
    assert (await delete_member(client, kit_id, owner, member)).status_code == 404


@pytest.mark.parametrize("role", ["owner", "admin", "auditor", "EDITOR", ""])
async def test_member_role_must_be_editor_or_viewer(client: httpx.AsyncClient, role: str) -> None:
    kit_id, owner = await owned_kit(client)
    member = new_user("member")
    response = await put_member(client, kit_id, owner, member, role)
    assert response.status_code == 422
    assert response.json()["code"] == "validation-failed"
    assert await roles_of(client, kit_id) == [(owner, "owner")]


@pytest.mark.parametrize("by", ["owner", "admin"])
@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_owners_role_cannot_be_changed(client: httpx.AsyncClient, by: str, role: str) -> None:
    kit_id, owner = await owned_kit(client)
    caller = (owner,) if by == "owner" else (new_user("admin"), "admin")
    response = await put_member(client, kit_id, caller[0], owner, role, *caller[1:])
    assert response.status_code == 422
    assert response.json()["code"] == "validation-failed"
    assert await roles_of(client, kit_id) == [(owner, "owner")]


@pytest.mark.parametrize("by", ["owner", "admin"])
async def test_owner_cannot_be_removed(client: httpx.AsyncClient, by: str) -> None:
    kit_id, owner = await owned_kit(client)
    caller = (owner,) if by == "owner" else (new_user("admin"), "admin")
    response = await delete_member(client, kit_id, caller[0], owner, *caller[1:])
    assert response.status_code == 422
    assert response.json()["code"] == "validation-failed"
    assert await roles_of(client, kit_id) == [(owner, "owner")]
    assert (await claim(client, kit_id, owner)).status_code == 200


async def test_members_list_has_the_owner_first_then_the_members(
    client: httpx.AsyncClient,
) -> None:
    kit_id, owner = await owned_kit(client)
    added = [("zz-" + new_user(), "viewer"), ("aa-" + new_user(), "editor")]
    for member, role in added:
        await put_member(client, kit_id, owner, member, role)
    page = await members(client, kit_id, owner)
    items = page["items"]
    assert items[0]["userId"] == owner
    assert items[0]["role"] == "owner"
    assert sorted((m["userId"], m["role"]) for m in items[1:]) == sorted(added)
    assert page["nextCursor"] is None


async def test_member_who_claims_the_kit_is_listed_once_as_owner(
    client: httpx.AsyncClient,
) -> None:
    kit_id, member = new_kit(), new_user("member")
    # An admin may add members to a kit nobody claimed yet; one of them then claims it.
    assert (await put_member(client, kit_id, "ops", member, "editor", "admin")).status_code == 201
    assert (await claim(client, kit_id, member)).status_code == 201
    assert await roles_of(client, kit_id) == [(member, "owner")]


async def test_members_list_pages_with_limit_and_cursor(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    for _ in range(2):
        await put_member(client, kit_id, owner, new_user("member"), "viewer")
    everyone = [m["userId"] for m in (await members(client, kit_id, owner))["items"]]
    first = await members(client, kit_id, owner, "?limit=2")
    second = await members(client, kit_id, owner, f"?limit=2&cursor={first['nextCursor']}")
    assert first["nextCursor"] is not None
    assert second["nextCursor"] is None
    assert [m["userId"] for m in first["items"] + second["items"]] == everyone
    assert len(everyone) == 3


async def test_admin_manages_members_of_a_kit_it_does_not_own(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    admin, member = new_user("admin"), new_user("member")
    assert (await put_member(client, kit_id, admin, member, "viewer", "admin")).status_code == 201
    assert await roles_of(client, kit_id) == [(owner, "owner"), (member, "viewer")]
    assert (await delete_member(client, kit_id, admin, member, "admin")).status_code == 204
    assert await roles_of(client, kit_id) == [(owner, "owner")]


# -- what a membership allows -------------------------------------------------------------


async def test_added_editor_can_write_and_submit(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    editor = new_user("editor")
    await put_member(client, kit_id, owner, editor, "editor")
    written = await put_answers(client, kit_id, editor, COMPLETE)
    assert written.status_code == 201
    assert written.json()["updatedBy"] == editor
    submitted = await client.post(f"{data_url(kit_id)}/submit", headers=auth(editor))
    assert submitted.status_code == 200
    assert await roles_of(client, kit_id) == [(owner, "owner"), (editor, "editor")]


async def test_added_viewer_can_read(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    viewer = new_user("viewer")
    await put_answers(client, kit_id, owner, {"heightCm": 180})
    await put_member(client, kit_id, owner, viewer, "viewer")
    response = await read(client, kit_id, viewer)
    assert response.status_code == 200
    assert response.json()["answers"] == {"heightCm": 180}


async def test_added_viewer_cannot_write(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    viewer = new_user("viewer")
    await put_answers(client, kit_id, owner, {"heightCm": 180})
    await put_member(client, kit_id, owner, viewer, "viewer")
    response = await put_answers(client, kit_id, viewer, {"heightCm": 150})
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert (await read(client, kit_id, owner)).json()["answers"] == {"heightCm": 180}


async def test_editor_demoted_to_viewer_can_no_longer_write(client: httpx.AsyncClient) -> None:
    kit_id, owner = await owned_kit(client)
    member = new_user("member")
    await put_member(client, kit_id, owner, member, "editor")
    assert (await put_answers(client, kit_id, member, {"heightCm": 180})).status_code == 201
    await put_member(client, kit_id, owner, member, "viewer")
    assert (await put_answers(client, kit_id, member, {"heightCm": 150})).status_code == 403


@pytest.mark.parametrize("attempt", ["read", "write", "members"])
async def test_removed_member_gets_404(client: httpx.AsyncClient, attempt: str) -> None:
    kit_id, owner = await owned_kit(client)
    member = new_user("member")
    await put_answers(client, kit_id, owner, {"heightCm": 180})
    await put_member(client, kit_id, owner, member, "editor")
    assert (await read(client, kit_id, member)).status_code == 200
    await delete_member(client, kit_id, owner, member)
    if attempt == "read":
        response = await read(client, kit_id, member)
    elif attempt == "write":
        response = await put_answers(client, kit_id, member, {"heightCm": 150})
    else:
        response = await client.get(f"/v1/kits/{kit_id}/members", headers=auth(member))
    assert response.status_code == 404
    assert response.json()["code"] == "not-found"
    assert (await read(client, kit_id, owner)).json()["answers"] == {"heightCm": 180}


# -- auto-claim turned off ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_without_auto_claim_first_write_to_an_unclaimed_kit_is_404(
    manual_client: httpx.AsyncClient, method: str
) -> None:
    kit_id, user = new_kit(), new_user()
    response = await manual_client.request(
        method, data_url(kit_id), json={"answers": {"heightCm": 180}}, headers=auth(user)
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not-found"


async def test_without_auto_claim_a_refused_write_leaves_the_kit_unclaimed(
    manual_client: httpx.AsyncClient,
) -> None:
    kit_id, writer, other = new_kit(), new_user("writer"), new_user("other")
    await put_answers(manual_client, kit_id, writer, {"heightCm": 180})
    assert (await claim(manual_client, kit_id, other)).status_code == 201
    assert (await read(manual_client, kit_id, other)).status_code == 404  # nothing saved


async def test_without_auto_claim_write_works_after_an_explicit_claim(
    manual_client: httpx.AsyncClient,
) -> None:
    kit_id, user = new_kit(), new_user()
    assert (await claim(manual_client, kit_id, user)).status_code == 201
    response = await put_answers(manual_client, kit_id, user, {"heightCm": 180})
    assert response.status_code == 201
    assert response.json()["updatedBy"] == user


async def test_without_auto_claim_admin_writes_to_an_unclaimed_kit(
    manual_client: httpx.AsyncClient,
) -> None:
    kit_id, admin = new_kit(), new_user("admin")
    response = await put_answers(manual_client, kit_id, admin, {"heightCm": 180}, "admin")
    assert response.status_code == 201
