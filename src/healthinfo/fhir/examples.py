"""Request-body examples of the FHIR base for the OpenAPI document (see
health_information/examples.py: each is a real request the API accepts, for the shipped
questionnaire ``health-information`` version 1)."""

from __future__ import annotations

from typing import Any, Final

_QUESTIONNAIRE: Final = "urn:healthinfo/Questionnaire/health-information|1"
_CODES: Final = "urn:healthinfo/CodeSystem/health-information"

PUT_QUESTIONNAIRE_RESPONSE: Final[dict[str, dict[str, Any]]] = {
    "draft": {
        "summary": "Save a draft (status in-progress)",
        "value": {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": _QUESTIONNAIRE,
            "status": "in-progress",
            "item": [
                {"linkId": "heightCm", "answer": [{"valueInteger": 180}]},
                {
                    "linkId": "smokingStatus",
                    "answer": [
                        {"valueCoding": {"system": f"{_CODES}-smokingStatus", "code": "never"}}
                    ],
                },
            ],
        },
    },
}
