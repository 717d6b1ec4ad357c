import subprocess
import sys

import pandas as pd
import pytest
import yaml

from helpers import tiny

CLI = [sys.executable, "-m", "vat_study.platform.cli"]


def cli(*args, cwd):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300, cwd=cwd)


def test_run_on_ray_with_a_relative_store_then_status_export_report_and_rerun(tmp_path):
    url = "sqlite:///results/c.db"  # relative to where the user stands, not to Ray's trial dirs
    study = tmp_path / "c.yaml"
    study.write_text(yaml.safe_dump(tiny("clistudy", url, seeds=[0], executor={"kind": "ray"})))
    first = cli("run", str(study), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Ran 3 (0 failed)" in first.stdout and "val_error" in first.stdout
    assert (tmp_path / "results" / "c.db").exists()
    again = cli("run", str(study), "--executor", "local", cwd=tmp_path)
    assert again.returncode == 0 and "Nothing new to train" in again.stdout
    edited = cli("run", str(study), "--executor", "local", "--set", "task.steps=7", cwd=tmp_path)
    assert edited.returncode == 2 and "task.steps: 6 in the stored study 'clistudy', 7 in this file" in edited.stderr  # never mixes results
    grown = cli("run", str(study), "--executor", "local", "--set", "seeds=[0, 1]", cwd=tmp_path)
    assert grown.returncode == 0 and "Ran 3 (0 failed), skipped 3" in grown.stdout, grown.stdout
    rep = cli("report", "clistudy", "--storage", url, cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "results" / "clistudy" / "report.md").exists()
    st = cli("status", "clistudy", "--storage", url, cwd=tmp_path)
    assert st.returncode == 0 and "baseline" in st.stdout
    ex = cli("export", "clistudy", "--format", "csv", "--storage", url, cwd=tmp_path)
    assert ex.returncode == 0, ex.stderr
    trials = pd.read_csv(tmp_path / "results" / "clistudy" / "trials.csv")
    steps = pd.read_csv(tmp_path / "results" / "clistudy" / "trials_metrics.csv")
    assert len(trials) == 6 and set(trials["status"]) == {"COMPLETE"} and {"val_error_pct", "rvadv"} <= set(steps["name"])


def test_bad_flags_name_themselves_and_write_nothing(tmp_path):
    missing_db = tmp_path / "none.db"
    for args, needle in [
        (("status", "--storage", f"sqlite:///{missing_db}"), "no store there yet"),
        (("status", "--storage", "mysql://x"), "--storage"),
        (("export", "s", "--format", "xls", "--storage", f"sqlite:///{missing_db}"), "--format"),
    ]:
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr)
    assert not missing_db.exists()
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(tiny("s", f"sqlite:///{missing_db}")))
    r = cli("run", str(study), "--executor", "slurm", cwd=tmp_path)
    assert r.returncode == 2 and "executor.kind" in r.stderr and not missing_db.exists()


def test_run_joins_an_existing_ray_cluster_with_address(tmp_path):
    """`ray start --head`, then `vat-study run --address ...`: the same study, on that cluster."""
    import shutil
    import tempfile

    from ray_nodes import forget_cluster, free_port, head_address, kill_node, start_node

    ray_tmp = tempfile.mkdtemp(prefix="vr")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    head = start_node(["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                       f"--temp-dir={ray_tmp}"])
    try:
        address = head_address(head)
        study = tmp_path / "c.yaml"
        study.write_text(yaml.safe_dump(tiny("joined", f"sqlite:///{tmp_path}/j.db", seeds=[0],
                                             executor={"kind": "ray"})))
        r = cli("run", str(study), "--address", address, "--no-progress", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "Ran 3 (0 failed)" in r.stdout
        bad = cli("run", str(study), "--address", "127.0.0.1:1", "--set", "seeds=[5]", cwd=tmp_path)
        assert bad.returncode == 2 and "executor.address" in bad.stderr
    finally:
        kill_node(head)  # the whole throwaway cluster, and nothing else
        shutil.rmtree(ray_tmp, ignore_errors=True)
        forget_cluster(port)


def test_unreadable_inputs_and_unreachable_stores_are_clean_errors(tmp_path):
    """Non-UTF-8 bytes, YAML syntax errors and a database that refuses: exit 2, no traceback,
    and a password in a URL is never printed."""
    bad_bytes = tmp_path / "bytes.yaml"
    bad_bytes.write_bytes(b"name: x\ntask: {dataset: digits}\n\xff\xfe\n")
    bad_yaml = tmp_path / "syntax.yaml"
    bad_yaml.write_text("name: x\ntask: {dataset: digits\n")
    pg = tmp_path / "pg.yaml"
    pg.write_text(yaml.safe_dump({"name": "x", "task": {"steps": 2}, "executor": {"kind": "local"},
                                  "storage": "postgresql+psycopg://me:s3cret@127.0.0.1:1/none"}))
    for args, needle in [
        (("run", str(bad_bytes), "--dry-run"), "not UTF-8"),
        (("run", str(bad_yaml), "--dry-run"), "not valid YAML"),
        (("run", str(pg)), "cannot open the database"),
        (("status", "--storage", "postgresql+psycopg://me:s3cret@127.0.0.1:1/none"), "cannot open the database"),
    ]:
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and "s3cret" not in r.stderr + r.stdout


def test_exit_status_says_whether_every_trial_completed(tmp_path):
    """0: every trial COMPLETE; 1: the run finished with FAILED trials, named on stderr (here one
    trial diverges at an absurd learning rate); a study whose every trial fails exits 1 too."""
    url = f"sqlite:///{tmp_path}/x.db"
    study = tmp_path / "x.yaml"
    study.write_text(yaml.safe_dump(tiny("exits", url, seeds=[0], search={"grid": [{"optimizer.lr": [0.002, 1e30]}]})))
    r = cli("run", str(study), "--no-progress", "--executor", "local", cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "1 of 2 trial(s) of 'exits' did not complete" in r.stderr and "diverged" in r.stderr, r.stderr
    assert "Run the same command again" in r.stderr and "Traceback" not in r.stderr
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(tiny("fine", url, seeds=[0])))
    assert cli("run", str(ok), "--no-progress", "--executor", "local", cwd=tmp_path).returncode == 0
    everything = tmp_path / "y.yaml"
    everything.write_text(yaml.safe_dump(tiny("all_fail", url, seeds=[0], search={"grid": [{"optimizer.lr": [1e30, 1e31]}]})))
    bad = cli("run", str(everything), "--no-progress", "--executor", "local", cwd=tmp_path)
    assert bad.returncode == 1 and "2 of 2 trial(s)" in bad.stderr, (bad.stdout, bad.stderr)


def test_short_help_version_threads_and_a_study_file_given_to_trial(tmp_path):
    from importlib.metadata import version

    h = cli("-h", cwd=tmp_path)
    assert h.returncode == 0 and "Usage" in h.stdout and "run" in h.stdout
    v = cli("--version", cwd=tmp_path)
    from vat_study.platform.provenance import package_version

    assert v.returncode == 0 and v.stdout.strip() == f"vat-study {package_version()}"
    assert package_version().startswith(version("vat-study"))
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(tiny("astudy", f"sqlite:///{tmp_path}/x.db", seeds=[0])))
    wrong = cli("trial", "--config", str(study), cwd=tmp_path)
    assert wrong.returncode == 2 and f"run it with: vat-study run {study}" in wrong.stderr
    assert not (tmp_path / "x.db").exists()
    ok = cli("trial", "--set", "task.steps=5", "--set", "task.eval_every=5", "--threads", "1", "--json", cwd=tmp_path)
    assert ok.returncode == 0 and '"torch_threads": 1' in ok.stdout


def test_a_run_whose_stderr_is_a_file_logs_one_plain_line_per_finished_trial(tmp_path):
    study = tmp_path / "p.yaml"
    study.write_text(yaml.safe_dump(tiny("plainlog", f"sqlite:///{tmp_path}/p.db", seeds=[0, 1],
                                         executor={"kind": "local"})))
    r = cli("run", str(study), cwd=tmp_path)  # stderr is a pipe here: no live display
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if " plainlog trial " in x]
    assert len(lines) == 6 and all(": COMPLETE, val_error " in x for x in lines), r.stderr
    assert "6 complete of 6" in lines[-1]
    again = cli("run", str(study), cwd=tmp_path)
    assert " plainlog trial " not in again.stderr  # what finished before is not logged again


def test_a_display_poll_still_running_when_the_run_ends_loses_no_trial_line(monkeypatch, capsys):
    """A new study whose first trials finish before the first poll (their lines were taken for
    news from before the run, and dropped), and a poll of the display's thread that outlives the
    run's join (it had marked a trial seen, the last poll skipped it, the exit lost it): each
    finished trial is printed exactly once."""
    import threading
    import time

    from vat_study.platform import display

    rows = pd.DataFrame({"trial_id": [1, 2], "status": ["COMPLETE", "COMPLETE"], "finished_at": ["t1", "t2"],
                         "seed": [0, 1], "val_error": [0.5, 0.4], "error": [None, None], "failure_kind": [None, None]})
    release, stalled = threading.Event(), threading.Event()
    frames = iter([rows.iloc[:0]])  # nothing had finished when the run began

    monkeypatch.setattr(display, "trials_frame", lambda store, name: next(frames, rows))
    clock = time.strftime

    def strftime(fmt):  # called once a trial is marked seen, before its line is kept
        if threading.current_thread() is not threading.main_thread() and not stalled.is_set():
            stalled.set()
            release.wait(10)  # the thread's poll stalls here, past the end of the run's join
        return clock(fmt)

    monkeypatch.setattr(display.time, "strftime", strftime)
    monkeypatch.setattr(display.Progress, "join_timeout", 0.05)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    spec = type("S", (), {"name": "s", "metric": type("M", (), {"name": "val_error", "mode": "min"})()})()
    with display.Progress(spec, object(), 1, 2, 0):
        assert stalled.wait(10)
        threading.Timer(0.3, release.set).start()
    err = capsys.readouterr().err
    assert err.count(" trial 1 ") == 1 and err.count(" trial 2 ") == 1, err


def test_run_exits_0_when_only_trials_the_grid_no_longer_holds_did_not_complete(tmp_path):
    """The run's exit status (study.read_outcome): a FAILED trial of a configuration that the grid
    no longer holds is counted apart and does not make the run exit 1; one the grid holds does."""
    from helpers import a_trial_the_grid_no_longer_holds
    from vat_study.platform.study import read_outcome

    store, wide, narrow, _ = a_trial_the_grid_no_longer_holds(f"sqlite:///{tmp_path}/r.db")
    held = read_outcome(wide, store)  # the grid holds it: exit 1, the trial named
    assert (held.status, held.n_unfinished, held.outside) == (1, 1, 0), held
    assert "interrupted: interrupted" not in held.unfinished[0] and "seed 0" in held.unfinished[0], held.unfinished
    gone = read_outcome(narrow, store)  # no longer in the grid: counted apart, no exit 1
    assert (gone.status, gone.n_unfinished, gone.outside) == (0, 0, 1), gone


def test_status_report_export_take_a_study_file_and_the_store_from_vat_study_storage(tmp_path, monkeypatch):
    """Finding 4 of issue 31: with the store named in the study file, `status NAME` said "no store
    there yet" with no hint and `report FILE.yaml` called the name invalid. Now STUDY may be the
    study file (its name and storage), VAT_STUDY_STORAGE sets every command's default store, and
    the "no store there" error names the ways to give it."""
    from typer.testing import CliRunner

    from helpers import fill
    from vat_study.platform.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAT_STUDY_STORAGE", raising=False)
    url = "sqlite:///elsewhere/s.db"  # relative: to where the user stands, as for run
    fill(url, "addr", [{"eps": 1.0}], lambda p, s: ({"val_error": 0.1 + 0.01 * s, "test_error": 0.2}, {}))
    (tmp_path / "addr.yaml").write_text(yaml.safe_dump(tiny("addr", url)))
    run = CliRunner().invoke
    lost = run(app, ["status", "addr"])
    assert lost.exit_code == 2 and "no store there yet" in lost.output and "VAT_STUDY_STORAGE" in lost.output
    assert "--storage" in lost.output and "vat-study status STUDY.yaml" in lost.output, lost.output
    st = run(app, ["status", "addr.yaml"])
    assert st.exit_code == 0 and "4 COMPLETE" in st.output, st.output
    rep = run(app, ["report", "addr.yaml"])
    assert rep.exit_code == 0 and (tmp_path / "results" / "addr" / "report.md").exists(), rep.output
    ex = run(app, ["export", "addr.yaml"])
    assert ex.exit_code == 0 and (tmp_path / "results" / "addr" / "trials.csv").exists(), ex.output
    monkeypatch.setenv("VAT_STUDY_STORAGE", url)
    assert "4 COMPLETE" in run(app, ["status", "addr"]).output
    listed = run(app, ["status"])
    assert listed.exit_code == 0 and "addr" in listed.output
    (tmp_path / "nostore.yaml").write_text(yaml.safe_dump({k: v for k, v in tiny("fresh", url).items()
                                                             if k != "storage"}))
    dry = run(app, ["run", "nostore.yaml", "--dry-run"])  # a study file without storage: the variable's store
    assert dry.exit_code == 0 and "storage: no study 'fresh' in" in dry.output and "elsewhere/s.db" in dry.output
    monkeypatch.setenv("VAT_STUDY_STORAGE", "mysql://x")
    for args in (["status"], ["run", "nostore.yaml", "--dry-run"]):
        bad = run(app, args)
        assert bad.exit_code == 2 and "VAT_STUDY_STORAGE 'mysql://x': must be an SQLAlchemy URL" in bad.output


def test_every_message_with_brackets_prints_them_through_rich(tmp_path, monkeypatch, capsys):
    """Issue 31, point 6: the missing-tracker hint printed `pip install 'vat-study'`, Rich having
    read `[trackers]` as markup. Every user-facing message holding brackets (tracker hints, the
    study file's shape examples, spec and store errors, trial lines) now prints exactly, as an
    error line, a plain line and a table cell."""
    import importlib.util

    from rich.table import Table
    from typer.testing import CliRunner

    from vat_study.platform import cli, display, spec, tracking
    from vat_study.platform.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("wandb", "mlflow", "tensorboardX") else real(name, *a))
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tiny("tr", f"sqlite:///{tmp_path}/t.db", tracking={"wandb": "p"})))
    r = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert r.exit_code == 2 and "(pip install 'vat-study[trackers]' or pip install wandb)" in r.output, r.output
    messages = tracking.missing_packages({"wandb": "p", "mlflow": True, "tensorboard": "tb"})
    messages += [v for v in spec.SHAPES.values() if "[" in v]
    messages += ["--set [bold]=1: expected key=value", "study file [red]x[/].yaml: has no name", "[link=x]y[/link]"]
    row = pd.Series({"number": 3, "trial_id": 9, "seed": 0, "param.hidden": "[64, 32]", "param.act": "[relu]"})
    messages.append(display.trial_text(row, pd.DataFrame([row])))
    assert len(messages) > 8 and all("[" in m for m in messages)

    def shown(m, how):
        capsys.readouterr()
        if how == "error":
            with pytest.raises(typer.Exit):
                cli._fail(m)
        elif how == "table":
            t = Table(title=m)
            t.add_column(m)
            t.add_row(m)
            cli.out.print(t)
        else:
            (cli.out if how == "out" else cli.err).print(m)
        got = capsys.readouterr()
        return "".join((got.out + got.err).split())  # wrapped lines joined: only the characters count

    import typer

    for m in messages:
        for how in ("error", "out", "err", "table"):
            assert "".join(m.split()) in shown(m, how), (how, m)
