"""Bodies and documented responses of the claim and member routes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from healthinfo.common.identifiers import PRINTABLE_PATTERN
from healthinfo.common.schemas import Document, StrictRequest
from healthinfo.health_information.schemas import QuestionnaireBinding


class ClaimRequest(StrictRequest):
    """The claim's optional body.

    ``claimCode``: the one-time code of an ownerless kit that holds answers. ``questionnaire``:
    the version the kit is bound to before anything is saved (else its first write's).
    """

    claim_code: str | None = Field(default=None, min_length=1, max_length=64)
    questionnaire: QuestionnaireBinding | None = None


class OwnerRequest(StrictRequest):
    user_id: str = Field(min_length=1, max_length=255, pattern=PRINTABLE_PATTERN)


class ClaimCodeDoc(Document):
    kit_id: str
    claim_code: str
    expires_at: str


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
