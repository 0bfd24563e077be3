"""The health information routes over REST, as the contract specifies them."""

from __future__ import annotations

import httpx
import pytest

from tests.support.answers import COMPLETE
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def put(
    client: httpx.AsyncClient, kit_id: str, user: str, answers: dict, **extra: object
) -> httpx.Response:
    headers = auth(user)
    if_match = extra.pop("if_match", None)
    if if_match is not None:
        headers["If-Match"] = str(if_match)
    return await client.put(url(kit_id), json={"answers": answers, **extra}, headers=headers)


async def patch(
    client: httpx.AsyncClient, kit_id: str, user: str, answers: dict, **extra: object
) -> httpx.Response:
    headers = {**auth(user), "Content-Type": "application/merge-patch+json"}
    if_match = extra.pop("if_match", None)
    if if_match is not None:
        headers["If-Match"] = str(if_match)
    return await client.patch(url(kit_id), json={"answers": answers, **extra}, headers=headers)


async def test_get_before_anything_is_saved_is_404(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.get(url(kit_id), headers=auth(user))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not-found"


async def test_first_put_is_201_with_version_1_and_etag(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put(client, kit_id, user, {"heightCm": 180})
    assert response.status_code == 201
    body = response.json()
    assert body["version"] == 1
    assert body["status"] == "in-progress"
    assert body["answers"] == {"heightCm": 180}
    assert body["updatedBy"] == user
    assert body["questionnaire"] == {"id": "health-information", "version": "1"}
    assert response.headers["etag"] == '"1"'


async def test_get_returns_what_was_saved(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = (await put(client, kit_id, user, {"heightCm": 180, "smokingStatus": "never"})).json()
    response = await client.get(url(kit_id), headers=auth(user))
    assert response.status_code == 200
    assert response.json() == saved
    assert response.headers["etag"] == '"1"'


async def test_second_put_is_200_and_replaces_all_answers(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180, "smokingStatus": "never"})
    response = await put(client, kit_id, user, {"weightKg": 70.5})
    assert response.status_code == 200
    assert response.json()["answers"] == {"weightKg": 70.5}
    assert response.json()["version"] == 2


async def test_put_null_answer_means_no_answer(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put(client, kit_id, user, {"heightCm": 180, "vaping": None})
    assert response.json()["answers"] == {"heightCm": 180}


async def test_patch_merges_and_null_removes(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180, "vaping": True})
    response = await patch(client, kit_id, user, {"weightKg": 80, "vaping": None})
    assert response.status_code == 200
    assert response.json()["answers"] == {"heightCm": 180, "weightKg": 80}
    assert response.json()["version"] == 2


async def test_patch_accepts_plain_json_too(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.patch(
        url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(user)
    )
    assert response.status_code == 200
    assert response.json()["answers"] == {"heightCm": 170}


async def test_patch_on_nothing_saved_creates_version_1(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await patch(client, kit_id, user, {"heightCm": 170})
    assert response.status_code == 200
    assert response.json()["version"] == 1


async def test_write_that_changes_nothing_creates_no_version(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    again = await put(client, kit_id, user, {"heightCm": 180})
    patched = await patch(client, kit_id, user, {"heightCm": 180})
    assert again.status_code == 200
    assert again.json()["version"] == 1
    assert patched.json()["version"] == 1
    history = (await client.get(url(kit_id, "/history"), headers=auth(user))).json()
    assert [item["version"] for item in history["items"]] == [1]


async def test_if_none_match_current_version_is_304(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    response = await client.get(url(kit_id), headers={**auth(user), "If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.headers["etag"] == '"1"'


async def test_if_none_match_old_version_returns_the_data(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    await put(client, kit_id, user, {"heightCm": 181})
    response = await client.get(url(kit_id), headers={**auth(user), "If-None-Match": '"1"'})
    assert response.status_code == 200
    assert response.json()["version"] == 2


async def test_if_match_mismatch_is_412_and_changes_nothing(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    await put(client, kit_id, user, {"heightCm": 181})
    response = await patch(client, kit_id, user, {"heightCm": 150}, if_match='"1"')
    assert response.status_code == 412
    problem = response.json()
    assert problem["code"] == "version-conflict"
    assert problem["currentVersion"] == 2
    assert problem["detail"] == "The health information is at version 2, not 1."
    current = (await client.get(url(kit_id), headers=auth(user))).json()
    assert current["answers"] == {"heightCm": 181}
    assert current["version"] == 2


async def test_if_match_current_version_writes(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    response = await patch(client, kit_id, user, {"heightCm": 150}, if_match='"1"')
    assert response.status_code == 200
    assert response.json()["version"] == 2


async def test_if_match_on_nothing_saved_is_412(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put(client, kit_id, user, {"heightCm": 150}, if_match='"1"')
    assert response.status_code == 412
    assert response.json()["currentVersion"] is None


async def test_base_version_applies_on_top_when_other_questions_changed(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    await patch(client, kit_id, user, {"weightKg": 70})
    response = await patch(client, kit_id, user, {"smokingStatus": "former"}, baseVersion=1)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 3
    assert body["answers"] == {"heightCm": 180, "weightKg": 70, "smokingStatus": "former"}


async def test_base_version_conflict_lists_each_question_with_its_version(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180, "weightKg": 70})
    await patch(client, kit_id, user, {"heightCm": 181})
    await patch(client, kit_id, user, {"weightKg": 71})
    response = await patch(
        client, kit_id, user, {"heightCm": 175, "weightKg": 65, "vaping": True}, baseVersion=1
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["code"] == "edit-conflict"
    assert problem["conflicts"] == [
        {"field": "heightCm", "currentVersion": 2},
        {"field": "weightKg", "currentVersion": 3},
    ]
    assert "vaping" not in (await client.get(url(kit_id), headers=auth(user))).json()["answers"]


async def test_put_with_base_version_merges_untouched_changes(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    await patch(client, kit_id, user, {"weightKg": 70})
    response = await put(client, kit_id, user, {"heightCm": 180, "vaping": False}, baseVersion=1)
    assert response.status_code == 200
    assert response.json()["answers"] == {"heightCm": 180, "weightKg": 70, "vaping": False}


async def test_submit_without_required_answers_is_422_listing_them(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    response = await client.post(url(kit_id, "/submit"), headers=auth(user))
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert "answers.weightKg" in fields
    assert "answers.heightCm" not in fields
    assert (await client.get(url(kit_id), headers=auth(user))).json()["status"] == "in-progress"


async def test_submit_with_required_answers_is_read_only_afterwards(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, COMPLETE)
    response = await client.post(url(kit_id, "/submit"), headers=auth(user))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "submitted"
    assert body["version"] == 2
    assert body["submittedAt"] is not None


@pytest.mark.parametrize(
    "attempt",
    ["put-same", "put-other", "put-submit", "patch", "patch-nothing", "submit"],
)
async def test_every_write_on_submitted_data_is_409(
    client: httpx.AsyncClient, kit_id: str, user: str, attempt: str
) -> None:
    await put(client, kit_id, user, COMPLETE, submitted=True)
    if attempt == "put-same":
        response = await put(client, kit_id, user, COMPLETE)
    elif attempt == "put-other":
        response = await put(client, kit_id, user, {**COMPLETE, "heightCm": 150})
    elif attempt == "put-submit":
        response = await put(client, kit_id, user, COMPLETE, submitted=True)
    elif attempt == "patch":
        response = await patch(client, kit_id, user, {"heightCm": 150})
    elif attempt == "patch-nothing":
        response = await patch(client, kit_id, user, {})
    else:
        response = await client.post(url(kit_id, "/submit"), headers=auth(user))
    assert response.status_code == 409
    assert response.json()["code"] == "already-submitted"
    current = (await client.get(url(kit_id), headers=auth(user))).json()
    assert current["version"] == 1
    assert current["answers"] == COMPLETE


async def test_put_submitted_true_saves_and_submits_in_one_version(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put(client, kit_id, user, COMPLETE, submitted=True)
    assert response.status_code == 201
    assert response.json()["status"] == "submitted"
    assert response.json()["version"] == 1


async def test_put_submitted_true_with_missing_answers_saves_nothing(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put(client, kit_id, user, {"heightCm": 180}, submitted=True)
    assert response.status_code == 422
    assert (await client.get(url(kit_id), headers=auth(user))).status_code == 404


async def test_submit_with_nothing_saved_is_404(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.post(url(kit_id, "/submit"), headers=auth(user))
    assert response.status_code == 404


async def test_history_lists_revisions_newest_first(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    await patch(client, kit_id, user, {"weightKg": 70})
    response = await client.get(url(kit_id, "/history"), headers=auth(user))
    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["version"] for i in items] == [2, 1]
    assert items[0]["changed"] == ["weightKg"]
    assert items[0]["by"] == user
    assert items[0]["channel"] == "rest"
    assert response.json()["nextCursor"] is None


async def test_history_pages_with_limit_and_cursor(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    for height in range(150, 155):
        await put(client, kit_id, user, {"heightCm": height})
    first = (await client.get(url(kit_id, "/history?limit=2"), headers=auth(user))).json()
    assert [i["version"] for i in first["items"]] == [5, 4]
    second = (
        await client.get(
            url(kit_id, f"/history?limit=2&cursor={first['nextCursor']}"), headers=auth(user)
        )
    ).json()
    assert [i["version"] for i in second["items"]] == [3, 2]
    third = (
        await client.get(
            url(kit_id, f"/history?limit=2&cursor={second['nextCursor']}"), headers=auth(user)
        )
    ).json()
    assert [i["version"] for i in third["items"]] == [1]
    assert third["nextCursor"] is None


async def test_history_version_is_the_representation_at_that_version(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, {"heightCm": 180})
    await put(client, kit_id, user, {"heightCm": 181})
    response = await client.get(url(kit_id, "/history/1"), headers=auth(user))
    assert response.status_code == 200
    assert response.json()["answers"] == {"heightCm": 180}
    assert response.json()["version"] == 1
    assert response.headers["etag"] == '"1"'
    assert (await client.get(url(kit_id, "/history/9"), headers=auth(user))).status_code == 404


async def test_submitted_version_stays_in_history_unchanged(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put(client, kit_id, user, COMPLETE, submitted=True)
    old = (await client.get(url(kit_id, "/history/1"), headers=auth(user))).json()
    assert old["status"] == "submitted"
    assert old["answers"] == COMPLETE
