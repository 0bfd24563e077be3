"""Domain errors: what went wrong, in words a client can act on, with no HTTP in them.

Each error carries a stable machine-readable ``code`` (the contract's problem codes) and a
``detail`` safe to show to the caller: never an answer value, a token or SQL. Mapping to HTTP
status codes, WebSocket error messages and close codes lives in ``healthinfo.api.problems``.

Tree::

    DomainError
    ├── Unauthenticated          unauthenticated
    ├── Forbidden                forbidden
    ├── NotFound                 not-found
    ├── AlreadySubmitted         already-submitted
    ├── EditConflict             edit-conflict
    ├── NotSubmitted             not-submitted
    ├── IdempotencyKeyInUse      idempotency-key-in-use
    ├── IdempotencyKeyReused     idempotency-key-reused
    ├── KitAlreadyClaimed        kit-already-claimed
    ├── QuestionnaireMismatch    questionnaire-mismatch
    ├── QuestionnaireVersionExists questionnaire-version-exists
    ├── DeliveryNotDead          delivery-not-dead
    ├── VersionConflict          version-conflict
    ├── PreconditionRequired     precondition-required
    ├── ValidationFailed         validation-failed
    ├── MalformedRequest         malformed-request
    ├── PayloadTooLarge          payload-too-large
    ├── UnsupportedMediaType     unsupported-media-type
    ├── RoomFull                 room-full
    ├── RateLimited              rate-limited
    ├── ExportInProgress         export-in-progress
    └── Unavailable              unavailable
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: a dotted path (``answers.heightCm``) and why, without its value."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class FieldConflict:
    """A question changed by someone else since the writer's ``baseVersion``."""

    field: str
    current_version: int

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "currentVersion": self.current_version}


class DomainError(Exception):
    """Base of every expected failure. ``extra`` holds machine-readable members of the problem."""

    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        super().__init__(self.detail)

    def extra(self) -> dict[str, Any]:
        return {}


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    code = "not-found"
    title = "Not found"


class AlreadySubmitted(DomainError):
    code = "already-submitted"
    title = "Already submitted"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "The health information was submitted and is read-only; ask for an amendment."
        )


class IdempotencyKeyInUse(DomainError):
    code = "idempotency-key-in-use"
    title = "Idempotency key in use"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; retry soon."
        )


class IdempotencyKeyReused(DomainError):
    code = "idempotency-key-reused"
    title = "Idempotency key reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used for a different request; use a new key.")


class NotSubmitted(DomainError):
    """Amendments correct submitted data; data still in progress is edited normally."""

    code = "not-submitted"
    title = "Not submitted"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "Only submitted health information can be amended; edit it instead."
        )


class KitAlreadyClaimed(DomainError):
    code = "kit-already-claimed"
    title = "Kit already claimed"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or "The kit is already claimed by another user.")


class QuestionnaireMismatch(DomainError):
    """A write names another questionnaire than the one the kit is bound to."""

    code = "questionnaire-mismatch"
    title = "Questionnaire mismatch"

    def __init__(self, bound_id: str, bound_version: str) -> None:
        self.bound = {"id": bound_id, "version": bound_version}
        super().__init__(
            f"The kit answers questionnaire {bound_id!r} version {bound_version!r}; move it "
            "with POST /v1/kits/{kitId}/health-information/questionnaire instead."
        )

    def extra(self) -> dict[str, Any]:
        return {"questionnaire": self.bound}


class QuestionnaireVersionExists(DomainError):
    """Published versions are immutable: other content needs another version."""

    code = "questionnaire-version-exists"
    title = "Questionnaire version exists"

    def __init__(self, questionnaire_id: str, version: str) -> None:
        super().__init__(
            f"Questionnaire {questionnaire_id!r} version {version!r} is already published with "
            "other content; publish it under a new version."
        )


class DeliveryNotDead(DomainError):
    """Only a dead letter can be retried; a pending one is already being tried, a delivered one
    is done."""

    code = "delivery-not-dead"
    title = "Delivery not dead-lettered"

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(f"The delivery is {state}; only dead deliveries can be retried.")

    def extra(self) -> dict[str, Any]:
        return {"state": self.state}


class VersionConflict(DomainError):
    code = "version-conflict"
    title = "Version conflict"

    def __init__(self, current_version: int | None, expected: str) -> None:
        self.current_version = current_version
        if current_version is None:
            detail = f"Nothing is saved yet, so If-Match {expected} cannot match."
        else:
            shown = expected.strip('"') if expected.count('"') == 2 else expected
            detail = f"The health information is at version {current_version}, not {shown}."
        super().__init__(detail)

    def extra(self) -> dict[str, Any]:
        return {"currentVersion": self.current_version}


class EditConflict(DomainError):
    code = "edit-conflict"
    title = "Edit conflict"

    def __init__(
        self, conflicts: list[FieldConflict], current_version: int, base_version: int
    ) -> None:
        self.conflicts = conflicts
        self.current_version = current_version
        names = ", ".join(c.field for c in conflicts)
        super().__init__(
            f"Since version {base_version}, someone else changed: {names}. "
            "Reload them and write again with the current version as baseVersion."
        )

    def extra(self) -> dict[str, Any]:
        return {
            "currentVersion": self.current_version,
            "conflicts": [c.as_dict() for c in self.conflicts],
        }


class PreconditionRequired(DomainError):
    code = "precondition-required"
    title = "Precondition required"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "This deployment requires If-Match or baseVersion on every write."
        )


class ValidationFailed(DomainError):
    code = "validation-failed"
    title = "Validation failed"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        self.errors = errors
        super().__init__(detail or f"{len(errors)} field(s) are invalid.")

    def extra(self) -> dict[str, Any]:
        return {"errors": [e.as_dict() for e in self.errors]}


class MalformedRequest(DomainError):
    code = "malformed-request"
    title = "Malformed request"


class PayloadTooLarge(DomainError):
    code = "payload-too-large"
    title = "Payload too large"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"The body is larger than the limit of {limit} bytes.")


class UnsupportedMediaType(DomainError):
    code = "unsupported-media-type"
    title = "Unsupported media type"


class RoomFull(DomainError):
    """A live connection (SSE or WebSocket) beyond the kit's room limit, or beyond the
    per-user cap of a room; the members already in stay connected."""

    code = "room-full"
    title = "Room full"

    def __init__(self, limit: int, *, retry_after: int = 3, per_user: bool = False) -> None:
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(
            f"You already have {limit} live connections to this kit, the most one user may "
            "hold; close one or try again later."
            if per_user
            else f"This kit already has {limit} live connections, the most it allows; "
            "try again later."
        )

    def extra(self) -> dict[str, Any]:
        return {"retryAfter": self.retry_after}


class RateLimited(DomainError):
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"Too many requests; retry after {retry_after} seconds.")

    def extra(self) -> dict[str, Any]:
        """Also in the body: a WebSocket error message has no headers to carry it."""
        return {"retryAfter": self.retry_after}


class ExportInProgress(DomainError):
    """A FHIR Bulk Data kick-off while the same user's previous export is still running."""

    code = "export-in-progress"
    title = "Export already running"

    def __init__(self, retry_after: int = 10) -> None:
        self.retry_after = retry_after
        super().__init__(
            "Your previous export is still running; wait for it or cancel it (DELETE its "
            "status URL) before starting another."
        )

    def extra(self) -> dict[str, Any]:
        return {"retryAfter": self.retry_after}


class Unavailable(DomainError):
    code = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or "The database is unreachable; try again shortly.")
