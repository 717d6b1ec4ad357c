"""Fig. 2: validation error and R_vadv over training, each method at its best configuration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import RVADV_TRAIN

from .data import NotApplicable, Skip, StudyData, n_text, summarize
from .plotting import axis_label, legend_beside, palette, percent, plt, save, t_band


def compute(data: StudyData) -> pd.DataFrame:
    """Per method (best configuration), metric (val_error, rvadv, rvadv_train) and step: mean/SD over seeds."""
    df = data.complete
    if df.empty:
        raise Skip("no complete trials")
    keys = {m: data.best_config(g) for m, g in df.groupby("variant")}
    keys = {m: k for m, k in keys.items() if k is not None}
    c = data.metrics[data.metrics["name"].isin(("val_error", "rvadv", RVADV_TRAIN))].merge(df, on="trial_id")
    c = c[c["config_key"].isin(set(keys.values()))]
    if c.empty or c["step"].nunique() < 2:
        raise NotApplicable("needs val_error / R_vadv recorded at two or more steps")
    return summarize(c.drop(columns="method").rename(columns={"variant": "method"}), ["method", "name", "step"], "value")


def draw(table: pd.DataFrame, stem: Path, eval_eps: float | None = None, eval_k: int = 1) -> list[Path]:
    """(a) validation error, (b) R_vadv in eval mode (solid) and train mode (dashed) over updates;
    one colour per method, named once in one legend (with the two line styles)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    methods = sorted(table["method"].unique())
    colors = palette(methods)
    fig, axes = plt.subplots(1, 2, figsize=(10.5 if len(methods) <= 4 else 12.5, 4.2))
    rvadv_label = "R_vadv (nats)" + (f", evaluation ε = {eval_eps:g}, K = {eval_k}" if eval_eps else "")
    for ax, name, ylabel in ((axes[0], "val_error", axis_label("val_error")), (axes[1], "rvadv", rvadv_label)):
        for method, g in table[table["name"] == name].groupby("method"):
            ax.plot(g["step"], g["mean"], marker=".", color=colors[method])
            t_band(ax, g["step"], g["mean"], g["ci"], colors[method])
        if name == "rvadv":  # beside it, R_vadv as training computes it (train mode: batch BN, noise as configured)
            for method, g in table[table["name"] == RVADV_TRAIN].groupby("method"):
                ax.plot(g["step"], g["mean"], linestyle="--", color=colors[method])
        ax.set_xlabel(axis_label("step"))
        ax.xaxis.set_major_locator(MaxNLocator(6, steps=[1, 2, 2.5, 5, 10], integer=True))
        ax.set_ylabel(ylabel)
        if name == "val_error":
            percent(ax)
    handles = [Line2D([], [], color=colors[m], marker=".", label=m) for m in methods]
    if (table["name"] == RVADV_TRAIN).any():
        handles += [Line2D([], [], color="0.3", label="R_vadv in eval mode (probe)"),
                    Line2D([], [], color="0.3", linestyle="--", label="R_vadv in train mode (as trained)")]
    legend_beside(axes[1], inside=5, handles=handles)
    axes[0].set_title("(a) performance")
    axes[1].set_title("(b) smoothness" + (f" (R_vadv at ε = {eval_eps:g})" if eval_eps else ""))
    return save(fig, stem, note=f"Each method at its best configuration ({n_text(table)} per line); lines: mean "
                                "over seeds; band: 95 % t confidence interval over seeds")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    t = compute(r.data)
    r.table("fig2_curves", t)
    probe = (r.data.spec.get("probes") or {}).get("rvadv") or {}
    return r.figure(draw(t, r.out / "fig2_curves", probe.get("eps", 2.0), probe.get("power_iterations", 1)))
