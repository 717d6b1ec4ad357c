"""A study file's paper: block: the "Against the paper" verdicts are computed from the trials, and
hand-written notes beside a report (PAPER.md) are included and never overwritten."""

from __future__ import annotations

import pytest

from helpers import SEEDS, fill
from vat_study.analysis import paper
from vat_study.analysis.data import load
from vat_study.analysis.report import write_report
from vat_study.platform.spec import SpecError, parse_spec

BLOCK = {"source": "Table 1", "steps": 60000,
         "values": [{"method": "vat", "where": {"power_iterations": 1}, "value": 5.15, "sd": 0.05},
                    {"method": "vat", "where": {"power_iterations": 0}, "value": 0.84, "label": "RPT"}],
         "orderings": [{"lower": "vat", "where_lower": {"power_iterations": 1},
                        "higher": "vat", "where_higher": {"power_iterations": 0}},
                       {"lower": "vat", "where_lower": {"power_iterations": 2},
                        "higher": "vat", "where_higher": {"power_iterations": 1}, "tie": True}]}


def _values(p, s):
    k = p["power_iterations"]
    e = {0: 0.08, 1: 0.05, 2: 0.05}[k] + 0.001 * s + (0.0005 * s * (k == 2)) + (0.0004 * (s % 2) * (k == 0))
    return {"val_error": e, "test_error": e}, {st: {"val_error": e, "rvadv": 0.1 + k + 0.01 * s} for st in (10, 20)}


def _store(tmp_path, block=BLOCK):
    url = f"sqlite:///{tmp_path}/p.db"
    fill(url, "kp", [{"power_iterations": k} for k in (0, 1, 2)], _values,
         spec_extra={"method": {"name": "vat", "eps": 2.0}, **({"paper": block} if block else {})})
    return url


def test_verdicts_are_computed_from_the_trials(tmp_path):
    data = load(_store(tmp_path), "kp")
    table, lines = paper.compute(data, data.spec["paper"])
    k1 = next(x for x in lines if x.startswith("- vat (power_iterations=1)"))
    # ours: 5.00, 5.10, 5.20, 5.30 % -> mean 5.15, inside its CI: agrees
    assert "ours 5.15 %" in k1 and "1 configuration x 4 seeds" in k1 and k1.endswith("agrees (the paper's value is inside our 95 % CI).")
    rpt = next(x for x in lines if x.startswith("- RPT"))
    assert "does not agree: ours is higher" in rpt
    order = next(x for x in lines if "< vat (power_iterations=0)" in x)
    assert "-3.02 points" in order and "reproduced" in order
    tie = next(x for x in lines if " = vat (power_iterations=1)" in x)
    assert "+0.08 points [-0.03, +0.18]" in tie and tie.endswith("agrees: the CI includes 0.")
    assert set(table["seeds"]) == {len(SEEDS)} and len(table) == 2


def test_the_block_comes_from_the_study_file_when_the_store_has_none(tmp_path):
    url = _store(tmp_path, block=None)
    data = load(url, "kp")
    assert paper.paper_block(data, tmp_path / "studies") is None
    (tmp_path / "studies").mkdir()
    import yaml

    (tmp_path / "studies" / "kp.yaml").write_text(yaml.safe_dump({"name": "kp", "paper": BLOCK}))
    assert paper.paper_block(data, tmp_path / "studies")["source"] == "Table 1"


def test_report_includes_notes_and_never_writes_them(tmp_path):
    url = _store(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    notes = "\n## Against the paper (written after the run)\n\n- a sentence only a person wrote.\n"
    (out / "PAPER.md").write_text(notes)
    written = []
    for _ in range(2):
        path, _ = write_report(url, "kp", out)
        text = path.read_text()
        assert "## Against the paper (written after the run)" in text and "a sentence only a person wrote." in text
        assert "## Against the paper\n" in text and "reproduced: the CI excludes 0" in text
        written.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert (out / "PAPER.md").read_text() == notes
    assert written[0] == written[1]  # a report rewritten from the same store is byte for byte the same
    assert not any(name.endswith(".pdf") for name in written[0])  # PNG only, unless asked
    write_report(url, "kp", out, pdf=True)
    pdfs = {p.name: p.read_bytes() for p in out.glob("*.pdf")}
    write_report(url, "kp", out, pdf=True)
    assert pdfs and pdfs == {p.name: p.read_bytes() for p in out.glob("*.pdf")}  # PDFs too
    assert (out / "against_paper.csv").exists()


@pytest.mark.parametrize("block, hint", [
    ({"source": "x"}, "give values or orderings"),
    ({"source": "x", "values": {"method": "vat", "value": 1}}, "values: [{method: vat, value: 0.64, sd: 0.05}]"),
    ({"source": "x", "values": [{"method": "vat", "value": "low"}]}, "paper.values.0.value"),
])
def test_bad_paper_blocks_are_refused_naming_the_field(block, hint):
    with pytest.raises(SpecError) as e:
        parse_spec({"name": "x", "paper": block})
    assert hint in str(e.value)
