"""Feature flags through the API: strict preconditions (428), amendments, percentage rollouts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from healthinfo.app import create_app
from healthinfo.common.flags import Rollout
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.tokens import auth


@asynccontextmanager
async def client_with(
    make_settings: Callable[..., Settings], **flags: object
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(**flags))
    async with app.router.lifespan_context(app), await open_client(app) as client:
        yield client


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def test_strict_mode_requires_a_precondition_on_every_write(
    make_settings: Callable[..., Settings], kit_id: str, user: str
) -> None:
    async with client_with(make_settings, strict_preconditions="on") as client:
        response = await client.put(
            url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user)
        )
        assert response.status_code == 428
        assert response.json()["code"] == "precondition-required"
        assert (await client.get(url(kit_id), headers=auth(user))).status_code == 404
        first = await client.put(
            url(kit_id), json={"answers": {"heightCm": 170}, "baseVersion": 0}, headers=auth(user)
        )
        assert first.status_code == 201
        with_if_match = {**auth(user), "If-Match": '"1"'}
        assert (
            await client.patch(
                url(kit_id), json={"answers": {"heightCm": 171}}, headers=with_if_match
            )
        ).status_code == 200
        assert (await client.post(url(kit_id, "/submit"), headers=auth(user))).status_code == 428


async def test_strict_mode_rolled_out_to_a_share_of_kits_applies_to_exactly_those(
    make_settings: Callable[..., Settings], kit_id: str, user: str
) -> None:
    rollout = Rollout(50)
    kits = [f"{kit_id}-{i}" for i in range(12)]
    async with client_with(make_settings, strict_preconditions="50%") as client:
        for kit in kits:
            response = await client.put(url(kit), json={"answers": {}}, headers=auth(user))
            expected = 428 if rollout.enabled_for("strict_preconditions", kit) else 201
            assert response.status_code == expected, kit
    assert 0 < sum(rollout.enabled_for("strict_preconditions", k) for k in kits) < len(kits)


async def test_amendments_switched_off_are_refused(
    make_settings: Callable[..., Settings], kit_id: str, user: str
) -> None:
    async with client_with(make_settings, amendments_enabled="off") as client:
        await client.put(
            url(kit_id), json={"answers": COMPLETE, "submitted": True}, headers=auth(user)
        )
        response = await client.post(
            url(kit_id, "/amendments"),
            json={"answers": {"heightCm": 170}, "reason": "r"},
            headers=auth("admin", "admin"),
        )
        assert response.status_code == 403
        assert "not enabled" in response.json()["detail"]


async def test_the_cache_switched_off_serves_every_read_from_the_database(
    make_settings: Callable[..., Settings], kit_id: str, user: str
) -> None:
    app = create_app(make_settings(cache_enabled="off"))
    async with app.router.lifespan_context(app), await open_client(app) as client:
        await client.put(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user))
        for _ in range(3):
            assert (await client.get(url(kit_id), headers=auth(user))).json()["answers"] == {
                "heightCm": 170
            }
        registry = app.state.services.metrics.registry
        assert not registry.get_sample_value("healthinfo_cache_hits_total")


async def test_the_answer_count_limit_is_a_setting(
    make_settings: Callable[..., Settings], kit_id: str, user: str
) -> None:
    async with client_with(make_settings, max_answers=2) as client:
        answers = {"heightCm": 170, "weightKg": 60, "vaping": False}
        response = await client.put(url(kit_id), json={"answers": answers}, headers=auth(user))
        assert response.status_code == 422
        assert response.json()["errors"] == [
            {"field": "answers", "message": "must hold at most 2 answers"}
        ]
        two = {"heightCm": 170, "weightKg": 60}
        assert (
            await client.put(url(kit_id), json={"answers": two}, headers=auth(user))
        ).status_code == 201
