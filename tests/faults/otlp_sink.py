"""An OTLP/HTTP trace receiver for the fault suite: what a collector would get, one span a line.

Why a receiver and not a console exporter: the service exports spans only over OTLP/HTTP
(``HEALTHINFO_OTEL_EXPORTER_ENDPOINT``), so receiving that is what checks the real path — the
production exporter, behind the production ``RedactingSpanProcessor`` — with no setting added
for tests. Each received span is written to a JSON-lines file as protobuf's JSON mapping gives
it (attribute values in full), which the PHI scan then reads.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# protobuf ships no type stubs (types-protobuf is not a dependency); the generated OTLP modules do.
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/v1/traces"


class OtlpSink:
    """Receives ``POST /v1/traces`` in a thread of its own; counts spans and undecodable posts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spans = 0
        self.server_spans = 0
        self.rejected = 0  # posts that were not an OTLP trace export
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-sink", daemon=True
        )

    @property
    def endpoint(self) -> str:
        """The base URL for ``HEALTHINFO_OTEL_EXPORTER_ENDPOINT`` (the service adds the path)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self.path.touch()
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def receive(self, body: bytes) -> bool:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError:
            return False
        lines: list[str] = []
        server_spans = 0
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    as_dict: dict[str, Any] = MessageToDict(span)
                    as_dict["scope"] = scope_spans.scope.name
                    lines.append(json.dumps(as_dict, ensure_ascii=False) + "\n")
                    server_spans += span.kind == span.SPAN_KIND_SERVER
        with self._lock, self.path.open("a", encoding="utf-8") as dump:
            dump.writelines(lines)
            self.spans += len(lines)
            self.server_spans += server_spans
        return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                accepted = self.path == TRACES_PATH and sink.receive(body)
                if not accepted:
                    sink.rejected += 1
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if accepted else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test's output is the figures, not one line per export."""

        return Handler
