"""``python -m vat_study.platform.cli``: the command line, as ``vat-study``."""

from . import app

app()
