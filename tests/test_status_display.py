"""`vat-study status` in the report's units: errors in percent, the best configuration marked, and
search values rounded to what the search space needs."""

from __future__ import annotations

import pandas as pd
import pytest
import typer

from vat_study.platform.display import sig_digits, status_rows


def _frame(rows):
    return pd.DataFrame(rows, columns=["config_key", "status", "param.eps", "val_error", "test_error", "seed"])


def test_errors_in_percent_and_the_best_row_marked():
    df = _frame([("a", "COMPLETE", 0.5, 0.02, 0.03, 0), ("a", "COMPLETE", 0.5, 0.04, 0.05, 1),
                 ("b", "COMPLETE", 2.0, 0.01, 0.02, 0), ("b", "FAILED", 2.0, None, None, 1)])
    columns, rows, best = status_rows(df, "val_error", "min")
    assert columns == ["eps", "seeds done", "val_error (%)", "test_error (%)", "pruned", "failed"]
    assert rows[0] == ["0.5", "2", "3.00 +- 1.41", "4.00 +- 1.41", "0", "0"]
    assert rows[1] == ["2", "1", "1.00", "2.00", "0", "1"]
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


def _pruned_study(url):
    """Study "pr": eps 1 and 2 COMPLETE (4 seeds each), eps 3's seed 0 pruned at step 20 of its
    evaluations (val_error 0.86 there) and its seeds 1-3 pruned before they started, as the
    pruner leaves a configuration it stops. Returns (spec, store)."""
    from helpers import SEEDS, claim, fill
    from vat_study.science.objective import resolve_config
    from vat_study.platform.spec import PlannedTrial, parse_spec
    from vat_study.platform.store import Store

    fill(url, "pr", [{"eps": 1.0}, {"eps": 2.0}], lambda p, s: ({"val_error": 0.1, "test_error": 0.1}, {}))
    spec = parse_spec({"name": "pr", "task": {"dataset": "digits", "steps": 100}, "seeds": SEEDS,
                       "search": {"grid": [{"eps": [1.0, 2.0, 3.0]}]}})
    store = Store(url)
    sid = store.study_id("pr")
    planned = [PlannedTrial.make(spec, {"eps": 3.0}, s) for s in SEEDS]
    lease = claim(store, sid, planned[0])
    for step, v in ((10, 0.9), (20, 0.86)):
        store.report(lease, step, {"val_error": v})
    store.prune_trials(sid, [{"key": t.key, "config_key": t.config_key, "params": t.params, "seed": t.seed,
                              "config": resolve_config(t.config)} for t in planned])
    return spec, store


def test_a_pruned_trial_is_a_finished_outcome_with_its_own_column(tmp_path, capsys):
    """Finding 1 of issue 31: a pruned search could never exit 0 (every status but COMPLETE
    counted as a failure), status called PRUNED trials "(error)" and the report listed them as
    trials that did not complete. Now `run`'s exit check passes them, says how many, and status
    and the report give them their own column and lines, with the step they were stopped at."""
    from typer.testing import CliRunner

    from vat_study.analysis.report import write_report
    from vat_study.platform.cli import app
    from vat_study.platform.cli.run import _print_exit
    from vat_study.platform.study import read_outcome

    url = f"sqlite:///{tmp_path}/p.db"
    spec, store = _pruned_study(url)
    outcome = read_outcome(spec, store)
    assert (outcome.status, outcome.pruned, outcome.n_unfinished) == (0, 4, 0)  # pruned trials finished: exit 0
    with pytest.raises(typer.Exit) as stop:
        _print_exit(spec, outcome)
    assert stop.value.exit_code == 0 and "4 of 12 trial(s) of 'pr' were pruned" in capsys.readouterr().out
    listing = CliRunner().invoke(app, ["status", "--storage", url])
    assert listing.exit_code == 0 and "pruned" in listing.stdout, listing.stdout
    header, = [[c.strip() for c in x.split("┃")[1:-1]] for x in listing.stdout.splitlines() if "┃ study" in x]
    row, = [[c.strip() for c in x.split("│")[1:-1]] for x in listing.stdout.splitlines() if "│ pr " in x]
    assert dict(zip(header, row)) == {"study": "pr", "trials": "12", "complete": "8", "pruned": "4", "running": "0",
                                      "failed": "0"}
    one = CliRunner().invoke(app, ["status", "pr", "--storage", url])
    assert one.exit_code == 0 and "8 COMPLETE, 4 PRUNED, 0 RUNNING, 0 FAILED" in one.stdout, one.stdout
    assert "PRUNED trial 9 (eps=3, seed 0): pruned at step 20, val_error 86.00 % there" in one.stdout, one.stdout
    assert "PRUNED trial 10 (eps=3, seed 1): pruned before it started" in one.stdout and "(error)" not in one.output
    text = write_report(url, "pr", tmp_path / "rep")[0].read_text()
    assert "Pruned trials (4;" in text and "- trial 9 (eps=3, seed 0): pruned at step 20, val_error 86.00 % there" in text
    assert "did not complete" not in text


def test_progress_lines_count_this_studys_trials_at_readable_precision(tmp_path):
    """Issue 31, point 7: a new study's first trial was "trial 17" (ids across the whole store),
    with eps=1.252065381499947. Now each line numbers the trials of its study, parameters at 4
    significant digits, as status and the report do."""
    from helpers import fill
    from vat_study.platform.display import Progress
    from vat_study.platform.spec import parse_spec
    from vat_study.platform.store import Store

    url = f"sqlite:///{tmp_path}/p.db"
    fill(url, "earlier", [{"eps": 1.0}, {"eps": 2.0}], lambda p, s: ({"val_error": 0.1, "test_error": 0.1}, {}))
    fill(url, "second", [{"eps": 1.252065381499947}], lambda p, s: ({"val_error": 0.1, "test_error": 0.1}, {}))
    spec = parse_spec({"name": "second", "task": {"dataset": "digits", "steps": 100}})
    progress = Progress(spec, Store(url), 2, 4, 0)
    progress._seen, progress._primed = set(), True
    lines = progress.finished_lines()
    assert len(lines) == 4 and " second trial 1 (eps=1.252, seed 0): COMPLETE" in lines[0], lines
    assert " second trial 4 (eps=1.252, seed 3)" in lines[3] and "trial 9" not in "".join(lines)
