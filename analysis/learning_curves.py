"""Learning curves: the test error at every evaluation (``probes.test_curve``), every configuration
of every method variant on its own line (nothing pooled), mean over seeds with a 95 % t band,
beside a published VAT learning curve and the paper's Table 3 values where the setting is theirs.

The test-error curve is for reading only: hyperparameters are chosen on the validation error
(the study metric); the curve never selects anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from vat_study.surface import TEST_CURVE

from .data import NotApplicable, Skip, StudyData
from .markdown import md_table
from .plotting import plt, save
from .tables import PAPER_TABLE3

PUBLISHED_CURVE = {  # update -> mean test error (%), 5 seeds
    1200: 10.7, 4800: 7.5, 12000: 5.4, 20400: 3.2, 30000: 2.9, 60000: 2.4}
"""A published learning curve of a TPAMI-like VAT setup on semi-supervised MNIST-100 (MLP with BN
and hidden Gaussian noise 0.5, eps 5, xi 1e-6; the VAT logs of the ``sakishinoda/tf-ssl``
repository, mean over 5 seeds). Drawn for semi-supervised MNIST with 100 labels only."""

PUBLISHED_SCHEDULE = "~96,000 updates, lr decays linearly from ~48,000, as its eps-5 run script sets it"
"""The published curve's schedule as far as its repository shows it (not stated beside the
numbers): the eps-5 run script (``vat/q1.sh``: 400 epochs, decay from epoch 200) with the
trainer's 240 updates per epoch (``vat/train_semisup_mnist.py``), Adam 0.002 decaying linearly
to 0. Its points up to 48,000 updates are at the full learning rate."""

PAPER_STEPS = 100_000
"""The paper's budget for Table 3 (Appendix C)."""


def _ci(v: pd.Series) -> float:
    n = v.count()
    return float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def _config_label(row: pd.Series) -> str:
    """The variant and the other search parameters of a configuration (``vat, xi=1e-06``)."""
    rest = {k: v for k, v in row.items() if str(k).startswith("param.") and pd.notna(v)
            and k != "param.method" and not str(k).startswith("param.implementation.")}
    return ", ".join([row["variant"], *(f"{k.removeprefix('param.')}={v:g}" if isinstance(v, float)
                                        else f"{k.removeprefix('param.')}={v}" for k, v in rest.items())])


def schedule(row: pd.Series | dict, spec: dict) -> str:
    """A configuration's budget and learning-rate schedule in words (``task.Decay``): its steps
    from the trial, the decay from the study's task block unless the search varies it."""
    dec = dict(((spec.get("task") or {}).get("optimizer") or {}).get("decay") or {})
    for k in ("kind", "start", "every", "rate"):
        v = row.get(f"param.task.optimizer.decay.{k}")
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            dec[k] = v
    steps = int(row["steps"])
    kind = dec.get("kind", "exponential")
    if kind == "linear":
        start = int(dec["start"]) if dec.get("start") is not None else steps // 2
        return f"{steps:,} updates, lr decays linearly from {start:,}"
    if kind == "exponential":
        return f"{steps:,} updates, lr x {dec.get('rate', 0.9):g} per {int(dec.get('every', 600)):,}"
    return f"{steps:,} updates, constant lr"


def compute(data: StudyData) -> pd.DataFrame:
    """Per variant, configuration and step: mean test error, 95 % t half-width, n seeds."""
    t = data.trials
    df = t if t.empty else pd.concat([data.complete, t[t["status"] == "RUNNING"]])  # no pruned configuration
    if df.empty:
        raise Skip("no complete or running trials")
    c = data.metrics[data.metrics["name"] == TEST_CURVE].merge(df, on="trial_id")
    if c.empty or c["step"].nunique() < 2:
        if not (data.spec.get("probes") or {}).get("test_curve"):
            raise NotApplicable("the study does not measure the test error during training (probes.test_curve)")
        raise Skip("needs the test error at two or more steps (probes.test_curve: true)")
    running = set(c.loc[c["status"] == "RUNNING", "config_key"])  # a curve so far: real up to its last step
    c["config"] = [_config_label(r) + (" [still running]" if r["config_key"] in running else "")
                   for _, r in c.iterrows()]
    firsts = c.drop_duplicates("config_key").set_index("config_key")
    c["schedule"] = c["config_key"].map({k: schedule(r, data.spec) for k, r in firsts.iterrows()})
    out = (c.groupby(["variant", "config", "config_key", "schedule", "step"], sort=True)["value"]
           .agg(mean="mean", ci95=_ci, n="count").reset_index())
    out["running"] = out["config_key"].isin(running)
    return out


def _reference(data: StudyData) -> bool:
    df = data.complete
    return bool(((df["dataset"] == "mnist") & (df["mode"] == "semi_supervised") & (df["n_labeled"] == 100)).all())


def crossing(table: pd.DataFrame, a: str, b: str) -> str:
    """Where b's best-at-the-end configuration falls below a's, in words (means over seeds)."""
    pick = {}
    for v in (a, b):
        t = table[table["variant"] == v]
        if t.empty:
            return ""
        t = t[t["step"] == t["step"].max()]
        pick[v] = t.sort_values("mean").iloc[0]["config_key"]
    ca = table[table["config_key"] == pick[a]].set_index("step")["mean"]
    cb = table[table["config_key"] == pick[b]].set_index("step")["mean"]
    steps = sorted(set(ca.index) & set(cb.index))
    if not steps:
        return ""
    last = steps[-1]
    below = [s for s in steps if cb[s] < ca[s]]
    if not below:
        return f"{b} stays above {a} at every evaluation up to {int(last):,} updates"
    if below == steps:
        return f"{b} is below {a} at every evaluation"
    tail = [s for s in steps if all(cb[t] < ca[t] for t in steps if t >= s)]
    if tail:
        return (f"{b} falls below {a} from {int(tail[0]):,} updates on (means over seeds; "
                f"{100 * cb[last]:.2f} % vs {100 * ca[last]:.2f} % at {int(last):,})")
    return f"{b} and {a} cross back and forth; {b} is below {a} at {len(below)} of {len(steps)} evaluations"


def draw(table: pd.DataFrame, stem: Path, reference: bool) -> list[Path]:
    entries = table["config"].nunique() + (3 if reference else 0)
    fig, ax = plt.subplots(figsize=(8, 5.2 + 0.16 * entries))  # the legend below, one line per curve
    n_curves = table["config"].nunique()
    colors = [f"C{i}" for i in range(10)] if n_curves <= 10 else \
        [plt.get_cmap("tab20")(k) for k in [*range(0, 20, 2), *range(1, 20, 2)] * 2][:n_curves]  # dark hues, then light
    for i, (config, g) in enumerate(table.groupby("config", sort=True)):
        n = int(g["n"].min())
        ax.plot(g["step"], 100 * g["mean"], marker=".", color=colors[i],
                label=f"{config} (n = {n} seeds; {g['schedule'].iloc[0]})",
                linestyle=":" if g["running"].any() else "-")
        ax.fill_between(g["step"], 100 * (g["mean"] - g["ci95"].fillna(0)), 100 * (g["mean"] + g["ci95"].fillna(0)),
                        color=colors[i], alpha=0.08)
    if reference:
        steps, err = zip(*sorted(PUBLISHED_CURVE.items()))
        ax.plot(steps, err, "k--", marker="s", label=f"published VAT curve (tf-ssl, eps 5, xi 1e-6; 5 seeds; {PUBLISHED_SCHEDULE})")
        for m, (mean, sd) in PAPER_TABLE3[("mnist", 100)].items():
            ax.errorbar([PAPER_STEPS], [mean], yerr=[sd], fmt="D", color="k" if m == "vat" else "0.5", capsize=3,
                        label=f"paper Table 3, {m.upper()} ({mean} +- {sd} %; {PAPER_STEPS:,} updates, lr decays "
                              f"linearly from {PAPER_STEPS // 2:,})")
    ax.set_xscale("log")
    ax.set_xlabel("update (log scale)")
    ax.set_ylabel("test error (%)")
    top = float(100 * (table["mean"] + table["ci95"].fillna(0)).max())
    ax.set_ylim(0, min(max(top, 12.0), 100.0) * 1.05)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    ax.set_title("Test error during training (for reading only: selection is on validation)")
    return save(fig, stem, note="Lines: mean over seeds; bands: 95 % t interval over seeds; one line per configuration")


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    t = compute(r.data)
    ref = _reference(r.data)
    r.table("learning_curves", t, ("mean", "ci95"))
    last = (t.sort_values("step").groupby("config_key").tail(1).sort_values("mean")
            [["config", "step", "mean", "ci95", "n"]].reset_index(drop=True))
    lines = [r.figure(draw(t, r.out / "learning_curves", ref)), "",
             "Test error (%) at each configuration's last evaluation (`step`), mean and 95 % t half-width over seeds "
             "(n = seeds):", "", md_table(last, ("mean", "ci95"))]
    if t["running"].any():
        lines += ["", "Configurations marked [still running] were not finished when this report was written: their "
                      "curves are measured up to the last step shown; their final test error is not in any table."]
    variants = set(t["variant"])
    for a, b in (("rpt", "vat"), ("baseline", "vat"), ("baseline", "rpt")):
        if a in variants and b in variants:
            lines += ["", f"- {crossing(t, a, b)}."]
    if ref:
        lines += ["", "Reference: the published curve is a 5-seed mean of a TPAMI-like setup (tf-ssl; "
                      f"{PUBLISHED_SCHEDULE}); the paper's Table 3 values are at {PAPER_STEPS:,} updates, the "
                      f"learning rate decaying linearly from {PAPER_STEPS // 2:,} (Appendix C). Each curve's legend "
                      "names its schedule: two curves at one update count with different schedules are at different "
                      "places of them (one still at its full learning rate, the other after its decay), so their "
                      "distance there is not the methods' alone."]
    return "\n".join(lines)
