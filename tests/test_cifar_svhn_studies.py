"""The shipped CIFAR-10 / SVHN studies (Table 4, Table 6 and Fig. 4b, Fig. 7b) on files in the
official formats that the test writes: each dry-runs with the files in place, is refused with one
line naming the missing files without them, and runs end to end at a tiny budget."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from official_files import write_cifar10, write_svhn

ROOT = Path(__file__).resolve().parent.parent
STUDIES = {"table4_cifar10": "cifar10", "table4_svhn": "svhn", "k_ablation_cifar10": "cifar10",
           "grad_variance_cifar10": "cifar10"}
TINY = ["--set", "task.steps=2", "--set", "task.eval_every=2", "--set", "task.n_labeled=20", "--set",
        "task.validation=20", "--set", "task.batch.labeled=8", "--set", "task.batch.unlabeled=16", "--set",
        "seeds=[0]", "--set", "probes.rvadv.size=4", "--set", "task.zca=false", "--no-progress"]

pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root / "cifar10", tar=True, n=1100)  # 5,500 training images: 4,000 labeled + 1,000 validation fit
    write_svhn(root / "svhn", n_train=2200, n_test=40)
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Files in the same formats with 40 images a batch file (200 CIFAR-10 training images, 40
    test): enough for the tiny budget's 20 labeled + 20 validation images, and each of the studies'
    21 trials evaluates 40 test images, not 1,100 (the end-to-end test took 7 min with those)."""
    root = tmp_path_factory.mktemp("small")
    write_cifar10(root / "cifar10", tar=True, n=40)
    write_svhn(root / "svhn", n_train=200, n_test=40)
    return root


def vat(*args: str, data_root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VAT_STUDY_DATA": str(data_root)}
    return subprocess.run([sys.executable, "-m", "vat_study.platform.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_the_study_dry_runs_with_the_official_files_and_names_them_without(study, data, tmp_path):
    path = ROOT / "studies" / f"{study}.yaml"
    ok = vat("run", str(path), "--dry-run", "--storage", f"sqlite:///{tmp_path}/s.db", data_root=data, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    n = 5500 if STUDIES[study] == "cifar10" else 2200
    assert f"data: {STUDIES[study]} (" in ok.stdout and f"{n} training images found" in ok.stdout
    missing = vat("run", str(path), "--dry-run", "--storage", f"sqlite:///{tmp_path}/s.db",
                  data_root=tmp_path / "empty", cwd=tmp_path)
    assert missing.returncode == 2
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, missing.stderr
    wanted = "cifar-10-python.tar.gz" if STUDIES[study] == "cifar10" else "train_32x32.mat and test_32x32.mat"
    assert wanted in missing.stderr and not (tmp_path / "s.db").exists()


def test_a_long_data_path_is_printed_on_one_line_when_piped(data, tmp_path):
    """Piped output (a script, grep, a log) is never broken by the console's 80 columns: the data
    line names a 150-character path and its image count on one line."""
    deep = tmp_path / ("d" * 70) / ("e" * 70)
    shutil.copytree(data / "svhn", deep / "svhn")
    ok = vat("run", str(ROOT / "studies" / "table4_svhn.yaml"), "--dry-run", "--storage",
             f"sqlite:///{tmp_path}/s.db", data_root=deep, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert f"data: svhn ({deep}): 2200 training images found" in ok.stdout.splitlines(), ok.stdout


def test_each_study_runs_end_to_end_at_a_tiny_budget(small, tmp_path):
    for study in sorted(STUDIES):
        # the gradient-variance probe at 2 samples of 8 images (the study's 20 x 128 on Conv-Large: minutes)
        probe = ["--set", "probes.grad_variance.samples=2", "--set", "probes.grad_variance.batch=8"] \
            if study.startswith("grad_variance") else []
        r = vat("run", str(ROOT / "studies" / f"{study}.yaml"), "--executor", "local", "--storage",
                f"sqlite:///{tmp_path}/s.db", *TINY, *probe, data_root=small, cwd=tmp_path)
        assert r.returncode == 0, (study, r.stdout[-2000:], r.stderr[-2000:])
        assert "0 failed" in r.stdout, (study, r.stdout[-2000:])
