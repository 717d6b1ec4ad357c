import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vat_study.platform.spec import SpecError, load_spec, parse_set, parse_spec

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "name": "t",
    "task": {"dataset": "digits", "steps": 5, "hidden": [8]},
    "method": {"name": "vat", "power_iterations": 1},
    "search": {"grid": [{"eps": [0.05, 0.1, 1.0, 2.0], "alpha": [1.0]},
                        {"eps": [1.0, 2.0, 3.0], "alpha": [0.1, 1.0, 3.0]}]},
    "seeds": [0, 1, 2],
}


def test_grids_times_seeds_expand_exactly():
    spec = parse_spec(BASE)
    configs = spec.configurations()
    # 4 + 9 points, (1.0, 1.0) and (2.0, 1.0) appear in both grids: 11 distinct configurations
    assert len(configs) == 11
    trials = spec.expand()
    assert len(trials) == 33 and len({t.key for t in trials}) == 33
    assert [t.seed for t in trials[:3]] == [0, 1, 2]
    t = trials[0]
    assert t.config["method"]["eps"] == 0.05 and t.config["method"]["name"] == "vat" and t.config["seed"] == 0
    assert t.config["task"]["steps"] == 5 and t.config["method"]["power_iterations"] == 1


def test_overrides_and_dotted_grid_keys():
    spec = parse_spec(BASE, parse_set(["task.steps=7", "seeds=[4]", "search.grid=[{optimizer.lr: [0.001, 1e-2]}]"]))
    trials = spec.expand()
    assert [t.config["task"]["optimizer"]["lr"] for t in trials] == [0.001, 0.01]
    assert trials[0].config["task"]["steps"] == 7


@pytest.mark.parametrize(
    "patch,expected",
    [
        ({"name": "bad name!"}, "name:"),
        ({"task": {"dataset": "digits", "stepz": 3}}, "task.stepz"),
        ({"task": {"dataset": "digits", "steps": -1}}, "task.steps"),
        ({"method": {"name": "vatt"}}, "method.name"),
        ({"search": {"grid": [{"eps": [1.0, -2.0]}]}}, "search.grid point"),
        ({"search": {"grid": [{"epsilon": [1.0]}]}}, "search.grid[0].epsilon: unknown trial key"),
        ({"search": {"grid": [{"eps": []}]}}, "grid[0].eps"),
        ({"search": {}}, "exactly one of 'grid' or 'optuna'"),
        ({"search": {"optuna": {"n_trials": 3, "space": {"eps": {"type": "log_uniform", "low": 0, "high": 1}}}}}, "low must be > 0"),
        ({"search": {"optuna": {"n_trials": 3, "space": {"alpha": {"type": "uniform", "low": -1, "high": 1}}}}}, "search.optuna.space.alpha"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"metric": {"name": "val_error", "mode": "lowest"}}, "metric.mode"),
        ({"executor": {"kind": "slurm"}}, "executor.kind"),
        ({"executor": {"per_trial": {"gpu": -0.5}}}, "executor.per_trial.gpu"),
        ({"storage": "results/x.db"}, "storage"),
        ({"bogus": 1}, "bogus: unknown key"),
    ],
)
def test_bad_study_fields_are_named(patch, expected):
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, **patch})
    assert expected in str(info.value)


def test_shipped_studies_validate_and_expand():
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        spec = load_spec(path)
        text = path.read_text()
        assert text.startswith("#") and "vat-study run" in text, f"{path.name}: header comment with the command"
        assert spec.name == path.stem
        assert spec.is_optuna or spec.expand()


def test_dry_run_prints_trials_and_writes_nothing(tmp_path):
    study = tmp_path / "s.yaml"
    db = tmp_path / "never.db"
    study.write_text(yaml.safe_dump({**BASE, "storage": f"sqlite:///{db}"}))
    r = subprocess.run([sys.executable, "-m", "vat_study.platform.cli", "run", str(study), "--dry-run"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "33 trials" in r.stdout and not db.exists()
    bad = subprocess.run([sys.executable, "-m", "vat_study.platform.cli", "run", str(study), "--set", "task.steps=0"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 2 and "task.steps" in bad.stderr and not db.exists()
    missing = subprocess.run([sys.executable, "-m", "vat_study.platform.cli", "run", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
