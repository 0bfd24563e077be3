"""What other packages need to know about audit events without importing their owners.

Replication holds replicas back only for changes (``replication/reads.py``): it must tell a
disclosure (a read, an export: audited, but nothing a later read could miss) from a change,
and an accepted write from a refused one. Those names belong to the domains that write the
events (``health_information``, ``compliance``, ``fhir.bulk``, ``audit``); they are defined
here, in the one package everyone may import, and re-exported by their owners, so replication
depends on ``common`` and not on five domain packages.
"""

from __future__ import annotations

from typing import Protocol

OK = "ok"  # the outcome of an accepted write
READ = "health-information.read"
EXPORT = "kit.export"
BULK_EXPORT = "fhir.bulk-export"  # a kit's answers written into a FHIR Bulk Data export
# Audited, but they change nothing a read could miss: they need not hold replicas back.
DISCLOSURES = frozenset({READ, EXPORT, BULK_EXPORT})


class AuditedAction(Protocol):
    """What an audit entry says about itself (``audit.service.AuditEntry``)."""

    @property
    def action(self) -> str: ...

    @property
    def outcome(self) -> str: ...


class ChangeSink(Protocol):
    """Told, after a commit, that a kit changed and how long its audit chain now is
    (``replication.freshness.ChangeRecord``)."""

    def changed(self, kit_id: str, audit_length: int) -> None: ...


def is_change(entry: AuditedAction) -> bool:
    """An accepted write: not a disclosure, a refusal, or a write that changed nothing."""
    return entry.outcome == OK and entry.action not in DISCLOSURES
