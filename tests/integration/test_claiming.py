"""Claiming an ownerless kit that already holds answers takes a claim code or an admin.

Naming a kit id was enough to own it (and read its answers) when an admin or the legacy
import had written them. Kits without answers keep the contract's "first write claims it".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.support.tokens import auth

ADMIN = auth("admin-1", "admin")


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}{suffix}"


async def written_by_an_admin(client: httpx.AsyncClient, kit_id: str) -> None:
    response = await client.put(
        url(kit_id, "/health-information"), json={"answers": {"heightCm": 171}}, headers=ADMIN
    )
    assert response.status_code == 201


async def claim_code(client: httpx.AsyncClient, kit_id: str) -> str:
    response = await client.post(url(kit_id, "/claim-codes"), headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kitId"] == kit_id
    assert datetime.fromisoformat(body["expiresAt"]) > datetime.now(UTC) + timedelta(days=1)
    return str(body["claimCode"])


async def claim(client: httpx.AsyncClient, kit_id: str, user: str, code: str) -> httpx.Response:
    return await client.post(url(kit_id, "/claim"), json={"claimCode": code}, headers=auth(user))


async def test_an_ownerless_kit_holding_answers_cannot_be_claimed_by_naming_it(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    response = await client.post(url(kit_id, "/claim"), headers=auth(user))
    assert response.status_code == 404
    assert response.json()["code"] == "not-found"
    read = await client.get(url(kit_id, "/health-information"), headers=auth(user))
    assert read.status_code == 404


async def test_a_first_write_does_not_auto_claim_an_ownerless_kit_holding_answers(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    write = await client.patch(
        url(kit_id, "/health-information"),
        json={"answers": {"weightKg": 60}},
        headers=auth(user),
    )
    assert write.status_code == 404
    members = (await client.get(url(kit_id, "/members"), headers=ADMIN)).json()["items"]
    assert members == []
    answers = (await client.get(url(kit_id, "/health-information"), headers=ADMIN)).json()
    assert answers["answers"] == {"heightCm": 171}


async def test_a_kit_without_answers_is_still_claimed_by_naming_it(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    assert (await client.post(url(kit_id, "/claim"), headers=auth(user))).status_code == 201
    assert (await client.post(url(kit_id, "/claim"), headers=auth(user))).status_code == 200
    other = await client.post(url(kit_id, "/claim"), headers=auth("someone-else"))
    assert other.status_code == 409


async def test_the_claim_code_claims_the_kit_and_its_answers(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    code = await claim_code(client, kit_id)
    response = await claim(client, kit_id, user, code)
    assert response.status_code == 201
    assert response.json()["ownerId"] == user
    read = await client.get(url(kit_id, "/health-information"), headers=auth(user))
    assert read.json()["answers"] == {"heightCm": 171}


async def test_a_claim_code_works_once(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    code = await claim_code(client, kit_id)
    assert (await claim(client, kit_id, user, code)).status_code == 201
    # The admin gives the kit back to nobody's hands: the used code does not claim it again.
    async with app.state.services.uows.write() as uow:
        await uow.session.execute(
            text("UPDATE kits SET owner_id = NULL WHERE kit_id = :k"), {"k": kit_id}
        )
    assert (await claim(client, kit_id, "someone-else", code)).status_code == 404


async def test_a_wrong_code_is_404(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await written_by_an_admin(client, kit_id)
    await claim_code(client, kit_id)
    response = await claim(client, kit_id, user, "not-the-code")
    assert response.status_code == 404
    assert response.json()["code"] == "not-found"


async def test_a_code_of_another_kit_is_404(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    await written_by_an_admin(client, kit_id + "-2")
    other = await claim_code(client, kit_id + "-2")
    assert (await claim(client, kit_id, user, other)).status_code == 404


async def test_an_expired_code_is_404(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    code = await claim_code(client, kit_id)
    async with app.state.services.uows.write() as uow:
        await uow.session.execute(
            text("UPDATE kit_claim_codes SET expires_at = :t WHERE kit_id = :k"),
            {"t": datetime.now(UTC) - timedelta(seconds=1), "k": kit_id},
        )
    assert (await claim(client, kit_id, user, code)).status_code == 404


async def test_a_new_code_replaces_the_previous_one(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    first = await claim_code(client, kit_id)
    second = await claim_code(client, kit_id)
    assert (await claim(client, kit_id, user, first)).status_code == 404
    assert (await claim(client, kit_id, user, second)).status_code == 201


async def test_only_a_hash_of_the_code_is_stored_and_the_audit_never_holds_it(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str
) -> None:
    await written_by_an_admin(client, kit_id)
    code = await claim_code(client, kit_id)
    async with app.state.services.uows.read() as uow:
        stored = (
            await uow.session.execute(
                text("SELECT * FROM kit_claim_codes WHERE kit_id = :k"), {"k": kit_id}
            )
        ).all()
        audit = (
            await uow.session.execute(
                text("SELECT * FROM audit_events WHERE kit_id = :k"), {"k": kit_id}
            )
        ).all()
    assert len(stored) == 1
    assert code not in repr(stored)
    assert code not in repr(audit)
    assert "kit.claim-code.issue" in repr(audit)


async def test_a_claim_code_for_a_kit_with_an_owner_is_409(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.post(url(kit_id, "/claim"), headers=auth(user))
    response = await client.post(url(kit_id, "/claim-codes"), headers=ADMIN)
    assert response.status_code == 409
    assert response.json()["code"] == "kit-already-claimed"


async def test_an_admin_sets_the_owner_of_an_ownerless_kit_and_it_is_audited(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    response = await client.put(url(kit_id, "/owner"), json={"userId": user}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["ownerId"] == user
    read = await client.get(url(kit_id, "/health-information"), headers=auth(user))
    assert read.status_code == 200
    events = (await client.get(url(kit_id, "/audit-events"), headers=ADMIN)).json()["items"]
    [owner_put] = [e for e in events if e["action"] == "kit.owner.put"]
    assert (owner_put["actor"], owner_put["changed"]) == ("admin-1", [user])


async def test_setting_the_owner_ends_the_claim_code(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    code = await claim_code(client, kit_id)
    await client.put(url(kit_id, "/owner"), json={"userId": user}, headers=ADMIN)
    assert (await claim(client, kit_id, "someone-else", code)).status_code == 409


async def test_only_admins_set_owners_and_hand_out_codes(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.post(url(kit_id, "/claim"), headers=auth(user))
    put = await client.put(url(kit_id, "/owner"), json={"userId": "x"}, headers=auth(user))
    assert put.status_code == 403
    assert (await client.post(url(kit_id, "/claim-codes"), headers=auth(user))).status_code == 403
    stranger = await client.post(url(kit_id, "/claim-codes"), headers=auth("stranger"))
    assert stranger.status_code == 404


async def test_an_owner_id_with_control_characters_is_422(
    client: httpx.AsyncClient, kit_id: str
) -> None:
    response = await client.put(url(kit_id, "/owner"), json={"userId": "a\x00b"}, headers=ADMIN)
    assert response.status_code == 422


async def test_a_claim_code_and_the_kits_own_questionnaire_in_one_body_claim_it(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    code = await claim_code(client, kit_id)
    response = await client.post(
        url(kit_id, "/claim"),
        json={"claimCode": code, "questionnaire": {"id": "health-information"}},
        headers=auth(user),
    )
    assert response.status_code == 201, response.text
    assert response.json()["ownerId"] == user


async def test_a_claim_code_with_another_questionnaire_than_the_saved_one_is_409(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await written_by_an_admin(client, kit_id)
    code = await claim_code(client, kit_id)
    published = await client.post(
        "/v1/questionnaires",
        json={
            "id": f"other-{kit_id[-8:]}".lower(),
            "version": "1",
            "title": "Other",
            "items": [
                {"id": "q", "text": "q", "type": "boolean", "required": False, "section": "s"}
            ],
        },
        headers=ADMIN,
    )
    assert published.status_code == 201, published.text
    response = await client.post(
        url(kit_id, "/claim"),
        json={"claimCode": code, "questionnaire": {"id": published.json()["id"]}},
        headers=auth(user),
    )
    assert response.status_code == 409
    assert response.json()["code"] == "questionnaire-mismatch"
    read = await client.get(url(kit_id, "/health-information"), headers=auth(user))
    assert read.status_code == 404  # the refused claim used nothing up and claimed nothing
