"""The paper's figures and tables from any study in the store.

Each module first computes a small data object (a DataFrame) from the study's rows, then draws
it; tests check the numbers, not the pixels. ``analysis.report.write_report`` runs them all and
writes ``results/<study>/`` (PNG + PDF figures, Markdown + CSV tables, report.md).
"""
