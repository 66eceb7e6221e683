"""The base every config model derives from: unknown keys are errors, values are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Forbids unknown keys and re-validates on assignment so errors name the field path."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
