"""The platform reaches the science through ``vat_study.surface`` only, and the commands that
only read the store (or print help) load neither torch nor Ray."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_REEXPORTS = {"ConfigError", "TrialConfig", "LanesResult", "SeedsResult", "run_lanes", "run_seeds", "run_trial"}
"""What ``vat_study`` itself re-exports from the science (a platform module takes them from the surface)."""
FRAMEWORKS = ("ray", "optuna", "sqlalchemy", "alembic")
"""What the science never imports."""


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "analysis":
        parts = ["vat_study", "analysis", *parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _targets(source: str, module: str, is_package: bool = False):
    """(imported module, line, names) for every import in ``source`` (functions too), relative
    imports resolved against ``module``."""
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno, tuple(a.name for a in node.names)


def science_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import in a platform module that reaches vat_study.science other than through
    vat_study.surface (``from vat_study import run_trial`` included)."""
    bad = []
    for target, line, names in _targets(source, module, is_package):
        if target == "vat_study.science" or target.startswith("vat_study.science."):
            bad.append(f"{module}:{line}: imports {target}")
        elif target == "vat_study":
            bad += [f"{module}:{line}: imports {n} from vat_study" for n in names
                    if n == "science" or n in PACKAGE_REEXPORTS]
    return bad


def platform_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import in a science (or common) module of the platform, the analyses, the surface or
    a scheduling / storage framework."""
    bad = []
    for target, line, names in _targets(source, module, is_package):
        head = target.split(".")
        if head[0] in FRAMEWORKS or target.startswith(("vat_study.platform", "vat_study.analysis", "vat_study.surface")) \
                or (target == "vat_study" and any(n in ("platform", "analysis", "surface") for n in names)):
            bad.append(f"{module}:{line}: imports {target}")
    return bad


def _files(*patterns: str) -> list[Path]:
    return sorted({p for pattern in patterns for p in ROOT.glob(pattern)})


def test_the_checker_finds_every_way_in():
    found = science_imports("from ...science.objective import run_trial\nfrom ... import science\n"
                            "import vat_study.science.data\n"
                            "def f():\n    from vat_study import run_trial\n    from ...science.config import nest\n",
                            "vat_study.platform.executors.execution")
    assert len(found) == 5, found
    assert science_imports("from ...surface import run_trial\nfrom ..spec import StudySpec\nfrom .data import Skip\n",
                           "vat_study.platform.executors.execution") == []
    assert science_imports("from .data import Skip\n", "vat_study.analysis.report") == []  # analysis' own data
    assert science_imports("from ..science.data import load_dataset\n", "vat_study.platform.preflight") != []
    assert len(platform_imports("import ray\nfrom optuna import x\nfrom ..platform.store import Store\n"
                                "from .. import surface\nfrom .methods import REGISTRY\n", "vat_study.science.train")) == 4


def test_the_platform_imports_the_science_only_through_the_surface():
    files = _files("vat_study/platform/**/*.py", "analysis/*.py")
    assert len(files) > 40 and any(p.parts[-2:] == ("cli", "run.py") for p in files)
    bad = [b for p in files for b in science_imports(p.read_text(), _module_of(p), p.name == "__init__.py")]
    assert bad == [], "the platform must import the science through vat_study.surface:\n" + "\n".join(bad)


def test_the_science_and_the_common_modules_import_nothing_of_the_platform():
    files = _files("vat_study/science/**/*.py", "vat_study/common/**/*.py")
    assert len(files) > 12 and any(p.name == "train.py" for p in files)
    bad = [b for p in files for b in platform_imports(p.read_text(), _module_of(p), p.name == "__init__.py")]
    assert bad == [], "the science imports nothing of the platform, Ray, Optuna or SQLAlchemy:\n" + "\n".join(bad)


def test_every_module_is_science_platform_common_or_the_surface():
    loose = [p.name for p in (ROOT / "vat_study").glob("*.py") if p.name not in ("__init__.py", "__main__.py", "surface.py")]
    assert loose == [], f"modules outside science/, platform/ and common/: {loose}"


def test_the_surface_loads_no_torch_until_a_trial_runs():
    code = ("import sys, vat_study, vat_study.surface as s\n"
            "assert 'torch' not in sys.modules\n"
            "assert s.resolve_config({'method': {'name': 'baseline'}})['method'] == {'name': 'baseline'}\n"
            "assert s.methods.REGISTRY['vat'].uses_direction and 'torch' not in sys.modules\n"
            "from vat_study import TrialConfig, ConfigError\n"
            "assert 'torch' not in sys.modules\n"
            "s.run_trial\n"
            "assert 'torch' in sys.modules\n"
            "from vat_study import run_trial\n"
            "assert run_trial is s.run_trial\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


LOADED = ("import json, sys\nfrom vat_study.platform.cli import app\nsys.argv = ['vat-study', *json.loads(sys.argv[1])]\n"
          "try:\n    app()\nexcept SystemExit as e:\n    code = e.code or 0\nelse:\n    code = 0\n"
          "print(json.dumps({'code': code, 'loaded': [m for m in ('torch', 'ray', 'optuna') if m in sys.modules]}))\n")


def _loaded(args: list[str], cwd: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", LOADED, json.dumps(args)], capture_output=True, text=True, timeout=120,
                       cwd=cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.platform  # CLI processes
def test_help_version_status_export_and_report_load_neither_torch_nor_ray(tmp_path):
    from helpers import tiny
    from vat_study.platform.executors import run_local
    from vat_study.platform.spec import parse_spec

    r = subprocess.run([sys.executable, "-c", "import sys, vat_study.platform.cli\n"
                        "print(sorted(m for m in ('torch', 'ray', 'optuna', 'sqlalchemy') if m in sys.modules))"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
    url = f"sqlite:///{tmp_path}/s.db"
    spec = tiny("light", url, seeds=[0])
    spec["task"]["steps"] = 4
    (tmp_path / "light.yaml").write_text(yaml.safe_dump(spec))
    assert run_local(parse_spec(spec), progress=False).ran == 3
    for args in (["--help"], ["-h"], ["--version"], ["status", "--storage", url], ["status", "light", "--storage", url],
                 ["export", "light", "--storage", url, "--out", str(tmp_path / "t.csv")],
                 ["report", "light", "--storage", url, "--out", str(tmp_path / "report")]):
        got = _loaded(args, tmp_path)
        # (status of one study also reads its Optuna records, to flag where they disagree with the store)
        assert got == {"code": 0, "loaded": ["optuna"] if args[:2] == ["status", "light"] else []}, (args, got)
    assert (tmp_path / "t.csv").exists() and (tmp_path / "report" / "report.md").exists()
    assert _loaded(["run", "light.yaml", "--dry-run"], tmp_path)["code"] == 0  # (loads torch: it checks the data)
