"""The commands that write a report: ``report`` (one study) and ``compare`` (two studies side by
side), each into a folder of Markdown, one self-contained HTML page, figures and tables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import STORAGE_OPTION_HELP, STUDY_HELP, _addressed, _check_target, _fail, _study_folder, _study_store, err, out


def _write_failed(what: str, folder: Path, e: OSError) -> None:
    """Writing under ``folder`` failed (a full disk): one line naming where, exit 1."""
    err.print(f"error: writing the {what} into {str(folder)!r} failed at {str(e.filename or '?')!r}: "
              f"{e.strerror or e}; run it again once there is room", highlight=False)
    raise typer.Exit(1) from None


def report(
    study: str = typer.Argument(..., help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder (default results/<study>/)."),
    pdf: bool = typer.Option(False, "--pdf", help="Each figure as PDF too, beside its PNG."),
) -> None:
    """The study's answer and the figures and tables its factors call for: results/<study>/report.md
    and report.html (one self-contained page), figures as PNG, tables as CSV."""
    addressed = _addressed(study, storage)
    _check_target(out_dir or _study_folder(addressed.study, "--out"), "--out" if out_dir else "the report folder",
                  folder=True)
    study, store = _study_store(addressed)
    from vat_study.analysis.report import write_report

    try:
        path, skipped = write_report(store.url, study, out_dir, pdf=pdf)  # the read-only URL for a read-only store
    except OSError as e:  # (a full disk under the report's folder)
        _write_failed("report", out_dir or _study_folder(study, "--out"), e)
    out.print(f"report: {path} and {path.with_name('report.html')}"
              + (f" ({len(skipped)} artifact(s) skipped for lack of data; reasons at its end)" if skipped else ""),
              highlight=False)


def compare(
    study_a: str = typer.Argument(..., help="Study A: a name, or its study file (its name and storage)."),
    study_b: str = typer.Argument(..., help="Study B: a name, or its study file."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_OPTION_HELP + " Both studies' store."),
    storage_b: Optional[str] = typer.Option(None, "--storage-b",
                                            help="Study B's store where it is not A's (default: as for A)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Folder (default results/compare_<A>_vs_<B>/)."),
    pdf: bool = typer.Option(False, "--pdf", help="Each figure as PDF too, beside its PNG."),
) -> None:
    """Two studies side by side: each method both ran at its best configuration in each, B - A
    paired by seed where the seeds match, and their curves; written like a report."""
    a = _addressed(study_a, storage)
    b = _addressed(study_b, storage_b or storage)
    target = out_dir or _study_folder(f"compare_{a.study}_vs_{b.study}", "--out")
    _check_target(target, "--out" if out_dir else "the comparison folder", folder=True)
    name_a, store_a = _study_store(a)
    name_b, store_b = _study_store(b)
    from vat_study.analysis.compare_studies import NothingInCommon, write_comparison

    try:
        path = write_comparison(store_a.url, name_a, store_b.url, name_b, target, pdf=pdf)
    except NothingInCommon as e:
        _fail(f"STUDY_B {name_b!r}: {e}")
    except OSError as e:  # (a full disk under the comparison's folder)
        _write_failed("comparison", target, e)
    out.print(f"comparison: {path} and {path.with_name('report.html')}", highlight=False)
