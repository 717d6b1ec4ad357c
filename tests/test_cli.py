import subprocess
import sys

import pandas as pd
import yaml

from test_executors import tiny

CLI = [sys.executable, "-m", "vat_study.cli"]


def cli(*args, cwd):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300, cwd=cwd)


def test_run_local_then_status_export_and_rerun_says_nothing_new(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    study = tmp_path / "c.yaml"
    study.write_text(yaml.safe_dump(tiny("clistudy", url, seeds=[0])))
    first = cli("run", str(study), "--executor", "local", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Ran 3 (0 failed)" in first.stdout and "val_error" in first.stdout
    again = cli("run", str(study), "--executor", "local", cwd=tmp_path)
    assert again.returncode == 0 and "Nothing new to train" in again.stdout
    st = cli("status", "clistudy", "--storage", url, cwd=tmp_path)
    assert st.returncode == 0 and "baseline" in st.stdout
    ex = cli("export", "clistudy", "--format", "csv", "--storage", url, cwd=tmp_path)
    assert ex.returncode == 0, ex.stderr
    trials = pd.read_csv(tmp_path / "results" / "clistudy" / "trials.csv")
    steps = pd.read_csv(tmp_path / "results" / "clistudy" / "trials_metrics.csv")
    assert len(trials) == 3 and set(trials["status"]) == {"COMPLETE"} and {"val_error", "rvadv"} <= set(steps["name"])


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
