"""A tracker: each trial's per-step metrics as JSON lines in ``DIR/<study>/<trial key>.jsonl``, its
final metrics and status as the last line (``tracking: {jsonl: DIR}``)."""

from __future__ import annotations

import json
from pathlib import Path

from vat_study.platform.tracking import TrackerEntry, register


class JsonLines:
    def __init__(self, root: str, study: str, trial, config, provenance) -> None:
        self.path = Path(root) / study / f"{trial.key}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"config": config, "seed": trial.seed}) + "\n")

    def _write(self, record) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def step(self, step: int, metrics) -> None:
        self._write({"step": step, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}})

    def finish(self, final, status: str) -> None:
        self._write({"final": dict(final or {}), "status": status})


ENTRY = register(TrackerEntry("jsonl", "a folder: JSON lines in DIR/<study>/<trial>.jsonl", str, JsonLines))
