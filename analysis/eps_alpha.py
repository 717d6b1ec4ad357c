"""Fig. 3: validation error vs eps (3a), and vs alpha for each eps run at several alphas (3b).

Every method whose regularizer has an eps is drawn (RPT's eps sweep beside VAT's), each alpha
run at two or more eps its own line in (a), and every other varied search parameter keeps its
levels apart (one line per method variant and setting, ``data.with_setting``): nothing pooled, no
point left out (a method run at one eps is a point of its own). Points are means over seeds with
95 % t intervals, n given as configurations x seeds. A continuous (Optuna) search is drawn as a
scatter of its configurations, as Optuna's ``plot_slice``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import methods

from .data import NotApplicable, Skip, StudyData, is_continuous, n_text, summarize, with_setting
from . import paper
from .plotting import (axis_label, legend_beside, log_ticks_at, palette, percent, plain_log, plt, reference_line,
                       save)

EPS_METHODS = methods.names(uses_eps=True)  # the methods whose regularizer has an eps (RPT, VAT, ...)


def _line(method: str, setting: str, extra: str = "") -> str:
    return ", ".join(x for x in (method, setting, extra) if x)


def compute(data: StudyData) -> pd.DataFrame:
    """Rows (method, setting, alpha, eps, mean, sd, ci, n, configurations, seeds) of the study
    metric over seeds, every method with an eps (RPT, VAT, ...); ``method`` is the variant,
    ``setting`` every other varied search parameter (nothing averaged across them)."""
    df = data.complete
    if df.empty or data.metric not in df:
        raise Skip("no complete trials with the study metric")
    df = df[df["method"].isin(EPS_METHODS)]
    if df.empty or (df["eps"].nunique() < 2 and df["alpha"].nunique() < 2):
        raise NotApplicable("the study runs no method at two or more eps or alpha values")
    df = with_setting(df, ("eps", "alpha"), spec=data.spec)
    t = summarize(df, ["variant", "setting", "alpha", "eps"], data.metric).rename(columns={"variant": "method"})
    return t.sort_values(["method", "setting", "alpha", "eps"]).reset_index(drop=True)


def draw_scatter(table: pd.DataFrame, metric: str, stem: Path, log: dict[str, bool], pruned: int = 0) -> list[Path]:
    """A continuous search: each configuration's mean over seeds against eps and against alpha;
    ``pruned``: how many configurations the pruner stopped (not drawn: they have no final value)."""
    keys = [k for k in ("eps", "alpha") if table[k].nunique() > 1]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, (method, g) in enumerate(table.groupby("method")):
            ax.scatter(g[key], g["mean"], s=22, alpha=0.8, color=f"C{i}", label=method)
        if log.get(key):
            plain_log(ax)
        ax.set_xlabel(axis_label(key, log.get(key, False)))
        ax.set_ylabel(axis_label(metric))
        if metric.endswith("error"):
            percent(ax)
        legend_beside(ax)
    axes[0][0].set_title("(a) each configuration (mean over seeds) vs " + keys[0])
    if len(keys) > 1:
        axes[0][1].set_title("(b) the same configurations vs " + keys[1])
    stopped = (f"; {pruned} configuration{'s' if pruned != 1 else ''} stopped early by the pruner "
               "(no final value) are not drawn: Optuna's intermediate values show them" if pruned else "")
    return save(fig, stem, note=f"One point per configuration of the search ({n_text(table)}); "
                                f"other parameters vary between the points{stopped}")


def _line_label(method: str, setting: str, alpha: float, show_alpha: bool) -> str:
    return _line(method, setting, f"α = {alpha:g}" if show_alpha else "")


def _panel_eps(ax, table: pd.DataFrame, metric: str, refs) -> None:
    """(a): one line per (method, setting, alpha) run at two or more eps; a (method, setting,
    alpha) run at one eps only, and not part of an alpha sweep, is a point of its own."""
    swept = table.groupby(["method", "setting", "eps"], dropna=False)["alpha"].transform("nunique") >= 2
    eps_n = table.groupby(["method", "setting", "alpha"], dropna=False)["eps"].transform("nunique")
    shown = table[(eps_n >= 2) | ~swept]
    show_alpha = table["alpha"].nunique() > 1
    keys = list(shown.groupby(["method", "setting", "alpha"], dropna=False).groups)
    colors = palette([_line_label(m, s, a, show_alpha) for m, s, a in keys])
    for (method, setting, alpha), g in shown.groupby(["method", "setting", "alpha"], dropna=False):
        g = g.sort_values("eps")
        name = _line_label(method, setting, alpha, show_alpha)
        ax.errorbar(g["eps"], g["mean"], yerr=g["ci"].fillna(0), marker="o", capsize=3, color=colors[name],
                    linestyle="-" if len(g) > 1 else "none", label=name)
    for j, (name, value) in enumerate(refs):
        reference_line(ax, value, name, style=(":", "--", "-.")[j % 3])
    log_ticks_at(ax, shown["eps"])
    ax.set_xlabel(axis_label("eps", log=True))
    ax.set_ylabel(axis_label(metric))
    if metric.endswith("error"):
        percent(ax)
    ax.set_title("(a) effect of ε")
    legend_beside(ax)


def _panel_alpha(ax, table: pd.DataFrame, metric: str) -> None:
    """(b): one line per (eps, method, setting) run at two or more alphas."""
    multi = table.groupby(["method", "setting", "eps"], dropna=False)["alpha"].transform("nunique") >= 2
    sub = table[multi]
    for (eps, method, setting), g in sub.groupby(["eps", "method", "setting"], dropna=False):
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


def draw(table: pd.DataFrame, metric: str, stem: Path, refs: list[tuple[str, float]] = ()) -> list[Path]:
    """``refs``: reference lines, (label, value of the metric), e.g. the baseline's or the paper's."""
    alpha_sweep = bool((table.groupby(["method", "setting", "eps"], dropna=False)["alpha"].nunique() >= 2).any())
    eps_sweep = bool((table.groupby(["method", "setting", "alpha"], dropna=False)["eps"].nunique() >= 2).any()) or not alpha_sweep
    panels = [p for p, on in (("eps", eps_sweep), ("alpha", alpha_sweep)) if on]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 0.5, 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "eps":
            _panel_eps(ax, table, metric, refs)
        else:
            _panel_alpha(ax, table, metric)
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
        trials = r.data.trials
        pruned = trials[trials["status"] == "PRUNED"]["config_key"].nunique() if not trials.empty else 0
        fig = r.figure(draw_scatter(t, r.data.metric, r.out / "fig3_eps_alpha", log, pruned))
    else:
        refs = [*paper.references(r.data, r.data.metric), *filter(None, [paper.baseline(r.data, r.data.metric)])]
        fig = r.figure(draw(t, r.data.metric, r.out / "fig3_eps_alpha", refs))
    varied = sorted({s for s in t["setting"] if s})
    kept = (f" Kept apart (never averaged): {len(varied)} levels of the other varied parameters." if varied else "")
    return (fig + "\n\n" + f"{r.data.metric} by (method, setting, alpha, eps) over seeds "
            f"({'%' if pct else 'raw'}; ci: 95 % t half-width; n = configurations x seeds).{kept}\n\n"
            + r.table("fig3_eps_alpha", t, pct))
