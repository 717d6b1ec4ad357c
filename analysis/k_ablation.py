"""Fig. 4: R_vadv over training for each K (log scale) and the final test error against K;
Table 6: final test error and R_vadv per K. K is compared at equal eps; every other varied search
parameter and every implementation variant keeps its own line (never averaged); means over seeds
with 95 % t intervals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import methods

from .data import NotApplicable, Skip, StudyData, n_text, setting_of, summarize, with_setting
from . import paper
from .plotting import axis_label, legend_beside, log_y, percent, plt, reference_line, save, t_band


def k_varied(df: pd.DataFrame) -> bool:
    """Whether the study's search gives ``power_iterations`` two or more values: a K ablation.
    RPT beside VAT is not one (RPT counts as K = 0, but no search parameter varies K)."""
    searched = any(str(c).startswith("param.") and setting_of(str(c).removeprefix("param.")) == "method.power_iterations"
                   for c in df.columns)
    # the resolved K (a grid block that leaves it out has the study's value), where the search names it
    return searched and "power_iterations" in df and df["power_iterations"].dropna().nunique() >= 2


def _with_k(df: pd.DataFrame, spec: dict | None = None) -> pd.DataFrame:
    df = df[df["method"].isin(methods.names(family="virtual_adversarial"))].copy()  # RPT: K = 0 (methods.k)
    df["K"] = [methods.get(m).k(k) for m, k in zip(df["method"], df["power_iterations"])]
    # the implementation variant without the method's name: RPT (K = 0) and VAT share a line family
    df["implementation"] = [v[len(m):].strip(" ()") for v, m in zip(df["variant"].astype(str), df["method"])]
    return with_setting(df, ("power_iterations", "method", "eps"), broadcast=True, spec=spec)


GROUP = ["eps", "setting", "implementation"]
"""What K is compared within: equal eps, equal other settings, the same implementation variant."""


def _same_eps(df: pd.DataFrame) -> pd.DataFrame:
    """Only groups (eps, setting, implementation) in which two or more K were run."""
    ks = df.groupby(GROUP, dropna=False)["K"].transform("nunique")
    return df[ks >= 2]


def compute_table(data: StudyData) -> pd.DataFrame:
    """Table 6: per (eps, setting, implementation, K), mean / SD / 95 % t half-width / n over
    seeds of the final test_error and rvadv."""
    if not k_varied(data.complete):
        raise NotApplicable("the study does not vary K (power_iterations)")
    df = _same_eps(_with_k(data.complete, data.spec))
    if df.empty:
        raise Skip("needs complete VAT/RPT trials at two or more K (power_iterations) for the same eps")
    by = [*GROUP, "K"]
    parts = []
    for m in ("test_error", "rvadv"):
        if m in df:
            t = summarize(df, by, m)
            parts.append(t.rename(columns={c: f"{m}_{c}" for c in ("mean", "sd", "ci", "n")}))
    out = parts[0]
    for p in parts[1:]:
        out = out.merge(p.drop(columns=["configurations", "seeds"]), on=by)
    return out.sort_values(by).reset_index(drop=True)


def compute_curves(data: StudyData) -> pd.DataFrame:
    """Fig. 4: per (eps, setting, implementation, K) and step, mean / SD / 95 % t half-width over
    seeds of the R_vadv probe."""
    c = _same_eps(_with_k(data.curves("rvadv"), data.spec))
    if c.empty or c["step"].nunique() < 2:
        raise Skip("needs R_vadv measured at two or more steps for two or more K at the same eps")
    return summarize(c, [*GROUP, "K", "step"], "value")


def _group_label(eps: float, setting: str, impl: str, several_eps: bool) -> str:
    return ", ".join(x for x in ((f"train ε = {eps:g}" if several_eps else ""), setting, impl) if x)


def draw(curves: pd.DataFrame, eval_eps: float | None, stem: Path, table6: pd.DataFrame | None = None,
         eval_k: int = 1, refs: list[tuple[str, float]] = ()) -> list[Path]:
    """``refs``: reference lines of panel (b), (label, test error), e.g. the paper's values."""
    groups = sorted(curves.groupby(GROUP, dropna=False).groups, key=str)
    several_eps = curves["eps"].nunique() > 1
    panel_b = table6 is not None and "test_error_mean" in table6
    fig, axes = plt.subplots(1, 2 if panel_b else 1, figsize=(12 if panel_b else 7, 4.3), squeeze=False)
    ax = axes[0][0]
    ks = sorted(curves["K"].unique())
    styles = {k: ("--", "-", "-.", ":")[min(i, 3)] for i, k in enumerate(ks)}
    for gi, key in enumerate(groups):
        eps, setting, impl = key
        sub = curves[(curves["eps"] == eps) & (curves["setting"] == setting) & (curves["implementation"] == impl)]
        for k, g in sub.groupby("K"):
            color = f"C{ks.index(k)}" if len(groups) == 1 else f"C{gi}"
            name = f"K = {k}" + (" (RPT)" if k == 0 else "")
            extra = _group_label(eps, setting, impl, several_eps)
            ax.plot(g["step"], g["mean"], marker=".", color=color, linestyle=styles[k],
                    label=f"{name}, {extra}" if extra else name)
            t_band(ax, g["step"], g["mean"], g["ci"], color)
    if (curves["mean"] > 0).all():
        log_y(ax)  # K = 1, 2, 4 lie close together far below K = 0: a log axis separates them
    ax.set_xlabel(axis_label("step"))
    eps_s = f" at evaluation ε = {eval_eps:g}, K = {eval_k}" if eval_eps else ""
    ax.set_ylabel(f"R_vadv (nats, log scale)\n{eps_s.strip()}" if eps_s else "R_vadv (nats, log scale)")
    ax.set_title("(a) R_vadv during training")
    legend_beside(ax)
    if panel_b:
        ax = axes[0][1]
        for gi, key in enumerate(sorted(table6.groupby(GROUP, dropna=False).groups, key=str)):
            eps, setting, impl = key
            g = table6[(table6["eps"] == eps) & (table6["setting"] == setting)
                       & (table6["implementation"] == impl)].sort_values("K")
            ax.errorbar(g["K"], g["test_error_mean"], yerr=g["test_error_ci"].fillna(0), marker="o", capsize=3,
                        color=f"C{gi}", label=_group_label(eps, setting, impl, True) or None)
        for j, (name, value) in enumerate(refs):
            reference_line(ax, value, name, style=(":", "--", "-.")[j % 3])
        ax.set_xticks(sorted(table6["K"].unique()))
        ax.set_xlabel(axis_label("K") + " (0: RPT)")
        ax.set_ylabel(axis_label("test_error"))
        percent(ax)
        ax.set_title("(b) final test error against K")
        legend_beside(ax)
    return save(fig, stem, note=f"Lines: mean over seeds ({n_text(curves)} per line); "
                                "bands and bars: 95 % t confidence interval over seeds")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    table6 = compute_table(r.data)
    parts = [f"Table 6 style: final test error (%) and R_vadv per K, mean, SD and 95 % t half-width (ci) over "
             f"seeds, n = {n_text(table6)} per row.\n",
             r.table("table6_k_ablation", table6, ("test_error",))]
    try:
        c = compute_curves(r.data)
        probe = (r.data.spec.get("probes") or {}).get("rvadv") or {}
        eval_eps, eval_k = probe.get("eps", 2.0), probe.get("power_iterations", 1)
        refs = [*paper.references(r.data, "test_error"), *filter(None, [paper.baseline(r.data, "test_error")])]
        parts.insert(0, r.figure(draw(c, eval_eps, r.out / "fig4_rvadv_by_k", table6, eval_k, refs)) + "\n")
        r.table("fig4_rvadv_by_k", c)
    except Skip as e:
        parts.append(f"\n(Fig. 4 curves skipped: {e})")
    return "\n".join(parts)
