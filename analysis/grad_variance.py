"""Fig. 7: normalized SD norm of grad_theta R^(K) (Eq. 21) over training, K = 0 vs K = 1; one
line per K and per method variant and setting of the other varied search parameters (never
averaged across them), mean over seeds with a 95 % t band."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import GRAD_SD_NORM_PREFIX

from .data import Skip, StudyData, n_text, summarize, with_setting
from .plotting import axis_label, legend_beside, plt, save, t_band


def compute(data: StudyData) -> pd.DataFrame:
    """Per (method variant, setting, K, step): mean / SD / 95 % t half-width / n over the seeds of
    grad_sd_norm_k<K>."""
    m = data.metrics[data.metrics["name"].str.startswith(GRAD_SD_NORM_PREFIX)]
    trials = with_setting(data.complete, spec=data.spec)
    m = m.merge(trials[["trial_id", "variant", "setting", "config_key", "seed"]], on="trial_id")
    if m.empty:
        raise Skip("no gradient-variance probe in this study (probes.grad_variance)")
    m = m.assign(K=m["name"].str.removeprefix(GRAD_SD_NORM_PREFIX).astype(int))
    return summarize(m, ["variant", "setting", "K", "step"], "value").rename(columns={"variant": "trained_with"})


def draw(table: pd.DataFrame, stem: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    lines = sorted(table.groupby(["trained_with", "setting"]).groups)
    for i, ((trained, setting), k) in enumerate((g, k) for g in lines for k in sorted(table["K"].unique())):
        g = table[(table["trained_with"] == trained) & (table["setting"] == setting) & (table["K"] == k)]
        if g.empty:
            continue
        name = f"K = {k}" + (" (RPT)" if k == 0 else " (VAT)" if k == 1 else "")
        if len(lines) > 1:
            name += f"; along {', '.join(x for x in (trained, setting) if x)}"
        color = f"C{i}"
        ax.plot(g["step"], g["mean"], marker="o", label=name, color=color)
        t_band(ax, g["step"], g["mean"], g["ci"], color, alpha=0.2)
    lo, hi = table["mean"].min(), table["mean"].max()
    log = lo > 0 and hi / lo > 20  # log scale only when the values span more than a decade or so
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(axis_label("step"))
    ax.set_ylabel("normalized SD norm of ∇θ R^(K)" + (" (log scale)" if log else ""))
    ax.set_title("Gradient variance of the regularizer (Eq. 21)")
    legend_beside(ax)
    return save(fig, stem, note=f"Lines: mean over seeds ({n_text(table)} per line); band: 95 % t confidence "
                                "interval over seeds")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    t = compute(r.data)
    r.table("fig7_grad_variance", t)
    return r.figure(draw(t, r.out / "fig7_grad_variance"))
