"""Fig. 7: normalized SD norm of grad_theta R^(K) (Eq. 21) over training, K = 0 vs K = 1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import GRAD_SD_NORM_PREFIX

from .data import Skip, StudyData, mean_sd
from .plotting import plt, save


def compute(data: StudyData) -> pd.DataFrame:
    """Per K and step: mean/SD/n over the trials (seeds) of grad_sd_norm_k<K>."""
    m = data.metrics[data.metrics["name"].str.startswith(GRAD_SD_NORM_PREFIX)]
    m = m.merge(data.complete[["trial_id"]], on="trial_id")
    if m.empty:
        raise Skip("no gradient-variance probe in this study (probes.grad_variance)")
    m = m.assign(K=m["name"].str.removeprefix(GRAD_SD_NORM_PREFIX).astype(int))
    return mean_sd(m, ["K", "step"], "value")


def draw(table: pd.DataFrame, stem: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, g in table.groupby("K"):
        ax.plot(g["step"], g["mean"], marker="o", label=f"K = {k}" + (" (RPT)" if k == 0 else " (VAT)" if k == 1 else ""))
        ax.fill_between(g["step"], (g["mean"] - g["sd"].fillna(0)).clip(lower=1e-12), g["mean"] + g["sd"].fillna(0), alpha=0.2)
    lo, hi = table["mean"].min(), table["mean"].max()
    log = lo > 0 and hi / lo > 20  # log scale only when the values span more than a decade or so
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_ylabel("normalized SD norm of grad R^(K)" + (" (log)" if log else ""))
    ax.set_title("Gradient variance of the regularizer (Eq. 21)")
    ax.legend()
    return save(fig, stem, note="Lines: mean over seeds; band: +-1 SD over seeds")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    t = compute(r.data)
    r.table("fig7_grad_variance", t)
    return r.figure(draw(t, r.out / "fig7_grad_variance"))
