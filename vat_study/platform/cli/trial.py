"""``vat-study trial`` (one ``run_trial``, its metrics printed) and ``vat-study defaults`` (the
resolved default trial config)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.table import Table

from ...common.yamlio import safe_load, set_dotted
from .app import _fail, app, err, out, parse_set


@app.command()
def trial(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file with a trial config mapping."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override one setting: --set method.eps=2.0 --set task.optimizer.lr=0.001 (or eps=2.0)"),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON only."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-evaluation lines."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: VAT_STUDY_THREADS, "
                                                                         "else 1: reproducible, and on a small model "
                                                                         "faster than many); recorded in the output."),
) -> None:
    """Run one trial (run_trial) and print its metrics. Defaults: semi-supervised VAT on digits."""
    from ...surface import ConfigError, run_trial, trial_threads

    try:
        threads = trial_threads(threads)
    except ValueError as e:
        _fail(str(e))
    cfg = _trial_config(config, set_)  # resolved (validated) before anything is printed

    def report(step: int, m) -> None:
        if not (quiet or as_json):
            shown = "  ".join(f"{k} {v:.4g}" for k, v in m.items() if k != "train_seconds")
            err.print(f"step {step:>6}  {shown}", highlight=False)

    try:
        metrics = run_trial(cfg, report, threads=threads)
    except ConfigError as e:
        _fail(str(e))
    metrics["torch_threads"] = threads
    if as_json:
        out.print_json(json.dumps({k: v for k, v in metrics.items()}, default=str))
        return
    table = Table(title="run_trial metrics", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        shown = f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else str(v)
        table.add_row(k, shown)
    out.print(table)


def _trial_config(config: Optional[Path], set_: list[str]) -> Any:
    """The trial config of ``--config`` and ``--set``, resolved once (``surface.TrialConfig``);
    a bad file or value is one ``error:`` line, exit 2."""
    from ...common.yamlio import FileRefused, read_text
    from ...surface import ConfigError, TrialConfig, nest, param_path

    cfg: dict[str, Any] = {}
    if config is not None:
        try:
            loaded = safe_load(read_text(config))  # a regular file under the size bound (not /dev/zero, a FIFO)
        except FileRefused as e:
            _fail(f"--config {e}")
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            _fail(f"--config {config}: {e}")
        if loaded is not None and not isinstance(loaded, dict):
            _fail(f"--config {config}: must hold a mapping of trial keys, got {type(loaded).__name__}")
        if isinstance(loaded, dict) and "name" in loaded:  # a trial config has no name; a study file does
            _fail(f"--config {config}: this is a study file (it has a name: {loaded['name']!r}), not a trial config; "
                  f"run it with: vat-study run {config}")
        cfg = nest(loaded or {})
    try:
        for key, value in parse_set(set_).items():
            set_dotted(cfg, param_path(key) or key, value)
        return TrialConfig.from_mapping(cfg)
    except (ValueError, ConfigError) as e:
        _fail(str(e))


def defaults(method: str = typer.Option("vat", "--method", "-m", help="Show this method's settings.")) -> None:
    """Print the fully resolved default trial config (YAML), with the settings of one method."""
    from ...surface import ConfigError, resolve_config

    try:
        sys.stdout.write(yaml.safe_dump(resolve_config({"method": {"name": method}}), sort_keys=False))
    except ConfigError as e:
        _fail(str(e).replace("method.name", "--method"))
