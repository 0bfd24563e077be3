"""Valid answer sets for the shipped questionnaire."""

from __future__ import annotations

from typing import Any

COMPLETE: dict[str, Any] = {
    "dateOfBirth": "1980-05-17",
    "sexAtBirth": "female",
    "heightCm": 168,
    "weightKg": 61.5,
    "smokingStatus": "never",
    "alcoholFrequency": "monthly-or-less",
    "takesMedication": False,
    "hasAllergies": False,
    "consentToResearch": True,
}
