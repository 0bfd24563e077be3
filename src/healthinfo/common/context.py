"""Who is asking, through which channel, with which request id: what every write records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from healthinfo.auth.actor import Actor


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
