"""Fig. 7: normalized SD norm of grad_theta R^(K) (Eq. 21) over training, K = 0 vs K = 1; one
line per K and per method variant and setting of the other varied search parameters (never
averaged across them), mean over seeds with a 95 % t band."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import GRAD_SD_NORM_PREFIX

from .data import NotApplicable, StudyData, interval, n_text, paired_test, summarize, with_setting
from .plotting import axis_label, legend_beside, plt, save, t_band


def _values(data: StudyData) -> pd.DataFrame:
    """One row per (trial, K, step): the grad_sd_norm_k<K> value with the trial's variant, setting and seed."""
    m = data.metrics[data.metrics["name"].str.startswith(GRAD_SD_NORM_PREFIX)]
    trials = with_setting(data.complete, spec=data.spec)
    m = m.merge(trials[["trial_id", "variant", "setting", "config_key", "seed"]], on="trial_id")
    if m.empty:
        raise NotApplicable("no gradient-variance probe in this study (probes.grad_variance)")
    return m.assign(K=m["name"].str.removeprefix(GRAD_SD_NORM_PREFIX).astype(int))


def compute(data: StudyData, values: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (method variant, setting, K, step): mean / SD / 95 % t half-width / n over the seeds of
    grad_sd_norm_k<K> (``values``: ``_values(data)``, when the caller has it already)."""
    m = _values(data) if values is None else values
    return summarize(m, ["variant", "setting", "K", "step"], "value").rename(columns={"variant": "trained_with"})


def k_gap(data: StudyData, values: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fig. 7a's comparison: per (method variant, setting, step), K = 1 minus K = 0 paired by seed
    (the probe measures both on the same network at the same step), mean, 95 % t CI and paired
    t-test p over the seeds. Empty where a study did not measure both K."""
    m = _values(data) if values is None else values
    wide = m.pivot_table(index=["variant", "setting", "trial_id", "seed", "step"], columns="K", values="value").reset_index()
    if 0 not in wide.columns or 1 not in wide.columns:
        return pd.DataFrame()
    rows = []
    for (variant, setting, step), g in wide.dropna(subset=[0, 1]).groupby(["variant", "setting", "step"]):
        t = paired_test(g[0].to_numpy(), g[1].to_numpy())
        rows.append({"trained_with": variant, "setting": setting, "step": int(step), "n": t["n"],
                     "k1_minus_k0": t["mean_diff"], "ci_low": t["ci_low"], "ci_high": t["ci_high"], "p": t["p"],
                     "note": t["note"]})
    return pd.DataFrame(rows)


def verdict(gap: pd.DataFrame) -> list[str]:
    """Against Fig. 7a (K = 1 below K = 0 in the early stage of training), one line per line of
    the figure: how many measured steps have K = 1 below K = 0 with the CI excluding 0, and the
    first and last step's paired difference."""
    lines = []
    several = gap.groupby(["trained_with", "setting"]).ngroups > 1  # name the line only where there are several
    for (trained, setting), g in gap.groupby(["trained_with", "setting"]):
        g = g.sort_values("step")
        tested = g["note"].fillna("") == ""  # a step without a defined test decides nothing
        below = int((tested & (g["ci_high"] < 0)).sum())
        above = int((tested & (g["ci_low"] > 0)).sum())
        first, last = g.iloc[0], g.iloc[-1]
        early = (f"not decided at the first measured step ({first['note']})" if first["note"] else
                 "agrees: K = 1 is below K = 0 at the first measured step" if first["ci_high"] < 0 else
                 "does not agree: K = 1 is above K = 0 at the first measured step" if first["ci_low"] > 0 else
                 "not decided at this n at the first measured step (the CI includes 0)")
        where = ", ".join(x for x in (trained, setting) if x) if several else ""

        def at(r) -> str:
            ci = interval(r["ci_low"], r["ci_high"])
            return f"{r['k1_minus_k0']:+.2f}{' ' + ci if ci else ''} at {r['step']:,}"
        lines.append(f"- Fig. 7a{f' ({where})' if where else ''}: {early}. K = 1 - K = 0, paired by seed "
                     f"(n = {int(first['n'])}): {at(first)} updates, {at(last)}; below with the CI excluding 0 at "
                     f"{below} of {len(g)} measured steps, above at {above}"
                     + (f" ({int((~tested).sum())} step(s) without a test: {g.loc[~tested, 'note'].iloc[0]})"
                        if not tested.all() else "") + ".")
    return lines


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
    values = _values(r.data)
    t = compute(r.data, values)
    r.table("fig7_grad_variance", t)
    text = r.figure(draw(t, r.out / "fig7_grad_variance"))
    gap = k_gap(r.data, values)
    if gap.empty:
        return text
    return (text + "\n\n### Against the paper (computed from the trials above)\n\n"
            "The paper (Section 4.5, Fig. 7a): the gradient of R^(1) has a smaller variance than that of "
            "R^(0) in the early stage of training. K = 1 minus K = 0 of the normalized SD norm, paired by seed:\n\n"
            + r.table("fig7_k1_minus_k0", gap) + "\n\n" + "\n".join(verdict(gap)))
