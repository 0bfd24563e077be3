"""Request-body examples for the OpenAPI document: what "Try it out" in ``/docs`` sends first.

Each is a real request against the shipped questionnaire (``health-information`` v1), so a
newcomer's first click is accepted: tests/integration/test_openapi_docs.py sends every example
in ``/openapi.json`` to the API and expects a 2xx. The values are made up.
"""

from __future__ import annotations

from typing import Any, Final

Example = dict[str, Any]

DRAFT_ANSWERS: Final[dict[str, Any]] = {"heightCm": 180, "smokingStatus": "never"}
COMPLETE_ANSWERS: Final[dict[str, Any]] = {
    "dateOfBirth": "1980-05-17",
    "sexAtBirth": "female",
    "heightCm": 168,
    "weightKg": 61.5,
    "smokingStatus": "former",
    "yearsSmoked": 6,
    "alcoholFrequency": "monthly-or-less",
    "takesMedication": False,
    "hasAllergies": True,
    "allergies": ["pollen"],
    "conditions": ["none"],
    "consentToResearch": True,
}


def _example(summary: str, value: dict[str, Any]) -> Example:
    return {"summary": summary, "value": value}


REPLACE: Final[dict[str, Example]] = {
    "draft": _example(
        "Save a draft (some answers)", {"answers": DRAFT_ANSWERS, "submitted": False}
    ),
    "complete": _example("Save every required answer", {"answers": COMPLETE_ANSWERS}),
    "submit": _example(
        "Save and submit in one step (the legacy clients' way)",
        {"answers": COMPLETE_ANSWERS, "submitted": True},
    ),
}
PATCH: Final[dict[str, Example]] = {
    "change": _example("Change two answers", {"answers": {"weightKg": 63.2, "vaping": False}}),
    "remove": _example("Remove an answer (null)", {"answers": {"waistCm": None}}),
    "collaborative": _example(
        "Change one answer, edited from version 1 (409 only if someone changed it since)",
        {"answers": {"heightCm": 181}, "baseVersion": 1},
    ),
}
AMENDMENT: Final[dict[str, Example]] = {
    "correct": _example(
        "Correct a submitted answer (admin)",
        {"answers": {"weightKg": 62.5}, "reason": "The participant reported a typo by phone."},
    ),
}

MOVE_QUESTIONNAIRE: Final[dict[str, Example]] = {
    "move": _example(
        "Move to version 1 (kept as is when already there)", {"version": "1", "dropInvalid": False}
    ),
}

PUBLISH_QUESTIONNAIRE: Final[dict[str, Example]] = {
    "conditional": _example(
        "A short questionnaire with a condition and a repeating group",
        {
            "id": "example-screening",
            "version": "1",
            "title": "Example screening",
            "items": [
                {"id": "intro", "type": "display", "text": "A few questions."},
                {
                    "id": "smoker",
                    "text": "Do you smoke?",
                    "type": "boolean",
                    "required": True,
                    "section": "lifestyle",
                },
                {
                    "id": "cigarettesPerDay",
                    "text": "How many a day?",
                    "type": "integer",
                    "required": True,
                    "section": "lifestyle",
                    "minimum": 1,
                    "maximum": 200,
                    "enableWhen": [{"question": "smoker", "operator": "=", "answer": True}],
                },
                {
                    "id": "medications",
                    "text": "Medications",
                    "type": "group",
                    "section": "medication",
                    "repeats": True,
                    "maxItems": 20,
                    "items": [
                        {"id": "name", "text": "Name", "type": "string", "required": True},
                        {"id": "doseMg", "text": "Dose (mg)", "type": "decimal", "required": False},
                    ],
                },
            ],
        },
    ),
}

PUBLISH_FHIR_QUESTIONNAIRE: Final[dict[str, Example]] = {
    "fhir": _example(
        "A FHIR R4 Questionnaire: a group, a condition, a repeating group (docs/fhir.md)",
        {
            "resourceType": "Questionnaire",
            "id": "example-fhir-screening",
            "version": "1",
            "title": "Example FHIR screening",
            "status": "active",
            "item": [
                {
                    "linkId": "lifestyle",
                    "text": "Lifestyle",
                    "type": "group",
                    "item": [
                        {"linkId": "smoker", "text": "Do you smoke?", "type": "boolean"},
                        {
                            "linkId": "perDay",
                            "text": "How many a day?",
                            "type": "integer",
                            "enableWhen": [
                                {"question": "smoker", "operator": "=", "answerBoolean": True}
                            ],
                        },
                    ],
                },
                {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-maxOccurs",
                            "valueInteger": 20,
                        }
                    ],
                    "linkId": "medications",
                    "text": "Medications",
                    "type": "group",
                    "repeats": True,
                    "item": [
                        {"linkId": "name", "text": "Name", "type": "string", "required": True}
                    ],
                },
            ],
        },
    ),
}
