"""Security: safe YAML, no eval of config strings, weights-only checkpoints, no password leaks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import tiny

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("vat_study", "analysis", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_no_eval_exec_pickle_or_unsafe_loading_in_the_code():
    problems = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node, owner, name in _calls(tree):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name in ("eval", "exec") and owner in ("", "builtins"):
                problems.append(f"{where}: {name}()")
            if owner in ("pickle", "cloudpickle", "marshal", "dill") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}()")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                if not (isinstance(loader, ast.Name) and loader.id in ("_Loader", "SafeLoader")):
                    problems.append(f"{where}: yaml.{name} without a safe loader")
            if owner == "torch" and name == "load":
                wo = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
    assert problems == []
    assert len(SOURCES) > 20  # the scan saw the code


def test_the_yaml_loader_is_a_safe_loader():
    from vat_study.common.yamlio import _Loader, safe_load

    assert issubclass(_Loader, yaml.SafeLoader)
    with pytest.raises(yaml.YAMLError):
        safe_load("x: !!python/object/apply:os.system ['echo pwned']")
    assert safe_load("lr: 1e-3")["lr"] == pytest.approx(1e-3)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(PWNED),))


PWNED = ""


def test_a_malicious_checkpoint_is_refused_not_executed(tmp_path):
    """A state_dict file with a pickled object that would run code when unpickled."""
    global PWNED
    from vat_study.science.objective import load_trained

    PWNED = str(tmp_path / "pwned")
    bad = tmp_path / "model.pt"
    torch.save({"net.1.weight": _Payload()}, bad)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_trained({"dataset": "digits", "hidden": [8]}, str(bad))
    assert not Path(PWNED).exists()


def test_a_database_password_is_never_printed_or_stored(pg_url, tmp_path):
    """A study on PostgreSQL with a password in its URL (the test server trusts any password):
    neither the output, the store (our tables and Optuna's), the report, the export nor Ray's
    experiment folder holds it."""
    from sqlalchemy import create_engine, text

    secret = "s3cret-Pa55"
    url = pg_url.replace("postgres@", f"postgres:{secret}@")
    eng = create_engine(pg_url)
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()
    spec = tiny("secret", url, seeds=[0], executor={"kind": "ray", "per_trial": {"cpu": 1}},
                search={"optuna": {"sampler": "random", "n_trials": 1, "seed": 0,
                                   "space": {"eps": {"type": "uniform", "low": 0.5, "high": 1.0}}}})
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(spec))
    cli = [sys.executable, "-m", "vat_study.platform.cli"]
    port = url.rsplit(":", 1)[1].split("/")[0]
    unreachable = url.replace(f":{port}/", ":1/")
    outputs = []
    for args, rc in ((["run", str(study)], 0), (["status", "secret", "--storage", url], 0),
                     (["report", "secret", "--storage", url, "--out", str(tmp_path / "rep")], 0),
                     (["export", "secret", "--storage", url, "--out", str(tmp_path / "exp" / "t.csv")], 0),
                     (["status", "--storage", unreachable], 2), (["run", str(study), "--storage", unreachable], 2)):
        r = subprocess.run(cli + args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == rc, r.stderr
    assert all(secret not in o for o in outputs)
    eng = create_engine(pg_url)
    with eng.connect() as conn:
        tables = [t for (t,) in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
        assert "vat_trials" in tables and "trials" in tables
        for t in tables:
            dump = conn.execute(text(f'SELECT CAST(json_agg(x) AS text) FROM "{t}" x')).scalar() or ""
            assert secret not in dump, t
    eng.dispose()
    for f in tmp_path.rglob("*"):
        if f.is_file() and f != study:  # the study file is the user's own
            assert secret.encode() not in f.read_bytes(), f
    leftovers = list(Path("/tmp").glob("vat-study-ray-*/secret"))
    assert not any(secret.encode() in p.read_bytes() for d in leftovers for p in d.rglob("*") if p.is_file())
