"""Seeded comparisons that decide: a group-sequential paired t-test (the study file's
``sequential:`` block; ``executors.sequential`` schedules the seeds).

Two methods, each at its configuration chosen on validation, are compared on paired seeds (the
same seed: the same initialization, splits and batch order for both). The study's ``seeds`` are
the first look (n_1 = len(seeds)); after each look that decides nothing, ``batch`` more seeds are
run, up to ``max_seeds``. At every look k the paired t-test of the differences d_1..d_{n_k} gives
a two-sided p-value p_k, and the comparison stops with a decision at the first look with
p_k < alpha'. alpha' is one nominal level for every look (a **Pocock-type boundary** on the
paired t statistic), set so that the probability of any false decision over all looks is alpha:

    P_H0( min_k p_k < alpha' ) = alpha.

Why this test: a plain t-test after every batch ("peeking") rejects a true null far more often
than alpha (about 0.19 for ten looks at alpha 0.05; ``peeking_rate``). The t statistic is free
of the differences' scale, so under H0 with normal differences the joint law of (p_1, ..., p_K)
depends only on the look sizes: alpha' is computed once per design by simulating that law
(``nominal_level``, 40,000 simulated studies from a fixed seed; the FPR it gives is alpha up to
about +-0.002). A constant level (Pocock) rather than O'Brien-Fleming's, because the point is to
stop early when a difference is clear: Pocock spends alpha evenly and so decides large effects at
the first look, at the price of a larger maximum n for small effects. AdaStop's permutation test
(Mathieu et al., 2023) needs no normality, but with 3 to 5 paired seeds a sign-flip test has 8 to
32 arrangements and cannot reject at the first looks at all, so it cannot stop at ``min``.
Assumption: the paired differences are roughly normal and independent across seeds (seeds are
independent runs); ``tests/test_sequential.py`` also checks the false-positive rate with
heavy-tailed differences.

With it comes the **repeated confidence interval** at level 1 - alpha' (Jennison & Turnbull):
mean +- t_{1 - alpha'/2, n - 1} * sd / sqrt(n), valid simultaneously over the looks; it excludes 0
exactly when the test decides. Each comparison holds its own false-positive rate at alpha; with
several comparisons in one study, the family-wise rate is up to (number of comparisons) x alpha.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

DECIDED_A, DECIDED_B, NO_DIFFERENCE, RUNNING = "a_better", "b_better", "no_difference", "running"
"""A comparison's state: a decided (lower metric for ``metric.mode: min``) for one side, no
difference detectable at ``max_seeds``, or still adding seeds."""


@dataclass(frozen=True)
class Design:
    """Look sizes n_1 = ``min_seeds`` < n_1 + batch < ... <= ``max_seeds`` and the overall alpha."""

    min_seeds: int
    max_seeds: int
    batch: int
    alpha: float

    def __post_init__(self) -> None:
        if not (2 <= self.min_seeds <= self.max_seeds and self.batch >= 1 and 0 < self.alpha < 1):
            raise ValueError(f"invalid design {self}: need 2 <= min_seeds <= max_seeds, batch >= 1, 0 < alpha < 1")

    @property
    def looks(self) -> tuple[int, ...]:
        out = list(range(self.min_seeds, self.max_seeds + 1, self.batch))
        if out[-1] != self.max_seeds:
            out.append(self.max_seeds)
        return tuple(out)


MIN_TEST_SEEDS = 3
"""A look with fewer paired seeds tests nothing (as every paired test of the report:
``analysis.data.MIN_TEST_SEEDS``); nor does one whose differences are all equal up to
``EQUAL_RTOL`` of their magnitude (identical steps of the metric's resolution in every seed,
whose only spread is float rounding)."""

EQUAL_RTOL = 1e-9


def untested(d: np.ndarray) -> str:
    """Why a look at the paired differences ``d`` tests nothing ('' where it tests)."""
    n = len(d)
    if n < MIN_TEST_SEEDS:
        return f"n = {n}: too few seeds to test"
    if np.isfinite(d).all() and float(np.ptp(d)) <= EQUAL_RTOL * float(np.max(np.abs(d))):
        return f"all {n} differences equal"
    return ""


def _t_pvalues(d: np.ndarray, looks: Sequence[int]) -> np.ndarray:
    """Two-sided one-sample t-test p-values of the rows' first n values, for each n in looks:
    shape [rows, looks]. d: [rows, max_n]. NaN where the look tests nothing (``untested``)."""
    out = np.empty((d.shape[0], len(looks)))
    for j, n in enumerate(looks):
        if n < MIN_TEST_SEEDS:
            out[:, j] = np.nan
            continue
        x = d[:, :n]
        mean, sd = x.mean(1), x.std(1, ddof=1)
        equal = np.ptp(x, 1) <= EQUAL_RTOL * np.abs(x).max(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = mean / (sd / math.sqrt(n))
        out[:, j] = np.where(equal, np.nan, 2 * stats.t.sf(np.abs(t), n - 1))
    return out


@functools.lru_cache(maxsize=64)
def nominal_level(design: Design, simulations: int = 40_000, seed: int = 0) -> float:
    """alpha': the per-look p-value threshold with P_H0(any look rejects) = alpha, by simulating
    normal paired differences (the t statistic is scale-free, so sigma does not matter), over the
    looks that test (n >= ``MIN_TEST_SEEDS``; a design with none decides nothing)."""
    looks = [n for n in design.looks if n >= MIN_TEST_SEEDS]
    if not looks:
        return design.alpha
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((simulations, design.max_seeds))
    min_p = _t_pvalues(d, looks).min(1)
    return float(np.quantile(min_p, design.alpha))


def peeking_rate(design: Design, simulations: int = 20_000, seed: int = 1) -> float:
    """The false-positive rate of testing at plain alpha at every look (what this module avoids)."""
    looks = [n for n in design.looks if n >= MIN_TEST_SEEDS]
    if not looks:
        return 0.0
    d = np.random.default_rng(seed).standard_normal((simulations, design.max_seeds))
    return float((_t_pvalues(d, looks).min(1) < design.alpha).mean())


@dataclass(frozen=True)
class Look:
    n: int
    mean_diff: float  # b - a
    ci_low: float  # repeated CI at level 1 - alpha' (NaN where the differences are all equal)
    ci_high: float
    p: float  # NaN where the look tests nothing
    note: str = ""  # why it tests nothing (``untested``)


@dataclass
class Outcome:
    """Where one comparison stands: ``state``, the looks made, and the n the next look needs."""

    state: str
    looks: list[Look] = field(default_factory=list)
    next_n: int | None = None  # seeds the next look needs (state RUNNING)
    level: float = float("nan")  # alpha'

    @property
    def n(self) -> int:
        return self.looks[-1].n if self.looks else 0


def look(d: np.ndarray, level: float) -> Look:
    """One look at the paired differences ``d``: the test where it is defined (``untested``), the
    repeated CI wherever the differences are not all equal (an interval of width 0 there would
    be the metric's resolution, not certainty)."""
    n = len(d)
    mean = float(d.mean())
    note = untested(d)
    if note.startswith("all"):
        return Look(n, mean, float("nan"), float("nan"), float("nan"), note)
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(1 - level / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else float("nan")
    p = float("nan") if note else float(_t_pvalues(d[None, :], [n])[0, 0])
    return Look(n, mean, mean - half, mean + half, p, note)


def decide(diffs: Sequence[float], design: Design, mode: str = "min") -> Outcome:
    """Replay the looks on the paired differences b - a, in seed order (the first n_k of them at
    look k). Deterministic: the same stored values always give the same looks and decision, so
    a study resumes where it stood. ``mode``: "min" (lower is better, e.g. test_error) or "max"."""
    level = nominal_level(design)
    d = np.asarray(diffs, dtype=float)
    looks: list[Look] = []
    for n in design.looks:
        if len(d) < n:
            return Outcome(RUNNING, looks, next_n=n, level=level)
        lk = look(d[:n], level)
        looks.append(lk)
        if lk.p < level:
            b_lower = lk.mean_diff < 0
            return Outcome(DECIDED_B if b_lower == (mode == "min") else DECIDED_A, looks, level=level)
    return Outcome(NO_DIFFERENCE, looks, level=level)


def describe(outcome: Outcome, a: str, b: str) -> str:
    """The decision in words."""
    last = outcome.looks[-1] if outcome.looks else None
    if outcome.state == NO_DIFFERENCE and last is not None and last.note:
        return f"not testable at max_seeds ({last.note})"
    return {DECIDED_A: f"{a} better", DECIDED_B: f"{b} better",
            NO_DIFFERENCE: "no difference detectable at max_seeds",
            RUNNING: f"running (next look at {outcome.next_n} seeds)"}[outcome.state]


def seed_sequence(seeds: Sequence[int], max_seeds: int | None) -> list[int]:
    """The seeds in the order a sequential comparison adds them: ``seeds`` (the first look), then
    the next unused integers above them, up to ``max_seeds`` in all (just ``seeds`` for None)."""
    out = list(seeds)
    nxt = max(out) + 1
    while max_seeds is not None and len(out) < max_seeds:
        if nxt not in out:
            out.append(nxt)
        nxt += 1
    return out


@dataclass
class Comparison:
    """One ``sequential.compare`` pair as the store has it now."""

    a: str
    b: str
    config_a: str | None  # config_key of a's configuration (chosen on the first look)
    config_b: str | None
    outcome: Outcome
    per_seed: list[tuple[int, float, float]] = field(default_factory=list)  # (seed, a, b) in look order
    note: str = ""

    @property
    def decision(self) -> str:
        return describe(self.outcome, self.a, self.b)


def _chosen(complete, method: str, first_look: Sequence[int], metric: str, mode: str) -> str | None:
    """The configuration of ``method`` with the best mean ``metric`` over the first look's seeds,
    among those with every first-look seed COMPLETE."""
    g = complete[(complete["method"] == method) & complete["seed"].isin(list(first_look))]
    if g.empty or metric not in g:
        return None
    full = g.groupby("config_key").filter(lambda x: set(first_look) <= set(x["seed"]) and x[metric].notna().all())
    if full.empty:
        return None
    means = full.groupby("config_key")[metric].mean()
    return str(means.idxmin() if mode == "min" else means.idxmax())


def comparisons(trials, *, first_look: Sequence[int], sequence: Sequence[int], select_metric: str,
                select_mode: str, compare: Sequence[Sequence[str]], max_seeds: int, batch: int, alpha: float,
                metric: str, mode: str) -> list[Comparison]:
    """Every comparison's state from a study's trials frame (``results.trials_frame``: method,
    config_key, seed, status and the final metrics): each side's configuration chosen by
    ``select_metric`` on the first look, the paired values on ``metric`` over the longest prefix
    of ``sequence`` that both have COMPLETE, and ``decide`` on their differences."""
    design = Design(len(first_look), max_seeds, batch, alpha)
    complete = trials[trials["status"] == "COMPLETE"] if not trials.empty else trials
    out = []
    for a, b in compare:
        ca = _chosen(complete, a, first_look, select_metric, select_mode) if not complete.empty else None
        cb = _chosen(complete, b, first_look, select_metric, select_mode) if not complete.empty else None
        if ca is None or cb is None:
            out.append(Comparison(a, b, ca, cb, Outcome(RUNNING, next_n=design.min_seeds, level=nominal_level(design)),
                                  note="waiting for the first look (every first-look seed of both methods COMPLETE)"))
            continue
        va = complete[complete["config_key"] == ca].set_index("seed")[metric]
        vb = complete[complete["config_key"] == cb].set_index("seed")[metric]
        rows = []
        for s in sequence:
            if s not in va.index or s not in vb.index or not (np.isfinite(va[s]) and np.isfinite(vb[s])):
                break
            rows.append((int(s), float(va[s]), float(vb[s])))
        outcome = decide([rb - ra for _, ra, rb in rows], design, mode)
        out.append(Comparison(a, b, ca, cb, outcome, rows))
    return out


def study_block_comparisons(trials, spec: dict) -> list[Comparison]:
    """``comparisons`` for a stored study (its spec as a dict, e.g. ``store.study_spec``): what
    ``vat-study status`` and the report show."""
    sq = spec["sequential"]
    metric = spec.get("metric") or {}
    seeds = list(spec.get("seeds") or [0])
    return comparisons(trials, first_look=seeds, sequence=seed_sequence(seeds, sq["max_seeds"]),
                       select_metric=metric.get("name", "val_error"), select_mode=metric.get("mode", "min"),
                       compare=sq["compare"], max_seeds=sq["max_seeds"], batch=sq["batch"], alpha=sq["alpha"],
                       metric=sq["metric"], mode=sq["mode"])
