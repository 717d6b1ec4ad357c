"""report.html, one self-contained page: every figure inline, nothing fetched from anywhere, and
in a real browser (headless Chromium) the page draws and every figure loads."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vat_study.analysis.report import write_report
from vat_study.platform.spec import PlannedTrial, parse_spec
from vat_study.platform.store import Store
from vat_study.common.yamlio import safe_load

from helpers import claim

ROOT = Path(__file__).resolve().parents[1]


def quickstart_report(tmp_path: Path) -> Path:
    """The quickstart study (studies/quickstart.yaml: baseline, RPT and VAT over eps, 3 seeds) in
    a store filled with made-up numbers at its four evaluations, and its report; returns the folder."""
    raw = safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    raw.update(storage=f"sqlite:///{tmp_path}/q.db", save_models=False)
    spec = parse_spec(raw)
    store = Store(spec.storage)
    sid = store.get_or_create_study(spec.name, spec.model_dump(mode="json"))
    level = {"baseline": 0.07, "rpt": 0.04, "vat": 0.03}
    for params in spec.configurations():
        for seed in spec.seeds:
            t = PlannedTrial.make(spec, params, seed)
            lease = claim(store, sid, t)
            e = level[params["method"]] + 0.004 * abs(params.get("eps", 1.0) - 1.0) + 0.003 * seed
            for step in (100, 200, 300, 400):
                store.report(lease, step, {"val_error": e + 0.02 * (400 - step) / 100, "rvadv": 0.1 * e * step / 100})
            store.finish_trial(lease, {"val_error": e, "test_error": e + 0.002, "rvadv": 0.05})
    out = tmp_path / "quickstart"
    write_report(spec.storage, spec.name, out)
    return out


def test_report_html_is_one_self_contained_page(tmp_path):
    out = quickstart_report(tmp_path)
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (out / "report.md").read_text())
    assert len(sources) == len(shown) >= 3, (len(sources), shown)  # Fig. 3, Fig. 2, the comparisons
    from PIL import Image

    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert not re.search(r"<(script|link|iframe)\b", page) and not re.search(r'(src|href)="https?:', page)
    assert "<table>" in page and "<h2>The answer</h2>" in page and "Paired comparisons" in page


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var d = document.createElement("div");
  d.id = "image-check";
  d.textContent = "images=" + imgs.length + " broken=" + broken;
  document.body.appendChild(d);
});
</script>"""
"""Added to a copy of the page under test (report.html itself has no script): after the page has
loaded, how many <img> it has and how many did not load (naturalWidth 0), written into the DOM."""


@pytest.mark.platform  # starts Chromium; about 2 s
def test_the_quickstart_report_opens_in_headless_chromium_with_every_figure_loaded(tmp_path):
    exe = chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it): "
                    "report.html was not opened in a browser")
    out = quickstart_report(tmp_path)
    page = tmp_path / "checked.html"
    page.write_text((out / "report.html").read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"))
    shot = tmp_path / "shot.png"
    run = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
                          "--virtual-time-budget=10000", f"--screenshot={shot}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r"images=(\d+) broken=(\d+)", run.stdout)
    assert found, f"no image check in the DOM Chromium dumped (exit {run.returncode}): {run.stderr[-2000:]}"
    images, broken = int(found.group(1)), int(found.group(2))
    assert images >= 3 and broken == 0, (images, broken)
    from PIL import Image

    gray = Image.open(shot).convert("L")
    dark = sum(gray.histogram()[:200])  # pixels darker than near-white: text, axes, lines
    assert dark > 0.01 * gray.width * gray.height, f"the screenshot is blank ({dark} dark pixels)"
