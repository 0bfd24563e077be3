"""FHIR Bulk Data export (docs/fhir.md#bulk-data-export) on SQLite and PostgreSQL: kick-off,
status, manifest, files, cancel, expiry, and who may see what."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from healthinfo.audit import chain
from healthinfo.config import Settings
from healthinfo.crypto.codec import EncryptedAnswerCodec
from healthinfo.db.models import AuditEvent, ExportPart
from healthinfo.fhir.bulk import BULK_EXPORT
from healthinfo.fhir.bulk.runner import ExportRunner
from healthinfo.fhir.bulk.wiring import build_exports
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.bulk import (
    kickoff,
    kit_ids,
    manifest,
    outcome_code,
    path_of,
    resources,
    started,
)
from tests.support.forwarding import fresh_database, services_of
from tests.support.problems import running_app
from tests.support.server import keystore_url_for
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

QR = "QuestionnaireResponse"


def fresh(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


async def save(client: httpx.AsyncClient, kit_id: str, *, submitted: bool) -> None:
    body = {"answers": COMPLETE, "submitted": True} if submitted else {"answers": {"heightCm": 170}}
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information", json=body, headers=auth(fresh("owner"))
    )
    assert response.status_code == 201, response.text


async def arrange(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A submitted kit and an in-progress kit; returns them and a _since just before them."""
    since = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    submitted, drafted = f"KIT-{uuid.uuid4().hex[:12]}", f"KIT-{uuid.uuid4().hex[:12]}"
    await save(client, submitted, submitted=True)
    await save(client, drafted, submitted=False)
    return submitted, drafted, since


async def export_of(
    client: httpx.AsyncClient, headers: dict[str, str], query: str = ""
) -> list[str]:
    status = await started(client, headers, query)
    found = await manifest(client, status, headers)
    return kit_ids(await resources(client, found, headers, QR))


# -- kick-off ----------------------------------------------------------------------------------


async def test_kickoff_without_prefer_respond_async_is_400_operation_outcome(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/fhir/$export", headers=auth(fresh("admin"), "admin"))
    assert response.status_code == 400
    assert outcome_code(response) == "malformed-request"


@pytest.mark.parametrize(
    "query",
    [
        "?patient=Patient/1",
        "?_elements=id",
        "?_type=Patient",
        "?_typeFilter=Patient?x=1",
        "?_since=yesterday",
        "?_outputFormat=text/csv",
    ],
)
async def test_kickoff_with_an_unsupported_parameter_is_400(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await kickoff(client, auth(fresh("admin"), "admin"), query)
    assert response.status_code == 400
    assert outcome_code(response) == "malformed-request"


async def test_kickoff_answers_202_with_a_status_url(client: httpx.AsyncClient) -> None:
    response = await kickoff(client, auth(fresh("admin"), "admin"))
    assert response.status_code == 202
    assert "/v1/fhir/bulk-status/" in response.headers["content-location"]


@pytest.mark.parametrize("roles", [(), ("auditor",)])
async def test_kickoff_by_neither_admin_nor_researcher_is_403(
    client: httpx.AsyncClient, roles: tuple[str, ...]
) -> None:
    response = await kickoff(client, auth(fresh("user"), *roles))
    assert response.status_code == 403
    assert outcome_code(response) == "forbidden"


async def test_kickoff_without_a_token_is_401_operation_outcome(
    client: httpx.AsyncClient,
) -> None:
    response = await kickoff(client, {})
    assert response.status_code == 401
    assert outcome_code(response) == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")


# -- the manifest and the files ------------------------------------------------------------


async def test_completed_export_manifest_has_the_bulk_data_fields(
    client: httpx.AsyncClient,
) -> None:
    await arrange(client)
    admin = auth(fresh("admin"), "admin")
    status = await started(client, admin)
    found = await manifest(client, status, admin)
    assert set(found) == {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert found["requiresAccessToken"] is True
    assert found["request"].endswith("/v1/fhir/$export")
    assert {entry["type"] for entry in found["output"]} == {"Questionnaire", QR}
    assert all(entry["count"] > 0 for entry in found["output"])


async def test_admin_export_holds_each_kit_once_submitted_or_not(
    client: httpx.AsyncClient,
) -> None:
    submitted, drafted, since = await arrange(client)
    exported = await export_of(client, auth(fresh("admin"), "admin"), f"?_since={since}")
    assert exported.count(submitted) == 1
    assert exported.count(drafted) == 1
    assert len(exported) == len(set(exported))


async def test_manifest_count_is_the_number_of_lines(client: httpx.AsyncClient) -> None:
    await arrange(client)
    admin = auth(fresh("admin"), "admin")
    found = await manifest(client, await started(client, admin, f"?_type={QR}"), admin)
    [entry] = found["output"]
    assert entry["count"] == len(await resources(client, found, admin, QR))


async def test_questionnaire_file_holds_questionnaire_resources(
    client: httpx.AsyncClient,
) -> None:
    admin = auth(fresh("admin"), "admin")
    found = await manifest(client, await started(client, admin, "?_type=Questionnaire"), admin)
    questionnaires = await resources(client, found, admin, "Questionnaire")
    assert questionnaires
    assert {q["resourceType"] for q in questionnaires} == {"Questionnaire"}
    assert [entry["type"] for entry in found["output"]] == ["Questionnaire"]


async def test_researcher_export_holds_submitted_kits_only(client: httpx.AsyncClient) -> None:
    submitted, drafted, since = await arrange(client)
    exported = await export_of(client, auth(fresh("res"), "researcher"), f"?_since={since}")
    assert submitted in exported
    assert drafted not in exported


async def test_type_filter_status_completed_leaves_in_progress_kits_out(
    client: httpx.AsyncClient,
) -> None:
    submitted, drafted, since = await arrange(client)
    query = f"?_since={since}&_typeFilter=QuestionnaireResponse%3Fstatus%3Dcompleted"
    exported = await export_of(client, auth(fresh("admin"), "admin"), query)
    assert submitted in exported
    assert drafted not in exported


async def test_since_leaves_out_kits_last_changed_before_it(client: httpx.AsyncClient) -> None:
    older, _, _ = await arrange(client)
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    newer, _, _ = await arrange(client)
    exported = await export_of(client, auth(fresh("admin"), "admin"), f"?_since={since}")
    assert newer in exported
    assert older not in exported


async def test_erased_kits_are_not_exported(client: httpx.AsyncClient) -> None:
    submitted, _, since = await arrange(client)
    admin = auth(fresh("admin"), "admin")
    erased = await client.delete(f"/v1/kits/{submitted}/health-information", headers=admin)
    assert erased.status_code == 204
    assert submitted not in await export_of(client, admin, f"?_since={since}")


async def test_each_exported_kit_gets_one_audit_event(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    submitted, _, since = await arrange(client)
    await export_of(client, auth(fresh("admin"), "admin"), f"?_since={since}")
    async with services_of(app).uows.read() as uow:
        events = await uow.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.kit_id == submitted, AuditEvent.action == BULK_EXPORT)
        )
    assert events == 1


async def test_output_is_encrypted_at_rest(app: FastAPI, client: httpx.AsyncClient) -> None:
    submitted, _, since = await arrange(client)
    admin = auth(fresh("admin"), "admin")
    status = await started(client, admin, f"?_since={since}")
    await manifest(client, status, admin)
    job_id = status.rsplit("/", 1)[1]
    async with services_of(app).uows.read() as uow:
        stored = list(
            await uow.session.scalars(select(ExportPart.data).where(ExportPart.job_id == job_id))
        )
    assert stored
    assert not any(submitted in data or "QuestionnaireResponse" in data for data in stored)


async def test_files_and_status_are_404_to_another_exporter(client: httpx.AsyncClient) -> None:
    await arrange(client)
    admin = auth(fresh("admin"), "admin")
    status = await started(client, admin)
    found = await manifest(client, status, admin)
    other = auth(fresh("admin"), "admin")
    for url in [status, *(path_of(entry["url"]) for entry in found["output"])]:
        response = await client.get(url, headers=other)
        assert response.status_code == 404
        assert outcome_code(response) == "not-found"


async def test_files_are_403_to_a_caller_without_the_export_roles(
    client: httpx.AsyncClient,
) -> None:
    admin_id = fresh("admin")
    status = await started(client, auth(admin_id, "admin"))
    # The same user, with a token that lost the admin role.
    response = await client.get(status, headers=auth(admin_id))
    assert response.status_code == 403


async def test_delete_of_a_completed_export_removes_its_files(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await arrange(client)
    admin = auth(fresh("admin"), "admin")
    status = await started(client, admin)
    found = await manifest(client, status, admin)
    assert (await client.delete(status, headers=admin)).status_code == 202
    assert (await client.get(status, headers=admin)).status_code == 404
    assert (await client.get(path_of(found["output"][0]["url"]), headers=admin)).status_code == 404
    async with services_of(app).uows.read() as uow:
        left = await uow.session.scalar(
            select(func.count())
            .select_from(ExportPart)
            .where(ExportPart.job_id == status.rsplit("/", 1)[1])
        )
    assert left == 0


# -- without a runner: queued jobs, one at a time, cancel, expiry --------------------------


@pytest.fixture
async def queued_app(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> AsyncIterator[FastAPI]:
    """Jobs are recorded here but run nowhere (as in a serve whose worker is down). A database
    of its own: the session app's runner would run them otherwise."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgres"
    async with fresh_database(backend, tmp_path) as url:
        settings = make_settings(
            database_url=url,
            keystore_url=keystore_url_for(url),
            data_dir=tmp_path / "data",
            export_in_process=False,
            export_ttl=1.0,
        )
        async with running_app(settings) as app:
            yield app


async def test_status_of_a_running_export_is_202_with_progress_and_retry_after(
    queued_app: FastAPI,
) -> None:
    admin = auth(fresh("admin"), "admin")
    async with await open_client(queued_app) as client:
        status = await started(client, admin)
        response = await client.get(status, headers=admin)
    assert response.status_code == 202
    assert response.headers["x-progress"]
    assert int(response.headers["retry-after"]) >= 1


async def test_second_export_while_one_runs_is_429(queued_app: FastAPI) -> None:
    admin = auth(fresh("admin"), "admin")
    async with await open_client(queued_app) as client:
        await started(client, admin)
        second = await kickoff(client, admin)
    assert second.status_code == 429
    assert outcome_code(second) == "export-in-progress"
    assert int(second.headers["retry-after"]) >= 1


async def test_another_requester_may_export_while_one_runs(queued_app: FastAPI) -> None:
    async with await open_client(queued_app) as client:
        await started(client, auth(fresh("admin"), "admin"))
        other = await kickoff(client, auth(fresh("res"), "researcher"))
    assert other.status_code == 202


async def test_cancelled_export_is_gone_and_frees_the_requester(queued_app: FastAPI) -> None:
    admin = auth(fresh("admin"), "admin")
    async with await open_client(queued_app) as client:
        status = await started(client, admin)
        assert (await client.delete(status, headers=admin)).status_code == 202
        assert (await client.get(status, headers=admin)).status_code == 404
        assert (await kickoff(client, admin)).status_code == 202


async def test_delete_by_another_user_is_404_and_keeps_the_export(queued_app: FastAPI) -> None:
    admin = auth(fresh("admin"), "admin")
    async with await open_client(queued_app) as client:
        status = await started(client, admin)
        refused = await client.delete(status, headers=auth(fresh("admin"), "admin"))
        assert refused.status_code == 404
        assert (await client.get(status, headers=admin)).status_code == 202


async def test_export_files_expire_after_the_ttl(queued_app: FastAPI) -> None:
    """export_ttl=1 s: a runner completes the job, the purger then deletes it."""
    svc = services_of(queued_app)
    exports = svc.exports
    assert exports is not None
    admin = auth(fresh("admin"), "admin")
    async with await open_client(queued_app) as client:
        await arrange(client)
        status = await started(client, admin, f"?_type={QR}")
        runner = _runner_for(queued_app)
        while await runner.run_once():
            pass
        found = await manifest(client, status, admin)
        assert found["output"]
        file_url = path_of(found["output"][0]["url"])
        assert (await client.get(file_url, headers=admin)).status_code == 200
        await _sleep_past(1.1)
        assert await exports.purger.purge_once() >= 1
        assert (await client.get(status, headers=admin)).status_code == 404
        assert (await client.get(file_url, headers=admin)).status_code == 404


def _runner_for(app: FastAPI) -> ExportRunner:
    svc = services_of(app)
    settings = svc.settings.model_copy(update={"export_in_process": True})
    assert svc.keystore is not None
    built = build_exports(
        settings,
        uows=svc.uows,
        keystore=svc.keystore,
        codec=EncryptedAnswerCodec(svc.keystore),
        questionnaires=svc.questionnaires,
        audit=svc.audit,
        run_jobs=True,
    )
    assert built.runner is not None
    return built.runner


async def _sleep_past(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_export_audit_events_keep_each_kits_hash_chain_valid(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The export appends its events in batches (``chain.append_many``): the links must verify
    like any other, before and after a later single append."""
    submitted, _, since = await arrange(client)
    admin = auth(fresh("admin"), "admin")
    await export_of(client, admin, f"?_since={since}")
    await client.get(f"/v1/kits/{submitted}/health-information", headers=admin)
    svc = services_of(app)
    async with svc.uows.read() as uow:
        checked, broken = await chain.verify(uow, svc.audit.keys, submitted)
    assert broken is None
    assert checked >= 2
