"""Settings metadata is the one source (``config.SETTING_FLAGS``): what a setting is (a lane
setting, one that shapes only the power iteration, its legacy value, whether it is bookkeeping)
is declared on its pydantic field, and the lane grouping, the trials frame's columns, stored-config
upgrades, the resume comparison and the factor analyses derive from it.

The acceptance test adds an implementation setting the way a contributor would, one line in
``methods.Implementation``, to a copy of the package, and checks that an old store's study
resumes, the setting is a column and a grid key, and the report gives it a factor row."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import tiny
from vat_study.science import config
from vat_study.platform.results import CONFIG_COLUMNS
from vat_study.surface import Implementation

ROOT = Path(__file__).resolve().parent.parent


def test_the_derived_lists_are_what_the_fields_declare():
    assert config.LANE_SETTINGS == ("seed", "method.eps", "method.alpha", "method.xi", "task.noise_sigma")
    assert set(config.BOOKKEEPING_SETTINGS) == {"task.data_root", "task.download", "task.device", "task.eval_every"}
    assert set(config.POWER_ITERATION_ONLY) == {"xi", "power_iterations", "direction", "power_iteration_stochastic"}
    assert {"task.eval_bn", "task.precision", "method.alpha_rampup"} <= set(config.added_settings())
    assert {f"implementation.{k}" for k in Implementation.model_fields} <= set(CONFIG_COLUMNS)
    with pytest.raises(KeyError, match="is not one of"):
        config.declared("lanes")


def test_a_stored_implementation_block_without_a_newer_setting_gets_its_legacy_value(monkeypatch):
    """The upgrade reaches into the implementation block (three levels deep), and leaves the
    stored config itself untouched."""
    monkeypatch.setattr(config, "added_settings", lambda: {"method.implementation.new_choice": False})
    stored = {"task": {"dataset": "digits"}, "method": {"name": "vat", "implementation": {"bn": "batch"}}, "seed": 0}
    out = config.upgrade_stored_config(stored)
    assert out["method"]["implementation"] == {"bn": "batch", "new_choice": False}
    assert stored["method"]["implementation"] == {"bn": "batch"}
    assert "implementation" not in config.upgrade_stored_config({"task": {}, "method": {"name": "baseline"}})["method"]


NEW_FIELD = ('    new_choice: bool = Field(False, json_schema_extra={"legacy": False},\n'
             '                             description="a setting added in one place (tests/test_settings_metadata.py)")\n')


def _package_with_a_new_implementation_setting(dest: Path) -> Path:
    """A copy of vat_study and analysis whose ``method_settings.Implementation`` has one more field."""
    for name in ("vat_study", "analysis"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    methods = dest / "vat_study" / "science" / "method_settings.py"
    text = methods.read_text()
    anchor = "    clean_stochastic: bool = Field(True,"
    assert text.count(anchor) == 1
    methods.write_text(text.replace(anchor, NEW_FIELD + anchor))
    return dest


def _cli(args, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "vat_study.platform.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.mark.platform
def test_a_new_implementation_setting_added_in_one_place(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    spec = tiny("grow", url, seeds=[0, 1], search={"grid": [{"method": ["rpt", "vat"]}]},
                probes={"rvadv": {"size": 50}})
    spec["task"].update(steps=20, eval_every=10)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    old = _cli(["run", str(path), "--no-progress"], tmp_path)  # today's code: the old store
    assert old.returncode == 0, old.stderr[-3000:]

    src = _package_with_a_new_implementation_setting(tmp_path / "src")
    probe = subprocess.run([sys.executable, "-c", "import vat_study, sys; print(vat_study.__file__)"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)}, cwd=tmp_path)
    assert probe.stdout.strip().startswith(str(src)), probe  # the copy, not the installed package, is imported

    # the old store's study resumes under the new code: nothing refused, nothing retrained
    again = _cli(["run", str(path), "--no-progress"], tmp_path, src)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing new to train" in again.stdout, again.stdout

    # the new setting is a grid key: the study grows by one configuration of it
    spec["search"]["grid"].append({"method": ["vat"], "implementation.new_choice": [True]})
    path.write_text(yaml.safe_dump(spec))
    grown = _cli(["run", str(path), "--no-progress"], tmp_path, src)
    assert grown.returncode == 0, grown.stderr[-3000:]
    assert "Ran 2 (0 failed)" in grown.stdout, grown.stdout

    # a column of the trials frame (the old trials read with its legacy value), and a factor row in the report
    export = _cli(["export", "grow", "--storage", url, "--out", str(tmp_path / "trials.csv")], tmp_path, src)
    assert export.returncode == 0, export.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "trials.csv")
    vat = trials[trials["method"] == "vat"]
    assert sorted(vat["implementation.new_choice"].map(str)) == ["False", "False", "True", "True"]
    report = _cli(["report", "grow", "--storage", url, "--out", str(tmp_path / "report")], tmp_path, src)
    assert report.returncode == 0, report.stderr[-3000:]
    effects = pd.read_csv(tmp_path / "report" / "implementation_choices.csv")
    row = effects[effects["choice"] == "new_choice=True"]
    assert len(row) == 1 and row["method"].iloc[0] == "vat" and row["seeds"].iloc[0] == 2
    assert row["vs_centre_mean_diff"].notna().all()  # paired with VAT's centre by seed
    # a CI, or (2 seeds whose differences are equal: no CI is defined) the note saying why
    assert row["vs_centre_ci_low"].notna().all() or row["vs_centre_note"].notna().all()
