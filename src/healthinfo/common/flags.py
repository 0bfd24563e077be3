"""Feature flags with percentage rollout by kit: on, off, or "N%" of kits.

A kit is in a rollout when a stable hash of (flag, kit id) falls below the percentage, so the
same kit gets the same answer on every instance and every request, and raising the percentage
only ever adds kits. Flags are plain settings (``HEALTHINFO_STRICT_PRECONDITIONS=25%``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer
from pydantic_settings import NoDecode

_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


@dataclass(frozen=True, slots=True)
class Rollout:
    """``percent`` of kits (0 to 100) have the feature."""

    percent: int

    @property
    def anywhere(self) -> bool:
        """On for at least some kits (so whatever backs it must be built)."""
        return self.percent > 0

    def enabled_for(self, flag: str, kit_id: str) -> bool:
        if self.percent >= 100:
            return True
        if self.percent <= 0:
            return False
        digest = hashlib.sha256(f"{flag}:{kit_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") % 100 < self.percent

    def __str__(self) -> str:
        return {0: "off", 100: "on"}.get(self.percent, f"{self.percent}%")


def parse_rollout(value: Any) -> Rollout:
    if isinstance(value, Rollout):
        return value
    if isinstance(value, bool):
        return Rollout(100 if value else 0)
    text = str(value).strip().lower()
    if text in _TRUE:
        return Rollout(100)
    if text in _FALSE:
        return Rollout(0)
    if text.endswith("%") and text[:-1].strip().isdigit():
        percent = int(text[:-1])
        if 0 <= percent <= 100:
            return Rollout(percent)
    raise ValueError("must be true, false or a percentage of kits like '25%'")


# NoDecode: a setting's text ("25%") is parsed by parse_rollout, not decoded as JSON first.
Flag = Annotated[
    Rollout, NoDecode, BeforeValidator(parse_rollout), PlainSerializer(str, return_type=str)
]
ON = Rollout(100)
OFF = Rollout(0)
