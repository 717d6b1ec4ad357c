"""A study's search (``search:``): a grid of blocks, or an Optuna search over distributions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ...common.validation import Strict


class Distribution(Strict):
    type: Literal["uniform", "log_uniform", "int", "choice"]
    low: float | None = Field(None, description="uniform, log_uniform, int: the lowest value")
    high: float | None = Field(None, description="uniform, log_uniform, int: the highest value")
    step: int | None = Field(None, ge=1, description="int: the spacing")
    log: bool = Field(False, description="int: sample on a log scale")
    choices: list[Any] | None = Field(None, description="choice: the values, e.g. [baseline, vat]")

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.type == "choice":
            if not self.choices:
                raise ValueError("choices: a non-empty list is required for type 'choice'")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"low and high are required for type {self.type!r}")
            if not self.low < self.high:
                raise ValueError(f"low must be < high (got low={self.low}, high={self.high})")
            if self.type == "log_uniform" and self.low <= 0:
                raise ValueError(f"low must be > 0 for log_uniform (got {self.low})")
            if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
                raise ValueError("low and high must be integers for type 'int'")
        return self

    def endpoints(self) -> list[Any]:
        if self.type == "choice":
            return list(self.choices or [])
        if self.type == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        return [self.low, self.high]


PRUNERS = ("median", "hyperband")
"""``search.optuna.pruner``: Optuna's MedianPruner and HyperbandPruner, with Optuna's defaults."""


class OptunaSearch(Strict):
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    n_trials: int = Field(ge=1, description="configurations to ask for (each runs once per seed)")
    seed: int | None = Field(0, description="the sampler's seed")
    space: dict[str, Distribution] = Field(description="search key -> distribution, e.g. "
                                                       "space: {eps: {type: log_uniform, low: 0.1, high: 10}}")
    pruner: str | None = Field(None, description="median | hyperband: stop configurations whose intermediate "
                                                 "values (metric.name at each evaluation, mean over seeds) trail "
                                                 "(Optuna's MedianPruner / HyperbandPruner); null: none")

    @field_validator("pruner")
    @classmethod
    def _known_pruner(cls, v: str | None) -> str | None:
        if v is not None and v not in PRUNERS:
            raise ValueError(f"must be one of {', '.join(PRUNERS)} (or null: no pruning)")
        return v

    @field_validator("space")
    @classmethod
    def _nonempty(cls, v: dict[str, Distribution]) -> dict[str, Distribution]:
        if not v:
            raise ValueError("must name at least one parameter")
        return v

    @model_validator(mode="after")
    def _grid_needs_choices(self) -> OptunaSearch:
        if self.sampler == "grid":
            bad = [k for k, d in self.space.items() if d.type not in ("choice", "int")]
            if bad:
                raise ValueError(f"space: the grid sampler needs 'choice' or 'int' distributions; {bad} are continuous")
        return self


class Search(Strict):
    grid: list[dict[str, list[Any]]] | None = Field(
        None, description="a list of grid blocks, each {key: [values]} expanded as a cartesian product; several "
                          "blocks in one study, a point in two blocks runs once: grid: [{eps: [1, 2]}]")
    optuna: OptunaSearch | None = Field(None, description="a search Optuna's sampler chooses the points of")

    @model_validator(mode="after")
    def _one(self) -> Search:
        if (self.grid is None) == (self.optuna is None):
            raise ValueError("give exactly one of 'grid' or 'optuna'")
        if self.grid is not None and not self.grid:
            raise ValueError("grid: give at least one grid, e.g. grid: [{eps: [0.5, 1.0]}]")
        for i, g in enumerate(self.grid or []):
            for k, vals in g.items():
                if not isinstance(vals, list) or not vals:
                    raise ValueError(f"grid[{i}].{k}: must be a non-empty list of values")
        return self
