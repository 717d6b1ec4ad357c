"""Tables 1/3 style (method x setting, mean +- SD of test error) and the xi / power-method study."""

from __future__ import annotations

import pandas as pd

from vat_study.surface import methods

from .data import NotApplicable, Skip, StudyData, ci_half, label, mean_sd, with_setting


def _stats(best: pd.DataFrame, value: str, with_ci: bool = True) -> dict:
    s = mean_sd(best, ["config_key"], value).iloc[0]
    out = {f"{value}_mean": s["mean"], f"{value}_sd": s["sd"]}
    if with_ci:
        out[f"{value}_ci"] = ci_half(s["sd"], int(s["n"]))
    return out


def methods_table(data: StudyData) -> pd.DataFrame:
    """Per setting (dataset, mode, n_labeled) and method: its best configuration by the study
    metric, and the test error mean / SD / 95 % t half-width (ci) / n over seeds of that
    configuration (the study metric's mean and ci beside it where it is not the test error)."""
    df = data.complete
    if df.empty or "test_error" not in df:
        raise Skip("no complete trials with test_error")
    rows = []
    for (dataset, mode, n_l, method), g in df.groupby(["dataset", "mode", "n_labeled", "variant"], dropna=False):
        k = data.best_config(g)
        if k is None:
            continue
        best = g[g["config_key"] == k]
        chosen = _stats(best, data.metric) if data.metric != "test_error" and data.metric in best else {}
        chosen.pop(f"{data.metric}_sd", None)
        rows.append(dict(dataset=dataset, mode=mode, n_labeled=n_l, method=method, best_config=label(best.iloc[0]),
                         **chosen, **_stats(best, "test_error"), n=int(best["test_error"].notna().sum())))
    if not rows:
        raise Skip("no configuration has the study metric")
    return pd.DataFrame(rows)


def xi_table(data: StudyData) -> pd.DataFrame:
    """Per (direction, xi, K): fidelity, validation and test error, mean/SD over seeds."""
    df = data.complete
    df = df[df["method"].isin(methods.names(uses_direction=True))].copy()
    if df.empty or df.groupby(["direction", "xi"]).ngroups < 2:
        raise NotApplicable("the study runs VAT at one (direction, xi) setting")
    df.loc[df["direction"] == "hvp", "xi"] = float("nan")  # xi is unused by the exact HVP
    df = with_setting(df, ("direction", "xi", "power_iterations"), spec=data.spec).rename(columns={"variant": "method_variant"})
    by = ["method_variant", "setting", "direction", "xi", "power_iterations"]  # nothing else averaged over
    cols = [c for c in ("fidelity", "val_error", "test_error") if c in df]
    out = None
    for c in cols:
        t = mean_sd(df, by, c).rename(columns={"mean": f"{c}_mean", "sd": f"{c}_sd", "n": f"{c}_n"})
        out = t if out is None else out.merge(t, on=by, how="outer")
    return out.sort_values(by).reset_index(drop=True)


def xi_section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    t = xi_table(r.data)
    return ("Fidelity (|cos| to the dominant eigenvector of H) and errors (%) per setting:\n\n"
            + r.table("table_xi_power_method", t, ("val_error", "test_error")))


PAPER_TABLE3 = {  # (dataset, n_labeled) -> method -> (test error %, SD): Table 3, "our implementation"
    ("mnist", 100): {"rpt": (6.81, 1.30), "vat": (1.36, 0.03)},
    ("mnist", 1000): {"rpt": (1.58, 0.54), "vat": (1.27, 0.11)},
}
"""The paper's Table 3 (semi-supervised, permutation-invariant MNIST, 100,000 updates); it gives
no baseline for this setting."""


def table3(data: StudyData) -> pd.DataFrame:
    """Table 3 beside the paper: per method, its best configuration by the study metric
    (validation), test error mean / SD (%) over seeds, the eps chosen, the budget, and the paper's
    value. Semi-supervised MNIST with 100 or 1,000 labels only."""
    t = methods_table(data)
    t = t[(t["dataset"] == "mnist") & (t["mode"] == "semi_supervised") & t["n_labeled"].isin([100, 1000])]
    if t.empty:
        raise NotApplicable("needs semi-supervised MNIST trials with n_labeled 100 or 1000 (the paper's Table 3)")
    df = data.complete
    rows = []
    for r in t.itertuples():
        paper = PAPER_TABLE3[("mnist", int(r.n_labeled))].get(r.method, (float("nan"), float("nan")))
        g = df[(df["variant"] == r.method) & (df["n_labeled"] == r.n_labeled)]
        k = data.best_config(g)
        chosen = g[g["config_key"] == k].iloc[0]
        paper = paper if chosen["method"] == r.method else (float("nan"), float("nan"))  # a variant: not the paper's
        uses_eps = methods.get(chosen["method"]).uses_eps
        grid = sorted(float(e) for e in g["eps"].dropna().unique()) if uses_eps and "eps" in g else []
        rows.append({"method": r.method, "n_labeled": int(r.n_labeled),
                     "eps": chosen["eps"] if uses_eps else None,
                     "eps_grid": " ".join(f"{e:g}" for e in grid) or None,
                     "eps_at_grid_edge": (len(grid) > 1 and chosen["eps"] in (grid[0], grid[-1])) if uses_eps else None,
                     "steps": int(chosen["steps"]), "test_error_mean": 100 * r.test_error_mean,
                     "test_error_sd": 100 * r.test_error_sd, "n_seeds": int(r.n),
                     "paper_test_error": paper[0], "paper_test_error_sd": paper[1],
                     **_sequential_columns(data, r.method, k)})
    return pd.DataFrame(rows)


def _sequential_columns(data: StudyData, method: str, config_key: str | None) -> dict:
    """The study's ``sequential:`` decision of the comparison ``method - other``, in points: the
    first ``compare: [other, method]`` pair (b - a: the row of its b) whose b configuration is the
    row's ``config_key``; the other method, the decision, its n, the mean difference and the
    repeated CI at the last look. Empty where the study has no such comparison."""
    sq = data.spec.get("sequential") or {}
    pairs = {tuple(p) for p in sq.get("compare") or [] if p[1] == method}
    if not pairs:
        return {}
    from vat_study.platform.group_sequential import study_block_comparisons

    c = next((c for c in study_block_comparisons(data.trials, data.spec) if (c.a, c.b) in pairs
              and c.config_b in (config_key, None)), None)
    if c is None:
        return {}
    last = c.outcome.looks[-1] if c.outcome.looks else None
    k = 100.0 if sq.get("metric", "test_error").endswith("error") else 1.0
    return {"sequential_vs": c.a, "sequential_decision": c.decision, "sequential_n_seeds": c.outcome.n,
            "sequential_looks": len(c.outcome.looks),
            "sequential_diff": k * last.mean_diff if last else float("nan"),
            "sequential_rci_low": k * last.ci_low if last else float("nan"),
            "sequential_rci_high": k * last.ci_high if last else float("nan"),
            "sequential_rci_level": 1 - c.outcome.level}


def table3_block(n_labeled: int, several: bool = False) -> dict:
    """The paper's Table 3 for semi-supervised MNIST with ``n_labeled`` labels as a ``paper:``
    block (``spec.Paper``): each method's value and the ordering VAT < RPT < baseline. What a
    Table 3 study without its own block is checked against (``analysis.paper.compute``)."""
    where = {"n_labeled": n_labeled} if several else {}
    return {"source": f"Table 3 (semi-supervised MNIST, N_l = {n_labeled})", "steps": PAPER_STEPS_TABLE3,
            "values": [{"method": m, "value": v, "sd": sd, "where": where}
                       for m, (v, sd) in PAPER_TABLE3[("mnist", n_labeled)].items()],
            "orderings": [{"lower": a, "higher": b, "where_lower": where, "where_higher": where}
                          for a, b in (("vat", "rpt"), ("rpt", "baseline"), ("vat", "baseline"))]}


def against_paper(data: StudyData, t: pd.DataFrame) -> list[str]:
    """"Against the paper", computed (``analysis.paper``): each method's 95 % t interval over seeds
    against the paper's Table 3 value, and the paper's ordering VAT < RPT < baseline as paired
    differences with their CIs; orderings between methods the study does not have are left out."""
    from .paper import compute

    present = set(t["method"])
    lines = []
    ns = sorted(int(n) for n in t["n_labeled"].unique())
    for n in ns:
        block = table3_block(n, several=len(ns) > 1)
        block["orderings"] = [o for o in block["orderings"] if {o["lower"], o["higher"]} <= present]
        block["values"] = [v for v in block["values"] if v["method"] in present]
        lines += compute(data, block)[1]
    return lines


PAPER_STEPS_TABLE3 = 100_000


def table3_section(r) -> str:
    """The report section (``report.ARTIFACTS``): writes table3.csv (errors in %)."""
    t = table3(r.data)
    body = ("Test error (%) of each method at its eps chosen on the validation set, mean and SD over seeds, "
            "beside the paper's Table 3 (100,000 updates; the budget here is in `steps`):\n\n"
            + r.table("table3", t))
    body += ("\n\n`eps_grid`: the eps values the study searched for that method; `eps_at_grid_edge`: the chosen eps "
             "is the grid's smallest or largest (the optimum may lie outside the grid).")
    if "sequential_decision" in t:
        body += ("\n\n`sequential_*`: the study's `sequential:` decision of this method against `sequential_vs` "
                 "(this - that, points), paired by seed, with its n, number of looks and the repeated CI at level "
                 "`sequential_rci_level` (valid over all looks; a fixed-n CI on these seeds would not be).")
    return body + "\n\nAgainst the paper: the verdicts are in the answer at the top of this report."
