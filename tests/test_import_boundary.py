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
SCIENCE = {"regularizers", "models", "data", "train", "probes", "objective", "methods", "batched", "passes", "config",
           "vocabulary"}
"""vat_study's science modules (and the plain names they validate against)."""
PLATFORM = ["vat_study/cli.py", "vat_study/spec.py", "vat_study/spec_checks.py", "vat_study/display.py",
            "vat_study/sequential.py", "vat_study/store/*.py", "vat_study/executors/*.py", "analysis/*.py"]
"""The platform's source files (analysis/ installs as vat_study.analysis)."""
PACKAGE_REEXPORTS = {"ConfigError", "TrialConfig", "LanesResult", "SeedsResult", "run_lanes", "run_seeds", "run_trial"}
"""What ``vat_study`` itself re-exports from the science (a platform module takes them from the surface)."""


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "analysis":
        parts = ["vat_study", "analysis", *parts[1:]]
    return ".".join(parts)


def science_imports(source: str, module: str) -> list[str]:
    """Every import in ``source`` (module ``module``, anywhere in it: functions too) that reaches
    a science module of vat_study other than through vat_study.surface."""
    package = module.rsplit(".", 1)[0]
    bad = []

    def check(target: str, line: int, names: tuple[str, ...] = ()) -> None:
        parts = target.split(".")
        if parts[0] != "vat_study":
            return
        if len(parts) > 1 and parts[1] in SCIENCE:
            bad.append(f"{module}:{line}: imports {target}")
        elif len(parts) == 1:  # from vat_study import X
            for n in names:
                if n in SCIENCE or n in PACKAGE_REEXPORTS:
                    bad.append(f"{module}:{line}: imports {n} from vat_study")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            check(target, node.lineno, tuple(a.name for a in node.names))
    return bad


def test_the_checker_finds_every_way_in():
    found = science_imports("from ..objective import run_trial\nfrom .. import methods\nimport vat_study.data\n"
                            "def f():\n    from vat_study import run_trial\n    from ..config import nest\n",
                            "vat_study.executors.execution")
    assert len(found) == 5, found
    assert science_imports("from ..surface import run_trial\nfrom ..spec import StudySpec\nfrom .data import Skip\n",
                           "vat_study.executors.execution") == []
    assert science_imports("from .data import Skip\n", "vat_study.analysis.report") == []  # analysis' own data
    assert science_imports("from .data import load_dataset\n", "vat_study.preflight") != []


def test_the_platform_imports_the_science_only_through_the_surface():
    files = sorted({p for pattern in PLATFORM for p in ROOT.glob(pattern)})
    assert len(files) > 25 and any(p.name == "cli.py" for p in files)
    bad = [b for p in files for b in science_imports(p.read_text(), _module_of(p))]
    assert bad == [], "the platform must import the science through vat_study.surface:\n" + "\n".join(bad)


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


LOADED = ("import json, sys\nfrom vat_study.cli import app\nsys.argv = ['vat-study', *json.loads(sys.argv[1])]\n"
          "try:\n    app()\nexcept SystemExit as e:\n    code = e.code or 0\nelse:\n    code = 0\n"
          "print(json.dumps({'code': code, 'loaded': [m for m in ('torch', 'ray', 'optuna') if m in sys.modules]}))\n")


def _loaded(args: list[str], cwd: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", LOADED, json.dumps(args)], capture_output=True, text=True, timeout=120,
                       cwd=cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.platform
@pytest.mark.platform  # CLI processes
def test_help_version_status_export_and_report_load_neither_torch_nor_ray(tmp_path):
    from helpers import tiny
    from vat_study.executors import run_local
    from vat_study.spec import parse_spec

    r = subprocess.run([sys.executable, "-c", "import sys, vat_study.cli\n"
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
