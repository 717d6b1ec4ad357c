"""Study identity is what changes results: bookkeeping settings may change on resume, a refusal
names each setting that differs, grid points that train the same trial are one trial, and --set
takes the trial shorthand for a study file too."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import tiny
from vat_study.platform.cli import app
from vat_study.platform.executors import run_local
from vat_study.platform.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def test_no_shipped_study_hard_codes_a_data_path():
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        task = yaml.safe_load(path.read_text()).get("task") or {}
        assert "data_root" not in task and "idx_paths" not in task, path.name  # VAT_STUDY_DATA says where


def _one(tmp_path, **task):
    spec = tiny("ident", f"sqlite:///{tmp_path}/i.db", seeds=[0])
    spec["search"] = {"grid": [{"method": ["baseline"]}]}
    spec["task"].update({"steps": 4, "eval_every": 2, **task})
    return spec


def test_bookkeeping_settings_resume_and_a_real_change_is_refused_key_by_key(tmp_path):
    assert run_local(parse_spec(_one(tmp_path)), progress=False).ran == 1
    # digits ships with scikit-learn: download: true fetches nothing here, it is only a changed setting
    moved = _one(tmp_path, data_root=str(tmp_path / "elsewhere"), download=True, eval_every=4, device="auto")
    again = run_local(parse_spec(moved), progress=False)
    assert (again.ran, again.skipped) == (0, 1)  # where the data lies and how often it is measured: same study
    with pytest.raises(SpecError) as e:
        run_local(parse_spec(_one(tmp_path, steps=5, dropout=0.25)), progress=False)
    lines = e.value.problems
    assert lines[0] == "task.dropout: (not set) in the stored study 'ident', 0.25 in this file"
    assert lines[1] == "task.steps: 4 in the stored study 'ident', 5 in this file"
    assert "give the edited study a new name" in lines[2] and "task.data_root" in lines[2]
    loss = _one(tmp_path, eval_every=3)  # (the stored study is the last run's: eval_every 4)
    loss["metric"] = {"name": "loss", "mode": "min"}  # a mean over the updates since the last evaluation
    with pytest.raises(SpecError, match=r"task\.eval_every: 4 in the stored study 'ident', 3 in this file"):
        run_local(parse_spec(loss), progress=False)


def test_grid_points_that_train_the_same_trial_are_one_trial(tmp_path):
    spec = tiny("dups", f"sqlite:///{tmp_path}/d.db", seeds=[0, 1])
    spec["search"] = {"grid": [{"method": ["baseline"], "eps": [1.0, 2.0]},  # baseline has no eps
                               {"method": ["vat"], "eps": [1.0, 2.0]}, {"eps": [2.0]}]}  # the file's method is vat
    parsed = parse_spec(spec)
    assert parsed.configurations() == [{"method": "baseline", "eps": 1.0}, {"method": "vat", "eps": 1.0},
                                       {"method": "vat", "eps": 2.0}]
    assert parsed.collapsed() == 2 and len(parsed.expand()) == 6
    path = tmp_path / "dups.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "2 grid point(s) left out" in r.output and "6 trials (3 configurations x 2 seeds)" in r.output


def test_set_takes_the_trial_shorthand_for_a_study_and_warns_when_the_grid_shadows_it(tmp_path):
    spec = tiny("short", f"sqlite:///{tmp_path}/s.db", seeds=[0])
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--set", "steps=3", "--set", "alpha=0.5",
                                 "--set", "implementation.bn=running"])
    assert r.exit_code == 0, r.output
    assert "warning" not in r.output
    from vat_study.platform.cli import _study_overrides

    assert _study_overrides({"steps": 3, "eps": 2.0, "method": "rpt", "seeds": [0], "executor.kind": "local"}) == {
        "task.steps": 3, "method.eps": 2.0, "method.name": "rpt", "seeds": [0], "executor.kind": "local"}
    r = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--set", "eps=3"])
    assert r.exit_code == 0 and "warning: --set method.eps: the study's grid block 2 sets eps too" in r.output
    r = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--set", "eps=3", "--set", "method.eps=4"])
    assert r.exit_code == 2 and "are one setting (method.eps) with two values" in r.output
    r = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--set", "bogus=1"])
    assert r.exit_code == 2 and "bogus: unknown key" in r.output


def test_the_dry_run_makes_every_check_the_run_makes_before_training(tmp_path):
    """Finding 3 of issue 31: with task.hidden edited under the same name, --dry-run exited 0 and
    `run` then refused. Now the dry run checks the study against the store, and the store's health,
    with the run's message and exit status; it writes nothing (not even a new store)."""
    spec = _one(tmp_path)
    assert run_local(parse_spec(spec), progress=False).ran == 1
    path = tmp_path / "ident.yaml"
    path.write_text(yaml.safe_dump(spec))
    spec["task"]["hidden"] = [8]
    path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "i.db"
    before = db.read_bytes()
    dry = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    real = CliRunner().invoke(app, ["run", str(path), "--executor", "local", "--no-progress"])
    assert dry.exit_code == real.exit_code == 2 and dry.output == real.output, (dry.output, real.output)
    assert "task.hidden: [16] in the stored study 'ident', [8] in this file" in dry.output
    assert db.read_bytes() == before  # neither wrote anything
    spec["task"]["hidden"] = [16]
    path.write_text(yaml.safe_dump(spec))
    fine = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert fine.exit_code == 0 and "storage: the study 'ident' in" in fine.output and "1 trial(s) finished" in fine.output
    for extra in ("-wal", "-shm"):
        (tmp_path / f"i.db{extra}").unlink(missing_ok=True)
    db.write_bytes(b"not a database at all " * 100)  # a damaged store: the same one line from both
    dry = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    real = CliRunner().invoke(app, ["run", str(path), "--executor", "local", "--no-progress"])
    assert dry.exit_code == real.exit_code == 2 and dry.output == real.output and "is damaged" in dry.output, dry.output
    elsewhere = _one(tmp_path)
    elsewhere["storage"] = f"sqlite:///{tmp_path}/new/n.db"
    path.write_text(yaml.safe_dump(elsewhere))
    new = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert new.exit_code == 0 and "the run creates it" in new.output and not (tmp_path / "new").exists()
