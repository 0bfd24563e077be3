"""Request bodies and the documented shapes of responses, in the contract's camelCase."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from healthinfo.common.identifiers import PRINTABLE_PATTERN
from healthinfo.common.schemas import Document, StrictRequest
from healthinfo.health_information.service import QuestionnaireChoice


class QuestionnaireBinding(StrictRequest):
    """The questionnaire a kit's first write binds it to (``version``: the newest active)."""

    # Printable only: a control character (NUL above all, which PostgreSQL refuses in text) is
    # a 422, never a database error (Schemathesis found it on the claim).
    id: str = Field(min_length=1, max_length=64, pattern=PRINTABLE_PATTERN)
    version: str | None = Field(
        default=None, min_length=1, max_length=16, pattern=PRINTABLE_PATTERN
    )

    def choice(self) -> QuestionnaireChoice:
        return QuestionnaireChoice(self.id, self.version)


class ReplaceAnswers(StrictRequest):
    """PUT body: all answers; ``submitted: true`` saves and submits in one step."""

    answers: dict[str, JsonValue]
    submitted: bool = False
    base_version: int | None = Field(default=None, ge=0)
    questionnaire: QuestionnaireBinding | None = None


class PatchAnswers(StrictRequest):
    """PATCH body (RFC 7396 merge patch on the answers): ``null`` removes an answer."""

    answers: dict[str, JsonValue]
    base_version: int | None = Field(default=None, ge=0)
    questionnaire: QuestionnaireBinding | None = None


class MoveQuestionnaire(StrictRequest):
    """Move a kit to another version of its questionnaire."""

    version: str = Field(min_length=1, max_length=16)
    drop_invalid: bool = False


class Amendment(StrictRequest):
    """An admin's correction of submitted answers (merge patch), with the reason for it."""

    answers: dict[str, JsonValue]
    reason: str = Field(min_length=1, max_length=2000)


class QuestionnaireRef(Document):
    id: str
    version: str


class HealthInformationDoc(Document):
    kit_id: str
    questionnaire: QuestionnaireRef
    status: Literal["in-progress", "submitted", "amended"]
    answers: dict[str, JsonValue]
    version: int
    created_at: str
    updated_at: str
    updated_by: str
    submitted_at: str | None


class RevisionDoc(Document):
    version: int
    status: Literal["in-progress", "submitted", "amended"]
    at: str
    by: str
    channel: str
    changed: list[str]


class RevisionList(Document):
    items: list[RevisionDoc]
    next_cursor: str | None
