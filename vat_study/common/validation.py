"""The base of every settings model (trial configs, the method registry's settings, study files):
strict validation and the finite-number check, defined once."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

MAX_INT = 2**63 - 1
"""The largest integer any setting takes: a 64-bit integer, what the store and torch hold."""


def _within_int64(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, int):
        return -MAX_INT - 1 <= v <= MAX_INT
    if isinstance(v, (list, tuple)):
        return all(_within_int64(x) for x in v)
    return True  # (a mapping's values are settings of their own, checked where they are validated: named there)


class Strict(BaseModel):
    """No unknown keys, no silent coercion (true is not 1, "3" is not 3; an int is still a valid
    float), the defaults validated as given values are, and no integer past 64 bits anywhere."""

    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _int64(cls, v: Any) -> Any:
        if not _within_int64(v):
            raise ValueError(f"integers are at most {MAX_INT:,} (64 bits)")
        return v


def finite(v: float | None) -> float | None:
    """A field validator: None or a finite number (no NaN, no infinity)."""
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v
