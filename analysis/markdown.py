"""A DataFrame as the Markdown table a report shows (its CSV holds the values as stored)."""

from __future__ import annotations

import pandas as pd


def md_table(df: pd.DataFrame, pct: tuple[str, ...] = ()) -> str:
    """Markdown table; columns named in ``pct`` (error rates) shown in percent."""
    shown = df.copy()
    for c in shown.columns:
        if c in pct or any(c.startswith(p + "_") and c.endswith(("_mean", "_sd", "_ci")) for p in pct):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{100 * v:.2f}")
        elif pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
        elif shown[c].dtype == object:  # None / NaN among other values: blank (a test not done), not "None"
            shown[c] = shown[c].map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else v)
    head = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([head, sep, *body])
