"""What every legacy (unversioned) response carries: RFC 9745's Deprecation date."""

from __future__ import annotations

# ``@`` and the Unix time of 2026-11-25T00:00:00Z, the day /v1 shipped (docs/api-notes.md).
DEPRECATION = "@1795564800"
