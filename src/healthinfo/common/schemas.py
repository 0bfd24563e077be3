"""Base request/response models: strict (``false`` is not an int), camelCase, no unknown fields."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from healthinfo.errors import FieldError, ValidationFailed

M = TypeVar("M", bound="StrictRequest")


class StrictRequest(BaseModel):
    """A request body: strict types and unknown fields refused, so typos fail loudly."""

    model_config = ConfigDict(
        strict=True, extra="forbid", alias_generator=to_camel, populate_by_name=False, frozen=True
    )

    @classmethod
    def parse(cls: type[M], data: Any) -> M:
        """Validate a decoded JSON body, turning pydantic's errors into ``ValidationFailed``.

        Messages come from pydantic without the input, so no submitted value is echoed back.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = [
                FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"])
                for e in exc.errors(include_input=False, include_url=False)
            ]
            raise ValidationFailed(errors) from None


class Document(BaseModel):
    """A response model, for the OpenAPI description."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
