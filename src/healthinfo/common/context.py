"""Who is asking, through which channel, with which request id: what every write records.

``current_request_id`` is the request id of the request being served (set by the edge
middleware, ``api/edge.py``), for the log processors (``infra/logging.py``): here, not in the
API package, so that infrastructure never imports the API.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum

from healthinfo.auth.actor import Actor

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


class Channel(StrEnum):
    REST = "rest"
    SSE = "sse"
    WEBSOCKET = "websocket"
    FHIR = "fhir"  # the FHIR REST base, /v1/fhir (fhir/api.py)
    WORKER = "worker"
    CLI = "cli"


@dataclass(frozen=True, slots=True)
class RequestContext:
    actor: Actor
    channel: Channel
    request_id: str | None = None
    client_address: str | None = None
    user_agent: str | None = None
