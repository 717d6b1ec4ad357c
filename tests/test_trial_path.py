"""How far a trial travels and how often it is resolved, counted while the quickstart runs through
the command line (``vat-study run studies/quickstart.yaml``, shrunk to a few updates):

* its path: the project modules on the call stack when its first metric is written to the store
  (the CLI, the use case, the executor, the science, the store): at most 15;
* its config: validated once per trial (``TrialConfig.model_validate``), plus once for the study
  as written (the study file's check), however often the configurations are asked for."""

from __future__ import annotations

import shutil
import sys
import threading
import traceback
from pathlib import Path

from typer.testing import CliRunner

import vat_study
from vat_study.platform.cli import app
from vat_study.science.config import TrialConfig

ROOT = Path(vat_study.__file__).parent
STUDIES = Path(__file__).parents[1] / "studies"


def _quickstart(tmp_path, monkeypatch, *overrides):
    shutil.copy(STUDIES / "quickstart.yaml", tmp_path / "quickstart.yaml")
    monkeypatch.chdir(tmp_path)
    args = ["run", "quickstart.yaml", "--executor", "local", "--no-progress", "--set", "task.steps=4",
            "--set", "task.eval_every=2", "--set", "save_models=false"]
    for o in overrides:
        args += ["--set", o]
    return CliRunner().invoke(app, args)


def test_a_quickstart_trial_has_at_most_15_project_modules_on_its_call_stack_to_the_store(tmp_path, monkeypatch):
    paths: list[list[str]] = []

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_name == "report" and code.co_filename.endswith("store/repository.py") \
                and not paths:
            stack = [Path(f.filename) for f in traceback.extract_stack(frame)]
            modules = [str(p.relative_to(ROOT)) for p in stack if p.is_relative_to(ROOT)]
            paths.append(list(dict.fromkeys(modules)))

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        r = _quickstart(tmp_path, monkeypatch, "seeds=[0]", 'search.grid=[{"method": ["vat"], "eps": [1.0]}]')
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert r.exit_code == 0, r.output
    assert paths, "no metric reached the store"
    path = paths[0]
    assert path[0].startswith("platform/cli/") and path[-1] == "platform/store/repository.py"
    assert any(m.startswith("science/") for m in path)  # it went through the science
    assert len(path) <= 15, path


def test_each_trial_config_is_resolved_once(tmp_path, monkeypatch):
    validated: list[tuple] = []
    original = TrialConfig.model_validate.__func__

    def counting(cls, obj, *args, **kwargs):
        method = obj.get("method") or {}
        validated.append((method.get("name"), method.get("eps"), obj.get("seed")))
        return original(cls, obj, *args, **kwargs)

    monkeypatch.setattr(TrialConfig, "model_validate", classmethod(counting))
    r = _quickstart(tmp_path, monkeypatch, "seeds=[0, 1]", 'search.grid=[{"method": ["vat", "rpt"], "eps": [1.0]}]')
    assert r.exit_code == 0, r.output
    assert validated[0] == ("vat", None, 0)  # the study file's own values, checked once (spec.checks)
    assert sorted(validated[1:]) == [("rpt", 1.0, 0), ("rpt", 1.0, 1), ("vat", 1.0, 0), ("vat", 1.0, 1)]
