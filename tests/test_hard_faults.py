"""Faults that used to hang, go stale or go unseen, and what a user now sees: a trial stuck inside
one call (killed at its time limit, on both executors); the Optuna records after the study's
seeds grow or a sequential look adds seeds (recomputed; ``status`` flags a disagreement); MLflow
on several Ray workers at once (a run per trial) and a tracker failing there (said on the
driver's output and in the report); a Ray worker that keeps dying (one line, Ray's text in the
trial's log); study files and values that could hang or exhaust the CLI; float IDX files, a
label past the classes, write errors of export and report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import tiny
from vat_study.platform.store import Store
from vat_study.platform.results import trials_frame

CLI = [sys.executable, "-m", "vat_study.platform.cli"]


def write(tmp_path: Path, spec: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: float = 300):
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout, cwd=str(cwd),
                          env={**os.environ, **(env_extra or {})}, start_new_session=True)


# ------------------------------------------------------------------ 1. a trial stuck inside one call


@pytest.mark.platform
@pytest.mark.parametrize("kind", ["local", "ray"])
def test_a_trial_stuck_inside_one_call_is_killed_at_its_time_limit_and_the_study_goes_on(tmp_path, kind):
    """At its second report one trial sleeps for an hour: no bytecode runs in its thread, so no
    timer inside the process can stop it. Its process is killed at trial_timeout + GRACE; it is
    FAILED (timeout) with the last step it reported and where it was; the other trial completes."""
    url = f"sqlite:///{tmp_path}/s.db"
    spec = tiny("stuck", url, seeds=[0], search={"grid": [{"method": ["baseline", "vat"]}]},
                executor={"kind": kind, "per_trial": {"cpu": 1}, "trial_timeout": 8})
    spec["task"].update(steps=30, eval_every=10)
    once = tmp_path / "once"
    once.mkdir()
    t0 = time.time()
    r = run_cli(["run", str(write(tmp_path, spec)), "--no-progress"], tmp_path,
                {"VAT_STUDY_FAILPOINTS": "trial.report@2=sleep:3600", "VAT_STUDY_FAILPOINTS_ONCE": str(once)},
                timeout=240)
    assert r.returncode == 1, r.stderr[-3000:]
    assert time.time() - t0 < 150
    assert "Traceback" not in r.stderr
    df = trials_frame(Store(url), "stuck")
    assert sorted(df.status) == ["COMPLETE", "FAILED"]
    failed = df[df.status == "FAILED"].iloc[0]
    assert failed.failure_kind == "timeout"
    last = failed.error.strip().splitlines()[-1]
    assert "trial_timeout = 8 s" in last and "its process was killed" in last, last
    assert "past step 20 of 30" in last and "in failpoint (failpoints.py" in last, last
    assert "called from train_lanes (train.py" in last, last
    assert "did not complete" in r.stderr and "its process was killed" in r.stderr
    log = (tmp_path / "results" / "stuck" / "logs" / f"{failed.key}.log").read_text()
    assert "every thread of the trial's process" in log and "failpoints.py" in log


# ------------------------------------------------------------------ 2. the Optuna records follow the store


def test_the_optuna_records_follow_the_store_when_seeds_grow_or_a_result_changes(tmp_path):
    """A grid study's Optuna trials hold the store's numbers after its seeds grow from 2 to 3 (they
    kept the 2-seed means), and after a trial's result changes in the store (a redone seed):
    ``status`` flags the disagreement, naming the configuration, and the next run rebuilds them."""
    import optuna
    from sqlalchemy import text
    from typer.testing import CliRunner

    from vat_study.platform.cli import app
    from vat_study.platform.executors import run_local
    from vat_study.platform.spec import parse_spec

    url = f"sqlite:///{tmp_path}/t.db"
    spec = tiny("twin", url, search={"grid": [{"method": ["baseline"]}, {"method": ["vat"], "eps": [1.0]}]})
    run_local(parse_spec(spec), progress=False)
    grown = parse_spec({**spec, "seeds": [0, 1, 2]})
    assert run_local(grown, progress=False).ran == 2

    def twins() -> dict[str, optuna.trial.FrozenTrial]:
        return {t.params["method"]: t for t in optuna.load_study(study_name="twin", storage=url).get_trials()}

    def status() -> str:
        r = CliRunner().invoke(app, ["status", "twin", "--storage", url])
        assert r.exit_code == 0, r.output
        return r.stderr

    df = trials_frame(Store(url), "twin")
    for method, t in twins().items():
        mine = df[df["param.method"] == method]
        assert t.user_attrs["seeds"] == [0, 1, 2] and len(mine) == 3
        assert t.value == pytest.approx(mine.val_error.mean(), rel=1e-12)
        assert sorted(t.user_attrs["vat_trial_ids"]) == sorted(mine.trial_id)
    assert "disagrees" not in status()

    vat = df[(df["param.method"] == "vat") & (df.seed == 2)].trial_id.iloc[0]
    with Store(url).engine.begin() as c:  # seed 2 of vat redone, with another result
        c.execute(text("UPDATE vat_final_metrics SET value = value + 0.25 WHERE trial_id = :t AND name = 'val_error'"),
                  {"t": int(vat)})
    said = status()
    assert "warning: the Optuna study 'twin' disagrees with the store on 1 configuration(s)" in said, said
    assert "method=vat" in said and "over seeds [0, 1, 2]" in said and "rebuilds it" in said
    assert run_local(grown, progress=False).ran == 0
    assert "disagrees" not in status()
    new = trials_frame(Store(url), "twin")
    assert twins()["vat"].value == pytest.approx(new[new["param.method"] == "vat"].val_error.mean(), rel=1e-12)


# ------------------------------------------------------------------ 3. trackers: every run, every failure said


def test_a_tracker_that_fails_is_said_on_the_drivers_output_and_in_the_report(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vat_study.platform.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocked").write_text("a file where the event folder would go")
    spec = tiny("tracked", f"sqlite:///{tmp_path}/t.db", seeds=[0], search={"grid": [{"method": ["baseline", "vat"]}]},
                tracking={"tensorboard": str(tmp_path / "blocked")})
    r = CliRunner().invoke(app, ["run", str(write(tmp_path, spec)), "--executor", "local", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "warning: tracking.tensorboard did not record 2 of 2 trial(s) in full (trial 1 (method=baseline, seed 0): " \
           "not recorded (" in r.stderr, r.stderr
    r = CliRunner().invoke(app, ["report", "tracked", "--storage", f"sqlite:///{tmp_path}/t.db"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "results" / "tracked" / "report.md").read_text()
    assert "Trackers:" in text and "tracking.tensorboard did not record 2 of 2 trial(s)" in text
    assert "trackers" not in text.split("- versions:")[1].splitlines()[0]  # not a package version


@pytest.mark.platform
def test_mlflow_on_several_ray_workers_gets_a_run_per_trial_and_worker_failures_reach_the_driver(tmp_path):
    """Four Ray workers start at once on a new MLflow store (two creating one SQLite tracking
    database at once collided, losing runs): one MLflow run per trial. A tracker failing inside
    the workers (TensorBoard into a file) is said on the driver's output, not only in Ray's logs."""
    from mlflow.tracking import MlflowClient

    (tmp_path / "blocked").write_text("a file where the event folder would go")
    spec = tiny("ml", f"sqlite:///{tmp_path}/t.db", seeds=[0, 1],
                search={"grid": [{"method": ["baseline", "rpt", "vat"]}]},
                executor={"kind": "ray", "per_trial": {"cpu": 0.5}, "max_concurrent": 4},
                tracking={"mlflow": True, "tensorboard": str(tmp_path / "blocked")})
    r = run_cli(["run", str(write(tmp_path, spec)), "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/results/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ml").experiment_id])
    keys = set(trials_frame(Store(f"sqlite:///{tmp_path}/t.db"), "ml").key)
    assert len(runs) == 6 and {x.data.tags["vat_study.trial_key"] for x in runs} == keys
    assert {x.info.status for x in runs} == {"FINISHED"}
    assert "warning: tracking.tensorboard did not record 6 of 6 trial(s) in full" in r.stderr, r.stderr[-3000:]


# ------------------------------------------------------------------ 5. inputs that could hang or exhaust the CLI


def _bounded_memory() -> None:
    """A child that would read /dev/zero for ever stops at 4 GB instead of exhausting the machine."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.platform
def test_a_study_file_that_is_dev_zero_or_a_fifo_is_refused_in_one_line_without_reading(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "a character device"), (str(fifo), "a named pipe (FIFO)"),
                       (str(tmp_path), "a folder")):
        t0 = time.time()
        r = subprocess.run(CLI + ["run", path, "--dry-run"], capture_output=True, text=True, timeout=60,
                           cwd=str(tmp_path), preexec_fn=_bounded_memory)
        assert r.returncode == 2 and f"is {kind}, not a file" in r.stderr, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and r.stderr.count("\n  - ") == 1 and time.time() - t0 < 30
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n#" + "x" * 2_000_000 + "\n")
    r = subprocess.run(CLI + ["run", str(big), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is 2,000,012 bytes; at most 1,000,000 are read" in r.stderr, r.stderr


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from vat_study.platform.cli import app

    return CliRunner().invoke(app, args)


def _refused(r, needle: str) -> None:
    assert r.exit_code == 2, (r.output, r.exception)
    assert needle in r.stderr and "Traceback" not in r.output and r.stderr.count("\n  - ") <= 1, r.stderr


def test_integers_past_what_a_trial_can_run_are_refused_naming_the_field(tmp_path):
    spec = tiny("ints", f"sqlite:///{tmp_path}/i.db", seeds=[0], search=None)
    path = write(tmp_path, spec)
    digits = "9" * 120_000  # past Python's own limit for converting text to an int (a ValueError)
    _refused(_cli(["run", str(path), "--dry-run", "--set", f"task.steps={digits}"]),
             "--set task.steps: an integer of 120,000 digits: no setting takes one past 9,223,372,036,854,775,807")
    _refused(_cli(["trial", "--set", f"steps={digits}"]), "--set steps: an integer of 120,000 digits")
    (tmp_path / "digits.yaml").write_text(f"name: d\ntask: {{dataset: digits, steps: {digits}}}\n")
    _refused(_cli(["run", str(tmp_path / "digits.yaml"), "--dry-run"]), "an integer of 120,000 digits (line 2)")
    for key, value, needle in (("task.steps", 10**20, "task.steps: Input should be less than or equal to 1000000000000"),
                               ("task.steps", 10**13, "task.steps: Input should be less than or equal to 1000000000000"),
                               ("seeds", [0, 2**64], "seeds: integers are at most 9,223,372,036,854,775,807"),
                               ("task.hidden", [2**70], "task.hidden: integers are at most 9,223,372,036,854,775,807")):
        for how in ("file", "--set"):
            if how == "file":
                bad = tiny("ints", f"sqlite:///{tmp_path}/i.db", seeds=[0], search=None)
                head, _, rest = key.partition(".")
                (bad[head].__setitem__(rest, value) if rest else bad.__setitem__(head, value))
                r = _cli(["run", str(write(tmp_path, bad, "bad.yaml")), "--dry-run"])
            else:
                r = _cli(["run", str(path), "--dry-run", "--set", f"{key}={value}"])
            _refused(r, needle)
    assert not (tmp_path / "i.db").exists()


def test_the_dry_run_prints_the_budget_even_when_timing_an_update_fails(tmp_path, monkeypatch):
    from vat_study.platform import budget

    def out_of_memory(*args, **kwargs):
        raise MemoryError("cannot allocate 4 TB")

    monkeypatch.setattr(budget, "time_updates", out_of_memory)
    spec = tiny("b", f"sqlite:///{tmp_path}/b.db", seeds=[0, 1], search=None)
    spec["task"]["steps"] = 10**12
    r = _cli(["run", str(write(tmp_path, spec)), "--dry-run"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.stdout.split())  # (rich wraps long lines)
    assert "budget: 2 trials, 2,000,000,000,000 updates in all (1,000,000,000,000 per trial)" in said, said
    assert "time: not estimated (timing one update failed: MemoryError: cannot allocate 4 TB)" in said


# ------------------------------------------------------------------ 6. data files and outputs


def idx_file(path: Path, a, code: int) -> str:
    import struct

    import numpy as np

    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    a = np.asarray(a)
    path.write_bytes(bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(dtype).tobytes())
    return str(path)


def idx_files(tmp_path: Path, image_code: int = 0x08, train_labels=None) -> dict[str, str]:
    import numpy as np

    rng = np.random.default_rng(0)
    images = (lambda n: rng.random((n, 12, 12))) if image_code in (0x0D, 0x0E) else \
        (lambda n: rng.integers(0, 255, (n, 12, 12)))
    labels = np.arange(300) % 10 if train_labels is None else train_labels
    return {"train_images": idx_file(tmp_path / "train-images", images(300), image_code),
            "train_labels": idx_file(tmp_path / "train-labels", labels, 0x08),
            "test_images": idx_file(tmp_path / "test-images", images(60), image_code),
            "test_labels": idx_file(tmp_path / "test-labels", np.arange(60) % 10, 0x08)}


def idx_spec(tmp_path: Path, paths: dict[str, str]) -> Path:
    spec = tiny("idx", f"sqlite:///{tmp_path}/x.db", seeds=[0], search=None)
    spec["task"].update(dataset="idx", idx_paths=paths, validation=50, n_labeled=20)
    return write(tmp_path, spec)


@pytest.mark.parametrize("code", [0x0D, 0x0E])
def test_float_idx_images_big_endian_are_read_as_stored(tmp_path, code):
    import numpy as np

    from vat_study.science.data import load_dataset, read_idx

    paths = idx_files(tmp_path, image_code=code)
    r = _cli(["run", str(idx_spec(tmp_path, paths)), "--dry-run"])
    assert r.exit_code == 0 and "data: idx: 300 training images found" in r.stdout, r.output
    ds = load_dataset("idx", idx_paths=paths)
    stored = read_idx(paths["train_images"])
    assert stored.dtype.byteorder == ">" and np.allclose(ds.x_train[:, 0].numpy(), stored.astype(np.float32))


def test_a_label_past_the_classes_is_named_with_its_file_not_as_an_n_labeled_problem(tmp_path):
    import numpy as np

    labels = np.arange(300) % 10
    labels[7] = 200
    paths = idx_files(tmp_path, train_labels=labels)
    r = _cli(["run", str(idx_spec(tmp_path, paths)), "--dry-run"])
    _refused(r, "holds label 200, but no image has label 10-199: the labels must number the classes 0 to C - 1")
    assert paths["train_labels"] in r.stderr.replace("\n", "") and "n_labeled" not in r.stderr
    paths["train_labels"] = idx_file(tmp_path / "train-labels", np.arange(300) % 10, 0x08)
    labels = np.arange(60) % 10
    labels[3] = 12
    paths["test_labels"] = idx_file(tmp_path / "test-labels", labels, 0x08)
    _refused(_cli(["run", str(idx_spec(tmp_path, paths)), "--dry-run"]),
             "holds label 12, a class the training labels do not have (0-9)")


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB file system (tmpfs) filled to the brim, or skip where this process may not mount one."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with open(mnt / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_export_and_report_write_errors_are_one_line_and_exit_1(tmp_path, full_disk):
    from vat_study.platform.executors import run_local
    from vat_study.platform.spec import parse_spec

    url = f"sqlite:///{tmp_path}/w.db"
    run_local(parse_spec(tiny("w", url, seeds=[0], search=None)), progress=False)
    if Path("/dev/full").exists():
        r = _cli(["export", "w", "--storage", url, "--out", "/dev/full"])
        assert r.exit_code == 1 and "error: cannot write '/dev/full': No space left on device" in r.stderr, r.output
        assert "Traceback" not in r.output and r.stderr.count("error:") == 1
    r = _cli(["export", "w", "--storage", url, "--out", str(full_disk / "t.csv")])
    assert r.exit_code == 1 and "No space left on device" in r.stderr and "Traceback" not in r.output, r.output
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no half-written export left
    r = _cli(["report", "w", "--storage", url, "--out", str(full_disk / "report")])
    assert r.exit_code == 1 and "error: writing the report into" in r.stderr, r.output
    assert "No space left on device" in r.stderr and "Traceback" not in r.output and r.stderr.count("error:") == 1
    r = _cli(["compare", "w", "w", "--storage", url, "--out", str(full_disk / "compare")])
    assert r.exit_code == 1 and "error: writing the comparison into" in r.stderr, r.output
    assert "No space left on device" in r.stderr and "Traceback" not in r.output and r.stderr.count("error:") == 1
