"""Sequential comparisons (a study's ``sequential:`` block; ``vat_study.platform.group_sequential``): per
comparison the decision, the n it stopped at, the effect with its repeated confidence interval,
and every look."""

from __future__ import annotations

import pandas as pd

from vat_study.platform.group_sequential import study_block_comparisons

from .data import NotApplicable, StudyData


def compute(data: StudyData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: one row per comparison, looks: one row per look of each comparison)."""
    sq = data.spec.get("sequential")
    if not sq:
        raise NotApplicable("the study has no sequential: block (seeded comparisons that add seeds until decided)")
    cs = study_block_comparisons(data.trials, data.spec)
    rows, looks = [], []
    for c in cs:
        last = c.outcome.looks[-1] if c.outcome.looks else None
        rows.append({"comparison": f"{c.b} - {c.a}", "decision": c.decision, "n_seeds": c.outcome.n,
                     "looks": len(c.outcome.looks), "mean_diff": last.mean_diff if last else float("nan"),
                     "rci_low": last.ci_low if last else float("nan"),
                     "rci_high": last.ci_high if last else float("nan"),
                     "p": last.p if last else float("nan"), "nominal_level": c.outcome.level,
                     "note": c.note or (last.note if last else "")})
        for i, lk in enumerate(c.outcome.looks, 1):
            looks.append({"comparison": f"{c.b} - {c.a}", "look": i, "n_seeds": lk.n, "mean_diff": lk.mean_diff,
                          "rci_low": lk.ci_low, "rci_high": lk.ci_high, "p": lk.p,
                          "decides": lk.p < c.outcome.level, "note": lk.note})
    return pd.DataFrame(rows), pd.DataFrame(looks)


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    summary, looks = compute(r.data)
    sq = r.data.spec["sequential"]
    metric = sq["metric"]
    head = (f"Each comparison b - a of `{metric}` (points for error rates), each method at its configuration chosen "
            f"on `{r.data.metric}` at the first look, paired by seed; seeds added {sq['batch']} at a time up to "
            f"{sq['max_seeds']}; a Pocock-type group-sequential paired t-test holds the false-positive rate of each "
            f"comparison at alpha = {sq['alpha']} over all its looks (one nominal level per look); the interval is "
            "the repeated confidence interval at that level, valid over the looks:")
    scale = ("mean_diff", "rci_low", "rci_high") if metric.endswith("error") else ()
    return "\n\n".join([head, r.table("sequential_comparisons", summary, scale),
                        "Every look:", r.table("sequential_looks", looks, scale)])
