"""The PHI scan of captured output (tests/support/phi_scan.py) finds what it must, and only that.

The fault and fuzz suites pass when the scan finds nothing; these tests prove that "nothing"
means clean output and not a scanner that cannot see: a planted value or token is found as
is, JSON-escaped, URL-encoded and in a query string, and the report never repeats it.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from healthinfo.infra.redaction import REDACTED
from tests.support.phi_scan import PhiScanner, Secret, credential_secrets, spellings

NOTE = 'PHI-5f0c9a "née" w3 #0042'
TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXRoYXQtbG9va3MtcmVhbA"
)
CLEAN_LINE = json.dumps(
    {
        "timestamp": "2026-11-24T10:00:00.123456Z",
        "level": "info",
        "event": "http.request",
        "request_id": "3fd4ca49-5b1e-4d0b-9f0e-8d2a1c6e7f10",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "method": "GET",
        "route": "/v1/kits/{kitId}/health-information",
        "query": REDACTED,
        "status": 200,
        "duration_ms": 12.4,
    }
)


def scanner() -> PhiScanner:
    return PhiScanner([Secret("answer value", NOTE), Secret("bearer token", TOKEN)])


def kinds_found(text: str) -> list[tuple[str, str]]:
    return [(leak.kind, leak.form) for leak in scanner().scan_text("out.log", text).leaks]


def test_a_planted_answer_value_is_found_as_is() -> None:
    assert kinds_found(f"note saved: {NOTE}\n") == [("answer value", "as is")]


def test_an_answer_value_in_a_json_log_line_is_found_escaped() -> None:
    line = json.dumps({"event": "saved", "detail": NOTE})
    assert NOTE not in line  # the quotes and the é are escaped: a plain search would miss it
    assert kinds_found(line) == [("answer value", "JSON-escaped")]


def test_an_answer_value_json_escaped_twice_is_found() -> None:
    """A JSON document carried as a string inside a JSON line (a span attribute, a body)."""
    line = json.dumps({"attributes": json.dumps({"additionalNotes": NOTE})})
    assert kinds_found(line) == [("answer value", "JSON-escaped twice")]


def test_an_answer_value_in_a_query_string_is_found_url_encoded() -> None:
    line = f"GET /v1/kits/K1/health-information?q={quote(NOTE)} 200"
    assert kinds_found(line) == [("answer value", "URL-encoded")]


def test_a_bearer_token_in_an_access_token_query_parameter_is_found() -> None:
    line = f'"GET /v1/kits/K1/health-information/events?access_token={TOKEN} HTTP/1.1" 200'
    assert kinds_found(line) == [("bearer token", "as is")]


def test_a_bearer_token_in_an_authorization_header_is_found() -> None:
    line = json.dumps({"headers": {"authorization": f"Bearer {TOKEN}"}})
    assert kinds_found(line) == [("bearer token", "as is")]


def test_clean_redacted_output_is_not_flagged() -> None:
    redacted = json.dumps({"event": "saved", "answers": REDACTED, "url": "/events?access_token="})
    report = scanner().scan_text("out.log", f"{CLEAN_LINE}\n{redacted}\n")
    assert report.leaks == []
    assert report.lines == 2


def test_part_of_a_value_is_not_the_value() -> None:
    """Each secret is searched whole; a run's marker prefix is planted as a secret of its own
    when fragments must count too."""
    assert kinds_found(f"{NOTE[:12]} and {TOKEN[:30]}") == []


def test_each_leak_names_its_source_line_and_kind() -> None:
    text = f"{CLEAN_LINE}\n{CLEAN_LINE}\nAuthorization: Bearer {TOKEN}\n"
    (leak,) = scanner().scan_text("server-8123.log", text).leaks
    assert (leak.source, leak.line, leak.kind) == ("server-8123.log", 3, "bearer token")


def test_a_report_never_repeats_the_value_it_found() -> None:
    report = scanner().scan_text("out.log", f"{NOTE} {TOKEN}")
    described = report.describe()
    assert len(report.leaks) == 2
    assert NOTE not in described
    assert TOKEN not in described
    assert TOKEN[:10] not in described


def test_the_longest_secret_at_a_position_is_the_one_reported() -> None:
    """A run marker and the note that starts with it: one leak, the note."""
    found = PhiScanner([Secret("marker", NOTE[:10]), Secret("answer value", NOTE)]).scan_text(
        "out.log", NOTE
    )
    assert [leak.kind for leak in found.leaks] == ["answer value"]


def test_every_occurrence_is_reported() -> None:
    assert len(scanner().scan_text("out.log", f"{TOKEN}\n{CLEAN_LINE}\n{TOKEN}").leaks) == 2


def test_files_are_scanned_with_their_names_and_line_counts(tmp_path: Path) -> None:
    (tmp_path / "clean.log").write_text(f"{CLEAN_LINE}\n{CLEAN_LINE}\n")
    (tmp_path / "spans.jsonl").write_text(json.dumps({"name": "GET", "url": TOKEN}) + "\n")
    report = scanner().scan_files(sorted(tmp_path.iterdir()))
    assert (report.sources, report.lines) == (2, 3)
    assert [(leak.source, leak.line) for leak in report.leaks] == [("spans.jsonl", 1)]


def test_a_secret_too_short_to_be_distinctive_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than"):
        Secret("answer value", "180")


def test_a_value_has_one_spelling_per_distinct_form() -> None:
    assert set(spellings("PHI-plain-ascii").values()) == {"as is"}
    assert set(spellings(NOTE).values()) == {
        "as is",
        "JSON-escaped",
        "JSON-escaped twice",
        "URL-encoded",
    }


def test_credentials_are_the_jwt_secret_and_each_master_keys_material() -> None:
    secrets = credential_secrets("a-jwt-secret-0123", "k1:AAECAwQFBgcICQoL,k2:ICEiIyQlJico")
    assert [(s.kind, s.value) for s in secrets] == [
        ("JWT secret", "a-jwt-secret-0123"),
        ("master key", "AAECAwQFBgcICQoL"),
        ("master key", "ICEiIyQlJico"),
    ]
