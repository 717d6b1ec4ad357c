"""Fig. 4: R_vadv over training for each K; Table 6: final test error and R_vadv per K."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vat_study.surface import methods

from .data import Skip, StudyData, mean_sd
from .plotting import plt, save


def _with_k(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["method"].isin(methods.names(family="virtual_adversarial"))].copy()  # RPT: K = 0 (methods.k)
    df["K"] = [methods.get(m).k(k) for m, k in zip(df["method"], df["power_iterations"])]
    return df


def _same_eps(df: pd.DataFrame) -> pd.DataFrame:
    """Only eps values at which two or more K were run (K is compared at equal eps)."""
    ks = df.groupby("eps")["K"].nunique()
    return df[df["eps"].isin(ks[ks >= 2].index)]


def compute_table(data: StudyData) -> pd.DataFrame:
    """Table 6: per (eps, K), mean/SD/n over seeds of the final test_error and rvadv."""
    df = _same_eps(_with_k(data.complete))
    if df.empty:
        raise Skip("needs complete VAT/RPT trials at two or more K (power_iterations) for the same eps")
    parts = [mean_sd(df, ["eps", "K"], m).rename(columns={"mean": f"{m}_mean", "sd": f"{m}_sd", "n": f"{m}_n"})
             for m in ("test_error", "rvadv") if m in df]
    out = parts[0]
    for p in parts[1:]:
        out = out.merge(p, on=["eps", "K"])
    return out.sort_values(["eps", "K"]).reset_index(drop=True)


def compute_curves(data: StudyData) -> pd.DataFrame:
    """Fig. 4: per (eps, K) and step, mean/SD over seeds of the R_vadv probe."""
    c = _same_eps(_with_k(data.curves("rvadv")))
    if c.empty or c["step"].nunique() < 2:
        raise Skip("needs R_vadv measured at two or more steps for two or more K at the same eps")
    return mean_sd(c, ["eps", "K", "step"], "value")


def draw(curves: pd.DataFrame, eval_eps: float | None, stem: Path) -> list[Path]:
    several = curves["eps"].nunique() > 1
    fig, ax = plt.subplots(figsize=(8 if several else 6, 4))
    colors = {e: f"C{i}" for i, e in enumerate(sorted(curves["eps"].unique()))}
    styles = {k: ("--", "-", "-.", ":")[min(i, 3)] for i, k in enumerate(sorted(curves["K"].unique()))}
    for (eps, k), g in curves.groupby(["eps", "K"]):
        name = f"K = {k}" + (" (RPT)" if k == 0 else "") + (f", train eps = {eps:g}" if several else "")
        color = colors[eps] if several else f"C{k}"
        ax.plot(g["step"], g["mean"], marker=".", label=name, color=color, linestyle=styles[k])
        ax.fill_between(g["step"], g["mean"] - g["sd"].fillna(0), g["mean"] + g["sd"].fillna(0), alpha=0.15,
                        color=color)
    ax.set_xlabel("update")
    eps_s = f" at eval eps = {eval_eps:g}" if eval_eps else ""
    ax.set_ylabel(f"R_vadv (mean LDS, nats){eps_s}")
    ax.set_title("R_vadv during training by number of power iterations K")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5)) if several else ax.legend()
    return save(fig, stem, note="Lines: mean over seeds; band: +-1 SD over seeds")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    table6 = compute_table(r.data)
    parts = ["Table 6 style: final test error (%) and R_vadv per K, mean and SD over seeds.\n",
             r.table("table6_k_ablation", table6, ("test_error",))]
    try:
        c = compute_curves(r.data)
        eval_eps = ((r.data.spec.get("probes") or {}).get("rvadv") or {}).get("eps", 2.0)
        parts.insert(0, r.figure(draw(c, eval_eps, r.out / "fig4_rvadv_by_k")) + "\n")
        r.table("fig4_rvadv_by_k", c)
    except Skip as e:
        parts.append(f"\n(Fig. 4 curves skipped: {e})")
    return "\n".join(parts)
