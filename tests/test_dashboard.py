"""optuna-dashboard (the package researchers already use) reads a vat-study store: the Optuna
study lives in the same database as vat-study's tables."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import tiny
from vat_study.executors import run_local
from vat_study.spec import parse_spec


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310  loopback only
        return json.loads(r.read())


@pytest.mark.platform
def test_optuna_dashboard_lists_the_study_and_its_trials(tmp_path):
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("optuna-dashboard is not installed (it is in the dev extra: pip install -e '.[dev]')")
    url = f"sqlite:///{tmp_path}/o.db"
    spec = tiny("tpe_dash", url, seeds=[0], search={"optuna": {"sampler": "tpe", "n_trials": 3, "seed": 1, "space": {
        "eps": {"type": "log_uniform", "low": 0.1, "high": 3.0}}}})
    assert run_local(parse_spec(spec), progress=False).ran == 3
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, url, "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, studies = time.time() + 60, None
        while time.time() < deadline and proc.poll() is None:
            try:
                studies = get(f"http://127.0.0.1:{port}/api/studies")
                break
            except OSError:
                time.sleep(0.3)
        assert studies is not None, proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no answer"
        names = {s["study_name"]: s["study_id"] for s in studies["study_summaries"]}
        assert "tpe_dash" in names, names
        detail = get(f"http://127.0.0.1:{port}/api/studies/{names['tpe_dash']}")
        trials = detail["trials"]
        assert len(trials) == 3 and all(t["state"] == "Complete" for t in trials), trials
        assert {p["name"] for t in trials for p in t["params"]} == {"eps"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
