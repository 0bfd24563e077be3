"""The authenticated caller, as every channel hands it to the services."""

from __future__ import annotations

from dataclasses import dataclass, field

ADMIN = "admin"
AUDITOR = "auditor"
# Reads submitted data and runs FHIR Bulk Data exports; writes nothing (docs/security.md).
RESEARCHER = "researcher"
ROLES = (ADMIN, AUDITOR, RESEARCHER)


@dataclass(frozen=True, slots=True)
class Actor:
    """A verified user: ``user_id`` is the token's ``sub``; ``roles`` its global ``roles`` claim."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    # When the token that authenticated this caller stops being accepted (its ``exp`` plus the
    # verifier's leeway, seconds since the epoch); None for callers without a token (the CLI).
    # A long-lived connection checks it per message and ends at it (realtime/stream.py).
    expires_at: float | None = field(default=None, compare=False)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_auditor(self) -> bool:
        return AUDITOR in self.roles

    @property
    def is_researcher(self) -> bool:
        return RESEARCHER in self.roles
