"""Reports a researcher reads first (issue 35): fitted to the study (the answer first, only the
artifacts of what the study varied, never pooled), a search drawn by Optuna's own plots, one
self-contained report.html, few files named by what they are, and two studies side by side."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

import helpers
from helpers import fill, optuna_search_store
from vat_study.analysis import eps_alpha, search_plots
from vat_study.analysis.plotting import plt
from vat_study.analysis.report import MANIFEST, write_report


def _grid16(url: str, name: str = "grid16", description: str | None = "Does VAT beat RPT, each at its best eps?"):
    """The new user's 16-trial grid: RPT and VAT over eps {0.5, 1, 2, 4}, seeds 0 and 1, with
    validation / R_vadv curves (three evaluations)."""
    def value(p, s):
        e = 0.05 + 0.02 * (p["method"] == "rpt") + 0.01 * abs(np.log(p["eps"])) + 0.004 * s
        return ({"val_error": e, "test_error": e + 0.003, "rvadv": 0.2},
                {st: {"val_error": e + 0.05 * (300 - st) / 300, "rvadv": 0.01 * st} for st in (100, 200, 300)})

    pts = [{"method": m, "eps": e} for m in ("rpt", "vat") for e in (0.5, 1.0, 2.0, 4.0)]
    seeds = helpers.SEEDS[:]
    helpers.SEEDS[:] = [0, 1]
    try:
        fill(url, name, pts, value, {"description": description} if description else None)
    finally:
        helpers.SEEDS[:] = seeds


def _drawn(ax) -> list[tuple[str, str, int]]:
    """(label, line style, number of points) of each labelled line and error-bar series of ``ax``."""
    out = [(c.get_label(), c.lines[0].get_linestyle(), len(c.lines[0].get_xdata())) for c in ax.containers
           if hasattr(c, "has_yerr")]
    return out + [(ln.get_label(), ln.get_linestyle(), len(ln.get_xdata())) for ln in ax.get_lines()
                  if not ln.get_label().startswith("_")]


def _capture(module, monkeypatch) -> list:
    """(figure, its texts, the lines of each of its axes) of every figure ``module`` saves
    (``module.save`` still writes them)."""
    figures = []
    real = module.save

    def keep(fig, stem, **kw):
        texts = [t.get_text() for t in fig.findobj(Text)]
        figures.append((fig, texts, [_drawn(ax) for ax in fig.axes]))
        return real(fig, stem, **kw)

    monkeypatch.setattr(module, "save", keep)
    return figures


def test_a_vat_vs_rpt_grid_report_answers_first_draws_both_sweeps_and_writes_few_files(tmp_path, monkeypatch):
    url, out = f"sqlite:///{tmp_path}/g.db", tmp_path / "out"
    _grid16(url)
    drawn = _capture(eps_alpha, monkeypatch)
    path, skipped = write_report(url, "grid16", out)
    text = path.read_text()
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 12, files  # the manifest included
    assert not any(f.endswith((".pdf", ".md")) and f != "report.md" for f in files), files
    assert "report.html" in files and not skipped
    # the answer leads: the question, then each method's best configuration with its CI and n, the comparison
    heads = [x for x in text.splitlines() if x.startswith("## ")]
    assert heads[0] == "## The answer" and heads[1] == "## What was run", heads
    assert "> Does VAT beat RPT, each at its best eps?" in text.split("## The answer")[0]
    best = pd.read_csv(out / "best_per_method.csv")
    assert list(best["method"]) == ["vat", "rpt"] and {"val_error_ci", "test_error_ci", "n"} <= set(best.columns)
    assert re.search(r"^- vat - rpt: -2\.00 points of test error.*n = 2", text, re.M)
    # Fig. 3 draws both methods' eps sweeps, each eps a point of its own line
    (fig, _, (panel_a,)), = drawn
    assert {label: n for label, _, n in panel_a} == {"rpt": 4, "vat": 4, "baseline": 0} or \
        {label: n for label, _, n in panel_a} == {"rpt": 4, "vat": 4}, panel_a
    t = pd.read_csv(out / "fig3_eps_alpha.csv")
    assert sorted(t.groupby("method")["eps"].nunique().items()) == [("rpt", 4), ("vat", 4)]
    # no K section: RPT beside VAT is no K ablation; nothing about it but its name at the end
    assert "power iterations K" not in text and "Fig. 4 and Table 6" in text.split("## Not in this report")[1]
    # the index at the top names every file the report wrote
    index = text.split("## The answer")[0]
    assert all(f"[{f}]({f})" in index for f in files if f != MANIFEST), index
    assert sorted((out / MANIFEST).read_text().split()) == [f for f in files if f != MANIFEST]


def test_pdf_only_on_request(tmp_path):
    url, out = f"sqlite:///{tmp_path}/g.db", tmp_path / "out"
    _grid16(url)
    write_report(url, "grid16", out, pdf=True)
    pngs, pdfs = {p.stem for p in out.glob("*.png")}, {p.stem for p in out.glob("*.pdf")}
    assert pngs and pngs == pdfs
    assert "([PDF](fig3_eps_alpha.pdf))" in (out / "report.md").read_text()
    write_report(url, "grid16", out)  # a report without --pdf removes the PDFs the last one wrote
    assert not list(out.glob("*.pdf"))


def test_one_line_per_level_of_what_else_varies_and_no_point_left_out(tmp_path, monkeypatch):
    """VAT over eps at two alphas and over alpha at one eps, RPT at one eps: every alpha run at
    two or more eps is its own line in (a) (the paper's alpha = 1 and the other), the alpha sweep
    is (b), and RPT's single eps is a point of its own; nothing pooled, nothing left out."""
    url = f"sqlite:///{tmp_path}/a.db"
    pts = ([{"method": "vat", "eps": e, "alpha": a} for e in (0.5, 1.0, 2.0) for a in (1.0, 2.0)]
           + [{"method": "vat", "eps": 1.0, "alpha": 0.5}, {"method": "rpt", "eps": 2.0}])
    fill(url, "alphas", pts, lambda p, s: ({"val_error": 0.05 + 0.01 * p["eps"] + 0.002 * p.get("alpha", 1) + 0.001 * s,
                                            "test_error": 0.05}, {}))
    drawn = _capture(eps_alpha, monkeypatch)
    write_report(url, "alphas", tmp_path / "out")
    (fig, _, (panel_a, panel_b)), = drawn
    assert {label: n for label, _, n in panel_a} == {"vat, α = 1": 3, "vat, α = 2": 3, "rpt, α = 1": 1}, panel_a
    assert {label: n for label, _, n in panel_b} == {"ε = 0.5, vat": 2, "ε = 1, vat": 3, "ε = 2, vat": 2}, panel_b


def test_a_search_report_has_optunas_plots_pruned_shown_as_pruned(tmp_path, monkeypatch):
    url, out = f"sqlite:///{tmp_path}/s.db", tmp_path / "out"
    optuna_search_store(url, "tpe", n_complete=8, n_pruned=3)
    drawn = _capture(search_plots, monkeypatch)
    before = dict(plt.rcParams)
    path, skipped = write_report(url, "tpe", out)
    text = path.read_text()
    assert [t for t, _ in skipped] == ["Fig. 4 and Table 6: number of power iterations K"], skipped  # no two K at one eps
    for stem in ("optuna_history", "optuna_importances", "optuna_slice", "optuna_contour", "optuna_intermediate"):
        assert (out / f"{stem}.png").exists() and f"![{stem}.png]({stem}.png)" in text, stem
    history = [f for f in drawn if "pruned (its last reported value)" in f[1]]
    intermediate, = [f for f in drawn if "pruned (x: the step it stopped)" in f[1]]
    assert len(history) == 1
    styles = [style for label, style, _ in intermediate[2][0] if label.startswith("Trial")]
    assert len(styles) == 11 and styles.count("--") == 3, styles  # the three pruned configurations, and only they
    assert "Pruned trials (3;" in text  # what was run names them (each seed's trial)
    # a configuration with a pruned seed is pruned as a whole: its finished seed (the lowest error of all) is
    # neither the best configuration nor a point of Fig. 3
    assert len(pd.read_csv(out / "fig3_eps_alpha.csv")) == 8
    best = pd.read_csv(out / "best_per_method.csv")
    assert best["n"].tolist() == [2] and best["val_error_mean"].iloc[0] > 0.02
    assert dict(plt.rcParams) == before  # Optuna's ggplot style stays inside its own figures


def test_a_search_too_small_for_importances_says_so(tmp_path):
    url, out = f"sqlite:///{tmp_path}/s.db", tmp_path / "out"
    optuna_search_store(url, "small", n_complete=2, n_pruned=0)
    path, skipped = write_report(url, "small", out)
    text = path.read_text()
    assert len(skipped) == 1 and (out / "optuna_history.png").exists() and not (out / "optuna_importances.png").exists()
    assert "- Parameter importances: not drawn: 2 finished configuration(s): too few for parameter importances" in text


def test_compare_two_studies_side_by_side_paired_by_seed(tmp_path, monkeypatch):
    """`vat-study compare A B`: each method both ran, at its best configuration in each, B - A
    paired by seed; a pair with no method in common is refused with one line, nothing written."""
    from typer.testing import CliRunner

    from vat_study.platform.cli import app

    url = f"sqlite:///{tmp_path}/c.db"
    shift = {"before": 0.0, "after": 0.01}

    def value(name):
        return lambda p, s: ({"val_error": 0.05 + shift[name] + 0.002 * s * (p["method"] == "vat") + 0.01 * p["eps"],
                              "test_error": 0.05 + shift[name] + 0.002 * s * (p["method"] == "vat") + 0.01 * p["eps"]},
                             {st: {"val_error": 0.1 + shift[name] - st / 10000} for st in (100, 200)})

    pts = [{"method": m, "eps": e} for m in ("rpt", "vat") for e in (1.0, 2.0)]
    fill(url, "before", pts, value("before"))
    fill(url, "after", pts, value("after"), {"method": {"name": "vat", "implementation": {"clean_stochastic": True}}})
    fill(url, "other", [{"method": "baseline"}], lambda p, s: ({"val_error": 0.1, "test_error": 0.1}, {}))
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke(app, ["compare", "before", "after", "--storage", url])
    assert run.exit_code == 0, run.output
    out = tmp_path / "results" / "compare_before_vs_after"
    assert run.output.strip() == f"comparison: {Path('results/compare_before_vs_after/report.md')} and " \
                                 f"{Path('results/compare_before_vs_after/report.html')}"
    t = pd.read_csv(out / "comparison.csv").set_index("method")
    assert list(t.index) == ["rpt", "vat"] and (t["n"] == len(helpers.SEEDS)).all()
    assert t.loc["rpt", "mean_diff"] == pytest.approx(0.01) and t.loc["vat", "mean_diff"] == pytest.approx(0.01)
    assert t.loc["vat", "config_a"] == "method=vat, eps=1.0" and t.loc["rpt", "note"] == "all 4 differences equal"
    text = (out / "report.md").read_text()
    assert "- `method.implementation.clean_stochastic`: A (not set), B True" in text
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.html", "comparison.csv", "curves.png",
                                                "differences.png"}
    refused = CliRunner().invoke(app, ["compare", "before", "other", "--storage", url])
    assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
    assert refused.output.startswith("error: STUDY_B 'other': no method in common") and "A: rpt, vat" in refused.output
    assert not (tmp_path / "results" / "compare_before_vs_other").exists()
