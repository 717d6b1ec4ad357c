"""Mid-trial checkpoints: the whole training state written every ``every`` updates, read back by a
run of the same lanes (``train.train_lanes``), so that a stopped trial goes on where it was."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .config import TrialConfig


@dataclass(frozen=True)
class Checkpointing:
    """Mid-trial checkpoints: every ``every`` updates the whole training state (weights, Adam,
    every random generator and sampler position, the running sums and the reports made) goes to
    ``path``; a run of the same lanes that finds it there goes on from it, reporting again what was
    reported before, and ends with the same metrics as a run never stopped (on the CPU)."""

    path: str
    every: int


active: contextvars.ContextVar[Checkpointing | None] = contextvars.ContextVar("vat_checkpointing", default=None)


@contextlib.contextmanager
def checkpoints(path: str, every: int) -> Iterator[None]:
    """Training inside the block checkpoints to ``path`` every ``every`` updates and resumes from it."""
    token = active.set(Checkpointing(str(path), int(every)))
    try:
        yield
    finally:
        active.reset(token)


def fingerprint(lanes: list[TrialConfig]) -> str:
    import hashlib
    import json

    return hashlib.sha1(json.dumps([c.model_dump(mode="json") for c in lanes], sort_keys=True,
                                   default=str).encode()).hexdigest()


def save_checkpoint(ck: Checkpointing, state: dict) -> None:
    """Written whole (a temporary name, then renamed): a kill while saving keeps the previous one."""
    import os
    from pathlib import Path

    path = Path(ck.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(ck: Checkpointing, expected: str) -> dict | None:
    """The checkpoint at ``ck.path`` if it is one of these lanes (else None: trained afresh)."""
    from pathlib import Path

    path = Path(ck.path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  unreadable (cut short by a full disk): train afresh
        return None
    return state if isinstance(state, dict) and state.get("fingerprint") == expected else None
