"""Value objects of the domain: the stored state, revisions, and the outcome of a write."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from healthinfo.common.clock import to_rfc3339

Answers = dict[str, Any]


class Status(StrEnum):
    IN_PROGRESS = "in-progress"
    SUBMITTED = "submitted"
    AMENDED = "amended"

    @property
    def is_final(self) -> bool:
        """Submitted and amended data is read-only except through an amendment."""
        return self is not Status.IN_PROGRESS


@dataclass(frozen=True, slots=True)
class HealthInformationState:
    """A kit's health information at one version: what GET returns."""

    kit_id: str
    questionnaire_id: str
    questionnaire_version: str
    status: Status
    answers: Answers
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str
    submitted_at: datetime | None
    field_versions: dict[str, int] = field(default_factory=dict)

    def to_representation(self) -> dict[str, Any]:
        return {
            "kitId": self.kit_id,
            "questionnaire": {"id": self.questionnaire_id, "version": self.questionnaire_version},
            "status": self.status.value,
            "answers": self.answers,
            "version": self.version,
            "createdAt": to_rfc3339(self.created_at),
            "updatedAt": to_rfc3339(self.updated_at),
            "updatedBy": self.updated_by,
            "submittedAt": to_rfc3339(self.submitted_at) if self.submitted_at else None,
        }


@dataclass(frozen=True, slots=True)
class RevisionSummary:
    """One entry of the history list: who changed which questions, when, through what."""

    version: int
    status: Status
    at: datetime
    by: str
    channel: str
    changed: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "status": self.status.value,
            "at": to_rfc3339(self.at),
            "by": self.by,
            "channel": self.channel,
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: ``created`` for 201, ``changed`` empty and ``new_version`` False for a
    write that changed nothing (no version was created)."""

    state: HealthInformationState
    created: bool
    new_version: bool
    changed: list[str]
    version_before: int | None
