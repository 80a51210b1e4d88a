"""What every configuration section shares: unknown keys are errors, values are immutable, and
numbers are finite (TOML's ``inf`` and ``nan`` would switch a bound or a check off)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
