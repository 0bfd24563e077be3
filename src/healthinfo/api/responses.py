"""JSON responses serialised once, without FastAPI's generic encoder on the hot path."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from healthinfo.health_information.model import HealthInformationState
from healthinfo.health_information.preconditions import etag


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def representation(state: HealthInformationState, *, status: int = 200) -> Response:
    return json_response(
        state.to_representation(), status=status, headers={"ETag": etag(state.version)}
    )
