"""Checks for RFC 9457 problem responses, and apps built with their own settings or routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from healthinfo.app import create_app
from healthinfo.config import Settings

PROBLEM_JSON = "application/problem+json"
PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code", "requestId"})


def assert_problem(
    response: httpx.Response, status: int, code: str, *, instance: str | None = None
) -> dict[str, Any]:
    """Assert a complete problem document for ``status``/``code``; returns its body.

    ``instance`` defaults to the request's path; ``requestId`` must be the response's
    X-Request-ID, so a support engineer can find the request from either.
    """
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_MEMBERS, sorted(body)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/problems/{code}"
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["instance"] == (instance if instance is not None else response.request.url.path)
    assert isinstance(body["requestId"], str)
    assert body["requestId"]
    assert body["requestId"] == response.headers["x-request-id"]
    return body


def error_fields(body: dict[str, Any]) -> list[str]:
    """The ``field`` of each entry of a validation problem's ``errors``, sorted."""
    errors = body["errors"]
    assert all(isinstance(e["message"], str) and e["message"] for e in errors), errors
    return sorted(e["field"] for e in errors)


@asynccontextmanager
async def running_app(
    settings: Settings, configure: Callable[[FastAPI], None] | None = None
) -> AsyncIterator[FastAPI]:
    """A freshly built app (``configure`` may add routes first), inside its lifespan."""
    application = create_app(settings)
    if configure is not None:
        configure(application)
    async with application.router.lifespan_context(application):
        yield application


def server_like_client(application: FastAPI) -> httpx.AsyncClient:
    """A client that, like a real server, returns the 500 response instead of re-raising.

    Starlette re-raises an unhandled exception after sending the 500 so the server can log it;
    httpx's ASGI transport would pass it on to the test, hiding what the client receives.
    """
    transport = httpx.ASGITransport(
        app=application, raise_app_exceptions=False, client=("203.0.113.7", 50000)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
