"""Against the paper, computed: a study file's ``paper:`` block (``spec.Paper``) names the paper's
values and orderings; every verdict here comes from the trials (each value against the 95 % t
interval over seeds of the chosen configuration; each ordering as a paired difference by seed),
never from pasted text.

The block is read from the stored study; a study stored before it had one takes it from its
study file, ``studies/<name>.yaml`` (the paper's values are reading material, not part of what a
trial trains, so adding them needs no rerun). Hand-written notes live in ``PAPER.md`` beside the
report, which ``vat-study report`` includes and never writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import Skip, StudyData, all_equal, ci_half, interval, paired_test, untestable

NOTES = "PAPER.md"
"""Hand-written notes beside a report (``results/<study>/PAPER.md``): included, never written."""


def paper_block(data: StudyData, studies: Path = Path("studies")) -> dict[str, Any] | None:
    """The study's ``paper:`` block: from the stored study, else from its study file."""
    block = data.spec.get("paper")
    if block:
        return block
    path = studies / f"{data.name}.yaml"
    if not path.exists():
        return None
    from vat_study.platform.spec import SpecError, load_spec

    try:
        spec = load_spec(path)
    except SpecError as e:
        raise Skip(f"{path}: {e.problems[0]}") from None
    if spec.name != data.name or spec.paper is None:
        return None
    return spec.paper.model_dump(mode="json")


def _matching(df: pd.DataFrame, method: str, where: dict[str, Any]) -> pd.DataFrame:
    g = df[df["variant"] == method]
    for key, value in where.items():
        col = key if key in g else f"param.{key}"
        if col not in g:
            raise Skip(f"paper: where {key}: the trials have no such column")
        g = g[np.isclose(g[col].astype(float), float(value))] if isinstance(value, (int, float)) \
            and not isinstance(value, bool) else g[g[col] == value]
    return g


def chosen(data: StudyData, method: str, where: dict[str, Any], metric: str) -> tuple[pd.DataFrame, str]:
    """The trials (one per seed) of ``method``'s configuration chosen on the study metric among
    those matching ``where``, and a label of that configuration."""
    from .data import label

    g = _matching(data.complete, method, where)
    if g.empty or metric not in g:
        raise Skip(f"no complete trials of {method}" + (f" with {where}" if where else "") + f" reporting {metric}")
    k = data.best_config(g)
    if k is None:
        raise Skip(f"no configuration of {method} has the study metric {data.metric}")
    best = g[g["config_key"] == k].dropna(subset=[metric])
    return best, label(best.iloc[0])


def _scale(metric: str) -> float:
    return 100.0 if metric.endswith("_error") else 1.0


def _unit(metric: str) -> str:
    return " %" if metric.endswith("_error") else ""


def compute(data: StudyData, block: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """A table (one row per paper value: ours, 95 % CI, n, the paper's, verdict) and the lines
    of the section (values, then orderings)."""
    rows, lines = [], []
    steps = sorted(int(s) for s in data.complete["steps"].dropna().unique()) if "steps" in data.complete else []
    budgets = ("/".join(f"{s:,}" for s in steps) or "?",
               f"{block['steps']:,} updates" if block.get("steps") else "the paper's budget")
    for v in block.get("values") or []:
        row, line = _value(data, v, *budgets)
        lines.append(line)
        if row is not None:
            rows.append(row)
    lines += [_ordering(data, o) for o in block.get("orderings") or []]
    return pd.DataFrame(rows), lines


def _value(data: StudyData, v: dict[str, Any], ours_budget: str, paper_budget: str) -> tuple[dict | None, str]:
    """One paper value against ours (the configuration chosen on validation): its table row (None:
    not computed) and its line."""
    metric, where = v.get("metric", "test_error"), v.get("where") or {}
    name = v.get("label") or v["method"] + (f" ({', '.join(f'{k}={x}' for k, x in where.items())})" if where else "")
    try:
        best, config = chosen(data, v["method"], where, metric)
    except Skip as e:
        return None, f"- {name}: not computed ({e})."
    x = best[metric].to_numpy(float) * _scale(metric)
    n = len(x)
    mean, sd = float(x.mean()), float(x.std(ddof=1)) if n > 1 else float("nan")
    why = untestable(x, what="seeds' values")
    if all_equal(x):  # no spread at the metric's resolution: no interval, not one of width 0
        sd = 0.0 if n > 1 else sd
        lo = hi = float("nan")
    else:
        half = ci_half(sd, n)
        lo, hi = mean - half, mean + half
    if why:
        verdict = f"not decided: {why}"
    elif lo <= v["value"] <= hi:
        verdict = "agrees (the paper's value is inside our 95 % CI)"
    else:
        verdict = f"does not agree: ours is {'higher' if mean > v['value'] else 'lower'}"
    sd_p = f" +- {v['sd']:g}" if v.get("sd") is not None else ""
    u = _unit(metric)
    ci = interval(lo, hi, ".2f")
    line = (f"- {name}, {metric}: ours {mean:.2f}{u}{' ' + ci if ci else ''} ({config}; n = 1 configuration "
            f"x {n} seeds, {ours_budget} updates) vs the paper's {v['value']:g}{sd_p}{u} ({paper_budget}): "
            f"{verdict}.")
    return {"method": name, "metric": metric, "configuration": config, "ours_mean": mean, "ours_sd": sd,
            "ci_low": lo, "ci_high": hi, "configurations": 1, "seeds": n, "paper": v["value"],
            "paper_sd": v.get("sd"), "verdict": verdict}, line


def _ordering(data: StudyData, o: dict[str, Any]) -> str:
    """One of the paper's orderings (or ties) tested on our seeds, paired: its line."""
    metric = o.get("metric", "test_error")
    a, b = o["lower"], o["higher"]
    wa, wb = o.get("where_lower") or {}, o.get("where_higher") or {}
    na = a + (f" ({', '.join(f'{k}={x}' for k, x in wa.items())})" if wa else "")
    nb = b + (f" ({', '.join(f'{k}={x}' for k, x in wb.items())})" if wb else "")
    claim = f"{na} = {nb}" if o.get("tie") else f"{na} < {nb}"
    if not (wa or wb) and not o.get("tie"):
        line = _sequential_ordering(data, a, b, metric, claim)
        if line:
            return line
    try:
        ta, _ = chosen(data, a, wa, metric)
        tb, _ = chosen(data, b, wb, metric)
    except Skip as e:
        return f"- {claim} ({metric}, the paper): not computed ({e})."
    va, vb = ta.set_index("seed")[metric], tb.set_index("seed")[metric]
    seeds = sorted(set(va.index) & set(vb.index))
    if len(seeds) < 2:
        return f"- {claim} ({metric}, the paper): not computed (fewer than 2 shared seeds)."
    s = paired_test(vb.loc[seeds].to_numpy(float), va.loc[seeds].to_numpy(float))  # lower - higher
    k = _scale(metric)
    d, lo, hi = k * s["mean_diff"], k * s["ci_low"], k * s["ci_high"]
    if s["note"]:  # the CI excluding 0 would be a test the data cannot give
        verdict = f"not decided: {s['note']}"
    elif o.get("tie"):
        verdict = ("agrees: the CI includes 0" if lo <= 0 <= hi else
                   f"does not agree: {na} is {'lower' if hi < 0 else 'higher'} (the CI excludes 0)")
    else:
        verdict = ("reproduced: the CI excludes 0" if hi < 0 else "reversed: the CI excludes 0 the other way"
                   if lo > 0 else "not decided at this n: the CI includes 0")
    pts = " points" if metric.endswith("_error") else ""
    ci = interval(lo, hi)
    from .compare import sequential_pairs

    if frozenset((a, b)) in sequential_pairs(data) and not s["note"]:
        verdict += (" (as if n had been fixed: n was set by the sequential stopping rule, so this CI does not hold "
                    "the error rate over its looks; the sequential decision does)")
    return (f"- {claim} ({metric}, the paper): {na} - {nb} = {d:+.2f}{pts}{' ' + ci if ci else ''}, "
            f"paired by seed, n = {len(seeds)}: {verdict}.")


def _sequential_ordering(data: StudyData, lower: str, higher: str, metric: str, claim: str) -> str | None:
    """The ordering's line from the study's ``sequential:`` decision where that block compares
    these two methods on ``metric``: after several looks a fixed-n t interval would not hold its
    error rate (``group_sequential``), the sequential decision and its repeated CI do. None where
    the block does not compare them."""
    from vat_study.platform import group_sequential as gs

    from .compare import sequential_pairs

    sq = data.spec.get("sequential") or {}
    if sq.get("metric", "test_error") != metric or frozenset((lower, higher)) not in sequential_pairs(data):
        return None
    c = next((c for c in gs.study_block_comparisons(data.trials, data.spec) if {c.a, c.b} == {lower, higher}), None)
    if c is None:
        return None
    shown = {m: data.best_config(data.complete[data.complete["variant"] == m]) for m in (c.a, c.b)}
    if c.outcome.looks and shown != {c.a: c.config_a, c.b: c.config_b}:
        return (f"- {claim} ({metric}, the paper): not computed (the report's configurations chosen on validation "
                "are not the ones the sequential test compared).")
    last = c.outcome.looks[-1] if c.outcome.looks else None
    if last is None:
        return f"- {claim} ({metric}, the paper): not decided yet: {c.note or c.decision}."
    sign = 1.0 if c.b == lower else -1.0  # the comparison is b - a; the line shows lower - higher
    k = _scale(metric)
    d = sign * k * last.mean_diff
    lo, hi = sorted((sign * k * last.ci_low, sign * k * last.ci_high))
    if c.outcome.state in (gs.DECIDED_A, gs.DECIDED_B):  # decided: the repeated CI excludes 0, d's sign says which way
        verdict = ("reproduced" if d < 0 else "reversed") + " (the sequential test decided; its repeated CI excludes 0)"
    elif c.outcome.state == gs.NO_DIFFERENCE:
        verdict = f"not decided: {c.decision}"
    else:
        verdict = f"not decided yet: {c.decision}"
    pts = " points" if metric.endswith("_error") else ""
    ci = interval(lo, hi)
    level = f"{100 * (1 - c.outcome.level):.1f} %"
    return (f"- {claim} ({metric}, the paper): {lower} - {higher} = {d:+.2f}{pts}"
            f"{f' {ci} (repeated {level} CI)' if ci else ''}, paired by seed, n = {last.n} "
            f"after {len(c.outcome.looks)} look(s) of the study's sequential test (false-positive rate "
            f"{sq.get('alpha', 0.05):g} over all looks): {verdict}.")


def references(data: StudyData, metric: str, method: str | None = None) -> list[tuple[str, float]]:
    """The paper's values of ``metric`` (as fractions for an error, as drawn), labelled for a
    reference line: [(label, value)], for ``method`` only when given."""
    try:
        block = paper_block(data)
    except Skip:
        return []
    out = []
    for v in (block or {}).get("values") or []:
        if v.get("metric", "test_error") != metric or (method is not None and v["method"] != method):
            continue
        where = v.get("where") or {}
        name = v.get("label") or v["method"] + (f" ({', '.join(f'{k}={x}' for k, x in where.items())})" if where else "")
        steps = f", {block['steps']:,} updates" if block.get("steps") else ""
        out.append((f"paper: {name}{steps}", v["value"] / _scale(metric)))
    return out


def baseline(data: StudyData, metric: str) -> tuple[str, float] | None:
    """The baseline's mean ``metric`` at its configuration chosen on the study metric, labelled
    for a reference line; None when the study has no baseline."""
    df = data.complete
    if "variant" not in df or not (df["variant"] == "baseline").any() or metric not in df:
        return None
    try:
        best, _ = chosen(data, "baseline", {}, metric)
    except Skip:
        return None
    return f"baseline (mean of {len(best)} seeds)", float(best[metric].mean())


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): computed from the ``paper:`` block."""
    block = paper_block(r.data)
    if not block:
        raise Skip("the study names no paper values (a paper: block in its study file)")
    table, lines = compute(r.data, block)
    body = (f"The paper: {block['source']}. Each value against the 95 % t interval over seeds of our configuration "
            "chosen on the study metric; each ordering as a paired difference by seed (lower - higher):\n\n"
            + "\n".join(lines))
    if not table.empty:
        r.table("against_paper", table)
    return body


def notes(out: Path) -> str | None:
    """The hand-written notes beside a report (``PAPER.md``), if any."""
    from vat_study.common.yamlio import FileRefused, read_text

    path = out / NOTES
    if not path.exists():
        return None
    try:  # a regular file under the size bound: a FIFO or a device there never hangs the report
        return read_text(path).strip()
    except (FileRefused, UnicodeDecodeError) as e:
        return f"(`{NOTES}` is not included: {e})"
