"""Scan captured logs and span dumps for the exact answer values and credentials a run used.

Why: the redaction (``src/healthinfo/infra/redaction.py``) is proven route by route with a few
markers (tests/integration/test_log_redaction.py, test_tracing.py). The fault and fuzz suites
drive far more paths — outages, restarts, retries, generated garbage — so their captured output
is scanned too, for every value the run wrote and every credential it used. A value can leave
in more than one spelling, so each one is searched in every form a log line, a span or a URL
would give it: as is, JSON-escaped (once and twice, ASCII-only or not) and URL-encoded.

A leak is reported with its source, line and kind, and only a masked hint of the value (its
first characters and length): the report must not itself become the leak it found.

Every secret is at least ``MIN_LENGTH`` characters (a shorter one would match clean text by
chance). Secrets are grouped by their first ``MIN_LENGTH`` characters and each text is searched
once per group, so thousands of values that share a prefix (a run's marker, a JWT header) cost
one pass.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

MIN_LENGTH = 8
HINT_LENGTH = 4


@dataclass(frozen=True)
class Secret:
    """A value that must not appear in any captured output, and what kind of value it is."""

    kind: str  # "answer value", "bearer token", "JWT secret", "master key", …
    value: str

    def __post_init__(self) -> None:
        if len(self.value) < MIN_LENGTH:
            raise ValueError(
                f"a {self.kind} shorter than {MIN_LENGTH} characters would match clean text"
            )


def hint(value: str) -> str:
    """Enough to tell values apart in a report, too little to be the value."""
    return f"{value[:HINT_LENGTH]}…({len(value)} chars)"


@dataclass(frozen=True)
class Leak:
    source: str
    line: int
    kind: str
    form: str
    hint: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.kind} ({self.form}) {self.hint}"


def spellings(value: str) -> dict[str, str]:
    """Each form ``value`` can take in captured text, with the name of the form; the first name
    wins where two forms are the same string."""
    once = json.dumps(value)[1:-1]
    candidates = [
        ("as is", value),
        ("JSON-escaped", once),
        ("JSON-escaped", json.dumps(value, ensure_ascii=False)[1:-1]),
        ("JSON-escaped twice", json.dumps(once)[1:-1]),
        ("URL-encoded", quote(value, safe="")),
        ("URL-encoded", quote_plus(value)),
    ]
    forms: dict[str, str] = {}
    for name, text in candidates:
        forms.setdefault(text, name)
    return forms


@dataclass
class ScanReport:
    """What was scanned, and what was found: figures for the non-vacuity checks and the docs."""

    sources: int = 0
    lines: int = 0
    characters: int = 0
    leaks: list[Leak] = field(default_factory=list)

    def merge(self, other: ScanReport) -> None:
        self.sources += other.sources
        self.lines += other.lines
        self.characters += other.characters
        self.leaks.extend(other.leaks)

    def describe(self, limit: int = 25) -> str:
        shown = "\n".join(str(leak) for leak in self.leaks[:limit])
        more = len(self.leaks) - limit
        return shown + (f"\n… and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class _Needle:
    text: str
    kind: str
    form: str
    hint: str


class PhiScanner:
    """Searches texts for every spelling of every secret it was given."""

    def __init__(self, secrets: Iterable[Secret]) -> None:
        self._groups: dict[str, list[_Needle]] = defaultdict(list)
        seen: set[str] = set()
        for secret in secrets:
            for text, form in spellings(secret.value).items():
                if text not in seen:
                    seen.add(text)
                    needle = _Needle(text, secret.kind, form, hint(secret.value))
                    self._groups[text[:MIN_LENGTH]].append(needle)
        for needles in self._groups.values():
            needles.sort(key=lambda n: len(n.text), reverse=True)  # the longest match wins
        self.secrets = len(seen)

    def scan_text(self, source: str, text: str) -> ScanReport:
        """Every occurrence of a secret in ``text``, one leak per position (the longest)."""
        found: dict[int, _Needle] = {}
        for prefix, needles in self._groups.items():
            start = text.find(prefix)
            while start != -1:
                match = next((n for n in needles if text.startswith(n.text, start)), None)
                if match is not None and start not in found:
                    found[start] = match
                start = text.find(prefix, start + 1)
        leaks = [
            Leak(source, text.count("\n", 0, position) + 1, needle.kind, needle.form, needle.hint)
            for position, needle in sorted(found.items())
        ]
        lines = text.count("\n") + (0 if not text or text.endswith("\n") else 1)
        return ScanReport(sources=1, lines=lines, characters=len(text), leaks=leaks)

    def scan_files(self, paths: Iterable[Path]) -> ScanReport:
        report = ScanReport()
        for path in paths:
            text = path.read_text(encoding="utf-8", errors="replace")
            report.merge(self.scan_text(path.name, text))
        return report


def credential_secrets(jwt_secret: str, master_keys: str) -> list[Secret]:
    """The JWT signing secret and the material of every master key (``id:base64,…``)."""
    keys = [spec.split(":", 1)[1] for spec in master_keys.split(",") if ":" in spec]
    return [Secret("JWT secret", jwt_secret), *(Secret("master key", key) for key in keys)]
