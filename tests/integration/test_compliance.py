"""Erasure, export and amendments: a patient's rights and an admin's corrections."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.support.answers import COMPLETE
from tests.support.tokens import auth

ADMIN = auth("admin-1", "admin")
AUDITOR = auth("auditor-1", "auditor")


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def save(
    client: httpx.AsyncClient, kit_id: str, user: str, answers: dict, **extra: object
) -> httpx.Response:
    response = await client.put(url(kit_id), json={"answers": answers, **extra}, headers=auth(user))
    assert response.status_code in (200, 201), response.text
    return response


async def count_rows(app: FastAPI, table: str, kit_id: str) -> int:
    async with app.state.services.uows.read() as uow:
        result = await uow.session.execute(
            text(f"SELECT COUNT(*) FROM {table} WHERE kit_id = :k"),  # noqa: S608 - fixed names
            {"k": kit_id},
        )
        return int(result.scalar_one())


async def audit_actions(client: httpx.AsyncClient, kit_id: str) -> list[dict]:
    return (await client.get(f"/v1/kits/{kit_id}/audit-events?limit=500", headers=AUDITOR)).json()[
        "items"
    ]


# -- erasure ----------------------------------------------------------------------------


async def test_owner_erases_answers_and_history(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await save(client, kit_id, user, {"heightCm": 181})
    response = await client.delete(url(kit_id), headers=auth(user))
    assert response.status_code == 204
    assert (await client.get(url(kit_id), headers=auth(user))).status_code == 404
    assert (await client.get(url(kit_id, "/history/1"), headers=auth(user))).status_code == 404
    assert await count_rows(app, "health_information", kit_id) == 0
    assert await count_rows(app, "revisions", kit_id) == 0


async def test_erasure_stays_in_the_audit_trail(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await client.delete(url(kit_id), headers=auth(user))
    erasures = [
        e for e in await audit_actions(client, kit_id) if e["action"] == "health-information.erase"
    ]
    assert len(erasures) == 1
    assert erasures[0]["actor"] == user
    assert erasures[0]["versionBefore"] == 1
    assert erasures[0]["outcome"] == "ok"


async def test_after_erasure_a_new_save_starts_again_at_version_1_and_old_data_never_returns(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await client.get(url(kit_id), headers=auth(user))  # fills the cache
    await client.delete(url(kit_id), headers=auth(user))
    await save(client, kit_id, user, {"heightCm": 150})
    for _ in range(2):
        body = (await client.get(url(kit_id), headers=auth(user))).json()
        assert body["version"] == 1
        assert body["answers"] == {"heightCm": 150}


async def test_admin_may_erase(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    assert (await client.delete(url(kit_id), headers=ADMIN)).status_code == 204


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_members_may_not_erase(
    client: httpx.AsyncClient, kit_id: str, user: str, role: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await client.put(f"/v1/kits/{kit_id}/members/m-1", json={"role": role}, headers=auth(user))
    response = await client.delete(url(kit_id), headers=auth("m-1"))
    assert response.status_code == 403
    assert (await client.get(url(kit_id), headers=auth(user))).status_code == 200


async def test_a_stranger_erasing_gets_404(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    assert (await client.delete(url(kit_id), headers=auth("stranger"))).status_code == 404


async def test_erasing_twice_is_404(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await client.delete(url(kit_id), headers=auth(user))
    assert (await client.delete(url(kit_id), headers=auth(user))).status_code == 404


# -- export -----------------------------------------------------------------------------


async def test_export_holds_data_history_members_and_audit(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await save(client, kit_id, user, {"heightCm": 181})
    await client.put(
        f"/v1/kits/{kit_id}/members/carer", json={"role": "editor"}, headers=auth(user)
    )
    response = await client.get(f"/v1/kits/{kit_id}/export", headers=auth(user))
    assert response.status_code == 200
    document = response.json()
    assert document["kitId"] == kit_id
    assert document["kit"]["ownerId"] == user
    assert document["healthInformation"]["answers"] == {"heightCm": 181}
    assert [(h["version"], h["answers"]) for h in document["history"]] == [
        (1, {"heightCm": 180}),
        (2, {"heightCm": 181}),
    ]
    assert [m["userId"] for m in document["members"]] == ["carer"]
    actions = [e["action"] for e in document["auditEvents"]]
    assert "kit.claim" in actions
    assert actions.count("health-information.save") == 2


async def test_export_is_audited(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await client.get(f"/v1/kits/{kit_id}/export", headers=auth(user))
    assert "kit.export" in [e["action"] for e in await audit_actions(client, kit_id)]


async def test_export_by_an_editor_is_403_and_by_a_stranger_404(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await client.put(f"/v1/kits/{kit_id}/members/ed", json={"role": "editor"}, headers=auth(user))
    assert (await client.get(f"/v1/kits/{kit_id}/export", headers=auth("ed"))).status_code == 403
    assert (
        await client.get(f"/v1/kits/{kit_id}/export", headers=auth("stranger"))
    ).status_code == 404


async def test_admin_exports_any_kit(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    assert (await client.get(f"/v1/kits/{kit_id}/export", headers=ADMIN)).status_code == 200


async def editor_writes_from_elsewhere(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, owner: str
) -> None:
    """An editor writes from an address and browser of their own (not the owner's)."""
    await client.put(f"/v1/kits/{kit_id}/members/ed", json={"role": "editor"}, headers=auth(owner))
    elsewhere = httpx.ASGITransport(app=app, client=("198.51.100.23", 40000))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://testserver") as editor:
        response = await editor.patch(
            url(kit_id),
            json={"answers": {"weightKg": 70}},
            headers={**auth("ed"), "User-Agent": "EditorBrowser/1.0"},
        )
        assert response.status_code == 200


async def test_the_owners_export_shows_only_the_owners_own_addresses(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await editor_writes_from_elsewhere(app, client, kit_id, user)
    response = await client.get(
        f"/v1/kits/{kit_id}/export", headers={**auth(user), "User-Agent": "OwnerApp/2.0"}
    )
    events = response.json()["auditEvents"]
    assert "198.51.100.23" not in response.text
    assert "EditorBrowser" not in response.text
    editors = {(e["clientAddress"], e["userAgent"]) for e in events if e["actor"] == "ed"}
    assert editors == {(None, None)}
    owners = [e for e in events if e["actor"] == user]
    assert {e["clientAddress"] for e in owners} == {"203.0.113.7"}
    assert owners[-1]["userAgent"] == "OwnerApp/2.0"


async def test_an_admins_export_shows_every_address(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    await editor_writes_from_elsewhere(app, client, kit_id, user)
    events = (await client.get(f"/v1/kits/{kit_id}/export", headers=ADMIN)).json()["auditEvents"]
    editors = [e for e in events if e["actor"] == "ed"]
    assert {(e["clientAddress"], e["userAgent"]) for e in editors} == {
        ("198.51.100.23", "EditorBrowser/1.0")
    }


# -- amendments -------------------------------------------------------------------------


def amendment(answers: dict, reason: str = "Lab phoned: height was mistyped") -> dict:
    return {"answers": answers, "reason": reason}


async def test_admin_amends_submitted_data_into_a_new_amended_version(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    response = await client.post(
        url(kit_id, "/amendments"), json=amendment({"heightCm": 172}), headers=ADMIN
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "amended"
    assert body["version"] == 2
    assert body["answers"] == {**COMPLETE, "heightCm": 172}
    assert body["submittedAt"] is not None
    assert response.headers["etag"] == '"2"'


async def test_the_submitted_version_stays_unchanged_in_history(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    await client.post(url(kit_id, "/amendments"), json=amendment({"heightCm": 172}), headers=ADMIN)
    original = (await client.get(url(kit_id, "/history/1"), headers=auth(user))).json()
    assert original["status"] == "submitted"
    assert original["answers"] == COMPLETE


async def test_the_amendment_reason_is_audited(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    await client.post(
        url(kit_id, "/amendments"), json=amendment({"heightCm": 172}, "Typo per lab"), headers=ADMIN
    )
    amends = [
        e for e in await audit_actions(client, kit_id) if e["action"] == "health-information.amend"
    ]
    assert len(amends) == 1
    assert amends[0]["reason"] == "Typo per lab"
    assert amends[0]["changed"] == ["heightCm"]
    assert (amends[0]["versionBefore"], amends[0]["versionAfter"]) == (1, 2)


async def test_owner_cannot_amend(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    response = await client.post(
        url(kit_id, "/amendments"), json=amendment({"heightCm": 172}), headers=auth(user)
    )
    assert response.status_code == 403


async def test_amending_data_in_progress_is_409_not_submitted(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, {"heightCm": 180})
    response = await client.post(
        url(kit_id, "/amendments"), json=amendment({"heightCm": 172}), headers=ADMIN
    )
    assert response.status_code == 409
    assert response.json()["code"] == "not-submitted"


async def test_an_amendment_must_keep_required_answers(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    response = await client.post(
        url(kit_id, "/amendments"), json=amendment({"heightCm": None}), headers=ADMIN
    )
    assert response.status_code == 422
    assert (await client.get(url(kit_id), headers=auth(user))).json()["version"] == 1


async def test_an_amendment_is_validated(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    response = await client.post(
        url(kit_id, "/amendments"), json=amendment({"heightCm": 999}), headers=ADMIN
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "answers.heightCm"


async def test_an_amendment_needs_a_reason(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    response = await client.post(
        url(kit_id, "/amendments"), json={"answers": {"heightCm": 172}}, headers=ADMIN
    )
    assert response.status_code == 422


async def test_amended_data_is_still_read_only_for_ordinary_writes(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    await client.post(url(kit_id, "/amendments"), json=amendment({"heightCm": 172}), headers=ADMIN)
    response = await client.patch(
        url(kit_id), json={"answers": {"heightCm": 100}}, headers=auth(user)
    )
    assert response.status_code == 409
    assert response.json()["code"] == "already-submitted"


async def test_a_second_amendment_appends_another_version(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, COMPLETE, submitted=True)
    await client.post(url(kit_id, "/amendments"), json=amendment({"heightCm": 172}), headers=ADMIN)
    response = await client.post(
        url(kit_id, "/amendments"), json=amendment({"weightKg": 60}), headers=ADMIN
    )
    assert response.json()["version"] == 3
    history = (await client.get(url(kit_id, "/history"), headers=auth(user))).json()["items"]
    assert [(h["version"], h["status"]) for h in history] == [
        (3, "amended"),
        (2, "amended"),
        (1, "submitted"),
    ]
