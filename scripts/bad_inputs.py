"""What a newcomer sees for every bad input of the test corpus (tests/test_bad_input.py):
runs each case through `vat-study run` as the tests do and writes a markdown table of the case,
the exit status and the first error line printed.

    python scripts/bad_inputs.py > results/bad_inputs.md
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_bad_input import FILE_CASES, STUDY_CASES, edit, good_spec  # noqa: E402

from vat_study.platform.cli import app  # noqa: E402


def first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:") or ln.startswith("- ")] or lines
    return " / ".join(errors[:2]).replace("|", "\\|")[:300]


def main() -> None:
    runner = CliRunner()
    folder = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    url = f"sqlite:///{folder}/store.db"
    good = folder / "good.yaml"
    good.write_text(yaml.safe_dump(good_spec(url)))
    assert runner.invoke(app, ["run", str(good), "--executor", "local", "--no-progress"]).exit_code == 0
    print("| case | the input | exit | what `vat-study run` prints |")
    print("| --- | --- | --- | --- |")
    for case_id, edits, args, _ in STUDY_CASES:
        spec = good_spec(url)
        for k, v in edits.items():
            edit(spec, k, v)
        path = folder / "bad.yaml"
        path.write_text(yaml.safe_dump(spec))
        r = runner.invoke(app, ["run", str(path), "--no-progress", *args])
        shown = (", ".join(f"`{k}: {v!r}`" for k, v in edits.items()) + " " + " ".join(f"`{a}`" for a in args)).strip()
        print(f"| {case_id} | {shown.replace('|', '/')} | {r.exit_code} | {first_error(r.stderr)} |")
    for case_id, content, _ in FILE_CASES:
        path = folder / "study.yaml"
        path.unlink(missing_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        r = runner.invoke(app, ["run", str(path)])
        shown = "no file" if content is None else repr(content)[:60]
        print(f"| {case_id} | `{shown.replace('|', '/')}` | {r.exit_code} | {first_error(r.stderr)} |")


if __name__ == "__main__":
    main()
