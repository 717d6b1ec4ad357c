"""Method comparisons with seeded repeats: paired by seed, per-seed differences, mean difference
with a 95 % t confidence interval and a paired t-test; and across a grid, which configurations of
one method differ significantly from the other method's best (Holm-adjusted p-values).

Every pair in one figure (a forest plot of the differences, each seed's difference a dot) and two
CSV files, whatever the number of pairs: comparisons.csv (best against best, and every
configuration of b against a's best) and comparisons_per_seed.csv."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .data import NotApplicable, Skip, StudyData, holm, label, paired_test
from .markdown import md_table
from .plotting import plt, save

MIN_PAIRED_SEEDS = 5
"""Below this many paired seeds a comparison is reported with a warning (``few_seeds_warning``)."""


def few_seeds_warning(n: int) -> str:
    return (f"**Warning: n = {int(n)} paired seed(s) (< {MIN_PAIRED_SEEDS}).** A t interval on so few seeds is wide "
            "and its normality assumption untestable; add seeds, or let a `sequential:` block add them until the "
            "comparison is decided.")


SEQUENTIAL_NOTE = ("The n of {pairs} was set by the study's `sequential:` stopping rule: the p values and CIs here are "
                   "those of a fixed n and do not hold the error rate over its looks; its decisions, with the "
                   "repeated CIs that do, are under \"Sequential comparisons\".")


def sequential_pairs(data: StudyData) -> set[frozenset]:
    """The pairs of methods the study's ``sequential:`` block compares (their n set by its stopping rule)."""
    block = data.spec.get("sequential") or {}
    return {frozenset(pair) for pair in block.get("compare") or []}


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
    ka = data.best_config(df[df["variant"] == a])
    kb = data.best_config(df[df["variant"] == b])
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
    ka = data.best_config(df[df["variant"] == a])
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


def _test_text(s: dict) -> str:
    return f"p = {s['p']:.3g}" if not s["note"] else f"no test: {s['note']}"


def draw(rows: list[dict], per_seed: pd.DataFrame, stem: Path, labels: list[str] | None = None,
         xlabel: str = "difference b - a of test error (points), paired by seed") -> list[Path]:
    """A forest plot: one row per pair (b - a, each at its best configuration; per_seed's
    ``comparison`` column names its pair as its ``labels`` entry does, default "b - a"), the mean
    paired difference in points with its 95 % t interval, each seed's difference a grey dot, n and
    the test (or why there is none) beside it."""
    labels = labels or [f"{s['b']} - {s['a']}" for s in rows]
    fig, ax = plt.subplots(figsize=(8.5, 0.55 * len(rows) + 1.6))
    for i, s in enumerate(rows):
        y = len(rows) - 1 - i
        d = per_seed[per_seed["comparison"] == labels[i]]["diff"]
        ax.scatter(100 * d, [y] * len(d), s=12, color="0.6", zorder=2)
        lo, hi = s["ci_low"], s["ci_high"]
        if lo == lo and hi == hi:
            ax.plot([100 * lo, 100 * hi], [y, y], color="C0", linewidth=2.2, zorder=3)
        ax.plot([100 * s["mean_diff"]], [y], marker="D", color="C0", zorder=4)
        ax.annotate(f"no test ({s['note']})" if s["note"] else f"n = {s['n']}; {_test_text(s)}", xy=(1.01, y), xycoords=("axes fraction", "data"),
                    va="center", fontsize=8)
    ax.axvline(0, color="0.3", linewidth=1)
    ax.set_yticks(range(len(rows)), list(reversed(labels)), fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    return save(fig, stem, note="Diamond: mean difference over the seeds both best configurations ran; bar: its "
                                "95 % t confidence interval (none where every seed's difference is the same); dots: each seed's "
                                "difference. Left of 0: b has the lower error")


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """The best-against-best comparisons as a table: b, a, their configurations, n, the paired
    difference with its CI, t, p and the note (why a test is not defined)."""
    return pd.DataFrame(rows)[["b", "a", "config_b", "config_a", "n", "mean_diff", "ci_low", "ci_high", "t", "p",
                               "note"]]


PCT = ("mean_diff", "sd_diff", "ci_low", "ci_high")


def _pair_part(r, s: dict, per_seed: pd.DataFrame, grids: list[pd.DataFrame]) -> str:
    a, b = s["a"], s["b"]
    part = (f"### {b} - {a}\n\nTest error (%) of each seed at each one's best configuration:\n\n"
            + md_table(per_seed, (a, b, "diff")))
    try:
        g = compute_grid(r.data, a, b)
    except Skip as e:
        return part + f"\n\n(every {b} configuration against the best {a}: not computed: {e})"
    grids.append(g.assign(a=a, b=b, config_a=s["config_a"]))
    return (part + f"\n\nEvery {b} configuration against the best {a}, paired by seed (points of test error; p "
            "Holm-adjusted over the configurations with a test; t, p and significant blank where no test is "
            "defined, the note says why):\n\n" + md_table(g, PCT))


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    prs = pairs(r.data)
    if not prs:
        raise NotApplicable("needs complete trials of two methods (e.g. rpt and vat)")
    rows, seeds, grids, parts, skipped = [], [], [], [], []
    for a, b in prs:
        try:
            per_seed, s = compute_pair(r.data, a, b)
        except Skip as e:
            skipped.append(f"- {b} - {a}: not compared: {e}")
            continue
        rows.append(s)
        seeds.append(per_seed.rename(columns={a: "a_value", b: "b_value"}).assign(comparison=f"{b} - {a}", a=a, b=b))
        parts.append(_pair_part(r, s, per_seed, grids))
    if not rows:
        raise Skip("; ".join(p.removeprefix("- ") for p in skipped))
    per_seed_all = pd.concat(seeds, ignore_index=True)[["comparison", "b", "a", "seed", "b_value", "a_value", "diff"]]
    sequential = sequential_pairs(r.data)
    best = summary_frame(rows).assign(scope="best vs best")
    best["n_set_by"] = ["sequential stopping rule" if frozenset((a, b)) in sequential else "study seeds"
                        for a, b in zip(best["a"], best["b"])]
    every = [g.assign(scope="each b configuration vs best a").rename(columns={"config": "config_b"}) for g in grids]
    table = pd.concat([best, *every], ignore_index=True)
    table.insert(0, "comparison", [f"{b} - {a}" for a, b in zip(table["a"], table["b"])])
    table.insert(1, "scope", table.pop("scope"))
    r.table("comparisons", table)
    r.table("comparisons_per_seed", per_seed_all)
    few = best[(best["n"] < MIN_PAIRED_SEEDS) & (best["n_set_by"] == "study seeds")]
    head = [r.figure(draw(rows, per_seed_all, r.out / "comparisons"))]
    if not few.empty:  # (an n the sequential rule stopped at is the rule's, not too few seeds)
        head.append(few_seeds_warning(few["n"].min()))
    ruled = best[best["n_set_by"] != "study seeds"]
    if not ruled.empty:
        head.append(SEQUENTIAL_NOTE.format(pairs=", ".join(f"{b} - {a}" for a, b in zip(ruled["a"], ruled["b"]))))
    return "\n\n".join(head + parts + (["\n".join(skipped)] if skipped else []))
