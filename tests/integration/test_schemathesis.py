"""Schemathesis against the app's own ``/openapi.json``: generated requests, every response checked.

Every operation of the schema (the ``/v1`` routes, their deprecated unversioned twins, health,
metrics and the problem pages) is called in two of Schemathesis' phases, authenticated as one owner
(in negative mode a case may replace the bearer token with a malformed one, which must be 401):

* **fuzzing**: requests generated from the schema by Hypothesis. The kit ids in paths are either
  generated or, about half the time, one of the seeded kits that owner can reach (in progress
  with members, submitted, another user's kit the owner edits, another user's kit the owner
  cannot see), so cases get past access control and into the rules;
* **coverage**: Schemathesis' deterministic cases for each operation: boundary values, each
  parameter missing or of the wrong type, unsupported media types, and every method the path
  does not declare (``OPTIONS``, ``TRACE``, ``QUERY``…), which must be 405 with a complete
  ``Allow`` (``ST204``), while ``OPTIONS`` must list exactly the documented methods (``ST205``).

Checks on every response:

* every check Schemathesis has (``--checks all``): ``not_a_server_error`` (no 5xx),
  ``status_code_conformance`` (the status is documented), ``content_type_conformance``,
  ``response_schema_conformance`` and ``response_headers_conformance``,
  ``positive_data_acceptance``, ``negative_data_rejection`` (coverage cases only, see
  ``Fuzzing.call``), ``missing_required_header``, ``ignored_auth``, ``unsupported_method``,
  ``allow_header_conformance`` and ``max_response_time`` (10 s, as ``--checks all``); the
  stateful ones (``use_after_free``, ``ensure_resource_availability``) need a stateful run and
  pass vacuously here;
* ``problem_json_for_errors`` (ours): every 4xx/5xx is ``application/problem+json`` with the
  RFC 9457 members and the contract's ``code``, its ``status`` equal to the response's, and its
  ``requestId`` equal to the ``X-Request-ID`` header;
* ``request_id_on_every_response`` (ours): the contract's "every response carries X-Request-ID".

Excluded from fuzzing: the streaming routes (SSE ``…/events``, WebSocket ``…/ws``; the WebSocket
route is not in the schema at all): a generated request to an event stream never ends on its own.
They are covered by tests/integration/test_realtime*.py.

Runs on one backend, PostgreSQL + Redis (SQLite only when ``HEALTHINFO_TEST_BACKENDS`` leaves
PostgreSQL out): the checks are about the HTTP surface, the same on both databases, and one
backend keeps the default run short. 18 fuzzing cases per operation and mode by default, 200
with ``HEALTHINFO_TEST_FULL=1``, and every coverage case. The run asserts a minimum number of
cases of each phase (fuzzing 1,000, 10,000 at full size; coverage 500), so a configuration
mistake cannot make it pass by testing nothing.

The run is also scanned for leaks (tests/support/phi_scan.py): the seeded answers carry marker
values (free-text notes starting ``PHI-<run>``, a decimal with a run-specific fraction), tracing
is on with a span exporter writing JSON lines, and a second log handler (the production
formatter, at DEBUG) records every line. Neither may hold a seeded value, a bearer token used,
the JWT secret or a master key; and the scan must have read an access-log line and a server span
for most cases, and find the seeded values where they belong (the seeding responses).

One fuzz run per module (the ``fuzz_run`` fixture); each test judges one property of it.

Schemathesis' own pytest integration (``schemathesis.pytest.from_fixture``) fails on pytest 9.2
(``'Function' object has no attribute '_nodeid'``), so each operation's Hypothesis strategy is
driven here; every operation runs even after one failed, and all shrunk failures are reported.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from schemathesis import Case, CheckContext, CheckFunction, GenerationMode, Response
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import negative_data_rejection

from healthinfo.api.openapi_docs import NO_TOKEN_PATHS
from healthinfo.app import create_app
from healthinfo.config import Settings
from healthinfo.fhir.outcome import PROBLEM_SYSTEM
from healthinfo.infra.logging import ProtocolChatterFilter, build_formatter, configure_logging
from tests.support.answers import COMPLETE
from tests.support.backends import BACKENDS
from tests.support.phi_scan import PhiScanner, ScanReport, Secret, credential_secrets
from tests.support.tokens import TEST_MASTER_KEYS, TEST_SECRET, token

FULL = os.environ.get("HEALTHINFO_TEST_FULL") == "1"
EXAMPLES_PER_OPERATION = 200 if FULL else 18
FUZZ_BACKEND = "postgres" if "postgres" in BACKENDS else BACKENDS[0]
MIN_CASES = 10_000 if FULL else 1_000
MIN_COVERAGE_CASES = 500
MAX_RESPONSE_SECONDS = 10.0  # what ``--checks all`` sets
PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"
FHIR_BASE = "/v1/fhir"
PROBLEM_MEMBERS = ("type", "title", "status", "detail", "code", "requestId")
STREAMING = r"/(events|ws)$"
# Every test here runs on the one fuzzing backend.
pytestmark = pytest.mark.parametrize("database_url", [FUZZ_BACKEND], indirect=True)
# Schema-valid is not business-valid here: the schema types ``answers`` as any JSON object (the
# questionnaire, served at /v1/questionnaires/{id}, holds the rules: 422) and If-Match as any
# string (a stale or made-up one is 412). Every other status for schema-valid data still fails.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2XX", "3XX", 401, 403, 404, 409, 412, 422, 429],
            },
            "max_response_time": MAX_RESPONSE_SECONDS,
        }
    }
)


@dataclass
class Seeded:
    """The kits the fuzzing owner can reach, and the users around them."""

    owner: str
    other: str  # owns OTHER_EDITABLE (owner is its editor) and HIDDEN (owner has no role)
    editor: str
    viewer: str
    in_progress: str
    submitted: str
    other_editable: str
    hidden: str
    erased: set[str] = field(default_factory=set)
    # The PHI scan's markers: every seeded text starts with ``marker``; ``weight`` is a decimal
    # no log line, id or timing has by chance. Kept out of reprs, so failures do not print them.
    marker: str = field(default_factory=lambda: f"PHI-{uuid.uuid4().hex}", repr=False)
    weight: float = field(
        default_factory=lambda: float(f"61.{uuid.uuid4().int % 10**7:07d}1"), repr=False
    )
    tokens: set[str] = field(default_factory=set, repr=False)  # every bearer token sent
    served: list[str] = field(default_factory=list, repr=False)  # the seeding responses

    def auth(self, user: str) -> dict[str, str]:
        bearer = token(user)
        self.tokens.add(bearer)
        return {"Authorization": f"Bearer {bearer}"}

    def note(self, kit: str) -> str:
        """A free-text answer: the marker, and characters JSON and URLs escape."""
        return f"{self.marker} née {kit}"

    def answers(self, kit: str) -> dict[str, Any]:
        """A seeded kit's answers, each text and decimal one a marker."""
        note = {"additionalNotes": self.note(kit)}
        if kit == self.submitted:
            return {**COMPLETE, **note, "weightKg": self.weight, "medications": self.note("meds")}
        if kit == self.in_progress:
            return {"heightCm": 180, "smokingStatus": "never", "weightKg": self.weight, **note}
        return {"heightCm": 170, **note}

    def is_marker(self, value: object) -> bool:
        return value == self.weight or (isinstance(value, str) and value.startswith(self.marker))

    @property
    def written(self) -> list[str]:
        """Every marker value seeded, as JSON text spells it."""
        values = {
            value if isinstance(value, str) else json.dumps(value)
            for kit in self.kits
            for value in self.answers(kit).values()
            if self.is_marker(value)
        }
        return sorted(values)

    @property
    def kits(self) -> list[str]:
        return [self.in_progress, self.submitted, self.other_editable, self.hidden]

    @property
    def users(self) -> list[str]:
        return [self.owner, self.other, self.editor, self.viewer]


@dataclass
class Counter:
    cases: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


# -- custom checks: registered once for every schema -----------------------------------------


def _header(response: Response, name: str) -> str | None:
    values = response.headers.get(name.lower())
    return values[0] if values else None


@schemathesis.check
def problem_json_for_errors(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every error is an RFC 9457 problem with the contract's members (api.md, "Errors")."""
    if response.status_code < 400:
        return None
    content_type = (_header(response, "content-type") or "").split(";")[0].strip()
    if case.path.startswith(FHIR_BASE + "/"):
        return _operation_outcome(response, content_type)
    assert content_type == PROBLEM_JSON, (
        f"{response.status_code} answered with Content-Type {content_type!r}, not {PROBLEM_JSON}"
    )
    body = json.loads(response.content)
    assert isinstance(body, dict), "a problem document is a JSON object"
    missing = [name for name in PROBLEM_MEMBERS if name not in body]
    assert not missing, f"problem document lacks {missing}"
    assert body["status"] == response.status_code, "problem status differs from the response's"
    assert isinstance(body["code"], str), "problem code is not a string"
    assert body["code"], "problem code is empty"
    assert body["type"] == f"/problems/{body['code']}", "problem type does not match its code"
    if _header(response, "idempotent-replayed") != "true":  # a replay is the stored response
        assert body["requestId"] == _header(response, "x-request-id"), "requestId != X-Request-ID"
    return True


def _operation_outcome(response: Response, content_type: str) -> bool:
    """Under the FHIR base, errors are OperationOutcome with the problem code (fhir/outcome.py)."""
    assert content_type == FHIR_JSON, (
        f"{response.status_code} under the FHIR base is {content_type!r}"
    )
    body = json.loads(response.content)
    assert body.get("resourceType") == "OperationOutcome", "not an OperationOutcome"
    first = body["issue"][0]
    coding = first["details"]["coding"][0]
    assert coding["system"] == PROBLEM_SYSTEM, "issue[0] does not carry the problem code"
    assert isinstance(coding["code"], str), "problem code is not a string"
    assert coding["code"], "problem code is empty"
    if _header(response, "idempotent-replayed") != "true":
        request_id = _header(response, "x-request-id")
        assert first["diagnostics"].startswith(f"requestId {request_id}"), "requestId missing"
    return True


@schemathesis.check
def request_id_on_every_response(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """'Every response carries X-Request-ID' (api.md, Conventions)."""
    assert _header(response, "x-request-id"), "response without X-Request-ID"
    return True


CUSTOM_CHECKS: list[CheckFunction] = [problem_json_for_errors, request_id_on_every_response]


# -- the schema under test ---------------------------------------------------------------------


def seed(application: Any) -> Seeded:
    """Arrange the kits through the API itself, on the app Schemathesis will call."""
    tag = uuid.uuid4().hex[:8]
    seeded = Seeded(
        owner=f"fuzz-owner-{tag}",
        other=f"fuzz-other-{tag}",
        editor=f"fuzz-editor-{tag}",
        viewer=f"fuzz-viewer-{tag}",
        in_progress=f"FUZZ-{tag}-progress",
        submitted=f"FUZZ-{tag}-submitted",
        other_editable=f"FUZZ-{tag}-shared",
        hidden=f"FUZZ-{tag}-hidden",
    )
    with asgi.get_client(application) as client:
        reseed(client, seeded, seeded.in_progress)
        for user, role in ((seeded.editor, "editor"), (seeded.viewer, "viewer")):
            response = client.put(
                f"/v1/kits/{seeded.in_progress}/members/{user}",
                json={"role": role},
                headers=seeded.auth(seeded.owner),
            )
            assert response.status_code == 201, response.text
        reseed(client, seeded, seeded.submitted)
        for kit in (seeded.other_editable, seeded.hidden):
            reseed(client, seeded, kit)
        response = client.put(
            f"/v1/kits/{seeded.other_editable}/members/{seeded.owner}",
            json={"role": "editor"},
            headers=seeded.auth(seeded.other),
        )
        assert response.status_code == 201, response.text
    return seeded


def reseed(client: Any, seeded: Seeded, kit: str) -> None:
    """Give a seeded kit its data again (first seeding, or after a generated erasure)."""
    body: dict[str, Any] = {"answers": seeded.answers(kit)}
    if kit == seeded.submitted:
        body["submitted"] = True
    owner = seeded.owner if kit in (seeded.in_progress, seeded.submitted) else seeded.other
    response = client.put(
        f"/v1/kits/{kit}/health-information", json=body, headers=seeded.auth(owner)
    )
    assert response.status_code in (200, 201), response.text
    seeded.served.append(response.text)


def reachable_path_parameters(seeded: Seeded) -> Callable[[Any, dict[str, Any]], Any]:
    """Half the cases keep their generated path; the others name seeded kits, users, versions."""

    def flatmap(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        if not path_parameters or not {"kitId", "questionnaireId", "id"} & set(path_parameters):
            return st.just(path_parameters)
        variants: list[dict[str, Any]] = []
        if "id" in path_parameters:  # the FHIR base: a kit's (or a questionnaire's) FHIR id
            for resource_id in (*seeded.kits, "health-information"):
                variant = {**path_parameters, "id": resource_id}
                if "vid" in path_parameters:
                    variants.extend({**variant, "vid": v} for v in ("1", "2"))
                else:
                    variants.append(variant)
        if "questionnaireId" in path_parameters:
            variants.append({**path_parameters, "questionnaireId": "health-information"})
        if "kitId" in path_parameters:
            for kit in seeded.kits:
                variant = {**path_parameters, "kitId": kit}
                if "version" in path_parameters:
                    variants.extend({**variant, "version": v} for v in (1, 2))
                elif "userId" in path_parameters:
                    variants.extend({**variant, "userId": u} for u in seeded.users)
                else:
                    variants.append(variant)
        return st.one_of(st.just(path_parameters), st.sampled_from(variants))

    return flatmap


@dataclass
class Fuzzing:
    application: Any
    seeded: Seeded
    cases: int = 0
    coverage_cases: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def call(self, case: Case[Any], *, swapped: bool = True) -> None:
        """``swapped``: the case went through the seeded-kit hook (fuzzing)."""
        seeded = self.seeded
        kit = (case.path_parameters or {}).get("kitId")
        if kit in seeded.erased:
            with asgi.get_client(self.application) as client:
                reseed(client, seeded, kit)
            seeded.erased.discard(kit)
        # In fuzzing the harness may swap in a seeded kit id, which can turn a generated invalid
        # request into a valid one: "invalid data must be rejected" cannot be judged on such a
        # case (every other check still runs on it). Coverage cases are sent as generated.
        response = case.call_and_validate(
            headers=seeded.auth(seeded.owner),
            additional_checks=CUSTOM_CHECKS,
            excluded_checks=[negative_data_rejection] if swapped else [],
        )
        self.cases += 1
        self.by_status[response.status_code] = self.by_status.get(response.status_code, 0) + 1
        erasure = case.method.upper() == "DELETE" and case.path.endswith("/health-information")
        if erasure and response.status_code == 204 and kit in seeded.kits:
            seeded.erased.add(kit)


def fuzz_operation(fuzzing: Fuzzing, operation: Any, mode: GenerationMode) -> None:
    """Run one operation's generated cases; a failure is recorded (shrunk), not raised."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=not FULL,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Case[Any]) -> None:
        fuzzing.call(case)

    try:
        run()
    except Unsatisfiable:
        # Negative mode found nothing to break: every input of the operation accepts any value
        # (e.g. /health/live, whose only parameter is X-Request-ID, replaced when not sane and
        # never refused). There is no invalid request to send, so nothing to check.
        if mode is not GenerationMode.NEGATIVE:
            fuzzing.failures.append(f"{operation.label} [{mode.value}]: no case could be generated")
    except (Exception, BaseExceptionGroup) as exc:  # every failure is collected, reported below
        causes = getattr(exc, "exceptions", ())  # Hypothesis' flaky failures carry the first one
        detail = "".join(f"\n  caused by {type(c).__name__}: {c}" for c in causes)
        fuzzing.failures.append(f"{operation.label} [{mode.value}]: {exc}{detail}")


def cover_operation(fuzzing: Fuzzing, schema: Any, operation: Any) -> None:
    """Run the operation's coverage-phase cases, as ``st run`` would; every failure recorded."""
    config = schema.config.generation_for(operation=operation, phase="coverage")
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    for case in schema.iter_coverage_cases(
        operation, generation_modes=modes, generation_config=config
    ):
        try:
            fuzzing.call(case, swapped=False)
        except (Exception, BaseExceptionGroup) as exc:  # every failure is collected
            description = case.meta.phase.data.description if case.meta else ""
            sent = f"{case.method} {case.formatted_path}"
            fuzzing.failures.append(f"{operation.label} [coverage: {description}] {sent}: {exc}")
        fuzzing.coverage_cases += 1


def has_inputs(operation: Any) -> bool:
    parts = (operation.path_parameters, operation.query, operation.headers, operation.body)
    return any(len(part) for part in parts)


def fuzz_every_operation(fuzzing: Fuzzing) -> int:
    """Every operation of the schema (the streaming ones aside), positive and negative; the
    number of operations."""
    loaded = schemathesis.openapi.from_asgi("/openapi.json", fuzzing.application, config=CONFIG)
    loaded.hook("flatmap_path_parameters")(reachable_path_parameters(fuzzing.seeded))
    included = loaded.exclude(path_regex=STREAMING)
    results = list(included.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), [r for r in results if not isinstance(r, Ok)]
    for operation in operations:
        fuzz_operation(fuzzing, operation, GenerationMode.POSITIVE)
        if has_inputs(operation):  # nothing to make invalid in GET /health/live
            fuzz_operation(fuzzing, operation, GenerationMode.NEGATIVE)
        cover_operation(fuzzing, loaded, operation)
    return len(operations)


# -- what the run leaves behind: log lines and spans, scanned for health data -----------------


class JsonLinesSpanExporter(SpanExporter):
    """Writes each span as an exporter receives it (after the redaction), one JSON line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server_spans = 0
        self._file: TextIO = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._file.write(span.to_json(indent=None) + "\n")
            self.server_spans += span.kind == SpanKind.SERVER
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


@contextmanager
def captured_log(path: Path) -> Iterator[None]:
    """Every log line, rendered by the production formatter and filter, also into ``path``."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.addFilter(ProtocolChatterFilter())
    handler.setFormatter(build_formatter(json=True))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        configure_logging(level="INFO", json=True)  # the app set DEBUG; later tests expect INFO


@dataclass
class PhiScan:
    """What the scan read (so it cannot pass by reading nothing), and what it found."""

    log: ScanReport
    request_lines: int  # access-log lines: one per request the app answered
    spans: ScanReport
    server_spans: int
    secrets: dict[str, int]
    control: ScanReport  # the seeding responses: where the seeded values belong
    control_expected: int  # the seeded values in them, each of which must be found

    @property
    def leaks(self) -> list[str]:
        return [str(leak) for report in (self.log, self.spans) for leak in report.leaks]

    def describe(self) -> str:
        secrets = ", ".join(f"{n} {kind}" for kind, n in self.secrets.items())
        return (
            f"PHI scan: {self.log.lines} log lines ({self.request_lines} requests), "
            f"{self.spans.lines} spans ({self.server_spans} server spans); {secrets}; "
            f"control {len(self.control.leaks)}/{self.control_expected}; "
            f"{len(self.leaks)} leaks"
        )


def scan_for_phi(seeded: Seeded, log: Path, spans: JsonLinesSpanExporter) -> PhiScan:
    values = [Secret("answer value", value) for value in seeded.written]
    tokens = [Secret("bearer token", bearer) for bearer in sorted(seeded.tokens)]
    credentials = credential_secrets(TEST_SECRET, TEST_MASTER_KEYS)
    marker = Secret("answer value (the run's marker)", seeded.marker)
    scanner = PhiScanner([marker, *values, *tokens, *credentials])
    control_expected = sum(
        seeded.is_marker(value)
        for text in seeded.served
        for value in json.loads(text)["answers"].values()
    )
    return PhiScan(
        log=scanner.scan_files([log]),
        request_lines=log.read_text(encoding="utf-8").count('"event": "http.request"'),
        spans=scanner.scan_files([spans.path]),
        server_spans=spans.server_spans,
        secrets={
            "answer values": len(values) + 1,
            "bearer tokens": len(tokens),
            "credentials": len(credentials),
        },
        control=scanner.scan_text("seeding responses", "\n".join(seeded.served)),
        control_expected=control_expected,
    )


@dataclass(frozen=True, repr=False)
class FuzzRun:
    """The run and what was judged of it (no repr: a failure must not print values)."""

    fuzzing: Fuzzing
    operations: int
    phi: PhiScan


@pytest.fixture(scope="module")
def fuzz_run(
    make_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzRun]:
    """One fuzz run, traced and logged at DEBUG, then scanned; the tests below judge it."""
    directory = tmp_path_factory.mktemp("fuzz")
    log, spans = directory / "log.jsonl", JsonLinesSpanExporter(directory / "spans.jsonl")
    try:
        with captured_log(log):
            application = create_app(make_settings(log_level="DEBUG"), span_exporter=spans)
            schemathesis.openapi.from_asgi("/openapi.json", application, config=CONFIG)  # lifespan
            fuzzing = Fuzzing(application, seed(application))
            operations = fuzz_every_operation(fuzzing)
        phi = scan_for_phi(fuzzing.seeded, log, spans)
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(fuzzing.by_status.items()))
        print(
            f"\nschemathesis: {operations} operations, {fuzzing.cases} cases "
            f"({fuzzing.coverage_cases} coverage); {{{statuses}}}"
        )
        print(f"{phi.describe()} ({directory})")
        yield FuzzRun(fuzzing, operations, phi)
    finally:
        asgi.shutdown_lifespans()


def test_every_operation_conforms_to_the_schema(fuzz_run: FuzzRun) -> None:
    fuzzing = fuzz_run.fuzzing
    assert fuzz_run.operations >= 30
    assert not fuzzing.failures, "\n\n".join(fuzzing.failures)
    fuzzed = fuzzing.cases - fuzzing.coverage_cases
    assert fuzzed >= MIN_CASES, f"only {fuzzed} fuzzing cases ran; expected ≥ {MIN_CASES}"
    assert fuzzing.coverage_cases >= MIN_COVERAGE_CASES, (
        f"only {fuzzing.coverage_cases} coverage cases ran; expected ≥ {MIN_COVERAGE_CASES}"
    )


def test_no_seeded_answer_or_credential_reaches_a_log_line_or_a_span(fuzz_run: FuzzRun) -> None:
    leaks = fuzz_run.phi.leaks
    assert not leaks, f"{len(leaks)} leak(s) of answer values or credentials:\n" + "\n".join(
        leaks[:25]
    )


def test_the_phi_scan_read_the_whole_run(fuzz_run: FuzzRun) -> None:
    """The scan above passes only if it had something to read: an access-log line and a server
    span for most cases (health and metrics are not traced), and the seeded values, which it
    does find where they belong."""
    phi, cases = fuzz_run.phi, fuzz_run.fuzzing.cases
    assert phi.request_lines >= cases, "fewer access-log lines than cases"
    assert phi.server_spans >= cases // 2, "the span dump misses most requests"
    assert phi.control_expected >= 5  # a note per seeded kit, and the decimal
    assert len(phi.control.leaks) == phi.control_expected, "the scan misses values it should see"


# -- what the fuzzer cannot reach because the schema does not say it ----------------------------

WRITE_METHODS = ("put", "patch", "post")


def contract_gaps(spec: dict[str, Any]) -> dict[str, list[str]]:
    """What api.md promises on the wire and /openapi.json leaves out, per promise."""
    paths: dict[str, dict[str, Any]] = spec["paths"]
    versioned = {p: ops for p, ops in paths.items() if p.startswith("/v1/")}
    without_key = [
        f"{method.upper()} {path}"
        for path, ops in versioned.items()
        for method, op in ops.items()
        if method in WRITE_METHODS
        and not any(
            p.get("name", "").lower() == "idempotency-key" for p in op.get("parameters", [])
        )
    ]
    schemes = spec.get("components", {}).get("securitySchemes", {})
    bearer = [
        n for n, s in schemes.items() if s.get("type") == "http" and s.get("scheme") == "bearer"
    ]
    # api.md: "GET /v1/fhir/metadata … (no token needed)"; every other operation needs one.
    secured = bool(spec.get("security")) or all(
        op.get("security")
        for path, ops in versioned.items()
        if path not in NO_TOKEN_PATHS
        for op in ops.values()
    )
    fhir = paths["/v1/kits/{kitId}/health-information"]["get"]["responses"]["200"]["content"]
    return {
        # api.md: "Idempotency-Key … on PUT, PATCH and POST".
        "idempotency-key": without_key,
        # api.md: "Authorization: Bearer <JWT>"; without a scheme /docs cannot send a token.
        "bearer-auth": [] if bearer and secured else ["no bearer securityScheme in use"],
        # api.md: "Accept: application/fhir+json on GET …/health-information returns FHIR".
        "fhir-media-type": [] if "application/fhir+json" in fhir else ["GET …/health-information"],
    }


@pytest.mark.parametrize("promise", ["idempotency-key", "bearer-auth", "fhir-media-type"])
def test_openapi_documents_what_the_contract_promises(
    make_settings: Callable[..., Settings], promise: str
) -> None:
    """The contract: "The project's OpenAPI document must describe exactly this"."""
    spec = create_app(make_settings()).openapi()
    assert contract_gaps(spec)[promise] == []
