"""Fig. 3: validation error vs eps at fixed alpha (3a), and vs alpha for several eps (3b).

Every other varied search parameter keeps its levels apart (one line per method variant and
setting, ``data.with_setting``); points are means over seeds with 95 % t intervals, n given as
configurations x seeds. A continuous (Optuna) search is drawn as a scatter of its configurations,
as Optuna's ``plot_slice``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import methods

from .data import Skip, StudyData, is_continuous, n_text, summarize, with_setting
from . import paper
from .plotting import axis_label, legend_beside, log_ticks_at, percent, plt, reference_line, save

VAT_METHODS = methods.names(uses_direction=True)  # the methods whose eps scales a virtual adversarial r


def _line(method: str, setting: str, extra: str = "") -> str:
    return ", ".join(x for x in (method, setting, extra) if x)


def compute(data: StudyData) -> pd.DataFrame:
    """Rows (method, setting, alpha, eps, mean, sd, ci, n, configurations, seeds) of the study
    metric over seeds, VAT trials only; ``method`` is the variant, ``setting`` every other varied
    search parameter (nothing averaged across them)."""
    df = data.complete
    if df.empty or data.metric not in df:
        raise Skip("no complete trials with the study metric")
    df = df[df["method"].isin(VAT_METHODS)]
    if df["eps"].nunique() < 2 and df["alpha"].nunique() < 2:
        raise Skip("needs VAT trials at two or more eps or alpha values")
    df = with_setting(df, ("eps", "alpha"), spec=data.spec)
    t = summarize(df, ["variant", "setting", "alpha", "eps"], data.metric).rename(columns={"variant": "method"})
    return t.sort_values(["method", "setting", "alpha", "eps"]).reset_index(drop=True)


def draw_scatter(table: pd.DataFrame, metric: str, stem: Path, log: dict[str, bool]) -> list[Path]:
    """A continuous search: each configuration's mean over seeds against eps and against alpha."""
    keys = [k for k in ("eps", "alpha") if table[k].nunique() > 1]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, (method, g) in enumerate(table.groupby("method")):
            ax.scatter(g[key], g["mean"], s=22, alpha=0.8, color=f"C{i}", label=method)
        if log.get(key):
            ax.set_xscale("log")
        ax.set_xlabel(axis_label(key, log.get(key, False)))
        ax.set_ylabel(axis_label(metric))
        if metric.endswith("error"):
            percent(ax)
        legend_beside(ax)
    axes[0][0].set_title("(a) each configuration (mean over seeds) vs " + keys[0])
    if len(keys) > 1:
        axes[0][1].set_title("(b) the same configurations vs " + keys[1])
    return save(fig, stem, note=f"One point per configuration of the search ({n_text(table)}); "
                                "other parameters vary between the points")


def draw(table: pd.DataFrame, metric: str, stem: Path, refs: list[tuple[str, float]] = ()) -> list[Path]:
    """``refs``: reference lines, (label, value of the metric), e.g. the baseline's or the paper's."""
    multi = table.groupby(["method", "setting", "eps"])["alpha"].nunique()
    eps_values = sorted({e for (_, _, e), n in multi.items() if n >= 2})  # eps run at two or more alphas (Fig. 3b)
    fig, axes = plt.subplots(1, 2 if eps_values else 1, figsize=(11 if eps_values else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    # 3a: the alpha with the most eps values (alpha = 1 in the paper)
    counts = table.groupby("alpha")["eps"].nunique()
    alpha0 = 1.0 if 1.0 in counts.index and counts[1.0] == counts.max() else counts.idxmax()
    at_alpha = table[table["alpha"] == alpha0]
    for (method, setting), g in at_alpha.groupby(["method", "setting"]):
        g = g.sort_values("eps")
        ax.errorbar(g["eps"], g["mean"], yerr=g["ci"].fillna(0), marker="o", capsize=3,
                    label=_line(method, setting, f"α = {alpha0:g}"))
    for j, (name, value) in enumerate(refs):
        reference_line(ax, value, name, style=(":", "--", "-.")[j % 3])
    log_ticks_at(ax, at_alpha["eps"])
    ax.set_xlabel(axis_label("eps", log=True))
    ax.set_ylabel(axis_label(metric))
    if metric.endswith("error"):
        percent(ax)
    ax.set_title("(a) effect of ε")
    legend_beside(ax)
    if eps_values:
        ax = axes[0][1]
        sub = table[table["eps"].isin(eps_values)]
        for (eps, method, setting), g in sub.groupby(["eps", "method", "setting"]):
            if g["alpha"].nunique() < 2:
                continue
            g = g.sort_values("alpha")
            ax.errorbar(g["alpha"], g["mean"], yerr=g["ci"].fillna(0), marker="s", capsize=3,
                        label=_line(f"ε = {eps:g}", method if table["method"].nunique() > 1 else "", setting))
        log_ticks_at(ax, sub["alpha"])
        ax.set_xlabel(axis_label("alpha", log=True))
        ax.set_ylabel(axis_label(metric))
        if metric.endswith("error"):
            percent(ax)
        ax.set_title("(b) effect of α")
        legend_beside(ax)
    return save(fig, stem, note=f"Points: mean over seeds ({n_text(table)} per point); "
                                "error bars: 95 % t confidence interval over seeds (none for one seed)")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    t = compute(r.data)
    pct = ("mean", "sd", "ci") if r.data.metric.endswith("error") else ()
    continuous = {k: is_continuous(r.data.spec, k) for k in ("eps", "alpha")}
    if any(continuous.values()):
        space = ((r.data.spec.get("search") or {}).get("optuna") or {}).get("space") or {}
        log = {k: any((d or {}).get("type") == "log_uniform" for name, d in space.items()
                      if name.split(".")[-1] == k) for k in ("eps", "alpha")}
        fig = r.figure(draw_scatter(t, r.data.metric, r.out / "fig3_eps_alpha", log))
    else:
        refs = [*paper.references(r.data, r.data.metric), *filter(None, [paper.baseline(r.data, r.data.metric)])]
        fig = r.figure(draw(t, r.data.metric, r.out / "fig3_eps_alpha", refs))
    varied = sorted({s for s in t["setting"] if s})
    kept = (f" Kept apart (never averaged): {len(varied)} levels of the other varied parameters." if varied else "")
    return (fig + "\n\n" + f"{r.data.metric} by (method, setting, alpha, eps) over seeds "
            f"({'%' if pct else 'raw'}; ci: 95 % t half-width; n = configurations x seeds).{kept}\n\n"
            + r.table("fig3_eps_alpha", t, pct))
