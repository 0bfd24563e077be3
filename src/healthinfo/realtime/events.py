"""Live events as the contract names them, and their three encodings: SSE, WebSocket, bus.

``snapshot``, ``updated`` and ``submitted`` carry the version as their id; ``presence`` has
none. The same :class:`LiveEvent` becomes an SSE frame or a WebSocket message, so both channels
send exactly the same data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from healthinfo.health_information.model import HealthInformationState
from healthinfo.health_information.service import ChangeEvent

SNAPSHOT = "snapshot"
UPDATED = "updated"
SUBMITTED = "submitted"
PRESENCE = "presence"
ACCESS_CHANGED = "access-changed"  # on the bus only: re-authorize the kit's connections
VERSIONED_EVENTS = frozenset({UPDATED, SUBMITTED})
BUS_FORMAT = 1
_KIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    name: str
    data: dict[str, Any]
    version: int | None = None

    def sse(self) -> bytes:
        """One SSE frame; JSON escapes newlines, so the data is always a single line."""
        head = f"event: {self.name}\n"
        if self.version is not None:
            head += f"id: {self.version}\n"
        return (head + "data: " + _dumps(self.data) + "\n\n").encode()

    def message(self) -> dict[str, Any]:
        """The WebSocket form: ``{"type", "id"?, "data"}``."""
        body: dict[str, Any] = {"type": self.name}
        if self.version is not None:
            body["id"] = str(self.version)
        body["data"] = self.data
        return body


def snapshot(state: HealthInformationState) -> LiveEvent:
    return LiveEvent(SNAPSHOT, state.to_representation(), state.version)


def change(event: ChangeEvent) -> LiveEvent:
    """``submitted`` with the representation, or ``updated`` with only the changed answers.

    A removed answer appears as ``null``, so ``answers`` applies as a merge patch.
    """
    state = event.state
    if event.submitted:
        return LiveEvent(SUBMITTED, state.to_representation(), state.version)
    data = {
        "version": state.version,
        "by": state.updated_by,
        "channel": event.channel,
        "changed": list(event.changed),
        "answers": {key: state.answers.get(key) for key in event.changed},
        "status": state.status.value,
    }
    return LiveEvent(UPDATED, data, state.version)


@dataclass(frozen=True, slots=True)
class AccessChanged:
    """Who may read the kit changed (``erased``: its answers were erased): re-authorize."""

    erased: bool = False


def presence(users: list[dict[str, str]]) -> LiveEvent:
    return LiveEvent(PRESENCE, {"users": users})


# -- on the bus ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusMessage:
    origin: str
    kit_id: str
    event: LiveEvent | None  # None: the kit's presence changed (read it from the room store)
    access: AccessChanged | None = None  # set: the kit's access changed (and event is None)


def encode_change(origin: str, kit_id: str, event: LiveEvent) -> bytes:
    return _dumps(
        {
            "format": BUS_FORMAT,
            "origin": origin,
            "kitId": kit_id,
            "event": event.name,
            "id": event.version,
            "data": event.data,
        }
    ).encode()


def encode_presence_changed(origin: str, kit_id: str) -> bytes:
    return _dumps(
        {"format": BUS_FORMAT, "origin": origin, "kitId": kit_id, "event": PRESENCE}
    ).encode()


def encode_access_changed(origin: str, kit_id: str, erased: bool) -> bytes:
    """No user, role or data in it: receivers re-read access from the database."""
    return _dumps(
        {
            "format": BUS_FORMAT,
            "origin": origin,
            "kitId": kit_id,
            "event": ACCESS_CHANGED,
            "erased": erased,
        }
    ).encode()


def decode(kit_id: str, payload: bytes) -> BusMessage | None:
    """A checked bus message, or None for anything malformed or misaddressed (dropped)."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or body.get("format") != BUS_FORMAT:
        return None
    origin, name = body.get("origin"), body.get("event")
    if not isinstance(origin, str) or body.get("kitId") != kit_id or not _KIT_ID.fullmatch(kit_id):
        return None
    if name == PRESENCE:
        return BusMessage(origin, kit_id, None)
    if name == ACCESS_CHANGED:
        erased = body.get("erased")
        if not isinstance(erased, bool):
            return None
        return BusMessage(origin, kit_id, None, AccessChanged(erased))
    version, data = body.get("id"), body.get("data")
    if name not in VERSIONED_EVENTS or not isinstance(data, dict):
        return None
    if type(version) is not int or version < 1 or data.get("version") != version:
        return None
    return BusMessage(origin, kit_id, LiveEvent(name, data, version))
