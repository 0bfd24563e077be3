"""Searching many kits' health information: what a search may ask, independent of any format.

The FHIR adapter (fhir/search.py) translates its search parameters into a ``SearchQuery``;
the service applies the caller's access (kits/service.py ``scope_clause``) and the repository
turns the rest into one keyset-paginated query. Kept free of FHIR so another channel could
search the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from healthinfo.health_information.model import HealthInformationState, Status

Comparison = Literal["ge", "gt", "le", "lt"]


@dataclass(frozen=True, slots=True)
class UpdatedBound:
    """``updated_at <operator> at``; several bounds all apply (a range is two)."""

    operator: Comparison
    at: datetime


@dataclass(frozen=True, slots=True)
class QuestionnaireRef:
    """A questionnaire id, and a version or any version (None)."""

    id: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Every condition must hold; within ``statuses`` and ``questionnaires`` any one does.

    ``None`` means "no condition"; an empty set matches nothing (a search for a status or a
    questionnaire this service never stores).
    """

    statuses: frozenset[Status] | None = None
    questionnaires: tuple[QuestionnaireRef, ...] | None = None
    updated: tuple[UpdatedBound, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page in kit-id order; ``after`` is the last kit id when more may follow."""

    items: list[HealthInformationState]
    after: str | None
