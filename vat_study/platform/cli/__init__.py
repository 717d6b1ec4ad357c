"""``vat-study``: the command line.

    vat-study run STUDY.yaml [--executor ray|local] [--storage URL] [--set k=v]... [--dry-run]
    vat-study status [STUDY] [--storage URL]
    vat-study export STUDY --format csv|parquet [--out FILE] [--storage URL]
    vat-study report STUDY [--storage URL] [--out DIR] [--pdf]
    vat-study compare STUDY_A STUDY_B [--storage URL] [--storage-b URL] [--out DIR] [--pdf]
    vat-study delete STUDY [--yes] / rename OLD NEW [--storage URL]
    vat-study trial [--config FILE.yaml] [--set key=value]...   one run_trial, metrics printed
    vat-study defaults                                          the resolved default trial config

Each command parses its arguments, calls what does the work (a run: ``vat_study.platform.study``)
and prints what it returns: ``app`` (the typer app and what the commands share), ``trial``,
``run``, ``stored`` (status, export, delete, rename), ``reports`` (report, compare).
"""

from __future__ import annotations

from .app import _fail, app, err, out  # noqa: F401  (the app, and what the tests print through)
from . import trial  # noqa: F401  (registers trial)
from .run import _study_overrides, run  # noqa: F401  (registers run)
from . import reports, stored

for _command in (stored.status, stored.export, reports.report, reports.compare, stored.delete, stored.rename,
                 trial.defaults):  # in the order --help and docs/cli.md list them
    app.command()(_command)
