"""Logs: structlog on stdout, redacted, with request and trace ids; JSON unless a person reads.

The renderer: one JSON object per line when stdout is not a terminal (a pipe, a file, a log
collector), structlog's console layout when it is (colours only then); ``HEALTHINFO_LOG_JSON``
forces either (``true``/``false``; unset or ``auto``: decided by the terminal).

Every line, whether it comes from structlog (``structlog.get_logger().info("cache.warmed")``)
or from the standard library (our ``logging.getLogger(__name__)`` calls with ``extra=``,
uvicorn, SQLAlchemy, httpx), passes through the same processors (structlog's
``ProcessorFormatter`` on the root logger's one handler):

1. level, logger name, UTC timestamp, the ``extra=`` fields of stdlib records;
2. ``request_id`` (``common/context.py``, set by the edge middleware) and ``trace_id`` (the
   current OpenTelemetry span's, else the trace id of the request's W3C ``traceparent``), on
   every line;
3. exceptions rendered as type and frames only: an exception's *message* can quote a value
   (``ValueError(f"bad answer {x}")``), so it is never written;
4. the redaction processor (``infra/redaction.py``), last before rendering, whichever renderer.

``configure_logging`` is idempotent: ``healthinfo serve`` calls it before uvicorn starts and
``create_app`` calls it again; each call replaces our handler and nothing else.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from healthinfo.common.context import current_request_id
from healthinfo.infra.redaction import redact_mapping

# Libraries whose INFO/DEBUG output can carry statement parameters, URLs or payloads
# (SQLAlchemy's echo logs parameters; aiosqlite logs the calls it runs): warnings only.
QUIET_LOGGERS = (
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "httpcore",
    "httpx",
    "urllib3",
    "websockets",
)
PROTOCOL_LOGGERS = ("uvicorn", "websockets", "wsproto", "h11", "httptools")

incoming_trace_id: ContextVar[str | None] = ContextVar("incoming_trace_id", default=None)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
MAX_FRAMES = 40
LEADING_KEYS = ("timestamp", "level", "event", "logger", "request_id", "trace_id", "span_id")


def trace_id_from_traceparent(header: str | None) -> str | None:
    """The trace id of a valid W3C ``traceparent`` header, else None."""
    if not header:
        return None
    match = _TRACEPARENT.fullmatch(header.strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    trace_id, parent_id = match.group(2), match.group(3)
    if set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return trace_id


def current_trace_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the current span; else the incoming traceparent's trace id."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
    return incoming_trace_id.get(), None


def traceparent_of(scope: Mapping[str, Any]) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"traceparent":
            return str(value.decode("latin-1"))
    return None


def request_log_fields(scope: Mapping[str, Any]) -> dict[str, str | None]:
    """The request and trace ids of a request, for lines written after its middleware returned.

    Starlette runs the 500 handler outside every user middleware, when the context variables
    those set are already reset.
    """
    state = scope.get("state")
    request_id = state.get("request_id") if isinstance(state, dict) else None
    trace_id, _span_id = current_trace_ids()
    return {
        "request_id": request_id if isinstance(request_id, str) else None,
        "trace_id": trace_id or trace_id_from_traceparent(traceparent_of(scope)),
    }


def add_request_context(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("request_id", current_request_id.get())
    trace_id, span_id = current_trace_ids()
    event_dict.setdefault("trace_id", trace_id)
    if span_id is not None:
        event_dict.setdefault("span_id", span_id)
    return event_dict


def render_exception(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Replace ``exc_info`` by the exception's type and frames (never its message)."""
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("stack_info", None)
    error = _exception_of(exc_info)
    if error is not None:
        event_dict["exception"] = describe_exception(error)
    return event_dict


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def describe_exception(error: BaseException) -> dict[str, Any]:
    """Type, frames (file:line in function) and the types of its causes; no messages."""
    frames = [
        f"{frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)[-MAX_FRAMES:]
    ]
    causes: list[str] = []
    seen: set[int] = {id(error)}
    link = error.__cause__ or error.__context__
    while link is not None and id(link) not in seen and len(causes) < 10:
        seen.add(id(link))
        causes.append(_qualified(type(link)))
        link = link.__cause__ or link.__context__
    described: dict[str, Any] = {"type": _qualified(type(error)), "frames": frames}
    if causes:
        described["causes"] = causes
    return described


def _qualified(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """The redaction processor (infra/redaction.py); also puts the common keys first."""
    cleaned = redact_mapping(event_dict)
    ordered = {key: cleaned.pop(key) for key in LEADING_KEYS if key in cleaned}
    ordered.update(cleaned)
    return ordered


def _drop_duplicates(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    # Copies of the event that stdlib records can carry: uvicorn's ANSI-coloured one, and the
    # ``message`` another handler's formatter left on the record.
    event_dict.pop("color_message", None)
    event_dict.pop("message", None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_context,
    ]


def exception_as_text(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """For the console: our ``exception`` description as indented lines (the console renderer
    prints an ``exception`` string under the line; it cannot print a mapping)."""
    described = event_dict.get("exception")
    if isinstance(described, dict):
        causes = described.get("causes") or []
        head = str(described.get("type", "exception"))
        if causes:
            head += " (caused by " + ", ".join(str(cause) for cause in causes) + ")"
        frames = [f"  {frame}" for frame in described.get("frames") or []]
        event_dict["exception"] = "\n".join([head, *frames])
    return event_dict


def is_terminal(stream: TextIO) -> bool:
    """Whether a person is reading ``stream`` (a closed or replaced stream counts as not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def wants_json(json: bool | None, stream: TextIO) -> bool:
    """``json`` when set; unset (auto): JSON unless ``stream`` is a terminal."""
    return json if json is not None else not is_terminal(stream)


def build_formatter(*, json: bool, colors: bool = False) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of our handler; tests attach it to a capturing handler too.

    Redaction runs before the renderer, so the console layout is as clean as the JSON one.
    """
    renderers: list[Processor] = (
        [structlog.processors.JSONRenderer(sort_keys=False)]
        if json
        else [
            exception_as_text,
            structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False),
        ]
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_duplicates,
            render_exception,
            redact,
            *renderers,
        ],
    )


class ProtocolChatterFilter(logging.Filter):
    """Drops uvicorn's DEBUG lines: the WebSocket layer logs every header and the start of
    every frame there (``> TEXT '{"answers": …'``), which is health data."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or not record.name.startswith(PROTOCOL_LOGGERS)


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is at the moment of the write (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(*, level: str = "INFO", json: bool | None = None) -> None:
    """Route structlog and the standard library through our processors to stdout. Idempotent.

    ``json=None`` (auto): JSON unless stdout is a terminal, where the console layout (coloured)
    is easier to read; ``True``/``False`` force either.
    """
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StdoutHandler)]:
        root.removeHandler(handler)
    handler = StdoutHandler()
    handler.addFilter(ProtocolChatterFilter())
    terminal = is_terminal(sys.stdout)
    handler.setFormatter(build_formatter(json=wants_json(json, sys.stdout), colors=terminal))
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # uvicorn's loggers: no handlers of their own, so their lines reach ours; never its access
    # log (raw paths with kit ids and query strings), we write our own (api/request_log.py).
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
