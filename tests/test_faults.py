"""Faults a user meets, and what they now see: selection on the test set, empty validation sets
and the dry run's budget; hostile study files (nested aliases, deep nesting); names and paths
that would leave results/ or land elsewhere; defective data files; signals; store faults; trial
output and error texts. Each refusal is one line naming the field or file, exit 2, nothing written."""

from __future__ import annotations

import gzip
import os
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from test_executors import tiny
from vat_study.cli import app
from vat_study.spec import SpecError, load_spec, parse_spec

CLI = [sys.executable, "-m", "vat_study.cli"]


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
    from vat_study.budget import time_updates
    from vat_study.data import load_dataset

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
