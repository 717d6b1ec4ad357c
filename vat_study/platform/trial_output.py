"""A trial's own output (``print``, warnings, anything written to ``sys.stdout`` / ``sys.stderr``
by the thread that trains it) goes to a log file capped at ``MAX_LOG_BYTES``, not to the
driver's terminal: a trial printing 100 MB neither floods the run's output nor fills the disk.
Other threads (the driver's progress display, Ray's) write where they always did. The log is
``results/<study>/logs/<first trial key>.log``, made only when the trial writes something; the
first ``MAX_LOG_BYTES`` are kept and the rest counted. (Python-level writes only: a C library
writing to file descriptor 1 or 2 itself still reaches the terminal.)"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

MAX_LOG_BYTES = 10_000_000


class CappedLog:
    """A text sink keeping the first ``cap`` bytes (UTF-8) of what is written, then one line
    saying how much more was dropped (written when it is closed)."""

    def __init__(self, path: Path, cap: int = MAX_LOG_BYTES) -> None:
        self.path, self.cap, self.kept, self.dropped = path, cap, 0, 0
        self._file: TextIO | None = None  # opened at the first write
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            n = len(text.encode("utf-8", "backslashreplace"))
            room = self.cap - self.kept
            if n <= room:
                self._file.write(text)
                self.kept += n
            else:
                if room > 0:
                    self._file.write(text[:room])
                    self.kept = self.cap
                self.dropped += n - max(room, 0)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is None:
                return
            if self.dropped:
                self._file.write(f"\n[vat-study: {self.dropped:,} more bytes of output dropped; the log keeps the "
                                 f"first {self.cap:,}]\n")
            self._file.close()


class _Router(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` while a trial runs: the training thread's writes go to the
    trial's log, every other thread's to the stream it replaced."""

    def __init__(self, original: TextIO, sink: CappedLog, thread: int) -> None:
        self.original, self.sink, self.thread = original, sink, thread

    def write(self, text: str) -> int:
        if threading.get_ident() == self.thread:
            return self.sink.write(text)
        return self.original.write(text)

    def flush(self) -> None:
        if threading.get_ident() == self.thread:
            self.sink.flush()
        else:
            self.original.flush()

    def isatty(self) -> bool:
        return False if threading.get_ident() == self.thread else self.original.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: the original stream's
        return getattr(self.original, name)


@contextmanager
def captured_output(path: Path | None, cap: int = MAX_LOG_BYTES) -> Iterator[CappedLog | None]:
    """While the block runs, this thread's ``sys.stdout`` / ``sys.stderr`` writes go to ``path``
    (capped); ``path`` None: nothing changes."""
    if path is None:
        yield None
        return
    sink = CappedLog(path, cap)
    out, err = sys.stdout, sys.stderr
    me = threading.get_ident()
    sys.stdout, sys.stderr = _Router(out, sink, me), _Router(err, sink, me)
    try:
        yield sink
    finally:
        if isinstance(sys.stdout, _Router) and sys.stdout.sink is sink:
            sys.stdout = out
        if isinstance(sys.stderr, _Router) and sys.stderr.sink is sink:
            sys.stderr = err
        sink.close()


def trial_log_dir(spec: Any) -> Path:
    """Where a study's trial logs go: results/<study>/logs (absolute, so Ray workers agree)."""
    return (Path("results") / spec.name / "logs").resolve()
