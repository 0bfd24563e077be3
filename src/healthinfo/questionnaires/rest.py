"""REST adapter serving questionnaire definitions to any authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from healthinfo.api.deps import ActorDep, ServicesDep
from healthinfo.api.openapi import problems
from healthinfo.api.responses import json_response
from healthinfo.common.identifiers import PRINTABLE_PATTERN
from healthinfo.fhir.rest import VARY, openapi_content, prefers_fhir, render_questionnaire

router = APIRouter(tags=["questionnaires"])


@router.get(
    "/questionnaires/{questionnaireId}",
    summary="A questionnaire definition: items with id, type, required, options, bounds",
    description="`Accept: application/fhir+json` returns it as a FHIR R4 Questionnaire.",
    responses={
        200: {"description": "The definition.", "content": openapi_content("Questionnaire")},
        **problems(401, 404, 422),
    },
)
async def get_questionnaire(
    questionnaire_id: Annotated[
        str, Path(alias="questionnaireId", max_length=64, pattern=PRINTABLE_PATTERN)
    ],
    request: Request,
    actor: ActorDep,
    svc: ServicesDep,
) -> Response:
    questionnaire = svc.questionnaires.get(questionnaire_id)
    if prefers_fhir(request.headers.get("accept")):
        return render_questionnaire(questionnaire)
    return json_response(questionnaire.to_public_dict(), headers={"Vary": VARY})
