"""REST adapter serving questionnaire definitions to any authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from healthinfo.api.deps import ActorDep, ServicesDep
from healthinfo.api.openapi import problems
from healthinfo.api.responses import json_response

router = APIRouter(tags=["questionnaires"])


@router.get(
    "/questionnaires/{questionnaireId}",
    summary="A questionnaire definition: items with id, type, required, options, bounds",
    responses={200: {"description": "The definition."}, **problems(401, 404, 422)},
)
async def get_questionnaire(
    questionnaire_id: Annotated[str, Path(alias="questionnaireId", max_length=64)],
    actor: ActorDep,
    svc: ServicesDep,
) -> Response:
    return json_response(svc.questionnaires.get(questionnaire_id).to_public_dict())
