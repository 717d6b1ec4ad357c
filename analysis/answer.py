"""The head of a report: the study's answer, before any figure.

Its question (the study file's ``description:``), each method's best configuration chosen on the
study metric (validation) with its 95 % t interval and n, the paired comparisons between methods
(and the sequential decisions where the study has a ``sequential:`` block), and the paper's
values and orderings where the study names them (or Table 3's, for the paper's Table 3 setting).
Everything here is computed from the trials by the modules that draw the details further down
(``tables``, ``compare``, ``sequential``, ``paper``); nothing is written by hand.
"""

from __future__ import annotations

import pandas as pd

from .data import MIN_TEST_SEEDS, Skip, StudyData, interval


def question(data: StudyData) -> str:
    """The study's question: its ``description:``, quoted; a hint where it has none."""
    text = " ".join(str(data.spec.get("description") or "").split())
    if text:
        return f"> {text}"
    return "> (The study file has no `description:`; it is where a study states its question.)"


def best_table(data: StudyData) -> pd.DataFrame:
    """Each method variant's best configuration (by the study metric, on validation): the study
    metric's and the test error's mean, SD and 95 % t half-width over its seeds, best first. The
    dataset / mode / n_labeled columns only where the study varies them."""
    from .tables import methods_table

    t = methods_table(data)
    fixed = [c for c in ("dataset", "mode", "n_labeled") if t[c].nunique(dropna=False) <= 1]
    t = t.drop(columns=fixed)
    key = f"{data.metric}_mean" if f"{data.metric}_mean" in t else "test_error_mean"
    return t.sort_values(key, ascending=data.mode == "min", kind="stable").reset_index(drop=True)


def _pct(metric: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((metric, "test_error"))) if metric.endswith("error") else ("test_error",)


def comparison_lines(data: StudyData) -> list[str]:
    """One line per pair of methods (``compare.pairs``): b - a of the test error at each one's
    best configuration, paired by seed, with its CI and test (or why there is none). For a pair
    whose n the sequential stopping rule set, the CI and p are those of a fixed n and say so: they
    do not hold the error rate over the looks (the sequential decision does)."""
    from . import compare

    lines, sequential = [], compare.sequential_pairs(data)
    for a, b in compare.pairs(data):
        try:
            _, s = compare.compute_pair(data, a, b)
        except Skip as e:
            lines.append(f"- {b} - {a}: not compared ({e}).")
            continue
        ci = interval(100 * s["ci_low"], 100 * s["ci_high"])
        test = f"paired t-test p = {s['p']:.3g}" if not s["note"] else f"no test: {s['note']}"
        if frozenset((a, b)) in sequential and not s["note"]:
            test += (" as if n had been fixed (n was set by the sequential stopping rule, so this p and CI do "
                     "not hold the error rate over its looks: the sequential decision below does)")
        lines.append(f"- {b} - {a}: {100 * s['mean_diff']:+.2f} points of test error"
                     f"{' ' + ci + ' (95 % CI)' if ci else ''}, paired by seed, n = {s['n']}; {test} "
                     f"({b}: {s['config_b']}; {a}: {s['config_a']}).")
    return lines


def sequential_lines(data: StudyData) -> list[str]:
    """The sequential block's decisions, one line per comparison (``analysis.sequential``)."""
    from . import sequential

    try:
        summary, _ = sequential.compute(data)
    except Skip:
        return []
    return [f"- {r.comparison} ({data.spec['sequential']['metric']}): {r.decision} at n = {int(r.n_seeds)} seeds "
            f"after {int(r.looks)} look(s)." for r in summary.itertuples()]


def paper_lines(r) -> list[str]:
    """The paper's values and orderings against the trials: the study's ``paper:`` block (its
    table written as against_paper.csv), else Table 3's where the study is the paper's setting."""
    from . import paper, tables

    block = paper.paper_block(r.data)
    if block:
        table, lines = paper.compute(r.data, block)
        if not table.empty:
            r.table("against_paper", table)
        return [f"The paper: {block['source']}. Each value against the 95 % t interval over seeds of our "
                "configuration chosen on the study metric; each ordering as a paired difference by seed "
                "(lower - higher):", "", *lines]
    try:
        t3 = tables.table3(r.data)
    except Skip:
        return []
    return ["The paper's Table 3 (semi-supervised MNIST), each method at its eps chosen on validation:", "",
            *tables.against_paper(r.data, t3)]


def section(r) -> str:
    """The answer (Markdown), written at the head of the report; ``r`` is the ``report.Report``."""
    data = r.data
    if data.complete.empty:
        return "No trial of the study is complete yet: there is nothing to answer with."
    parts = []
    try:
        best = best_table(data)
        n = f"n = 1 configuration x {int(best['n'].min())}" + (
            f"-{int(best['n'].max())}" if best["n"].nunique() > 1 else "") + " seeds"
        parts += [f"**Each method at its best configuration**, chosen on `{data.metric}` ({data.mode}; the "
                  "validation set), best first: mean, SD and 95 % t half-width (ci) over seeds in %, "
                  f"{n}:", "", r.table("best_per_method", best, _pct(data.metric))]
    except Skip as e:
        parts.append(f"No best configuration: {e}.")
    pairs = comparison_lines(data)
    if pairs:
        parts += ["", "**Paired comparisons** (b - a, each at its best configuration; a t-test needs "
                      f"{MIN_TEST_SEEDS}+ seeds whose differences are not all equal):", "", *pairs]
    decided = sequential_lines(data)
    if decided:
        parts += ["", "**Sequential decisions** (seeds added until decided; error rate held over every look):",
                  "", *decided]
    against = paper_lines(r)
    if against:
        parts += ["", "### Against the paper", "", *against]
    return "\n".join(parts)
