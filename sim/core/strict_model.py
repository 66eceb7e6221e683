"""The base every config model derives from: unknown keys are errors, values are validated."""

from __future__ import annotations

import types
import typing
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


@lru_cache(maxsize=None)
def _scalar_kinds(annotation: Any) -> frozenset[type]:
    """Which of bool / int / float / str a field's annotation admits (through Optional, unions and
    Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _scalar_kinds(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        out: frozenset[type] = frozenset()
        for arg in typing.get_args(annotation):
            out |= _scalar_kinds(arg)
        return out
    if annotation in (bool, int, float, str):
        return frozenset({annotation})
    return frozenset()


class StrictModel(BaseModel):
    """Forbids unknown keys and re-validates on assignment so errors name the field path.

    Booleans and numbers do not stand in for each other: pydantic's lax mode would read ``1`` or
    ``yes`` as true and ``true`` as the number 1, so a YAML slip (``insurance_fund: yes``) would
    run as a 1-dollar fund. A bool field takes only true/false; a number field refuses a bool.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @model_validator(mode="before")
    @classmethod
    def _bool_is_not_a_number(cls, data: Any) -> Any:
        # a model-level check: a field validator may not sit on a union's discriminator field
        if not isinstance(data, dict):
            return data
        problems = []
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if field is None or value is None:
                continue
            annotation: Any = field.annotation  # a type form: hashable, as the cache needs
            kinds = _scalar_kinds(annotation)
            if not kinds:
                continue
            if isinstance(value, bool):
                if bool not in kinds and kinds & {int, float}:
                    problems.append(f"{name}: expected a number, got the boolean {str(value).lower()}")
            elif kinds == {bool}:
                problems.append(f"{name}: expected true or false, got {value!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return data
