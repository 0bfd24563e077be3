"""Documented shape of deliveries (the admin routes), for the OpenAPI description."""

from __future__ import annotations

from typing import Literal

from healthinfo.common.schemas import Document

DeliveryState = Literal["pending", "delivered", "dead"]


class DeliveryDoc(Document):
    id: str
    type: str
    kit_id: str
    version: int
    state: DeliveryState
    attempts: int
    created_at: str
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    delivered_at: str | None
    dead_at: str | None


class DeliveryList(Document):
    items: list[DeliveryDoc]
    next_cursor: str | None
