"""Helpers for the Bulk Data export tests: kick off, poll to the manifest, read the files."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

PREFER = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


async def kickoff(
    client: httpx.AsyncClient, headers: dict[str, str], query: str = ""
) -> httpx.Response:
    return await client.get(f"/v1/fhir/$export{query}", headers={**PREFER, **headers})


async def started(client: httpx.AsyncClient, headers: dict[str, str], query: str = "") -> str:
    """Kick off; the status URL (path only, for an in-process client)."""
    response = await kickoff(client, headers, query)
    assert response.status_code == 202, response.text
    return path_of(response.headers["content-location"])


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


async def manifest(
    client: httpx.AsyncClient, status_url: str, headers: dict[str, str], within: float = 30.0
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            response = await client.get(status_url, headers=headers)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            assert response.status_code == 202, response.text
            await asyncio.sleep(0.05)


async def resources(
    client: httpx.AsyncClient, found: dict[str, Any], headers: dict[str, str], kind: str
) -> list[dict[str, Any]]:
    """Every resource of ``kind`` in the manifest's files, in file order."""
    out: list[dict[str, Any]] = []
    for entry in found["output"]:
        if entry["type"] != kind:
            continue
        response = await client.get(path_of(entry["url"]), headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        out.extend(json.loads(line) for line in response.text.splitlines())
    return out


def kit_ids(found: list[dict[str, Any]]) -> list[str]:
    return [resource["identifier"]["value"] for resource in found]


def outcome_code(response: httpx.Response) -> str:
    """The problem code an OperationOutcome carries in issue[0].details.coding."""
    assert response.headers["content-type"].startswith("application/fhir+json"), response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    code: str = body["issue"][0]["details"]["coding"][0]["code"]
    return code
