"""The docs agree with the code: the generated references with the schema, README's studies table
with studies/, links with files that exist; common shape mistakes get the right shape in the error."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from vat_study.platform.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parent.parent


def _reference():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "scripts" / "reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_references_match_the_schema():
    """docs/cli.md and docs/study-file.md are what scripts/reference.py generates from the schema
    today (regenerate with `python scripts/reference.py` after changing a model or a command)."""
    for path, text in _reference().render().items():
        committed = (ROOT / path).read_text(encoding="utf-8")
        assert committed == text, f"{path} is out of date with the schema: run python scripts/reference.py"


def test_study_file_reference_names_every_field():
    """Every field of the study file, the task, each method and the probes has its row (so the
    comparison above cannot pass on a generator that drops fields)."""
    from vat_study.science import config, methods, probes
    from vat_study.platform import spec

    text = (ROOT / "docs" / "study-file.md").read_text(encoding="utf-8")
    for name in spec.StudySpec.model_fields:
        assert f"| `{name}` |" in text, name
    for name in config.Task.model_fields:
        assert f"| `task.{name}` |" in text, name
    for entry in methods.REGISTRY.values():
        for name in entry.settings.model_fields:
            assert f"| `method.{name}` |" in text, (entry.name, name)
    for name in probes.probes_model().model_fields:
        assert f"| `probes.{name}` |" in text, name
    assert "models_dir" in text and "description" in text


def test_the_guides_executor_table_agrees_with_the_schema():
    """docs/guide.md explains the executor keys at length: every key it names is a field of the
    schema, every field has its row, and each single key's default is the schema's."""
    import yaml

    from vat_study.platform import spec

    text = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \| ([^|]+) \|", text.split("| `executor:` key |")[1].split("\n\n")[0], re.M)
    assert rows, "the executor table of docs/guide.md was not found"
    fields = spec.Executor.model_fields
    named = set()
    for keys, default in rows:
        keys = re.findall(r"`([a-z_]+)`", keys)
        named |= set(keys)
        for key in keys:
            assert key in fields, f"docs/guide.md names executor.{key}, which the schema does not have"
        if len(keys) == 1:
            shown = None if default.strip() == "none" else yaml.safe_load(default.strip().strip("`"))
            want = fields[keys[0]].default
            want = want.model_dump() if hasattr(want, "model_dump") else want
            assert shown == want, f"docs/guide.md: executor.{keys[0]} defaults to {want!r}, not {shown!r}"
    assert named == set(fields), f"docs/guide.md's executor table lacks {sorted(set(fields) - named)}"


def test_reference_check_mode_detects_a_stale_file(tmp_path, monkeypatch):
    ref = _reference()
    for path, text in ref.render().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    monkeypatch.setattr(ref, "ROOT", tmp_path)
    assert ref.main(["--check"]) == 0
    (tmp_path / "docs" / "study-file.md").write_text("stale\n", encoding="utf-8")
    assert ref.main(["--check"]) == 1


def test_readme_lists_every_shipped_study():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for study in sorted((ROOT / "studies").glob("*.yaml")):
        assert f"`{study.name}`" in readme, f"README's studies table omits studies/{study.name}"


def test_readme_commands_table_names_every_command_of_the_cli():
    import typer.main

    from vat_study.platform.cli import app

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands")[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `vat-study ([a-z-]+)", table, re.M))
    commands = set(typer.main.get_command(app).commands)
    assert listed == commands, f"README's commands table: missing {sorted(commands - listed)}, extra {sorted(listed - commands)}"


def test_readme_is_a_short_manual_with_working_links():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) < 12_000
    assert "## Contents" in readme
    assert readme.index("make demo") < 600 and readme.index("make test") < 600
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if "://" in target:
            continue
        assert not target.startswith("../"), f"README links outside the repository: {target}"
        assert (ROOT / target).exists(), f"README links a missing file: {target}"


@pytest.mark.parametrize("path", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_docs_speak_of_the_project_only(path):
    _speaks_of_the_project_only(path)


def _speaks_of_the_project_only(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    # words about where the project was built, not what it is; assembled so this file holds none of them
    words = ["/" + "work/", r"\bsess" + r"ions?\b", r"\ble" + r"nt\b", r"\.\./sh" + "ared"]
    for bad in words:
        assert not re.search(bad, text), f"{path} mentions {bad!r}"


def _tracked() -> list[str]:
    """The files git tracks (what a clone holds), without ignored local folders (.venv, stores,
    logs, a user's own reports); where git is missing, every file outside dot-folders."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return sorted(n for n in out.decode().split("\0") if n and (ROOT / n).is_file())
    except (OSError, subprocess.CalledProcessError):
        return sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                      and not any(part.startswith(".") and part != ".ci" for part in p.relative_to(ROOT).parts[:-1]))


TEXT = {".py", ".sql", ".toml", ".yaml", ".md", ".txt", ".sh", ".csv", ".cfg", ""}


@pytest.mark.parametrize("path", [n for n in _tracked() if n.split("/")[0] in ("studies", "results", "scripts")
                                  and Path(n).suffix in {".yaml", ".md", ".txt", ".sh", ".py"}])
def test_study_files_scripts_and_reports_speak_of_the_project_only(path):
    _speaks_of_the_project_only(path)


def test_no_source_file_holds_a_path_of_the_machine_it_was_written_on():
    words = ["/" + "work/", r"\.\./sh" + "ared"]  # assembled so this file holds none of them
    names = [n for n in _tracked() if Path(n).suffix in TEXT]
    assert ".ci/run" in names and "tests/test_docs.py" in names
    for name in names:
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for bad in words:
            assert not re.search(bad, text), f"{name} mentions {bad!r}"


def test_gitignore_names_only_existing_exceptions():
    """Each kept path exists, or is the report folder of a study `make reproduce-mnist` writes."""
    reproduced = (ROOT / "scripts" / "reproduce_mnist_cpu.sh").read_text()
    for line in (ROOT / ".gitignore").read_text().splitlines():
        if line.startswith("!"):
            path = line[1:].rstrip("/")
            study = path.removeprefix("results/")
            written = path.startswith("results/") and (ROOT / "studies" / f"{study}.yaml").exists() \
                and f"[{study}]" in reproduced
            assert (ROOT / path).exists() or written, f".gitignore keeps {line[1:]}, which does not exist"


@pytest.mark.parametrize("study, hint", [
    ({"search": {"grid": {"eps": [1, 2]}}}, "grid is a list of blocks, each mapping a key to its values: grid: [{eps: [1, 2]}]"),
    ({"search": {"grid": [{"eps": 1}]}}, "a grid key takes a list of values: grid: [{eps: [1, 2]}]"),
    ({"search": {"eps": [1, 2]}}, "search: {grid: [{eps: [1, 2]}]}"),
    ({"search": [{"eps": [1, 2]}]}, "search: {grid: [{eps: [1, 2]}]}"),
    ({"seeds": 3}, "seeds: [0, 1, 2]"),
    ({"method": "vat"}, "method: {name: vat, eps: 2.0}"),
    ({"search": {"optuna": {"n_trials": 3, "space": {"eps": [1, 2]}}}}, "{type: choice, choices: [1, 2]}"),
])
def test_shape_mistakes_show_the_right_shape(study, hint):
    with pytest.raises(SpecError) as e:
        parse_spec({"name": "x", **study})
    assert len(e.value.problems) == 1
    assert hint in e.value.problems[0], e.value.problems[0]


def test_readme_and_the_guide_show_one_table_of_exit_statuses():
    """One table of exit statuses (issue 31): README and docs/guide.md carry the same one, marked
    by an ``exit-statuses`` comment, and it names every status the CLI exits with."""
    def table(path):
        text = (ROOT / path).read_text(encoding="utf-8")
        start = text.index("<!-- exit-statuses")
        lines = text[start:].splitlines()[1:]
        return [x for x in lines[: next(i for i, x in enumerate(lines) if not x.startswith("|"))]]

    readme, guide = table("README.md"), table("docs/guide.md")
    assert readme == guide and len(readme) >= 6, (readme, guide)
    shown = {c.strip() for row in readme[2:] for c in row.split("|")[1].split(",")}
    assert shown == {"0", "1", "2", "130", "143", "129"}, shown
    assert "PRUNED" in readme[2]
