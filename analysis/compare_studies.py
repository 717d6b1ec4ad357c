"""``vat-study compare STUDY_A STUDY_B``: two studies side by side, written like a report.

For each method variant both studies ran: its best configuration in each (chosen on each study's
own metric, on validation), the test error of each with its 95 % t interval and n, and B - A
paired by seed over the seeds both best configurations ran (the same seed: the same
initialization, splits and batch order where the two tasks agree), with its CI and paired
t-test where defined; the study metric's curve of each during training, A and B in one panel per
method. What differs between the two study files (task, method, probes) is listed first: it is
what the comparison measures. Into results/compare_<A>_vs_<B>/: report.md, report.html, CSV, PNG.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import compare, html
from .data import StudyData, ci_half, label, load, paired_test, summarize
from .plotting import axis_label, figure_formats, palette, percent, plt, save, t_band


class NothingInCommon(ValueError):
    """The two studies share no method variant: nothing to put side by side."""


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(a: StudyData, b: StudyData) -> list[str]:
    """The settings of the two study files (task, method, probes, seeds, metric) that differ."""
    fa = _flat({k: a.spec.get(k) for k in ("task", "method", "probes", "seeds", "metric")})
    fb = _flat({k: b.spec.get(k) for k in ("task", "method", "probes", "seeds", "metric")})
    return [f"- `{k}`: A {fa.get(k, '(not set)')!s}, B {fb.get(k, '(not set)')!s}"
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def common(a: StudyData, b: StudyData) -> list[str]:
    """The method variants both studies have complete trials of; ``NothingInCommon`` if none."""
    va = set(a.complete["variant"]) if not a.complete.empty else set()
    vb = set(b.complete["variant"]) if not b.complete.empty else set()
    if not va & vb:
        raise NothingInCommon(f"no method in common with complete trials (A: {', '.join(sorted(va)) or 'none'}; "
                              f"B: {', '.join(sorted(vb)) or 'none'})")
    return sorted(va & vb)


def _best(d: StudyData, variant: str) -> pd.DataFrame:
    g = d.complete[d.complete["variant"] == variant]
    return g[g["config_key"] == d.best_config(g)]


def _side(best: pd.DataFrame, tag: str) -> dict:
    x = best["test_error"].dropna()
    sd = float(x.std(ddof=1)) if len(x) > 1 else float("nan")
    return {f"config_{tag}": label(best.iloc[0]), f"test_error_mean_{tag}": float(x.mean()),
            f"test_error_ci_{tag}": ci_half(sd, len(x)), f"n_{tag}": len(x)}


def table(a: StudyData, b: StudyData, variants: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per method: each study's best configuration and test error with its CI and n,
    B - A paired by the seeds both ran; per seed: method, seed, A, B, diff)."""
    rows, seeds = [], []
    for v in variants:
        ba, bb = _best(a, v), _best(b, v)
        row = {"method": v, **_side(ba, "a"), **_side(bb, "b")}
        va, vb = ba.set_index("seed")["test_error"], bb.set_index("seed")["test_error"]
        shared = sorted(set(va.dropna().index) & set(vb.dropna().index))
        if len(shared) >= 2:
            t = paired_test(va.loc[shared].to_numpy(float), vb.loc[shared].to_numpy(float))
            row.update({k: t[k] for k in ("n", "mean_diff", "ci_low", "ci_high", "t", "p", "note")})
            seeds.append(pd.DataFrame({"method": v, "seed": shared, "a": va.loc[shared].values,
                                       "b": vb.loc[shared].values}))
        else:
            row.update(n=len(shared), note=f"{len(shared)} seed(s) in common: not paired")
        rows.append(row)
    per_seed = pd.concat(seeds, ignore_index=True) if seeds else pd.DataFrame(columns=["method", "seed", "a", "b"])
    return pd.DataFrame(rows), per_seed.assign(diff=per_seed["b"] - per_seed["a"])


def curves(a: StudyData, b: StudyData, variants: list[str]) -> pd.DataFrame:
    """Per study (A / B), method and step: the study metric of its best configuration during
    training, mean / 95 % t half-width / n over seeds (steps where each study evaluated)."""
    parts = []
    for tag, d in (("A", a), ("B", b)):
        for v in variants:
            c = d.curves(d.metric)
            c = c[c["config_key"].isin(set(_best(d, v)["config_key"]))]
            if c["step"].nunique() >= 2:
                parts.append(summarize(c, ["step"], "value").assign(study=tag, method=v))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def draw_curves(c: pd.DataFrame, metric: str, names: dict[str, str], stem: Path) -> list[Path]:
    """One panel per method: A (solid) and B (dashed), mean over seeds with a 95 % t band."""
    methods = sorted(c["method"].unique())
    cols = min(3, len(methods))
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    colors = palette(["A", "B"])
    for ax, m in zip(axes.flat, methods):
        for tag, style in (("A", "-"), ("B", "--")):
            g = c[(c["method"] == m) & (c["study"] == tag)]
            if not g.empty:
                ax.plot(g["step"], g["mean"], linestyle=style, marker=".", color=colors[tag],
                        label=f"{tag}: {names[tag]}")
                t_band(ax, g["step"], g["mean"], g["ci"], colors[tag])
        ax.set_title(m, fontsize=10)
        ax.set_xlabel(axis_label("step"))
        ax.set_ylabel(axis_label(metric))
        if metric.endswith("error"):
            percent(ax)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(methods):]:
        ax.set_visible(False)
    return save(fig, stem, note="Each method at its best configuration in each study; lines: mean over seeds; "
                                "bands: 95 % t confidence interval over seeds")


def _head(a: StudyData, b: StudyData, url_a: str, url_b: str) -> list[str]:
    from vat_study.platform.store import safe_url

    from .runinfo import shown_url

    def one(tag: str, d: StudyData, url: str) -> str:
        n = len(d.complete)
        seeds = sorted(d.complete["seed"].unique().tolist()) if n else []
        return (f"- {tag}: `{d.name}` in `{shown_url(safe_url(url))}`: {n} complete trials, seeds {seeds}, "
                f"metric {d.metric} ({d.mode})")

    diff = differences(a, b)
    return [one("A", a, url_a), one("B", b, url_b), "", "What differs between the two study files (what the "
            "comparison measures):" if diff else "The two study files agree in task, method, probes, seeds and metric.",
            "", *diff]


def write_comparison(url_a: str, study_a: str, url_b: str, study_b: str, out: str | Path | None = None,
                     pdf: bool = False) -> Path:
    """Write the comparison's report.md, report.html, CSV and PNG into ``out`` (default
    results/compare_<A>_vs_<B>/); returns report.md's path. ``NothingInCommon`` before anything
    is written where the studies share no method."""
    from .report import Report, _remove_stale, index_lines

    a, b = load(url_a, study_a), load(url_b, study_b)
    variants = common(a, b)
    out_dir = Path(out) if out is not None else Path("results") / f"compare_{study_a}_vs_{study_b}"
    out_dir.mkdir(parents=True, exist_ok=True)
    r = Report(a, out_dir)
    r.current = "Best configurations"
    t, per_seed = table(a, b, variants)
    body = [f"**Each method at its best configuration in each study** (chosen on each one's `{a.metric}` / "
            f"`{b.metric}`), test error in %: mean and 95 % t half-width (ci) over seeds; B - A paired by the seeds "
            "both ran (points; t-test where defined, else the note says why):", "",
            r.table("comparison", t, ("test_error_mean_a", "test_error_ci_a", "test_error_mean_b", "test_error_ci_b",
                                      "mean_diff", "ci_low", "ci_high"))]
    with figure_formats(pdf=pdf):
        paired = t[t["mean_diff"].notna()] if "mean_diff" in t else t.iloc[0:0]
        if not paired.empty:
            r.table("comparison_per_seed", per_seed)
            rows = [{**row, "a": study_a, "b": study_b} for row in paired.to_dict("records")]
            body += ["", r.figure(compare.draw(rows, per_seed.rename(columns={"method": "comparison"}),
                                               out_dir / "differences", labels=list(paired["method"]),
                                               xlabel="B - A of test error (points), paired by seed"))]
        r.current = "Curves"
        c = curves(a, b, variants)
        curve_part = (["## Curves", "", r.figure(draw_curves(c, a.metric, {"A": study_a, "B": study_b},
                                                             out_dir / "curves"))] if not c.empty else
                      ["## Curves", "", "Not drawn: neither study recorded its metric at two or more steps."])
        if not c.empty:
            r.table("curves", c)
    md = "\n".join([f"# `{study_a}` (A) and `{study_b}` (B) side by side", "",
                    "<!-- written by vat-study compare from the stores; rewritten by every run of it -->", "",
                    *_head(a, b, url_a, url_b), "", *index_lines(r), "", "## Best configurations", "", *body, "",
                    *curve_part])
    (out_dir / "report.md").write_text(md.rstrip() + "\n")
    html.write(md, out_dir, f"{study_a} and {study_b} side by side")
    _remove_stale(out_dir, r.written)
    return out_dir / "report.md"
