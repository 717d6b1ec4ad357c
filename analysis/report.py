"""``vat-study report``: every artifact a study's data allows, into results/<study>/.

Figures as PNG and PDF, tables as Markdown and CSV, and report.md showing them with a few lines
on what was run. An artifact whose data is missing is skipped with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from . import choices, compare, curves, eps_alpha, examples, grad_variance, k_ablation, tables
from .data import Skip, StudyData, load


def _md_table(df: pd.DataFrame, pct: tuple[str, ...] = ()) -> str:
    """Markdown table; columns named in ``pct`` (error rates) shown in percent."""
    shown = df.copy()
    for c in shown.columns:
        if c in pct or any(c.startswith(p + "_") and c.endswith(("_mean", "_sd")) for p in pct):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{100 * v:.2f}")
        elif pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    head = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([head, sep, *body])


class Report:
    def __init__(self, data: StudyData, out: Path) -> None:
        self.data, self.out = data, out
        self.sections: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.written: list[Path] = []

    def table(self, name: str, df: pd.DataFrame, pct: tuple[str, ...] = ()) -> str:
        csv = self.out / f"{name}.csv"
        df.to_csv(csv, index=False)
        md = _md_table(df, pct)
        (self.out / f"{name}.md").write_text(md + "\n")
        self.written += [csv, self.out / f"{name}.md"]
        return md

    def figure(self, paths: list[Path]) -> str:
        self.written += paths
        png = paths[0].name
        return f"![{png}]({png})  ([PDF]({paths[1].name}))"

    def artifact(self, title: str, build: Callable[[], str]) -> None:
        if self.data.complete.empty:
            self.skipped.append((title, "no complete trials yet"))
            return
        try:
            body = build()
        except Skip as e:
            self.skipped.append((title, str(e)))
            return
        except Exception as e:  # noqa: BLE001  a report never crashes on one artifact
            self.skipped.append((title, f"could not be computed ({type(e).__name__}: {e})"))
            return
        self.sections.append(f"## {title}\n\n{body}\n")


ERR = ("test_error", "val_error", "mean", "sd", "mean_diff", "ci_low", "ci_high", "sd_diff")


def write_report(url: str, study: str, out: str | Path | None = None) -> tuple[Path, list[tuple[str, str]]]:
    """Write the report; returns report.md's path and the (artifact, reason) pairs skipped."""
    data = load(url, study)
    out_dir = Path(out) if out is not None else Path("results") / study
    out_dir.mkdir(parents=True, exist_ok=True)
    r = Report(data, out_dir)
    metric = data.metric

    def fig3() -> str:
        t = eps_alpha.compute(data)
        pct = ("mean", "sd") if metric.endswith("error") else ()
        return (r.figure(eps_alpha.draw(t, metric, out_dir / "fig3_eps_alpha")) + "\n\n"
                + f"{metric} by (alpha, eps), over seeds ({'%' if pct else 'raw'}):\n\n" + r.table("fig3_eps_alpha", t, pct))

    def fig4() -> str:
        table6 = k_ablation.compute_table(data)
        parts = ["Table 6 style: final test error (%) and R_vadv per K, mean and SD over seeds.\n",
                 r.table("table6_k_ablation", table6, ("test_error",))]
        try:
            c = k_ablation.compute_curves(data)
            eval_eps = ((data.spec.get("probes") or {}).get("rvadv") or {}).get("eps", 2.0)
            parts.insert(0, r.figure(k_ablation.draw(c, eval_eps, out_dir / "fig4_rvadv_by_k")) + "\n")
            r.table("fig4_rvadv_by_k", c)
        except Skip as e:
            parts.append(f"\n(Fig. 4 curves skipped: {e})")
        return "\n".join(parts)

    def fig7() -> str:
        t = grad_variance.compute(data)
        r.table("fig7_grad_variance", t)
        return r.figure(grad_variance.draw(t, out_dir / "fig7_grad_variance"))

    def fig2() -> str:
        t = curves.compute(data)
        r.table("fig2_curves", t)
        return r.figure(curves.draw(t, out_dir / "fig2_curves"))

    def comparisons() -> str:
        prs = compare.pairs(data)
        if not prs:
            raise Skip("needs complete trials of two methods (e.g. rpt and vat)")
        parts = []
        rows = []
        for a, b in prs:
            try:
                per_seed, s = compare.compute_pair(data, a, b)
            except Skip as e:
                parts.append(f"- {b} vs {a}: skipped: {e}")
                continue
            rows.append(s)
            name = f"compare_{a}_vs_{b}"
            parts.append(f"### {b} vs {a} (paired by seed, test error)\n\n" + r.figure(compare.draw_pair(per_seed, s, out_dir / name))
                         + "\n\n" + r.table(name + "_per_seed", per_seed, (a, b, "diff")))
            try:
                g = compare.compute_grid(data, a, b)
                parts.append(f"\nEvery {b} configuration against the best {a}, paired by seed "
                             "(difference in points of test error; Holm-adjusted p):\n\n"
                             + r.table(name + "_grid", g, ("mean_diff", "sd_diff", "ci_low", "ci_high")))
            except Skip as e:
                parts.append(f"\n(grid comparison skipped: {e})")
        if not rows:
            raise Skip("; ".join(p.removeprefix("- ") for p in parts))
        summary = pd.DataFrame(rows)[["b", "a", "config_b", "config_a", "n", "mean_diff", "ci_low", "ci_high", "t", "p"]]
        head = ("Mean difference b - a of test error (points), 95 % t confidence interval, paired t-test:\n\n"
                + r.table("comparison_summary", summary, ("mean_diff", "ci_low", "ci_high")))
        return head + "\n\n" + "\n\n".join(parts)

    def methods() -> str:
        t = tables.methods_table(data)
        return ("Test error (%) of each method at its best configuration (chosen by "
                f"{metric}), mean and SD over seeds:\n\n" + r.table("table_methods", t, ("test_error",)))

    def xi() -> str:
        t = tables.xi_table(data)
        return ("Fidelity (|cos| to the dominant eigenvector of H) and errors (%) per setting:\n\n"
                + r.table("table_xi_power_method", t, ("val_error", "test_error")))

    r.artifact("Tables 1/3: methods", methods)
    r.artifact("Fig. 3: effect of eps and alpha", fig3)
    r.artifact("Fig. 4 and Table 6: number of power iterations K", fig4)
    r.artifact("Fig. 7: gradient variance, K = 0 vs K = 1", fig7)
    r.artifact("Fig. 2: error and R_vadv during training", fig2)
    r.artifact("Method comparison with seeded repeats", comparisons)
    r.artifact("xi and the power method", xi)

    def implementation_choices() -> str:
        effects, gaps = choices.compute(data)
        return ("Each configuration against its method's centre (search parameters: the method alone), "
                "paired by seed: vs_centre_* is the difference in test error (choice - centre) with its 95 % t "
                "CI and paired t-test p; rvadv_final / rvadv_train_final: the last R_vadv measured in eval "
                "mode / in train mode as training computes it:\n\n"
                + r.table("implementation_choices", effects,
                          ("test_error", "vs_centre_mean_diff", "vs_centre_ci_low", "vs_centre_ci_high"))
                + "\n\nVAT - RPT under each choice, paired by seed (negative: VAT better):\n\n"
                + (r.table("implementation_choices_vat_minus_rpt", gaps,
                           ("rpt_mean", "vat_mean", "vat_minus_rpt_mean_diff", "vat_minus_rpt_ci_low",
                            "vat_minus_rpt_ci_high")) if not gaps.empty else "(no choice ran both rpt and vat)")
                + "\n\n" + r.figure(choices.draw(effects, gaps, out_dir / "implementation_choices")))

    r.artifact("Implementation choices, one at a time", implementation_choices)

    def fig1() -> str:
        return r.figure(examples.draw_fig1(examples.compute_fig1(data), out_dir / "fig1_moons"))

    def fig5() -> str:
        return r.figure(examples.draw_fig5(examples.compute_fig5(data), out_dir / "fig5_vadv_examples"))

    def fig6() -> str:
        t = examples.compute_fig6(data)
        return (r.figure(examples.draw_fig6(t, out_dir / "fig6_misidentification")) + "\n\n"
                + r.table("fig6_misidentification", t, ("rate",)))

    r.artifact("Fig. 1: prediction and LDS on 2-D data", fig1)
    r.artifact("Fig. 5: virtual adversarial examples", fig5)
    r.artifact("Fig. 6: misidentification on virtual adversarial examples", fig6)

    trials = data.trials
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    seeds = sorted(trials["seed"].unique().tolist()) if not trials.empty else []
    steps = sorted(trials["steps"].dropna().unique().tolist()) if "steps" in trials else []
    from vat_study.store import Store, safe_url

    versions = Store(url).latest_versions(study)
    head = [f"# Study `{study}`", "",
            f"- study file: `{data.spec.get('name')}` as stored ({'search: ' + ('optuna' if (data.spec.get('search') or {}).get('optuna') else 'grid' if data.spec.get('search') else 'none')})",
            f"- storage: `{safe_url(url)}`",
            f"- trials: {len(trials)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'})",
            f"- seeds: {seeds}; budget: {', '.join(str(int(s)) for s in steps) or '?'} updates per trial",
            f"- metric: {metric} ({data.mode}); versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
            ""]
    failed = trials[trials["status"].isin(["FAILED", "PRUNED"])] if not trials.empty else trials
    if not failed.empty:
        kinds = failed["failure_kind"].fillna("error").value_counts().to_dict() if "failure_kind" in failed else {}
        head += [f"Trials that did not complete ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; "
                 "`vat-study run` redoes FAILED ones):", ""]
        for _, t in failed.iterrows():
            last = (t["error"] or "").strip().splitlines()[-1:] or [""]
            params = ", ".join(f"{c.removeprefix('param.')}={t[c]}" for c in trials.columns
                               if c.startswith("param.") and pd.notna(t[c]))
            head.append(f"- trial {t['trial_id']} ({params or 'no search params'}, seed {t['seed']}): {t['status']}, "
                        f"{t.get('failure_kind') or 'error'}: {last[0][:300]}")
        head.append("")
    if r.skipped:
        head += ["Skipped artifacts:", ""] + [f"- {t}: {why}" for t, why in r.skipped] + [""]
    (out_dir / "report.md").write_text("\n".join(head) + "\n" + "\n".join(r.sections))
    return out_dir / "report.md", r.skipped
