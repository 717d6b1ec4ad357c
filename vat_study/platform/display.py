"""The live progress display of a running study (done / running / failed, best so far, ETA),
fed by polling the store so it works the same for in-process trials and Ray workers."""

from __future__ import annotations

import threading
import time

from rich.markup import escape

from .results import trials_frame
from .spec import StudySpec
from .store import Store


PARAM_DIGITS = 4
"""Significant digits of a search parameter in a line about one trial (``eps=1.252``, not
``eps=1.252065381499947``); the status table uses as few as keep its configurations apart."""


def params_text(row, columns) -> str:
    """A trial's search parameters as one line prints them: ``method=vat, eps=1.252``."""
    return ", ".join(f"{c.removeprefix('param.')}={shown_value(row[c], PARAM_DIGITS)}" for c in columns
                     if str(c).startswith("param.") and row[c] is not None and row[c] == row[c])


def trial_text(row, df) -> str:
    """``trial 3 (method=vat, eps=1.252, seed 0)``: the trial's number within its study (the
    trials frame's ``number``), its parameters and seed."""
    number = row["number"] if "number" in row else row["trial_id"]
    return f"trial {number} ({params_text(row, df.columns) or 'default'}, seed {row['seed']})"


def pruned_text(at: tuple[int, float | None] | None, metric: str) -> str:
    """Where the pruner stopped a trial (``store.frames.pruned_at``), in words."""
    if at is None:
        return "pruned before it started (its configuration was stopped on its other seeds' evaluations)"
    step, value = at
    if value is None or value != value:
        return f"pruned at step {step:,}"
    shown = f"{100 * value:.2f} %" if metric.endswith("_error") else f"{value:.4g}"
    return f"pruned at step {step:,}, {metric} {shown} there"


class Progress:
    """A live display (done / running / failed, best so far, elapsed and ETA) fed by polling the
    store, so it works the same for in-process trials and Ray workers."""

    join_timeout = 5.0  # how long the end of a run waits for a display poll still under way

    def __init__(self, spec: StudySpec, store: Store, study_id: int, total: int, baseline_done: int,
                 enabled: bool = True) -> None:
        self.spec, self.store, self.study_id = spec, store, study_id
        self.total, self.baseline_done, self.enabled = total, baseline_done, enabled
        self.t0 = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = None
        self._print_lock = threading.Lock()  # a line is marked seen and printed in one step

    def line(self) -> str:
        df = trials_frame(self.store, self.spec.name)
        if df.empty:
            counts, best = {}, None
        else:
            counts = df["status"].value_counts().to_dict()
            m = self.spec.metric.name
            ok = df[df["status"] == "COMPLETE"]
            best = None
            if m in ok and ok[m].notna().any():
                best = ok[m].min() if self.spec.metric.mode == "min" else ok[m].max()
        done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)  # pruned: finished, stopped early
        new_done = max(done - self.baseline_done, 0)
        elapsed = time.time() - self.t0
        left = max(self.total - done, 0)
        eta = f"{elapsed / new_done * left:.0f}s" if new_done and self.total else "?"
        best_s = f"{best:.4f}" if best is not None else "-"
        total_s = f"/{self.total}" if self.total else ""
        return (f"[bold]{escape(self.spec.name)}[/]  done {done}{total_s}  running {counts.get('RUNNING', 0)}  "
                f"pruned {counts.get('PRUNED', 0)}  failed {counts.get('FAILED', 0)}  best {self.spec.metric.name} "
                f"{best_s}  elapsed {elapsed:.0f}s  eta {eta}")

    def finished_lines(self) -> list[str]:
        """One plain line for each trial that finished (COMPLETE, FAILED, PRUNED) since the last
        call: what a log file, ``nohup`` or a batch scheduler shows instead of the live display."""
        df = trials_frame(self.store, self.spec.name)
        if df.empty:  # (a new study: nothing finished before this run, so everything after is news)
            self._primed = True
            return []
        ended = df[df["status"].isin(["COMPLETE", "FAILED", "PRUNED"])]
        lines = []
        m = self.spec.metric.name
        done = int((df["status"] == "COMPLETE").sum())
        pruned = None
        for _, r in ended.iterrows():
            mark = (int(r["trial_id"]), r["status"], r["finished_at"])
            if mark in self._seen:
                continue
            self._seen.add(mark)
            if not self._primed:
                continue
            head = f"{time.strftime('%H:%M:%S')} {self.spec.name} {trial_text(r, df)}"
            if r["status"] == "COMPLETE":
                value = r.get(m)
                shown = f"{m} {value:.4f}" if value is not None and value == value else f"no {m}"
                lines.append(f"{head}: COMPLETE, {shown} ({done} complete{f' of {self.total}' if self.total else ''})")
            elif r["status"] == "PRUNED":
                if pruned is None:
                    from .store.frames import pruned_at

                    pruned = pruned_at(self.store, self.spec.name, m)
                lines.append(f"{head}: PRUNED, {pruned_text(pruned.get(int(r['trial_id'])), m)}")
            else:
                last = (r["error"] or "").strip().splitlines()[-1:] or [""]
                lines.append(f"{head}: {r['status']} ({r.get('failure_kind') or 'error'}): {last[0][:300]}")
        self._primed = True
        return lines

    def _print_finished(self) -> None:
        import sys

        with self._print_lock:
            for line in self.finished_lines():
                print(line, file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        import sys

        from rich.console import Console
        from rich.live import Live

        if not sys.stderr.isatty():  # a file, a pipe, nohup, SLURM: one plain line per finished trial
            self._seen: set = set()
            self._primed = False
            self.finished_lines()  # what was finished before this run is not news

            def plain() -> None:
                while not self._stop.wait(2.0):
                    try:
                        self._print_finished()
                    except Exception:  # noqa: BLE001  a display hiccup never stops a study
                        pass

            self._plain = True
            self._thread = threading.Thread(target=plain, daemon=True)
            self._thread.start()
            return self

        self._live = Live(self.line(), console=Console(stderr=True), refresh_per_second=2, transient=False)
        self._live.__enter__()

        def loop() -> None:
            while not self._stop.wait(1.0):
                try:
                    self._live.update(self.line())
                except Exception:  # noqa: BLE001  a display hiccup never stops a study
                    pass

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.join_timeout)
        if getattr(self, "_plain", False):
            # under the lock: a poll still running when the join timed out has either printed its
            # lines or not yet marked them seen, so no finished trial goes unlogged
            self._print_finished()
            return
        try:
            self._live.update(self.line())
        finally:
            self._live.__exit__(*exc)
            self._live.console.print()


# ------------------------------------------------------------------ the status table


def sig_digits(values, most: int = 6) -> int:
    """The fewest significant digits (2 to ``most``) that keep every distinct value of a search
    parameter distinct: an Optuna eps of 0.8558894657793086 prints as 0.86 unless another
    configuration needs 0.856 to differ from it."""
    distinct = {float(v) for v in values}
    for d in range(2, most + 1):
        if len({float(f"{v:.{d}g}") for v in distinct}) == len(distinct):
            return d
    return most


def shown_value(v, digits: int) -> str:
    """A search parameter's value as the status table prints it."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def status_rows(df, metric: str, mode: str) -> tuple[list[str], list[list[str]], int | None]:
    """The rows of ``vat-study status STUDY``: one per configuration (its search parameters,
    rounded to what the search space needs; seeds done; the study metric and the test error as
    mean +- SD over seeds, in percent for an error as in the report; pruned and failed trials), and the
    index of the best configuration by the study metric (None before any finished)."""
    import pandas as pd

    params = [c for c in df.columns if c.startswith("param.")]
    digits = {c: sig_digits([v for v in df[c] if isinstance(v, float) and v == v] or [0.0]) for c in params}
    ok = df[df["status"] == "COMPLETE"]
    columns = [c.removeprefix("param.") for c in params] + ["seeds done", metric + (" (%)" if metric.endswith("_error")
                                                                                     else ""), "test_error (%)", "pruned",
                                                           "failed"]
    rows, means = [], []
    for cfg_key, grp in df.groupby("config_key", sort=False):
        done = ok[ok["config_key"] == cfg_key]

        def ms(col: str, done=done) -> str:
            if col not in done or done[col].dropna().empty:
                return "-"
            v = done[col].dropna() * (100 if col.endswith("_error") else 1)
            fmt = ".2f" if col.endswith("_error") else ".4g"
            return f"{v.mean():{fmt}}" + (f" +- {v.std(ddof=1):{fmt}}" if len(v) > 1 else "")

        first = grp.iloc[0]
        rows.append([shown_value(None if pd.isna(first[c]) else first[c], digits[c]) for c in params]
                    + [str(len(done)), ms(metric), ms("test_error"), str(int((grp["status"] == "PRUNED").sum())),
                       str(int((grp["status"] == "FAILED").sum()))])
        means.append(done[metric].dropna().mean() if metric in done and not done[metric].dropna().empty else None)
    scored = [(m, i) for i, m in enumerate(means) if m is not None]
    best = (min(scored) if mode == "min" else max(scored))[1] if scored else None
    return columns, rows, best
