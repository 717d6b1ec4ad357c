"""A corpus of malformed study files and command lines. Each must give a message that names the
field and what is allowed, exit with code 2, print no traceback, and write nothing: the store a
good study already lives in is byte-for-byte the same afterwards (every table, Optuna's too), and
a store the bad input points at is never created."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import tiny
from vat_study.platform.cli import app

GOOD = "good"


def good_spec(storage: str) -> dict:
    return tiny(GOOD, storage, seeds=[0], search={"grid": [{"method": ["baseline", "vat"]}]})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding a finished study; every case below must leave it untouched."""
    folder = tmp_path_factory.mktemp("bad_input")
    url = f"sqlite:///{folder}/store.db"
    path = folder / "good.yaml"
    path.write_text(yaml.safe_dump(good_spec(url)))
    r = CliRunner().invoke(app, ["run", str(path), "--executor", "local", "--no-progress"])
    assert r.exit_code == 0, r.output
    return folder, url


def fingerprint(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        h = hashlib.sha256()
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
            h.update(table.encode())
            for row in con.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        con.close()


def edit(spec: dict, dotted: str, value) -> dict:
    node = spec
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return spec


FRESH = "FRESH_DB"  # stands for a store path that must never be created
STUDY_CASES = [
    # (id, edits to the good study (dotted key -> value), extra CLI args, text the message must hold)
    ("steps-wrong-type", {"task.steps": "many"}, [], "task.steps: Input should be a valid integer"),
    ("seeds-wrong-type", {"seeds": "zero"}, [], "seeds:"),
    ("hidden-wrong-type", {"task.hidden": 16}, [], "task.hidden"),
    ("unknown-top-key", {"epochs": 3}, [], "epochs: unknown key"),
    ("unknown-task-key", {"task.stepz": 3}, [], "task.stepz: unknown key"),
    ("unknown-method-key", {"method.epsilon": 1.0}, [], "method.epsilon: unknown key"),
    ("eps-zero", {"method.eps": 0}, [], "method.eps: Input should be greater than 0"),
    ("eps-negative-in-grid", {"search": {"grid": [{"eps": [1.0, -2.0]}]}}, [], "greater than 0"),
    ("eps-nan", {"method.eps": float("nan")}, [], "method.eps"),
    ("K-negative", {"method.power_iterations": -1}, [], "method.power_iterations: Input should be greater than or equal to 0"),
    ("K-negative-in-optuna", {"search": {"optuna": {"n_trials": 2, "space": {
        "power_iterations": {"type": "int", "low": -1, "high": 2}}}}}, [], "search.optuna.space.power_iterations"),
    ("grid-empty", {"search": {"grid": []}}, [], "give at least one grid"),
    ("grid-values-empty", {"search": {"grid": [{"eps": []}]}}, [], "grid[0].eps: must be a non-empty list"),
    ("grid-unknown-key", {"search": {"grid": [{"epsilon": [1.0]}]}}, [], "search.grid[0].epsilon: unknown trial key"),
    ("search-both", {"search": {"grid": [{"eps": [1.0]}], "optuna": {"n_trials": 1, "space": {
        "eps": {"type": "uniform", "low": 0.1, "high": 1}}}}}, [], "exactly one of 'grid' or 'optuna'"),
    ("optuna-log-low-0", {"search": {"optuna": {"n_trials": 2, "space": {
        "eps": {"type": "log_uniform", "low": 0, "high": 1}}}}}, [], "low must be > 0"),
    ("optuna-n-trials-0", {"search": {"optuna": {"n_trials": 0, "space": {
        "eps": {"type": "uniform", "low": 0.1, "high": 1}}}}}, [], "search.optuna.n_trials"),
    ("unknown-dataset", {"task.dataset": "imagenet"}, [], "task.dataset: Input should be 'digits', 'moons'"),
    ("unknown-model", {"task.model": "resnet"}, [], "task.model: Input should be 'mlp'"),
    ("conv-on-digits", {"task.model": "conv_large"}, [], "needs 32x32 images"),
    ("unknown-method", {"method.name": "vatt"}, [], "method.name: Input should be 'baseline', 'rpt', 'vat'"),
    ("lr-negative", {"task.optimizer": {"lr": -1}}, [], "task.optimizer.lr: Input should be greater than 0"),
    ("idx-missing-file", {"task.dataset": "idx", "task.idx_paths": {
        "train_images": "/nonexistent/train-images", "train_labels": "/nonexistent/l",
        "test_images": "/nonexistent/t", "test_labels": "/nonexistent/tl"}}, [], "task.idx_paths.train_images: no file"),
    ("seeds-duplicate", {"seeds": [0, 0]}, [], "seeds: must be a non-empty list of distinct integers"),
    ("name-invalid", {"name": "bad name!"}, [], "name: must be 1-100 characters"),
    ("metric-mode", {"metric": {"name": "val_error", "mode": "lowest"}}, [], "metric.mode: Input should be 'min' or 'max'"),
    ("gpu-negative", {"executor.per_trial": {"gpu": -0.5}}, [], "executor.per_trial.gpu"),
    ("timeout-zero", {"executor.trial_timeout": 0}, [], "executor.trial_timeout: Input should be greater than 0"),
    ("batch-seeds-zero", {"executor.batch_seeds": 0}, [], "executor.batch_seeds"),
    ("lanes-zero", {"executor.lanes": 0}, [], "executor.lanes: Input should be greater than or equal to 1"),
    ("lanes-too-many", {"executor.lanes": 1000}, [], "executor.lanes: Input should be less than or equal to 256"),
    ("lanes-string", {"executor.lanes": "24"}, [], "executor.lanes: Input should be a valid integer"),
    ("lanes-and-batch-seeds", {"executor.lanes": 4, "executor.batch_seeds": 2}, [],
     "executor.lanes: set either lanes"),
    ("storage-not-a-url", {"storage": "results/x.db"}, [], "storage: must be an SQLAlchemy URL"),
    ("storage-two-slashes", {"storage": "sqlite://x.db"}, [], "sqlite needs a file path after three slashes"),
    ("storage-bad-port", {"storage": "postgresql+psycopg://u@localhost:notaport/db"}, [], "not a valid database URL"),
    ("storage-no-host", {"storage": "postgresql+psycopg:///db"}, [], "postgresql needs a host"),
    ("storage-unreachable", {"storage": "postgresql+psycopg://me:s3cret@127.0.0.1:1/vat"}, [], "cannot open the database"),
    ("name-reused-edited", {"task.steps": 7}, [], "in the stored study 'good', 7 in this file"),
    ("set-twice", {}, ["--set", "task.steps=3", "--set", "task.steps=4"], "--set task.steps: given twice"),
    ("set-nested-conflict", {}, ["--set", "task={steps: 3}", "--set", "task.steps=4"], "conflicts with --set task"),
    ("set-no-equals", {}, ["--set", "task.steps"], "expected key=value"),
    ("set-unknown-field", {}, ["--set", "task.bogus=1"], "task.bogus: unknown key"),
    ("set-bad-yaml", {}, ["--set", "task.hidden=[1, 2"], "the value is not valid YAML"),
    ("executor-flag", {}, ["--executor", "slurm"], "executor.kind: Input should be 'ray' or 'local'"),
    # booleans and strings where numbers belong are refused, not coerced (true ran as K = 1)
    ("K-boolean", {"method.power_iterations": True}, [], "method.power_iterations: Input should be a valid integer"),
    ("eps-boolean", {"method.eps": True}, [], "method.eps: Input should be a valid number"),
    ("steps-numeric-string", {"task.steps": "30"}, [], "task.steps: Input should be a valid integer"),
    ("steps-float", {"task.steps": 30.0}, [], "task.steps: Input should be a valid integer"),
    ("K-boolean-in-grid", {"search": {"grid": [{"power_iterations": [1, True]}]}}, [], "Input should be a valid integer"),
    ("seed-boolean", {"seeds": [False]}, [], "seeds.0: Input should be a valid integer"),
    ("save-models-string", {"save_models": "yes"}, [], "save_models: Input should be a valid boolean"),
    ("stochastic-string", {"method.implementation": {"lds_stochastic": "no"}}, [],
     "method.implementation.lds_stochastic: Input should be a valid boolean"),
    ("divergence-unknown", {"method.implementation": {"divergence": "js"}}, [],
     "method.implementation.divergence: Input should be 'forward' or 'reverse'"),
    ("implementation-under-task", {"task.implementation": {"bn": "running"}}, [],
     "task.implementation: a setting of the method, not of the task; write it under method: (method.implementation)"),
    # a metric no trial reports would select nothing
    ("metric-unknown", {"metric": {"name": "val_acc", "mode": "max"}}, [], "metric.name: 'val_acc' is not a metric"),
    ("metric-probe-off", {"metric": {"name": "fidelity"}}, [], "allowed: loss, lr, n_labeled"),
    ("metric-nonnumeric", {"metric": {"name": "device"}}, [], "metric.name: 'device'"),
    # splits the data cannot give: refused before any trial, by the preflight
    ("n-labeled-too-many", {"task.n_labeled": 5000}, [], "task.n_labeled: must be between 10 (one per class) and"),
    ("n-labeled-too-many-in-grid", {"search": {"grid": [{"n_labeled": [100, 1297]}]}}, [],
     "search point {\"n_labeled\":1297} (n_labeled): must be between"),
    ("n-labeled-too-few", {"task.n_labeled": 5}, [], "task.n_labeled: must be between 10"),
    ("validation-all", {"task.validation": 1297}, [], "task.validation: must be less than the 1297 training images"),
    ("data-missing", {"task.dataset": "mnist", "task.data_root": "/nowhere"}, [],
     "task.dataset: dataset 'mnist': the four files"),
    ("gpu-word", {"executor.per_trial": {"gpu": "some"}}, [], "executor.per_trial.gpu"),
    ("storage-flag", {}, ["--storage", "mysql://x/y"], "storage: must be an SQLAlchemy URL"),
]


@pytest.mark.parametrize("case_id,edits,args,needle", STUDY_CASES, ids=[c[0] for c in STUDY_CASES])
def test_bad_study_or_flag(store, tmp_path, case_id, edits, args, needle):
    folder, url = store
    db = Path(url.removeprefix("sqlite:///"))
    before = fingerprint(db)
    spec = good_spec(url)
    for k, v in edits.items():
        edit(spec, k, v)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(app, ["run", str(path), "--no-progress", *args])
    assert r.exit_code == 2, (case_id, r.output, r.exception)
    assert needle in r.stderr, (case_id, r.stderr)
    assert "Traceback" not in r.output and "s3cret" not in r.output
    assert fingerprint(db) == before


FILE_CASES = [
    ("missing-file", None, "cannot read study file"),
    ("yaml-syntax", "name: x\ntask: {dataset: digits\n", "not valid YAML"),
    ("non-utf8", b"name: x\ntask: {dataset: digits}\n\xff\xfe\n", "not UTF-8"),
    ("a-list", "- name: x\n", "must hold a mapping"),
    ("empty-file", "", "must hold a mapping"),
    ("python-tag", "name: !!python/object/apply:os.system ['touch PWNED']\n", "not valid YAML"),
    ("tab-indent", "name: x\ntask:\n\tsteps: 3\n", "not valid YAML"),
    ("repeated-key", "name: x\ntask: {dataset: digits, steps: 3}\nseeds: [0]\nseeds: [1]\n",
     "key 'seeds' appears twice in one mapping (lines 3 and 4)"),
    ("repeated-nested-key", "name: x\ntask:\n  steps: 3\n  steps: 4\n", "key 'steps' appears twice"),
]


@pytest.mark.parametrize("case_id,content,needle", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_unreadable_study_files(tmp_path, monkeypatch, case_id, content, needle):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    r = CliRunner().invoke(app, ["run", str(path)])
    assert r.exit_code == 2 and needle in r.stderr, (case_id, r.stderr)
    assert "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["study.yaml"])  # no store, no PWNED


def test_a_fresh_store_is_not_created_by_a_bad_study(tmp_path):
    db = tmp_path / "never.db"
    spec = good_spec(f"sqlite:///{db}")
    spec["method"]["eps"] = -1
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(app, ["run", str(path)])
    assert r.exit_code == 2 and not db.exists()


OTHER_COMMANDS = [
    (["status", GOOD + "x"], "study 'goodx' is not in"),
    (["report", GOOD + "x"], "study 'goodx' is not in"),
    (["export", GOOD, "--format", "xls"], "--format must be 'csv' or 'parquet'"),
    (["status", "--storage", "sqlite:///{folder}/missing.db"], "no store there yet"),
    (["trial", "--set", "eps=-1"], "eps: Input should be greater than 0"),
    (["trial", "--set", "optimizer.lr=abc"], "optimizer.lr: Input should be a valid number"),
    (["trial", "--set", "power_iterations=true"], "power_iterations: Input should be a valid integer"),
    (["run", "{folder}/good.yaml", "--set", "task.batch={{labeled: 8, labeled: 9}}"], "key 'labeled' appears twice"),
]


@pytest.mark.parametrize("args,needle", OTHER_COMMANDS, ids=[" ".join(c[0][:2]) for c in OTHER_COMMANDS])
def test_bad_arguments_to_other_commands(store, args, needle):
    folder, url = store
    db = Path(url.removeprefix("sqlite:///"))
    before = fingerprint(db)
    args = [a.format(folder=folder) for a in args]
    if args[0] in ("status", "report", "export") and "--storage" not in args:
        args += ["--storage", url]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and needle in r.stderr, (args, r.stderr)
    assert "Traceback" not in r.output
    assert fingerprint(db) == before and not (folder / "missing.db").exists()


def test_a_real_process_exits_2_without_a_traceback(store, tmp_path):
    """The same checks in a separate process (exit status and stderr as a shell sees them)."""
    folder, url = store
    spec = good_spec(url)
    spec["method"]["power_iterations"] = -3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = subprocess.run([sys.executable, "-m", "vat_study.platform.cli", "run", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "method.power_iterations" in r.stderr and "Traceback" not in r.stderr


def test_the_corpus_is_at_least_thirty_cases():
    assert len(STUDY_CASES) + len(FILE_CASES) + len(OTHER_COMMANDS) >= 30
