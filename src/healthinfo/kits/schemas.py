"""Bodies and documented responses of the claim and member routes."""

from __future__ import annotations

from typing import Literal

from healthinfo.common.schemas import Document, StrictRequest
from healthinfo.health_information.schemas import QuestionnaireBinding


class MemberRole(StrictRequest):
    role: Literal["editor", "viewer"]


class ClaimDoc(Document):
    kit_id: str
    owner_id: str
    claimed_at: str


class MemberDoc(Document):
    user_id: str
    role: Literal["owner", "editor", "viewer"]
    added_at: str | None
    added_by: str | None


class MemberList(Document):
    items: list[MemberDoc]
    next_cursor: str | None


class ClaimBody(StrictRequest):
    """Optional claim body: the questionnaire the kit is bound to (else its first write's)."""

    questionnaire: QuestionnaireBinding | None = None
