"""Loading a study from the store, and the small statistics every artifact shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from vat_study.platform.results import trials_frame
from vat_study.platform.store import Store
from vat_study.platform.store.frames import metrics_frame


class Skip(Exception):
    """An artifact whose data the study does not have; the message is the one-line reason."""


class NotApplicable(Skip):
    """An artifact about a factor, probe or setting the study does not have at all (K never
    varied, no ``paper:`` block, not the paper's dataset): the report names it in one line at
    its end, without the reason, rather than listing it as missing."""


@dataclass
class StudyData:
    name: str
    spec: dict[str, Any]
    trials: pd.DataFrame  # one row per trial (all statuses)
    metrics: pd.DataFrame  # long: trial_id, step, name, value
    url: str = ""  # the store (artifacts that need more than the frames read it)

    @property
    def complete(self) -> pd.DataFrame:
        """The COMPLETE trials of every configuration the pruner did not stop: a configuration
        with a PRUNED seed is pruned as a whole (as its Optuna trial is), so the seeds that did
        finish never stand for it alone (the pruner stops the bad ones: a mean over the rest
        would flatter it)."""
        t = self.trials
        if t.empty:
            return t
        pruned = set(t.loc[t["status"] == "PRUNED", "config_key"])
        return t[(t["status"] == "COMPLETE") & ~t["config_key"].isin(pruned)]

    @property
    def metric(self) -> str:
        return (self.spec.get("metric") or {}).get("name", "val_error")

    @property
    def mode(self) -> str:
        return (self.spec.get("metric") or {}).get("mode", "min")

    @property
    def selection_seeds(self) -> list[int] | None:
        """The seeds a configuration is chosen on: the first look's (the study's ``seeds``) where a
        ``sequential:`` block adds seeds to the chosen configurations only, so that adding them
        never changes which configuration was chosen (as ``group_sequential`` chooses); None
        (every seed) otherwise."""
        if not self.spec.get("sequential"):
            return None
        return [int(s) for s in (self.spec.get("seeds") or [0])]

    def best_config(self, df: pd.DataFrame) -> str | None:
        """``best_config`` on the study metric, over ``selection_seeds``."""
        return best_config(df, self.metric, self.mode, self.selection_seeds)

    def curves(self, name: str) -> pd.DataFrame:
        """Per-step values of one metric joined with the trial columns (complete trials only)."""
        m = self.metrics[self.metrics["name"] == name]
        return m.merge(self.complete, on="trial_id", how="inner")


def load(url: str, study: str) -> StudyData:
    store = Store(url)
    spec = store.study_spec(study)
    if spec is None:
        raise KeyError(f"study {study!r} is not in {url} (known: {', '.join(store.study_names()) or 'none'})")
    return StudyData(study, spec, with_variants(trials_frame(store, study), spec), metrics_frame(store, study), url)


def _shown(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(v).lower()
    if isinstance(v, (float, np.floating)) and float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))  # K = 2, not 2.0 (a column with gaps is float)
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def with_variants(trials: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    """``trials`` with a ``variant`` column: the method's name, plus each implementation setting
    (``method.implementation``) that varies among that method's trials in this study and where
    this trial differs from the study's own block (or the default): ``rpt`` and
    ``rpt (clean_stochastic=false)`` are two methods in every table and figure, never pooled."""
    from vat_study.surface import Implementation

    if trials.empty or "method" not in trials:
        return trials.assign(variant=pd.Series(dtype=object))
    ref = {**Implementation().model_dump(), **((spec.get("method") or {}).get("implementation") or {})}
    cols = [c for c in trials.columns if c.startswith("implementation.") and c.split(".", 1)[1] in ref]
    out = trials.copy()
    labels = out["method"].astype(str).tolist()
    for method, g in out.groupby("method"):
        varied = [c for c in cols if g[c].dropna().map(_shown).nunique() > 1]
        for i in g.index:
            diffs = [f"{c.split('.', 1)[1]}={_shown(out.at[i, c])}" for c in varied
                     if pd.notna(out.at[i, c]) and _shown(out.at[i, c]) != _shown(ref[c.split(".", 1)[1]])]
            if diffs:
                labels[out.index.get_loc(i)] = f"{method} ({', '.join(diffs)})"
    out["variant"] = labels
    return out


def mean_sd(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, sample SD (ddof=1; NaN for one seed) and count of ``value`` per group."""
    g = df.dropna(subset=[value]).groupby(by, dropna=False)[value]
    out = g.agg(mean="mean", sd=lambda v: v.std(ddof=1), n="count").reset_index()
    return out


def setting_of(key: str) -> str:
    """A search key as the setting it names (``eps`` and ``method.eps`` are one setting)."""
    from vat_study.surface import param_path

    return param_path(key) or key


_setting = setting_of


IN_VARIANT = ("method.name", "method.implementation.")
"""Settings the ``variant`` column already keeps apart (the method and its implementation)."""


def varied_params(df: pd.DataFrame, plotted: tuple[str, ...] = ()) -> list[str]:
    """The ``param.*`` columns of the search parameters whose values differ among ``df``'s rows,
    except the ``plotted`` ones (search keys: ``eps``, ``alpha``, ``power_iterations``) and those
    the ``variant`` column carries: what an artifact must keep apart, never average over."""
    shown = {_setting(p) for p in plotted}
    out = []
    for c in df.columns:
        if not str(c).startswith("param."):
            continue
        setting = _setting(c.removeprefix("param."))
        if setting in shown or setting.startswith(IN_VARIANT) or setting == IN_VARIANT[0]:
            continue
        if df[c].map(_shown).nunique(dropna=False) > 1:
            out.append(c)
    return out


def _resolved(df: pd.DataFrame, param_col: str) -> str:
    """The trials-frame column holding the resolved value of a search parameter (``xi`` for
    ``param.method.xi``): it has the default where a grid block left the key out, and is empty
    where the trial's method has no such setting; else the ``param.*`` column itself."""
    setting = _setting(param_col.removeprefix("param."))
    for c in df.columns:
        if not str(c).startswith("param.") and _setting(str(c)) == setting:
            return c
    return param_col


def _defaults(spec: dict[str, Any] | None, method: str, settings: list[str]) -> dict[str, Any]:
    """What a trial of ``method`` in this study has for each setting a grid block left out: the
    study's task / method blocks resolved (defaults filled in); None where it is no setting of it."""
    from vat_study.surface import ConfigError, get_path, resolve_config

    spec = spec or {}
    try:
        cfg = resolve_config({"task": dict(spec.get("task") or {}),
                              "method": {**dict(spec.get("method") or {}), "name": method}})
    except (ConfigError, ValueError):
        return {}
    return {s: get_path(cfg, s) for s in settings}


def with_setting(df: pd.DataFrame, plotted: tuple[str, ...] = (), broadcast: bool = False,
                 spec: dict[str, Any] | None = None) -> pd.DataFrame:
    """``df`` with a ``setting`` column: the values of every varied search parameter but the
    plotted ones (``varied_params``), e.g. ``lr=0.001, steps=500``; '' where none varies. Group by
    (variant, setting, the plotted keys) and no group mixes configurations. A trial whose method
    has no such setting (RPT has no xi) has none in its label; ``broadcast``: it is repeated
    under each level of the others instead (RPT, K = 0, as the reference in each xi group)."""
    cols = varied_params(df, plotted)
    if not cols:
        return df.assign(setting="")
    resolved = {c: _resolved(df, c) for c in cols}
    unresolved = [c for c in cols if resolved[c] == c]  # left out of a block: the study's value, from its spec
    defaults = {m: _defaults(spec, m, [_setting(c.removeprefix("param.")) for c in unresolved])
                for m in (df["method"].dropna().unique() if unresolved and "method" in df else [])}

    def value(r: pd.Series, c: str) -> str | None:
        v = r[resolved[c]]
        if pd.isna(v) and resolved[c] == c:
            v = defaults.get(r.get("method"), {}).get(_setting(c.removeprefix("param.")))
        return None if v is None or (isinstance(v, float) and v != v) else _shown(v)

    parts = [[(c.removeprefix("param."), value(r, c)) for c in cols] for _, r in df.iterrows()]
    labels = [", ".join(f"{k}={v}" for k, v in p if v is not None) for p in parts]
    out = df.assign(setting=labels)
    if not broadcast:
        return out
    complete = {lab for lab, p in zip(labels, parts) if all(v is not None for _, v in p)}
    rows = []
    for (_, r), p in zip(out.iterrows(), parts):
        if all(v is not None for _, v in p) or not complete:
            rows.append(r)
            continue
        known = {k: v for k, v in p if v is not None}
        for lab in sorted(complete):  # each level whose known values agree with this trial's
            kv = dict(x.split("=", 1) for x in lab.split(", "))
            if all(kv.get(k) == v for k, v in known.items()):
                q = r.copy()
                q["setting"] = lab
                rows.append(q)
    return pd.DataFrame(rows).reset_index(drop=True)


def is_continuous(spec: dict[str, Any], key: str) -> bool:
    """Whether ``key`` is a continuous dimension of the study's Optuna search (uniform or
    log-uniform): each configuration has its own value, drawn as a scatter (as Optuna's
    ``plot_slice``), never as a line through means."""
    space = (((spec.get("search") or {}).get("optuna") or {}).get("space") or {})
    setting = _setting(key)
    return any(_setting(k) == setting and (d or {}).get("type") in ("uniform", "log_uniform") for k, d in space.items())


def ci_half(sd: float, n: int, confidence: float = 0.95) -> float:
    """Half-width of the t confidence interval of a mean of ``n`` values (NaN for n < 2)."""
    if n is None or n < 2 or sd != sd:
        return float("nan")
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))


def summarize(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Per group: mean, SD, the 95 % t half-width over seeds (``ci``), and n as configurations x
    seeds (``configurations``, ``seeds``, ``n`` the trials)."""
    d = df.dropna(subset=[value])
    g = d.groupby(by, dropna=False)
    out = g[value].agg(mean="mean", sd=lambda v: v.std(ddof=1), n="count").reset_index()
    extra = g.agg(configurations=("config_key", "nunique"), seeds=("seed", "nunique")).reset_index()
    out = out.merge(extra, on=by, how="left")
    out["ci"] = [ci_half(s, n) for s, n in zip(out["sd"], out["n"])]
    return out


def n_text(table: pd.DataFrame) -> str:
    """n as configurations x seeds over a summarized table: '1 configuration x 3 seeds' (ranges
    where groups differ)."""
    def rng(col: str, word: str) -> str:
        lo, hi = int(table[col].min()), int(table[col].max())
        return f"{lo if lo == hi else f'{lo}-{hi}'} {word}{'' if hi == 1 else 's'}"
    return f"{rng('configurations', 'configuration')} x {rng('seeds', 'seed')}"


MIN_TEST_SEEDS = 3
"""A t-test (t, p, a Holm verdict, a verdict from a CI excluding a value) needs at least this many
seeds: with two, the one degree of freedom leaves the test with no check of its assumptions and
an interval 12.7 SDs wide; the report says "n = 2: too few seeds to test" instead."""

EQUAL_RTOL = 1e-9
"""Values (or paired differences) whose spread is at most this fraction of their magnitude count
as all equal, so no t statistic is formed from them. A study's metrics move in steps of their
resolution (one test image: 1 / 500 of the error on digits' test set, 1 / 10,000 on MNIST's),
and identical steps in every seed leave only float rounding (1e-17 on an error of 0.006) as
their spread: a "t" of 1e15 and p of 1e-16 from rounding, never from the data. Any real
difference of a discrete metric is at least one step, far above 1e-9 of the values; continuous
metrics (R_vadv, gradient norms) have no step and are equal only to rounding too."""


def untestable(values, scale: float | None = None, what: str = "differences") -> str:
    """Why a t-test of ``values`` (paired differences, or one sample) is not defined: too few
    (``MIN_TEST_SEEDS``), or all equal within ``EQUAL_RTOL`` of ``scale`` (default: the values'
    own magnitude); '' where it is."""
    x = np.asarray(values, float)
    n = len(x)
    if n < MIN_TEST_SEEDS:
        return f"n = {n}: too few seeds to test"
    if all_equal(x, scale):
        return f"all {n} {what} equal"
    return ""


def all_equal(values, scale: float | None = None) -> bool:
    """Whether ``values`` are one value up to ``EQUAL_RTOL`` of ``scale`` (their magnitude)."""
    x = np.asarray(values, float)
    if len(x) == 0 or not np.isfinite(x).all():
        return False
    scale = float(np.max(np.abs(x))) if scale is None else float(scale)
    return float(np.ptp(x)) <= EQUAL_RTOL * scale


def _t_test(d: np.ndarray) -> tuple[float, float]:
    """The one-sample t statistic of ``d`` against 0 and its two-sided p (``stats.ttest_1samp``,
    computed here: the caller has ruled out the degenerate cases, so no scipy warning can arise)."""
    n = len(d)
    t = float(d.mean() / (d.std(ddof=1) / np.sqrt(n)))
    return t, float(2 * stats.t.sf(abs(t), n - 1))


def paired_test(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """Paired comparison of b - a (same seeds): mean difference, SD, t confidence interval, and the
    paired t-test (t, p) where it is defined (``untestable``); ``note`` says why not otherwise,
    and t and p are NaN. n = 2: the interval is given (wide), the test is not. All differences
    equal (within ``EQUAL_RTOL``): neither, as an interval of width 0 would claim a certainty
    that only the metric's resolution made."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    n = len(d)
    nan = float("nan")
    mean = float(d.mean()) if n else nan
    scale = float(max(np.max(np.abs(a)), np.max(np.abs(b)))) if n else None
    note = untestable(d, scale)
    out = dict(n=n, mean_diff=mean, sd_diff=nan, ci_low=nan, ci_high=nan, t=nan, p=nan, note=note)
    if n < 2:
        return out
    if all_equal(d, scale):
        return {**out, "sd_diff": 0.0}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))
    out.update(sd_diff=sd, ci_low=mean - half, ci_high=mean + half)
    if not note:
        out["t"], out["p"] = _t_test(d)
    return out


def interval(low: float, high: float, fmt: str = "+.2f") -> str:
    """``[low, high]`` as a report prints a CI; '' where there is none (NaN)."""
    if low != low or high != high:
        return ""
    return f"[{low:{fmt}}, {high:{fmt}}]"


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error), in the input order, over the tests
    that exist: a NaN p (a test not done, ``paired_test``'s ``note``) stays NaN and does not
    count in the family."""
    p = np.asarray(pvalues, float)
    adj = np.full(len(p), np.nan)
    done = np.flatnonzero(~np.isnan(p))
    order = done[np.argsort(p[done])]
    m = len(done)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def best_config(df: pd.DataFrame, metric: str, mode: str, seeds: list[int] | None = None) -> str | None:
    """config_key of the configuration with the best mean ``metric`` over seeds (where ``seeds``
    is given, ``StudyData.selection_seeds``: over those only, among the configurations that have
    the metric for every one of them)."""
    if seeds is not None and not df.empty:  # as group_sequential chooses: every one of them has the metric
        df = df[df["seed"].isin(seeds)].dropna(subset=[metric])
        df = df.groupby("config_key").filter(lambda g: set(seeds) <= set(g["seed"]))
    s = df.dropna(subset=[metric]).groupby("config_key")[metric].mean()
    if s.empty:
        return None
    return str(s.idxmin() if mode == "min" else s.idxmax())


def _value_text(v: Any) -> str:
    """A parameter value as a label shows it: as written (1.0, 1e-06), a long float of a
    continuous search to 4 significant digits (0.4556, not 0.45556478512273824)."""
    if isinstance(v, (float, np.floating)) and len(repr(float(v))) > 8:
        return f"{float(v):.4g}"
    return str(v)


def label(row: pd.Series | dict) -> str:
    """A short human label of a configuration from its search parameters."""
    params = {k.removeprefix("param."): v for k, v in dict(row).items()
              if str(k).startswith("param.") and not (isinstance(v, float) and np.isnan(v))}
    return ", ".join(f"{k}={_value_text(v)}" for k, v in params.items()) or "(single configuration)"
