"""Where the service finds questionnaire definitions by id.

Definitions are package data, read through ``importlib.resources`` so that they are found the
same way from a source checkout, an installed wheel or a zip. Nothing is read at import time:
the application builds the registry once at start-up, where a malformed file stops the service
before it accepts answers it could not validate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from importlib.resources import files
from typing import Final

from healthinfo.errors import NotFound
from healthinfo.questionnaires.model import Questionnaire

DEFAULT_QUESTIONNAIRE_ID: Final = "health-information"
_DEFINITIONS_PACKAGE: Final = "healthinfo.questionnaires"
_DEFINITIONS_DIR: Final = "definitions"


class QuestionnaireRegistry:
    """An immutable set of questionnaires, one per id."""

    __slots__ = ("_by_id",)

    def __init__(self, questionnaires: Iterable[Questionnaire]) -> None:
        by_id: dict[str, Questionnaire] = {}
        for questionnaire in questionnaires:
            if questionnaire.id in by_id:
                raise ValueError(f"questionnaire {questionnaire.id!r} is defined twice")
            by_id[questionnaire.id] = questionnaire
        self._by_id: Mapping[str, Questionnaire] = by_id

    @classmethod
    def builtin(cls) -> QuestionnaireRegistry:
        """Every ``definitions/*.json`` shipped with the package.

        A file's name must be ``<id>.v<version>.json`` so that a copied file whose id was not
        updated is caught instead of shadowing another questionnaire.
        """
        directory = files(_DEFINITIONS_PACKAGE).joinpath(_DEFINITIONS_DIR)
        questionnaires = []
        for resource in sorted(directory.iterdir(), key=lambda r: r.name):
            if not resource.name.endswith(".json") or not resource.is_file():
                continue
            try:
                questionnaire = Questionnaire.from_dict(json.loads(resource.read_bytes()))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                raise ValueError(f"{resource.name}: {exc}") from exc
            expected = f"{questionnaire.id}.v{questionnaire.version}.json"
            if resource.name != expected:
                raise ValueError(f"{resource.name}: should be named {expected}")
            questionnaires.append(questionnaire)
        return cls(questionnaires)

    def get(self, questionnaire_id: str) -> Questionnaire:
        try:
            return self._by_id[questionnaire_id]
        except KeyError:
            raise NotFound(f"No questionnaire {questionnaire_id!r}.") from None

    @property
    def default(self) -> Questionnaire:
        """The questionnaire a kit gets when it does not name one."""
        return self.get(DEFAULT_QUESTIONNAIRE_ID)

    def __contains__(self, questionnaire_id: object) -> bool:
        return questionnaire_id in self._by_id

    def __iter__(self) -> Iterator[Questionnaire]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
