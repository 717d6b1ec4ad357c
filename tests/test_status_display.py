"""`vat-study status` in the report's units: errors in percent, the best configuration marked, and
search values rounded to what the search space needs."""

from __future__ import annotations

import pandas as pd

from vat_study.display import sig_digits, status_rows


def _frame(rows):
    return pd.DataFrame(rows, columns=["config_key", "status", "param.eps", "val_error", "test_error", "seed"])


def test_errors_in_percent_and_the_best_row_marked():
    df = _frame([("a", "COMPLETE", 0.5, 0.02, 0.03, 0), ("a", "COMPLETE", 0.5, 0.04, 0.05, 1),
                 ("b", "COMPLETE", 2.0, 0.01, 0.02, 0), ("b", "FAILED", 2.0, None, None, 1)])
    columns, rows, best = status_rows(df, "val_error", "min")
    assert columns == ["eps", "seeds done", "val_error (%)", "test_error (%)", "failed"]
    assert rows[0] == ["0.5", "2", "3.00 +- 1.41", "4.00 +- 1.41", "0"]
    assert rows[1] == ["2", "1", "1.00", "2.00", "1"]
    assert best == 1
    assert status_rows(df, "val_error", "max")[2] == 0


def test_optuna_values_are_rounded_to_what_tells_them_apart():
    assert sig_digits([0.8558894657793086, 1.3]) == 2
    assert sig_digits([0.8558894657793086, 0.8612]) == 3
    assert sig_digits([1.0, 2.0, 3.0]) == 2
    df = _frame([("a", "COMPLETE", 0.8558894657793086, 0.1, 0.1, 0), ("b", "COMPLETE", 0.8612, 0.2, 0.2, 0)])
    _, rows, _ = status_rows(df, "val_error", "min")
    assert [r[0] for r in rows] == ["0.856", "0.861"]


def test_a_metric_that_is_no_error_is_shown_raw():
    df = pd.DataFrame({"config_key": ["a"], "status": ["COMPLETE"], "rvadv": [0.123456], "test_error": [0.1],
                       "seed": [0]})
    columns, rows, best = status_rows(df, "rvadv", "max")
    assert columns[1] == "rvadv" and rows[0][1] == "0.1235" and best == 0


def test_nothing_finished_marks_nothing():
    df = _frame([("a", "RUNNING", 1.0, None, None, 0)])
    assert status_rows(df, "val_error", "min")[2] is None
