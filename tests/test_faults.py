"""Faults a user meets, and what they now see: selection on the test set, empty validation sets
and the dry run's budget; hostile study files (nested aliases, deep nesting); names and paths
that would leave results/ or land elsewhere; defective data files; signals; store faults; trial
output and error texts. Each refusal is one line naming the field or file, exit 2, nothing written."""

from __future__ import annotations

import gzip
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from helpers import tiny
from vat_study.platform.cli import app
from vat_study.platform.spec import SpecError, load_spec, parse_spec
from vat_study.platform.results import trials_frame
from vat_study.platform.store.frames import metrics_frame

CLI = [sys.executable, "-m", "vat_study.platform.cli"]


def spec_for(tmp_path, **extra) -> dict:
    return tiny("faults", f"sqlite:///{tmp_path}/f.db", **{"seeds": [0], "search": None, **extra})


def run_cli(args):
    return CliRunner().invoke(app, args)


def write(tmp_path, spec: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def refused(r, needle: str) -> None:
    assert r.exit_code == 2, (r.output, r.exception)
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.output


# ----------------------------------------------------------------- warnings that protect the science


def test_selecting_on_the_test_set_is_refused_unless_the_study_says_so(tmp_path):
    spec = spec_for(tmp_path, metric={"name": "test_error", "mode": "min"})
    r = run_cli(["run", str(write(tmp_path, spec)), "--dry-run"])
    refused(r, "metric.name: 'test_error' is measured on the test set")
    assert "allow_test_selection: true" in r.stderr
    spec["metric"]["allow_test_selection"] = True
    assert parse_spec(spec).metric.name == "test_error"
    assert not (tmp_path / "f.db").exists()


def test_every_shipped_study_selects_on_validation():
    for path in sorted(Path("studies").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        metric = (spec.get("metric") or {})
        assert not str(metric.get("name", "val_error")).startswith("test_") or metric.get("allow_test_selection"), path


def test_a_validation_metric_without_validation_images_is_refused(tmp_path):
    spec = spec_for(tmp_path)
    spec["task"]["validation"] = 0
    refused(run_cli(["run", str(write(tmp_path, spec)), "--dry-run"]),
            "metric.name: 'val_error' is measured on the validation set, but task.validation is 0")
    spec["search"] = {"grid": [{"validation": [100, 0]}]}
    spec["task"]["validation"] = 100
    with pytest.raises(SpecError, match=r"search point \{\"validation\":0\} \(validation\) is 0"):
        parse_spec(spec)
    spec["metric"] = {"name": "rvadv", "mode": "min"}
    parse_spec(spec)  # another metric: fine


def test_the_dry_run_prints_the_budget_and_a_cheap_time_estimate(tmp_path):
    spec = spec_for(tmp_path, search={"grid": [{"method": ["baseline", "vat"]}]}, seeds=[0, 1])
    spec["task"]["steps"] = 10**12
    t0 = time.perf_counter()
    r = run_cli(["run", str(write(tmp_path, spec)), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "budget: 4 trials, 4,000,000,000,000 updates in all (1,000,000,000,000 per trial)" in r.stdout
    assert "per update on cpu" in r.stdout and "years of training" in r.stdout
    from vat_study.platform.budget import time_updates
    from vat_study.science.data import load_dataset

    ds = load_dataset("digits")
    t0 = time.perf_counter()
    timing = time_updates(parse_spec(spec).trial_config({}, 0), ds)
    assert time.perf_counter() - t0 < 2.0 and timing.seconds_per_update > 0 and timing.updates_timed >= 1
    assert not (tmp_path / "f.db").exists()


# ----------------------------------------------------------------- study files


def laughs(depth: int) -> str:
    """The 'billion laughs' study: each alias level holds nine of the one below (9**depth values)."""
    lines = ["name: lol", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "\n".join(lines + [f"task: {{steps: *a{depth}}}", ""])


@pytest.mark.parametrize("depth", [6, 7])
def test_nested_aliases_are_refused_in_one_line_quickly_and_small(tmp_path, depth):
    path = tmp_path / "lol.yaml"
    path.write_text(laughs(depth))
    assert path.stat().st_size < 2000
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as e:
        load_spec(path)
    seconds, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 0.5 and peak < 5e6, (seconds, peak)
    assert e.value.problems == ["the YAML expands to more than 100,000 values (aliases nested in aliases near "
                                "line 7?); a study file needs far fewer"]
    r = run_cli(["run", str(path)])
    refused(r, "expands to more than 100,000 values")
    assert len(r.stderr) < 500 and r.stderr.count("expands") == 1


@pytest.mark.parametrize("text,needle", [
    ("name: x\ntask: " + "[" * 5000 + "]" * 5000 + "\n", "nests deeper than 64 levels"),
    ("name: x\ndescription: '" + "y" * 1_100_000 + "'\n", "at most 1,000,000 are read"),
    ("name: &a [*a]\n", "a recursive alias"),
])
def test_deep_huge_or_recursive_yaml_is_refused_in_one_line(tmp_path, text, needle):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    r = run_cli(["run", str(path)])
    refused(r, needle)
    assert time.perf_counter() - t0 < 2 and len(r.stderr) < 1500


def test_a_long_error_is_capped(tmp_path):
    spec = spec_for(tmp_path)
    spec["description"] = ["x" * 100] * 5000  # not a string: the error shows the value
    r = run_cli(["run", str(write(tmp_path, spec))])
    refused(r, "description: Input should be a valid string")
    assert len(r.stderr) < 2000 and "characters cut" in r.stderr


# ----------------------------------------------------------------- names and paths


@pytest.mark.parametrize("name,needle", [
    (".", "must start with a letter, digit or '_'"),
    ("..", "must start with a letter, digit or '_'"),
    (".hidden", "must start with a letter, digit or '_'"),
    ("-x", "must start with a letter, digit or '_'"),
    ("../up", "must be 1-100 characters of letters, digits, '_', '.', '-' (no '/', spaces"),
    ("a/b", "must be 1-100 characters of letters, digits, '_', '.', '-' (no '/', spaces"),
])
def test_study_names_that_could_leave_results_are_refused(tmp_path, monkeypatch, name, needle):
    monkeypatch.chdir(tmp_path)
    spec = spec_for(tmp_path)
    spec["name"] = name
    refused(run_cli(["run", str(write(tmp_path, spec))]), f"name: {needle}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


@pytest.mark.parametrize("path,char", [("a?b.db", "'?'"), ("a%41b.db", "'%'"), ("a#b.db", "'#'")])
def test_sqlite_paths_a_url_would_rewrite_are_refused(tmp_path, monkeypatch, path, char):
    monkeypatch.chdir(tmp_path)
    spec = spec_for(tmp_path)
    spec["storage"] = f"sqlite:///{tmp_path}/{path}"
    r = run_cli(["run", str(write(tmp_path, spec))])
    refused(r, f"holds {char}")
    refused(run_cli(["status", "--storage", f"sqlite:///{path}"]), f"holds {char}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    spec = tiny("done", f"sqlite:///{folder}/s.db", seeds=[0], search=None)
    r = run_cli(["run", str(write(folder, spec)), "--executor", "local", "--no-progress"])
    assert r.exit_code == 0, r.output
    return folder, spec["storage"]


def test_out_and_export_paths_are_checked_before_any_work(finished, tmp_path):
    folder, url = finished
    a_file = tmp_path / "plain"
    a_file.write_text("keep")
    cases = [
        (["export", "done", "--out", str(tmp_path)], "is a folder; give a file name"),
        (["export", "done", "--out", str(a_file / "t.csv")], "is a file, so nothing can be created under it"),
        (["report", "done", "--out", str(a_file)], "is a file; give a folder"),
        (["report", "done", "--out", str(a_file / "sub")], "is a file, so nothing can be created under it"),
        (["export", "..", "--storage", url], "its default folder results/.. would not be inside results/"),
        (["report", "..", "--storage", url], "its default folder results/.. would not be inside results/"),
    ]
    for args, needle in cases:
        if "--storage" not in args:
            args = args + ["--storage", url]
        refused(run_cli(args), needle)
    assert a_file.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        refused(run_cli(["export", "done", "--out", str(locked / "t.csv"), "--storage", url]), "permission denied")


# ----------------------------------------------------------------- data files


def idx_bytes(a: np.ndarray) -> bytes:
    return b"\0\0\x08" + bytes([a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def idx_set(folder: Path, side: int = 16, n_train: int = 300, n_test: int = 60, gz: bool = True) -> dict[str, str]:
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 255, (n_train, side, side)), "train_labels": np.arange(n_train) % 10,
              "test_images": rng.integers(0, 255, (n_test, side, side)), "test_labels": np.arange(n_test) % 10}
    paths = {}
    for k, a in arrays.items():
        p = folder / (k + (".gz" if gz else ""))
        raw = idx_bytes(a)
        p.write_bytes(gzip.compress(raw) if gz else raw)
        paths[k] = str(p)
    return paths


def idx_study(tmp_path, paths, model="mlp") -> Path:
    spec = spec_for(tmp_path)
    spec["task"].update(dataset="idx", idx_paths=paths, model=model, validation=50, n_labeled=20)
    spec["task"].pop("hidden", None) if model != "mlp" else None
    return write(tmp_path, spec)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _short_header(p: Path) -> None:
    p.write_bytes(gzip.compress(b"\0\0\x08\x03\0\0"))


def _garbage(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes(raw[:12] + b"\xff" * 40 + raw[52:])


def _size_mismatch(p: Path) -> None:
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-7]))


def _negative_labels(p: Path) -> None:
    p.write_bytes(gzip.compress(b"\0\0\x09\x01" + struct.pack(">I", 60) + np.full(60, -1, np.int8).tobytes()))


@pytest.mark.parametrize("which,damage,needle", [
    ("train_images", _truncate, "the gzip file is truncated"),
    ("train_images", _short_header, "the IDX header is cut short"),
    ("test_images", _garbage, "cannot be read"),
    ("train_labels", _size_mismatch, "truncated?"),
    ("test_labels", _negative_labels, "labels must be integers >= 0"),
])
def test_defective_idx_files_are_refused_in_the_preflight(tmp_path, which, damage, needle):
    paths = idx_set(tmp_path)
    damage(Path(paths[which]))
    r = run_cli(["run", str(idx_study(tmp_path, paths)), "--dry-run"])
    refused(r, needle)
    assert paths[which] in r.stderr.replace("\n", "")
    assert r.stderr.count("\n  - ") == 1 and not (tmp_path / "f.db").exists()


def test_empty_splits_and_mismatched_shapes_are_refused(tmp_path):
    paths = idx_set(tmp_path, n_test=0)
    refused(run_cli(["run", str(idx_study(tmp_path, paths)), "--dry-run"]), "holds no images")
    paths = idx_set(tmp_path)
    Path(paths["test_images"]).write_bytes(gzip.compress(idx_bytes(np.zeros((60, 14, 14)))))
    refused(run_cli(["run", str(idx_study(tmp_path, paths)), "--dry-run"]), "test images are [14, 14]")


def test_an_image_shape_the_model_cannot_take_is_refused_in_the_preflight(tmp_path):
    paths = idx_set(tmp_path, side=10)
    r = run_cli(["run", str(idx_study(tmp_path, paths, model="conv_small_svhn")), "--dry-run"])
    refused(r, "task.model: 'conv_small_svhn' cannot take the 'idx' inputs of shape [1, 10, 10]")
    paths = idx_set(tmp_path, side=14)  # big enough for the conv models: passes
    r = run_cli(["run", str(idx_study(tmp_path, paths, model="conv_small_svhn")), "--dry-run"])
    assert r.exit_code == 0, r.output


# ----------------------------------------------------------------- signals


def _wait_for(proc, url: str, name: str, ready, timeout: float = 240) -> bool:
    from vat_study.platform.store import Store

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:
            df = trials_frame(Store(url), name)
        except Exception:  # noqa: BLE001  the store may not exist yet
            continue
        if not df.empty and ready(df):
            return True
    return False


@pytest.mark.platform
@pytest.mark.parametrize("executor,sig,code", [("local", signal.SIGTERM, 143), ("local", signal.SIGHUP, 129),
                                               ("ray", signal.SIGTERM, 143)])
def test_sigterm_and_sighup_stop_a_run_like_ctrl_c(tmp_path, executor, sig, code):
    """The trial running when the signal comes is FAILED (interrupted), one line says so, the exit
    code is 128 + the signal, no traceback; a plain rerun finishes the study."""
    from vat_study.platform.store import Store

    url = f"sqlite:///{tmp_path}/s.db"
    spec = tiny("sig", url, seeds=[0], search={"grid": [{"method": ["baseline", "vat"]}]},
                executor={"kind": executor, "per_trial": {"cpu": 1}})
    path = write(tmp_path, spec)
    env = {**os.environ, "VAT_STUDY_FAILPOINTS": "trial.report@1=sleep:120"}
    proc = subprocess.Popen(CLI + ["run", str(path), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=str(path.parent), env=env)
    try:
        assert _wait_for(proc, url, "sig", lambda df: (df.status == "RUNNING").any())
        time.sleep(1.0)  # inside the trial's first report (the failpoint sleeps there)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err[-3000:]
    name = signal.Signals(sig).name
    assert f"stopped by {name}: every finished trial is in" in err and "Traceback" not in err, err[-3000:]
    df = trials_frame(Store(url), "sig")
    assert "RUNNING" not in set(df.status), df[["key", "status"]]
    stopped = df[df.status == "FAILED"]
    assert len(stopped) >= 1 and set(stopped.failure_kind) == {"interrupted"}
    assert all(e.startswith(f"interrupted: the run got {name}") for e in stopped.error), list(stopped.error)
    rerun = subprocess.run(CLI + ["run", str(path), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert set(trials_frame(Store(url), "sig").status) == {"COMPLETE"}


# ----------------------------------------------------------------- store faults


def two_trials(tmp_path, url: str, **extra) -> dict:
    return tiny("st", url, seeds=[0], search={"grid": [{"method": ["baseline", "vat"]}]}, **extra)


@pytest.mark.platform
def test_a_lost_connection_is_retried_and_no_trial_is_trained_twice(tmp_path, monkeypatch, caplog):
    from vat_study.platform.executors import run_local
    from vat_study.platform.store import Store

    url = f"sqlite:///{tmp_path}/r.db"
    monkeypatch.setenv("VAT_STUDY_FAILPOINTS", "store.commit@6=disconnect")
    monkeypatch.chdir(tmp_path)  # the trials' logs (results/<study>/logs) stay out of the repository
    summary = run_local(parse_spec(two_trials(tmp_path, url)), progress=False)
    monkeypatch.delenv("VAT_STUDY_FAILPOINTS")
    assert (summary.ran, summary.failed) == (2, 0)
    df = trials_frame(Store(url), "st")
    assert set(df.status) == {"COMPLETE"} and set(df.attempts) == {1}
    assert any("server closed the connection unexpectedly; retrying" in r.getMessage() for r in caplog.records)


def _wait_complete(proc, url, name, n, timeout=300) -> bool:
    return _wait_for(proc, url, name, lambda df: (df.status == "COMPLETE").sum() >= n, timeout)


@pytest.mark.platform
def test_postgresql_down_for_5_s_mid_study_is_survived(tmp_path):
    """The server stopped for 5 s while trials run: the driver retries, exits 0, every trial once."""
    from pg import running_postgres

    from vat_study.platform.store import Store

    with running_postgres() as server:
        spec = tiny("pgdown", server.url, seeds=[0, 1], search={"grid": [{"method": ["baseline", "vat"]}]})
        spec["task"].update(steps=60, eval_every=10)
        path = write(tmp_path, spec)
        proc = subprocess.Popen(CLI + ["run", str(path), "--executor", "local", "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=str(path.parent))
        try:
            assert _wait_complete(proc, server.url, "pgdown", 1)
            server.stop()
            time.sleep(5)
            server.start()
            _, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err
        df = trials_frame(Store(server.url), "pgdown")
        assert len(df) == 4 and set(df.status) == {"COMPLETE"} and set(df.attempts) == {1}, df[["status", "attempts"]]


def test_error_texts_are_sanitized_and_capped_before_the_store(storage_url):
    from vat_study.platform.store import Store
    from vat_study.platform.store.faults import MAX_ERROR_CHARS

    store = Store(storage_url)
    sid = store.get_or_create_study("s", {"name": "s"})
    lease = store.claims.claim_trial(sid, key="k", config_key="c", params={}, seed=0, config={"seed": 0},
                                     driver="d", seen=0)
    store.fail_trial(lease, "ValueError: a\x00b \udc80 lone" + "x" * 100_000)
    error = trials_frame(store, "s").error.iloc[0]
    assert error.startswith("ValueError: a\\x00b \\udc80 lone") and len(error) <= MAX_ERROR_CHARS + 100
    assert "characters cut" in error


def test_a_locked_store_is_said_in_one_line_naming_the_file(tmp_path):
    import sqlite3

    from sqlalchemy import create_engine, text

    from vat_study.platform.store.faults import describe

    db = tmp_path / "locked.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.1})
        with pytest.raises(Exception) as e, engine.begin() as c:
            c.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = describe(e.value, f"sqlite:///{db}")
    assert line == (f"the SQLite file {str(db)!r} is locked by another process (waited 60 s for it): let that "
                    "process finish, or give another storage")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB file system (tmpfs), or skip where this process may not mount one."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


@pytest.mark.platform
def test_a_full_disk_under_the_store_is_one_line_and_a_rerun_finishes(tiny_disk, tmp_path):
    from vat_study.platform.store import Store

    url = f"sqlite:///{tiny_disk}/s.db"
    path = write(tmp_path, two_trials(tmp_path, url))
    Store(url).study_names()  # the store exists, its schema written
    filler = fill(tiny_disk)
    r = run_cli(["run", str(path), "--executor", "local", "--no-progress"])
    assert r.exit_code == 1, r.output
    assert f"the disk holding the SQLite file '{tiny_disk}/s.db' is full" in r.stderr, r.stderr
    assert "Traceback" not in r.output and r.stderr.count("error:") == 1
    filler.unlink()
    r = run_cli(["run", str(path), "--executor", "local", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert set(trials_frame(Store(url), "st").status) == {"COMPLETE"}


@pytest.mark.platform
def test_a_full_disk_under_the_models_leaves_no_partial_file(tiny_disk, tmp_path):
    from vat_study.platform.store import Store

    url = f"sqlite:///{tmp_path}/m.db"
    spec = two_trials(tmp_path, url, save_models=True, models_dir=str(tiny_disk / "models"))
    spec["task"]["hidden"] = [256]  # weights of about 300 KB
    path = write(tmp_path, spec)
    (tiny_disk / "models").mkdir()
    filler = fill(tiny_disk)
    r = run_cli(["run", str(path), "--executor", "local", "--no-progress"])
    assert r.exit_code == 1, r.output
    assert "the disk is full writing" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list((tiny_disk / "models").iterdir()) == []  # no partial .pt, no temporary file
    df = trials_frame(Store(url), "st")
    assert set(df.status) == {"FAILED"} and all("store or disk fault: the disk is full" in e for e in df.error)
    filler.unlink()
    assert run_cli(["run", str(path), "--executor", "local", "--no-progress"]).exit_code == 0
    assert len(list((tiny_disk / "models").glob("*.pt"))) == 2


def copy_store(url: str, to: Path) -> None:
    """A consistent copy of a SQLite store in one file (its WAL folded in)."""
    import sqlite3

    src = sqlite3.connect(url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(to)
    src.backup(dst)
    dst.execute("PRAGMA journal_mode=WAL")
    dst.close()
    src.close()
    for extra in ("-wal", "-shm"):
        Path(str(to) + extra).unlink(missing_ok=True)


@pytest.mark.platform
def test_a_damaged_store_is_refused_by_every_command(finished, tmp_path):
    folder, url = finished
    bad = tmp_path / "bad.db"
    copy_store(url, bad)
    pages = bad.stat().st_size // 4096
    assert pages >= 4
    with open(bad, "r+b") as f:  # a page in the middle overwritten
        f.seek(pages // 2 * 4096)
        f.write(os.urandom(4096))
    spec = tiny("done", f"sqlite:///{bad}", seeds=[0], search=None)
    before = bad.read_bytes()
    refused(run_cli(["run", str(write(tmp_path, spec)), "--executor", "local"]),
            f"the SQLite file {str(bad)!r} is damaged (quick_check: ")
    for cmd in (["status"], ["export", "done"], ["report", "done", "--out", str(tmp_path / "r")]):
        refused(run_cli(cmd + ["--storage", f"sqlite:///{bad}"]), "is damaged (quick_check")
    assert bad.read_bytes() == before


@pytest.mark.platform
def test_a_read_only_store_is_read_read_only_and_refused_by_run(finished, tmp_path):
    folder, url = finished
    ro = tmp_path / "ro" / "s.db"
    ro.parent.mkdir()
    copy_store(url, ro)
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        ro.chmod(0o444)
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a file read-only for this process")
    try:
        ro_url = f"sqlite:///{ro}"
        r = run_cli(["status", "done", "--storage", ro_url])
        assert r.exit_code == 0 and "1 COMPLETE" in r.stdout, r.output
        r = run_cli(["export", "done", "--storage", ro_url, "--out", str(tmp_path / "e" / "t.csv")])
        assert r.exit_code == 0, r.output
        r = run_cli(["report", "done", "--storage", ro_url, "--out", str(tmp_path / "rep")])
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in ro.parent.iterdir()) == ["s.db"]  # no -wal, no -shm
        spec = tiny("done", ro_url, seeds=[0], search=None)
        refused(run_cli(["run", str(write(tmp_path, spec)), "--executor", "local"]),
                f"the SQLite file of {str(ro)!r} is read-only; a run writes its trials there")
    finally:
        subprocess.run(["chattr", "-i", str(ro)], capture_output=True)


@pytest.mark.platform
def test_a_trial_printing_100_mb_goes_to_a_capped_log_not_the_terminal(tmp_path):
    from vat_study.platform.trial_output import MAX_LOG_BYTES

    spec = tiny("loud", f"sqlite:///{tmp_path}/l.db", seeds=[0], search=None)
    path = write(tmp_path, spec)
    env = {**os.environ, "VAT_STUDY_FAILPOINTS": "trial.report@1=print:100"}
    r = subprocess.run(CLI + ["run", str(path), "--executor", "local", "--no-progress"], capture_output=True,
                       text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(r.stdout) + len(r.stderr) < 100_000
    logs = list((tmp_path / "results" / "loud" / "logs").glob("*.log"))
    assert len(logs) == 1
    size = logs[0].stat().st_size
    assert MAX_LOG_BYTES <= size < MAX_LOG_BYTES + 1000
    assert logs[0].read_text()[-200:].strip().endswith(f"more bytes of output dropped; the log keeps the first "
                                                       f"{MAX_LOG_BYTES:,}]")


# ----------------------------------------------------------------- mid-trial checkpoints

CK_TASK = {"dataset": "digits", "hidden": [32], "steps": 40, "eval_every": 5, "batch": {"labeled": 16, "unlabeled": 32}}
NOT_TIMES = {"train_seconds", "wall_seconds"}


def _no_times(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in NOT_TIMES}


@pytest.mark.parametrize("method", [{"name": "vat"}, {"name": "mean_teacher", "alpha_rampup": 30}])
def test_a_trial_stopped_mid_way_resumes_from_its_checkpoint_with_the_same_metrics(tmp_path, method):
    """The model, Adam, the draws and the method's state (the Mean Teacher's EMA network) come back."""
    import torch

    from vat_study.science.objective import run_trial
    from vat_study.science.checkpoint import checkpoints

    torch.set_num_threads(1)
    cfg = {"task": CK_TASK, "method": method, "probes": {"rvadv": {"size": 50}}, "seed": 3}
    ref_reports: list = []
    ref = run_trial(cfg, lambda s, m: ref_reports.append((s, _no_times(m))))

    class Killed(Exception):
        pass

    def killed_at_25(step, _m):
        if step == 25:
            raise Killed

    path = tmp_path / "ck.pt"
    with checkpoints(str(path), 10), pytest.raises(Killed):
        run_trial(cfg, killed_at_25)
    assert torch.load(path, weights_only=True)["step"] == 20
    reports: list = []
    with checkpoints(str(path), 10):
        resumed = run_trial(cfg, lambda s, m: reports.append((s, _no_times(m))))
    assert _no_times(resumed) == _no_times(ref)
    assert reports == ref_reports  # the steps before the checkpoint reported again, the same values


def test_checkpoint_every_is_validated_and_auto_means_10000_updates():
    from vat_study.platform.executors.execution import checkpoint_interval

    base = {"name": "c", "task": dict(CK_TASK), "storage": "sqlite:///c.db", "executor": {"kind": "local"}}
    with pytest.raises(SpecError, match="executor.checkpoint_every"):
        parse_spec({**base, "executor": {"kind": "local", "checkpoint_every": 0}})
    spec = parse_spec(base)
    assert checkpoint_interval(spec, spec.expand()) is None  # 40 updates: auto is off
    long = parse_spec({**base, "task": {**CK_TASK, "steps": 10_000}})
    assert checkpoint_interval(long, long.expand()) == 1000


@pytest.mark.platform
def test_a_driver_killed_mid_trial_resumes_it_and_deletes_the_checkpoint(tmp_path):
    """Killed (SIGKILL, via a failpoint) at update 25 of 40 with a checkpoint every 10: the rerun
    goes on from update 20 and every metric, final and per step, equals an uninterrupted run's."""
    from vat_study.platform.store import Store

    def study(folder: Path) -> Path:
        folder.mkdir()
        spec = tiny("ck", f"sqlite:///{folder}/s.db", seeds=[0], search=None,
                    executor={"kind": "local", "per_trial": {"cpu": 1}, "checkpoint_every": 10})
        spec["task"] = dict(CK_TASK)
        return write(folder, spec)

    ref, run = study(tmp_path / "ref"), study(tmp_path / "run")
    assert subprocess.run(CLI + ["run", str(ref), "--no-progress"], cwd=ref.parent, capture_output=True,
                          timeout=600).returncode == 0
    env = {**os.environ, "VAT_STUDY_FAILPOINTS": "trial.report@5=kill"}
    killed = subprocess.run(CLI + ["run", str(run), "--no-progress"], cwd=run.parent, capture_output=True, env=env,
                            timeout=600)
    assert killed.returncode == -signal.SIGKILL
    ckdir = run.parent / "results" / "ck" / "checkpoints"
    assert len(list(ckdir.glob("*.pt"))) == 1
    rerun = subprocess.run(CLI + ["run", str(run), "--no-progress"], cwd=run.parent, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert list(ckdir.glob("*")) == []
    a, b = Store(f"sqlite:///{ref.parent}/s.db"), Store(f"sqlite:///{run.parent}/s.db")
    ta, tb = trials_frame(a, "ck"), trials_frame(b, "ck")
    cols = ["val_error", "test_error", "rvadv", "loss"]
    assert list(tb.status) == ["COMPLETE"] and tb[cols].equals(ta[cols]), (ta[cols], tb[cols])
    ma, mb = (metrics_frame(s, "ck").query("name != 'train_seconds'").sort_values(["step", "name"])
              [["step", "name", "value"]].reset_index(drop=True) for s in (a, b))
    assert ma.equals(mb)
