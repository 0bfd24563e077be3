"""FHIR R4 views of questionnaires and health information (docs/fhir.md).

``mapping`` holds the pure conversions; ``rest`` the content negotiation and responses the REST
routes use for ``application/fhir+json``.
"""

from __future__ import annotations

from healthinfo.fhir.mapping import (
    DEFAULT_BASE_URL,
    FHIR_VERSION,
    FhirAnswers,
    answers_from_fhir,
    questionnaire_to_fhir,
    response_to_fhir,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "FHIR_VERSION",
    "FhirAnswers",
    "answers_from_fhir",
    "questionnaire_to_fhir",
    "response_to_fhir",
]
