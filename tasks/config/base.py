"""The base of every YAML model: unknown keys are errors (a typo must not pass silently), and a
loaded configuration is immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
