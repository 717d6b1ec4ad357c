"""Fig. 2: validation error and R_vadv over training, each method at its best configuration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import RVADV_TRAIN

from .data import Skip, StudyData, best_config, mean_sd
from .plotting import percent, plt, save


def compute(data: StudyData) -> pd.DataFrame:
    """Per method (best configuration), metric (val_error, rvadv, rvadv_train) and step: mean/SD over seeds."""
    df = data.complete
    if df.empty:
        raise Skip("no complete trials")
    keys = {m: best_config(g, data.metric, data.mode) for m, g in df.groupby("variant")}
    keys = {m: k for m, k in keys.items() if k is not None}
    c = data.metrics[data.metrics["name"].isin(("val_error", "rvadv", RVADV_TRAIN))].merge(df, on="trial_id")
    c = c[c["config_key"].isin(set(keys.values()))]
    if c.empty or c["step"].nunique() < 2:
        raise Skip("needs val_error / R_vadv recorded at two or more steps")
    return mean_sd(c.drop(columns="method").rename(columns={"variant": "method"}), ["method", "name", "step"], "value")


def draw(table: pd.DataFrame, stem: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = {m: f"C{i}" for i, m in enumerate(sorted(table["method"].unique()))}
    for ax, name, ylabel in ((axes[0], "val_error", "validation error"), (axes[1], "rvadv", "R_vadv (nats)")):
        for method, g in table[table["name"] == name].groupby("method"):
            ax.plot(g["step"], g["mean"], marker=".", label=method + (" (eval mode)" if name == "rvadv" else ""),
                    color=colors[method])
            ax.fill_between(g["step"], g["mean"] - g["sd"].fillna(0), g["mean"] + g["sd"].fillna(0), alpha=0.2,
                            color=colors[method])
        if name == "rvadv":  # beside it, R_vadv as training computes it (train mode: batch BN, noise as configured)
            for method, g in table[table["name"] == RVADV_TRAIN].groupby("method"):
                ax.plot(g["step"], g["mean"], linestyle="--", label=method + " (train mode)", color=colors[method])
        ax.set_xlabel("update")
        ax.set_ylabel(ylabel)
        if name == "val_error":
            percent(ax)
        ax.legend()
    axes[0].set_title("(a) performance")
    axes[1].set_title("(b) smoothness (eval eps fixed)")
    return save(fig, stem, note="Each method at its best configuration; lines: mean over seeds; band: +-1 SD")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    t = compute(r.data)
    r.table("fig2_curves", t)
    return r.figure(draw(t, r.out / "fig2_curves"))
