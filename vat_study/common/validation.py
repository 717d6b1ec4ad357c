"""The base of every settings model (trial configs, the method registry's settings, study files):
strict validation and the finite-number check, defined once."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """No unknown keys, no silent coercion (true is not 1, "3" is not 3; an int is still a valid
    float), and the defaults validated as given values are."""

    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)


def finite(v: float | None) -> float | None:
    """A field validator: None or a finite number (no NaN, no infinity)."""
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v
