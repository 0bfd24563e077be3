"""Amendment reasons are health data: sealed with the kit's data key, shredded by an erasure."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from healthinfo.audit import chain
from tests.support.answers import COMPLETE
from tests.support.tokens import auth

ADMIN = auth("admin-1", "admin")
AUDITOR = auth("auditor-1", "auditor")
REASON = "Lab phoned: patient is diabetic, height was mistyped"
AMEND = "health-information.amend"


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def amended(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    response = await client.put(
        url(kit_id), json={"answers": COMPLETE, "submitted": True}, headers=auth(user)
    )
    assert response.status_code == 201
    response = await client.post(
        url(kit_id, "/amendments"),
        json={"answers": {"heightCm": 172}, "reason": REASON},
        headers=ADMIN,
    )
    assert response.status_code == 200


async def stored_reasons(app: FastAPI, kit_id: str) -> list[str]:
    async with app.state.services.uows.read() as uow:
        rows = await uow.session.scalars(
            text("SELECT reason FROM audit_events WHERE kit_id = :k AND reason IS NOT NULL"),
            {"k": kit_id},
        )
        return list(rows)


async def amend_events(client: httpx.AsyncClient, kit_id: str, headers: dict) -> list[dict]:
    response = await client.get(f"/v1/kits/{kit_id}/audit-events", headers=headers)
    assert response.status_code == 200
    return [e for e in response.json()["items"] if e["action"] == AMEND]


async def test_an_amendment_reason_is_stored_encrypted(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await amended(client, kit_id, user)
    stored = await stored_reasons(app, kit_id)
    assert len(stored) == 1
    assert stored[0].startswith("enc1:")
    assert "diabetic" not in stored[0]


async def test_admins_and_auditors_read_the_reason_while_the_kit_has_its_key(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await amended(client, kit_id, user)
    for headers in (ADMIN, AUDITOR):
        [event] = await amend_events(client, kit_id, headers)
        assert (event["reason"], event["reasonErased"]) == (REASON, False)


async def test_the_owners_export_shows_the_reason_unsealed(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await amended(client, kit_id, user)
    document = (await client.get(f"/v1/kits/{kit_id}/export", headers=auth(user))).json()
    [event] = [e for e in document["auditEvents"] if e["action"] == AMEND]
    assert event["reason"] == REASON


async def test_after_erasure_the_reason_reads_as_erased_and_the_event_stays(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await amended(client, kit_id, user)
    assert (await client.delete(url(kit_id), headers=auth(user))).status_code == 204
    [event] = await amend_events(client, kit_id, AUDITOR)
    assert (event["reason"], event["reasonErased"]) == (None, True)
    assert event["changed"] == ["heightCm"]
    [ciphertext] = await stored_reasons(app, kit_id)
    assert "diabetic" not in ciphertext


async def test_the_audit_chain_covers_the_sealed_reason(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await amended(client, kit_id, user)
    async with app.state.services.uows.read() as uow:
        checked, broken = await chain.verify(uow, app.state.services.audit.keys, kit_id)
    assert broken is None
    assert checked >= 3
