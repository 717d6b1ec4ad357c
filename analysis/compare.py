"""Method comparison with seeded repeats: paired by seed, per-seed differences, mean difference
with a 95 % t confidence interval and a paired t-test; and across a grid, which configurations of
one method differ significantly from the other method's best (Holm-adjusted p-values)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .data import MIN_TEST_SEEDS, Skip, StudyData, best_config, holm, interval, label, paired_test
from .plotting import axis_label, percent, plt, save

MIN_PAIRED_SEEDS = 5
"""Below this many paired seeds a comparison is reported with a warning (``few_seeds_warning``)."""


def few_seeds_warning(n: int) -> str:
    return (f"**Warning: n = {int(n)} paired seed(s) (< {MIN_PAIRED_SEEDS}).** A t interval on so few seeds is wide "
            "and its normality assumption untestable; add seeds, or let a `sequential:` block add them until the "
            "comparison is decided.")


def slug(variant: str) -> str:
    """A file-name form of a variant: ``rpt (clean_stochastic=false)`` -> ``rpt_clean_stochastic_false``."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", variant).strip("_")


ORDER = [("rpt", "vat"), ("baseline", "vat"), ("baseline", "rpt"), ("vat", "vat_entmin"), ("at_l2", "vat")]


def pairs(data: StudyData) -> list[tuple[str, str]]:
    """The variants (``data.with_variants``) to compare, paired as ``ORDER`` pairs their methods."""
    if data.complete.empty:
        return []
    variants = data.complete.groupby("variant")["method"].first().to_dict()
    return [(va, vb) for a, b in ORDER for va, ma in sorted(variants.items()) if ma == a
            for vb, mb in sorted(variants.items()) if mb == b]


def _seed_values(df: pd.DataFrame, config_key: str, value: str) -> pd.Series:
    return df[df["config_key"] == config_key].set_index("seed")[value]


def compute_pair(data: StudyData, a: str, b: str, value: str = "test_error") -> tuple[pd.DataFrame, dict]:
    """Each method at its best configuration (by the study metric), paired by seed on ``value``.
    Returns (per-seed frame: seed, a, b, diff = b - a) and the paired_test summary with labels."""
    df = data.complete
    ka = best_config(df[df["variant"] == a], data.metric, data.mode)
    kb = best_config(df[df["variant"] == b], data.metric, data.mode)
    if ka is None or kb is None or value not in df:
        raise Skip(f"no complete {a} and {b} trials with {value}")
    va, vb = _seed_values(df, ka, value), _seed_values(df, kb, value)
    seeds = sorted(set(va.index) & set(vb.index))
    if len(seeds) < 2:
        raise Skip(f"{a} vs {b}: fewer than 2 seeds shared by both best configurations")
    per_seed = pd.DataFrame({"seed": seeds, a: va.loc[seeds].values, b: vb.loc[seeds].values})
    per_seed["diff"] = per_seed[b] - per_seed[a]
    summary = paired_test(per_seed[a].values, per_seed[b].values)
    summary.update(a=a, b=b, value=value, config_a=label(df[df["config_key"] == ka].iloc[0]),
                   config_b=label(df[df["config_key"] == kb].iloc[0]))
    return per_seed, summary


def compute_grid(data: StudyData, a: str, b: str, value: str = "test_error") -> pd.DataFrame:
    """Every configuration of ``b`` against the best configuration of ``a``, paired by seed."""
    df = data.complete
    ka = best_config(df[df["variant"] == a], data.metric, data.mode)
    if ka is None:
        raise Skip(f"no complete {a} trials")
    va = _seed_values(df, ka, value)
    rows = []
    for _, g in df[df["variant"] == b].groupby("config_key", sort=False):
        vb = g.set_index("seed")[value]
        seeds = sorted(set(va.index) & set(vb.index))
        if len(seeds) < 2:
            continue
        r = paired_test(va.loc[seeds].values, vb.loc[seeds].values)
        r.update(config=label(g.iloc[0]), eps=g["eps"].iloc[0])
        rows.append(r)
    if len(rows) < 2:
        raise Skip(f"{b} has fewer than two configurations with 2+ seeds shared with {a}")
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p"].tolist())  # over the tests that exist; blank where none was done
    out["significant"] = [None if p != p else bool(p < 0.05) for p in out["p_holm"]]
    out = out[[c for c in out.columns if c != "note"] + ["note"]]  # why a row has no test, last
    return out.sort_values("eps").reset_index(drop=True)


def draw_pair(per_seed: pd.DataFrame, summary: dict, stem: Path) -> list[Path]:
    a, b = summary["a"], summary["b"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for _, r in per_seed.iterrows():
        ax.plot([0, 1], [r[a], r[b]], color="gray", alpha=0.6, marker="o")
    ax.set_xticks([0, 1], [f"{a}\n{summary['config_a']}", f"{b}\n{summary['config_b']}"], fontsize=8)
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylabel(f"{axis_label(summary['value'])}, one line per seed")
    percent(ax)
    ci = interval(100 * summary["ci_low"], 100 * summary["ci_high"])
    test = f"paired t-test p = {summary['p']:.3g}" if not summary["note"] else f"no test: {summary['note']}"
    ax.set_title(f"{b} - {a}: {100 * summary['mean_diff']:+.2f} pts {ci}\n"
                 f"{'95% CI, ' if ci else ''}{test}, n = {summary['n']} seeds", fontsize=9)
    return save(fig, stem)


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    prs = pairs(r.data)
    if not prs:
        raise Skip("needs complete trials of two methods (e.g. rpt and vat)")
    parts = []
    rows = []
    for a, b in prs:
        try:
            per_seed, s = compute_pair(r.data, a, b)
        except Skip as e:
            parts.append(f"- {b} vs {a}: skipped: {e}")
            continue
        rows.append(s)
        name = f"compare_{slug(a)}_vs_{slug(b)}"
        parts.append(f"### {b} vs {a} (paired by seed, test error)\n\n" + r.figure(draw_pair(per_seed, s, r.out / name))
                     + "\n\n" + r.table(name + "_per_seed", per_seed, (a, b, "diff")))
        try:
            g = compute_grid(r.data, a, b)
            parts.append(f"\nEvery {b} configuration against the best {a}, paired by seed "
                         "(difference in points of test error; p Holm-adjusted over the configurations with a test; "
                         "t, p and significant blank where no test is defined, the note says why):\n\n"
                         + r.table(name + "_grid", g, ("mean_diff", "sd_diff", "ci_low", "ci_high")))
        except Skip as e:
            parts.append(f"\n(grid comparison skipped: {e})")
    if not rows:
        raise Skip("; ".join(p.removeprefix("- ") for p in parts))
    summary = pd.DataFrame(rows)[["b", "a", "config_b", "config_a", "n", "mean_diff", "ci_low", "ci_high", "t", "p",
                                  "note"]]
    head = ("Mean difference b - a of test error (points), 95 % t confidence interval, paired t-test (blank where "
            f"it is not defined, the note says why: fewer than {MIN_TEST_SEEDS} seeds, or every seed's difference "
            "the same):\n\n"
            + r.table("comparison_summary", summary, ("mean_diff", "ci_low", "ci_high")))
    few = summary[summary["n"] < MIN_PAIRED_SEEDS]
    if not few.empty:
        head += "\n\n" + few_seeds_warning(few["n"].min())
    return head + "\n\n" + "\n\n".join(parts)
