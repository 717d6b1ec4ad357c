"""Provenance: each trial records the code, the command, the machine and the libraries that shaped
it; each run records the same with the stored study; the report header shows it."""

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import tiny
from vat_study.platform import provenance
from vat_study.platform.cli import app
from vat_study.platform.store import Store
from vat_study.platform.results import trials_frame

ROOT = Path(__file__).resolve().parents[1]


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def test_trial_provenance_names_code_machine_and_every_library():
    import torch

    p = provenance.trial_provenance()
    for lib in ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pydantic", "python"):
        assert p[lib], lib
    assert p["torch"] == version("torch") and p["scikit-learn"] == version("scikit-learn")
    assert p["vat-study"].startswith(version("vat-study"))
    import vat_study

    assert vat_study.__version__ == p["vat-study"]  # no static version string
    if (ROOT / ".git").exists():  # a checkout: the commit and whether tracked files differ from it
        assert p["git_commit"] == _git("rev-parse", "HEAD")
        assert p["git_dirty"] == bool(_git("status", "--porcelain", "--untracked-files=no"))
        assert f"+g{p['git_commit'][:12]}" in p["vat-study"]
    assert p["torch_threads"] == torch.get_num_threads() and p["cpu"]
    assert p["cuda"] == torch.version.cuda and ("gpu" in p and "cudnn" in p)
    token = provenance.planned_threads.set(3)
    try:
        assert provenance.trial_provenance()["torch_threads"] == 3
    finally:
        provenance.planned_threads.reset(token)


def test_a_process_without_torch_records_no_torch_entries():
    code = ("import sys; from vat_study.platform import provenance as p; v = p.trial_provenance(); "
            "assert 'torch' not in sys.modules and 'torch_threads' not in v and v['torch']; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_run_records_argv_overrides_and_threads_per_trial_and_with_the_study(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.INVOCATION_ENV, "")  # restored (removed) after the test
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/p.db"
    spec = tiny("prov", url, seeds=[0])
    spec["search"] = {"grid": [{"method": ["baseline"]}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(sys, "argv", ["vat-study", "run", "p.yaml", "--set", "task.steps=3", "--no-progress"])
    r = CliRunner().invoke(app, sys.argv[1:])
    assert r.exit_code == 0, r.output
    store = Store(url)
    rows = trials_frame(store, "prov")
    assert len(rows) == 1 and rows["steps"].iloc[0] == 3
    v = store.latest_versions("prov")
    assert v["argv"] == ["run", "p.yaml", "--set", "task.steps=3", "--no-progress"]
    assert v["overrides"] == {"task.steps": 3} and v["torch_threads"] == 1  # executor.per_trial.cpu
    assert v["torchvision"] == version("torchvision") and v["pydantic"] == version("pydantic")
    study = store.study_spec("prov")["provenance"]
    assert study["argv"] == v["argv"] and study["vat-study"] == v["vat-study"]
    from vat_study.analysis.report import write_report

    path, _ = write_report(url, "prov", tmp_path / "rep")
    head = path.read_text()
    assert f"- code: vat-study {v['vat-study']}" in head
    assert "- command: `vat-study run p.yaml --set task.steps=3 --no-progress`; overrides {'task.steps': 3}" in head
    assert "torch threads 1" in head and f"torchvision {v['torchvision']}" in head and "scikit-learn" in head
    assert v["precision"] == "float32" and "task.precision run as float32" in head  # resolved on this machine


def test_a_store_without_provenance_still_reports():
    from vat_study.analysis.report import provenance_lines

    assert provenance_lines({}) == ["- provenance: none recorded"]
    old = provenance_lines({"python": "3.11.2", "vat-study": "0.2.0", "torch": "2.4.0"})
    assert old == ["- code: vat-study 0.2.0", "- versions: python 3.11.2, torch 2.4.0"]


@pytest.mark.platform
def test_ray_workers_record_the_command_that_started_them(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    spec = tiny("prov_ray", url, seeds=[0], executor={"kind": "ray", "per_trial": {"cpu": 1}})
    spec["search"] = {"grid": [{"method": ["baseline"]}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(spec))
    r = subprocess.run([sys.executable, "-m", "vat_study.platform.cli", "run", "r.yaml", "--set", "task.steps=3",
                        "--no-progress"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    v = Store(url).latest_versions("prov_ray")
    assert v["argv"] == ["run", "r.yaml", "--set", "task.steps=3", "--no-progress"]
    assert v["overrides"] == {"task.steps": 3} and v["torch_threads"] == 1 and v["torch"] == version("torch")


def test_a_reports_command_line_names_no_absolute_path_under_its_folder(tmp_path, monkeypatch):
    """A committed report shows the recorded command with the store URL and files relative to the
    folder it was written from, as it shows the storage line."""
    from vat_study.analysis.runinfo import provenance_lines

    monkeypatch.chdir(tmp_path)
    argv = ["run", str(tmp_path / "studies" / "x.yaml"), "--storage", f"sqlite:///{tmp_path}/results/r.db",
            "--out", "/elsewhere/out"]
    command = next(line for line in provenance_lines({"vat-study": "0.3.0", "argv": argv})
                   if line.startswith("- command"))
    assert str(tmp_path) not in command, command
    assert "run studies/x.yaml --storage sqlite:///results/r.db --out /elsewhere/out" in command
