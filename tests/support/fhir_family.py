"""A small LHC-Forms-like FHIR Questionnaire shared by the FHIR publication and validation tests."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"


def fhir_questionnaire(questionnaire_id: str) -> dict[str, Any]:
    """A small LHC-Forms-like Questionnaire: a group, a repeating group, conditions in a row."""
    return {
        "resourceType": "Questionnaire",
        "id": questionnaire_id,
        "extension": [{"url": "http://example.org/lformsVersion", "valueString": "29.0.0"}],
        "url": f"http://example.org/fhir/Questionnaire/{questionnaire_id}",
        "version": "2",
        "name": "Family" + questionnaire_id.removeprefix("family-").capitalize(),  # derived
        "title": "Family history",
        "status": "active",
        "item": [
            {
                "linkId": "/about",
                "text": "About you",
                "type": "group",
                "item": [
                    {"linkId": "/about/age", "text": "Age", "type": "integer", "required": True},
                    {
                        "linkId": "/about/mood",
                        "text": "Little interest or pleasure in doing things",
                        "type": "choice",
                        "answerOption": [
                            {"valueCoding": {"system": LOINC, "code": "LA6568-5", "display": "No"}},
                            {
                                "valueCoding": {
                                    "system": LOINC,
                                    "code": "LA6569-3",
                                    "display": "Some",
                                }
                            },
                        ],
                    },
                ],
            },
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-maxOccurs",
                        "valueInteger": 5,
                    }
                ],
                "linkId": "/family",
                "text": "Family members",
                "type": "group",
                "repeats": True,
                "item": [
                    {
                        "linkId": "/family/who",
                        "text": "Relationship",
                        "type": "open-choice",
                        "required": True,
                        "maxLength": 100,
                        "answerOption": [{"valueString": "Mother"}, {"valueString": "Father"}],
                    },
                    {"linkId": "/family/living", "text": "Living?", "type": "boolean"},
                    {
                        "linkId": "/family/died",
                        "text": "When did they die?",
                        "type": "date",
                        "enableWhen": [
                            {"question": "/family/living", "operator": "=", "answerBoolean": False}
                        ],
                    },
                ],
            },
        ],
    }


def family_answers(questionnaire: dict[str, Any], status: str) -> dict[str, Any]:
    """Answers to :func:`fhir_questionnaire`: the group, and two rows of the repeating one."""
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}",
        "status": status,
        "item": [
            {
                "linkId": "/about",
                "item": [
                    {"linkId": "/about/age", "answer": [{"valueInteger": 47}]},
                    {"linkId": "/about/mood", "answer": [{"valueCoding": {"code": "LA6569-3"}}]},
                ],
            },
            {
                "linkId": "/family",
                "item": [
                    {"linkId": "/family/who", "answer": [{"valueString": "Mother"}]},
                    {"linkId": "/family/living", "answer": [{"valueBoolean": False}]},
                    {"linkId": "/family/died", "answer": [{"valueDate": "2019-05-01"}]},
                ],
            },
            {
                "linkId": "/family",
                "item": [{"linkId": "/family/who", "answer": [{"valueString": "Aunt"}]}],
            },
        ],
    }
