"""Fig. 3: validation error vs eps at fixed alpha (3a), and vs alpha for several eps (3b);
mean and SD over seeds, log x-axis."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import methods

from .data import Skip, StudyData, mean_sd
from .plotting import log_ticks_at, percent, plt, save

VAT_METHODS = methods.names(uses_direction=True)  # the methods whose eps scales a virtual adversarial r


def compute(data: StudyData) -> pd.DataFrame:
    """Rows (method, alpha, eps, mean, sd, n) of the study metric over seeds, VAT trials only."""
    df = data.complete
    if df.empty or data.metric not in df:
        raise Skip("no complete trials with the study metric")
    df = df[df["method"].isin(VAT_METHODS)]
    if df["eps"].nunique() < 2 and df["alpha"].nunique() < 2:
        raise Skip("needs VAT trials at two or more eps or alpha values")
    return mean_sd(df, ["method", "alpha", "eps"], data.metric)


def draw(table: pd.DataFrame, metric: str, stem: Path) -> list[Path]:
    multi = table.groupby("eps")["alpha"].nunique()
    eps_values = sorted(multi[multi >= 2].index)  # eps values run at two or more alphas (Fig. 3b)
    fig, axes = plt.subplots(1, 2 if eps_values else 1, figsize=(10 if eps_values else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    # 3a: the alpha with the most eps values (alpha = 1 in the paper)
    counts = table.groupby("alpha")["eps"].nunique()
    alpha0 = 1.0 if 1.0 in counts.index and counts[1.0] == counts.max() else counts.idxmax()
    at_alpha = table[table["alpha"] == alpha0]
    for method, g in at_alpha.groupby("method"):
        g = g.sort_values("eps")
        ax.errorbar(g["eps"], g["mean"], yerr=g["sd"].fillna(0), marker="o", capsize=3, label=f"{method}, alpha = {alpha0:g}")
    log_ticks_at(ax, at_alpha["eps"])
    ax.set_xlabel("eps (L2 norm of the perturbation, log scale)")
    ax.set_ylabel(f"{metric} (mean over seeds)")
    percent(ax)
    ax.set_title("(a) effect of eps")
    ax.legend()
    if eps_values:
        ax = axes[0][1]
        for eps in eps_values:
            g = table[table["eps"] == eps].groupby("alpha", as_index=False).agg(mean=("mean", "mean"), sd=("sd", "mean"))
            ax.errorbar(g["alpha"], g["mean"], yerr=g["sd"].fillna(0), marker="s", capsize=3, label=f"eps = {eps:g}")
        log_ticks_at(ax, table[table["eps"].isin(eps_values)]["alpha"])
        ax.set_xlabel("alpha (regularization coefficient, log scale)")
        ax.set_ylabel(f"{metric} (mean over seeds)")
        percent(ax)
        ax.set_title("(b) effect of alpha")
        ax.legend()
    n = int(table["n"].max())
    return save(fig, stem, note=f"Points: mean over {n} seed(s); error bars: +-1 SD over seeds (none for one seed)")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    t = compute(r.data)
    pct = ("mean", "sd") if r.data.metric.endswith("error") else ()
    return (r.figure(draw(t, r.data.metric, r.out / "fig3_eps_alpha")) + "\n\n"
            + f"{r.data.metric} by (alpha, eps), over seeds ({'%' if pct else 'raw'}):\n\n" + r.table("fig3_eps_alpha", t, pct))
