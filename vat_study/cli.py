"""``vat-study``: the command line.

    vat-study trial [--config FILE.yaml] [--set key=value]...   one run_trial, metrics printed
    vat-study defaults                                          the resolved default trial config

Study commands (run / status / report / export) build on these.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hyperparameter studies and ablations of VAT.")
err = Console(stderr=True)
out = Console()


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optimizer.lr=0.001", "hidden=[64, 32]"]`` -> nested dict; values parsed as YAML scalars."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected key=value, e.g. --set eps=2.0 or --set optimizer.lr=0.001")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({e.problem})") from None
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; a researcher means a number
            try:
                value = float(value)
            except ValueError:
                pass
        node = result
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {p!r} was already set to a value")
        node[parts[-1]] = value
    return result


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        merged[k] = deep_merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@app.command()
def trial(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file with a trial config mapping."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override one key: --set eps=2.0 --set optimizer.lr=0.001"),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON only."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-evaluation lines."),
) -> None:
    """Run one trial (run_trial) and print its metrics. Defaults: semi-supervised VAT on digits."""
    from .config import ConfigError, TrialConfig
    from .objective import run_trial

    cfg: dict[str, Any] = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as e:
            _fail(f"--config {config}: {e}")
        if loaded is not None and not isinstance(loaded, dict):
            _fail(f"--config {config}: must hold a mapping of trial keys, got {type(loaded).__name__}")
        cfg = loaded or {}
    try:
        cfg = deep_merge(cfg, parse_overrides(set_))
        TrialConfig.from_mapping(cfg)  # validate before printing anything
    except (ValueError, ConfigError) as e:
        _fail(str(e))

    def report(step: int, m) -> None:
        if not (quiet or as_json):
            shown = "  ".join(f"{k} {v:.4g}" for k, v in m.items() if k != "train_seconds")
            err.print(f"step {step:>6}  {shown}", highlight=False, soft_wrap=True)

    try:
        metrics = run_trial(cfg, report)
    except ConfigError as e:
        _fail(str(e))
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


@app.command()
def defaults() -> None:
    """Print the fully resolved default trial config (YAML)."""
    from .objective import default_config

    sys.stdout.write(yaml.safe_dump(default_config(), sort_keys=False))


if __name__ == "__main__":
    app()
