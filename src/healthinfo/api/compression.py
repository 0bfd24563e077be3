"""gzip for JSON responses over 1 KiB; never for event streams.

Starlette's ``GZipMiddleware`` (≥ 1.5) already leaves ``text/event-stream`` alone by default;
we name it explicitly anyway, because a compressed event stream is buffered by the compressor
and the browser sees events late or never (and a default list can change).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

MINIMUM_SIZE = 1024
NEVER_COMPRESSED = tuple(dict.fromkeys((*DEFAULT_EXCLUDED_CONTENT_TYPES, "text/event-stream")))


def add_compression(app: FastAPI) -> None:
    app.add_middleware(
        GZipMiddleware, minimum_size=MINIMUM_SIZE, exclude_content_types=NEVER_COMPRESSED
    )
