"""The authenticated caller, as every channel hands it to the services."""

from __future__ import annotations

from dataclasses import dataclass, field

ADMIN = "admin"
AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class Actor:
    """A verified user: ``user_id`` is the token's ``sub``; ``roles`` its global ``roles`` claim."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_auditor(self) -> bool:
        return AUDITOR in self.roles
