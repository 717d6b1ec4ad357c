"""Implementation choices, one factor at a time (``studies/vat_implementation_choices.yaml``).

Each method has a centre configuration (search parameters: the method alone) and configurations
that change one setting of it (``implementation.*``, ``xi``, ``direction``, ``noise_sigma``, ...).
``compute`` pairs every configuration with its method's centre by seed (the effect of the choice)
and VAT with RPT under the same choice (does VAT still beat RPT?): mean difference of test error,
95 % t confidence interval and paired t-test (``data.paired_test``), with the final R_vadv measured
in eval mode (``rvadv``) and as training sees it (``rvadv_train``) beside them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vat_study.surface import POWER_ITERATION_ONLY, methods

from .data import NotApplicable, Skip, StudyData, ci_half, paired_test
from .plotting import plt, save

CENTRE = "centre"


def _params(row: pd.Series) -> dict:
    return {k.removeprefix("param."): v for k, v in row.items()
            if str(k).startswith("param.") and not (isinstance(v, float) and np.isnan(v))}


def _choice(row: pd.Series) -> str | None:
    """'centre' for a configuration whose search parameters are the method (and eps) alone,
    'key=value' for one that changes exactly one other setting, None otherwise. eps is not a
    choice: each choice is compared at every eps run, and between methods at the best one."""
    params = _params(row)
    params.pop("method", None)
    params.pop("eps", None)
    if not params:
        return CENTRE
    if len(params) == 1:
        (k, v), = params.items()
        return f"{k.removeprefix('implementation.')}={v}"
    return None


def _by_seed(df: pd.DataFrame, value: str) -> pd.Series:
    return df.set_index("seed")[value]


def _pair(a: pd.DataFrame, b: pd.DataFrame, value: str = "test_error") -> dict | None:
    va, vb = _by_seed(a, value), _by_seed(b, value)
    seeds = sorted(set(va.index) & set(vb.index))
    if len(seeds) < 2:
        return None
    s = paired_test(va.loc[seeds].to_numpy(float), vb.loc[seeds].to_numpy(float))
    return {"n": len(seeds), **{k: s[k] for k in ("mean_diff", "ci_low", "ci_high", "p", "note")}}


def _best(df: pd.DataFrame, data: StudyData) -> pd.DataFrame:
    """The trials of the configuration (eps) with the best mean study metric over seeds."""
    k = data.best_config(df)
    return df[df["config_key"] == k] if k is not None else df.iloc[0:0]


def compute(data: StudyData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(effects, gaps). effects: one row per (method, choice, eps): test error mean, SD and 95 % t
    half-width (``test_error_ci``) over seeds,
    the paired difference to the same method's centre at the same eps (points of test error:
    choice - centre), final rvadv / rvadv_train means. gaps: per choice, VAT - RPT paired by seed,
    each method at its best eps under that choice by the study metric (validation); a choice that
    only shapes the power iteration leaves RPT as it is, so RPT's centre stands in for it."""
    df = data.complete
    if df.empty or "test_error" not in df:
        raise Skip("no complete trials with test_error")
    df = df.assign(choice=df.apply(_choice, axis=1)).dropna(subset=["choice"])
    df["eps"] = [e if methods.get(m).uses_eps else np.nan for m, e in zip(df["method"], df["eps"])]
    centres = df[df["choice"] == CENTRE]
    if centres.empty or (df["choice"] != CENTRE).sum() == 0:
        raise NotApplicable("needs a centre configuration (only the method as search parameter) and configurations "
                   "that change one setting of it")
    rows = []
    for (method, choice, eps), g in df.groupby(["method", "choice", "eps"], sort=False, dropna=False):
        row = {"method": method, "choice": choice, "eps": eps, "seeds": len(g),
               "val_error_mean": g["val_error"].mean() if "val_error" in g else np.nan,
               "test_error_mean": g["test_error"].mean(), "test_error_sd": g["test_error"].std(ddof=1)}
        row["test_error_ci"] = ci_half(row["test_error_sd"], len(g))
        for m in ("rvadv", "rvadv_train"):
            if m in g:
                row[f"{m}_final"] = g[m].mean()
        c = centres[(centres["method"] == method) & ((centres["eps"] == eps) | (centres["eps"].isna() & pd.isna(eps)))]
        pair = _pair(c, g) if choice != CENTRE and not c.empty else None
        row.update({f"vs_centre_{k}": v for k, v in (pair or {}).items() if k != "n"})
        rows.append(row)
    effects = pd.DataFrame(rows)
    gaps = []
    for choice, g in df.groupby("choice", sort=False):
        rpt, vat = g[g["method"] == "rpt"], g[g["method"] == "vat"]
        if rpt.empty and choice.split("=")[0] in POWER_ITERATION_ONLY:  # RPT (K = 0) is unchanged by it
            rpt = centres[centres["method"] == "rpt"]
        if rpt.empty or vat.empty:
            continue
        rpt, vat = _best(rpt, data), _best(vat, data)
        pair = _pair(rpt, vat)
        if pair:
            gaps.append({"choice": choice, "rpt_eps": rpt["eps"].iloc[0], "vat_eps": vat["eps"].iloc[0],
                         "rpt_mean": rpt["test_error"].mean(), "vat_mean": vat["test_error"].mean(),
                         **{f"vat_minus_rpt_{k}" if k != "n" else "n": v for k, v in pair.items()}})
    return effects, pd.DataFrame(gaps)


def baseline_reference(effects: pd.DataFrame) -> float | None:
    """The baseline centre's mean test error (the figure's reference line); None without one."""
    base = effects[(effects["method"] == "baseline") & (effects["choice"] == CENTRE)]
    return float(base["test_error_mean"].iloc[0]) if not base.empty else None


def draw(effects: pd.DataFrame, gaps: pd.DataFrame, stem: Path) -> list[Path]:
    """(a) test error of every configuration (mean, 95 % t CI over seeds); (b) VAT - RPT with its 95 % CI per choice."""
    effects = effects.assign(label=[f"{c}, eps {e:g}" if e == e else c for c, e in zip(effects["choice"], effects["eps"])])
    choices = list(dict.fromkeys(effects["label"]))
    y = {c: i for i, c in enumerate(choices)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(choices) + 1.8), sharey=True)
    colour = {}
    for k, (method, g) in enumerate(effects.groupby("method", sort=False)):
        off = (k - 1) * 0.22
        bars = axes[0].errorbar(100 * g["test_error_mean"], [y[c] + off for c in g["label"]],
                                xerr=100 * g["test_error_ci"].fillna(0), fmt="o", capsize=3, label=method)
        colour[method] = bars[0].get_color()
    ref = baseline_reference(effects)
    if ref is not None:  # the reference every regularizer should beat
        axes[0].axvline(100 * ref, color=colour["baseline"], ls="--", lw=1, label="baseline centre (mean)")
    axes[0].set_xlabel("test error (%)")
    axes[0].set_title("(a) test error, mean and 95 % t CI over seeds")
    axes[0].legend()
    if not gaps.empty:
        best = {c: f"{c}, eps {e:g}" for c, e in zip(gaps["choice"], gaps["vat_eps"])}
        yy = [y.get(best[c], 0) for c in gaps["choice"]]
        mid = 100 * gaps["vat_minus_rpt_mean_diff"]
        err = [(mid - 100 * gaps["vat_minus_rpt_ci_low"]).fillna(0), (100 * gaps["vat_minus_rpt_ci_high"] - mid).fillna(0)]
        axes[1].errorbar(mid, yy, xerr=err, fmt="s", color="k", capsize=3)
        axes[1].axvline(0, color="0.5", lw=1)
    axes[1].set_xlabel("VAT - RPT test error (points)")
    axes[1].set_title("(b) VAT - RPT (each at its best eps), 95 % CI")
    axes[0].set_yticks(range(len(choices)), choices)
    axes[0].invert_yaxis()
    return save(fig, stem, note="One setting changed at a time from the centre; left of 0 in (b): VAT wins; "
                                "a point without a bar has one seed, or no CI (the table's note says why)")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    effects, gaps = compute(r.data)
    return ("Each configuration against its method's centre (search parameters: the method alone), "
            "at the same eps, paired by seed: vs_centre_* is the difference in test error (choice - centre) with its 95 % t "
            "CI and paired t-test p (blank where no test is defined: vs_centre_note says why); rvadv_final / rvadv_train_final: the last R_vadv measured in eval "
            "mode / in train mode as training computes it:\n\n"
            + r.table("implementation_choices", effects,
                      ("test_error", "val_error", "vs_centre_mean_diff", "vs_centre_ci_low", "vs_centre_ci_high"))
            + "\n\nVAT - RPT under each choice, each method at its best eps under that choice (chosen by the study "
              "metric on the validation set), paired by seed (negative: VAT better):\n\n"
            + (r.table("implementation_choices_vat_minus_rpt", gaps,
                       ("rpt_mean", "vat_mean", "vat_minus_rpt_mean_diff", "vat_minus_rpt_ci_low",
                        "vat_minus_rpt_ci_high")) if not gaps.empty else "(no choice ran both rpt and vat)")
            + "\n\n" + r.figure(draw(effects, gaps, r.out / "implementation_choices")))
