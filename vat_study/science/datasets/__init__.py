"""The dataset registry: one entry per dataset, the one place that says what each dataset is.

Each entry names the dataset, says in one line what it is and which files it needs under
``data_root`` (none: bundled or generated), the task defaults it implies (model, BN on the
logits, ZCA, augmentation: Appendices A-D), the shape of one input, and how to load it (a
function that imports torch only when it runs). The config (allowed names, defaults), the
preflight and the docs ask this registry; none of them switches on a dataset's name.

    digits          scikit-learn's bundled 8x8 digits (offline; the default)
    moons           two interleaving half circles, 2-D (Fig. 1)
    mnist           the four MNIST IDX files (Section 4.1.1, Appendices A, C)
    fashion_mnist   the same format, Fashion-MNIST (also Debian's dataset-fashion-mnist)
    idx             any MNIST-format IDX files named by task.idx_paths
    cifar10         CIFAR-10's python version, folder or tar.gz (Appendices B, D)
    svhn            SVHN's train_32x32.mat / test_32x32.mat (Appendix D)

A new dataset is one file that builds a ``DatasetEntry`` and calls ``register`` (and its test);
``register`` adds one at run time (in-process).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...common.errors import DataError, DataFileError  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class Dataset:
    """A dataset as training sees it: float images [N, C, H, W] in [0, 1] (an MLP flattens them:
    the permutation-invariant setting of Section 4.1.1) or points [N, D]; int64 labels [N]."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4


@dataclass(frozen=True)
class Source:
    """Where a dataset is loaded from: ``root`` (task.data_root, else $VAT_STUDY_DATA, else data/),
    whether a missing one may be downloaded, and the trial's task settings (``idx_paths``)."""

    name: str
    root: Path
    download: bool = False
    task: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    summary: str  # one line: what it is (the docs and the schema's description)
    load: Callable[[Source], Dataset]  # imports torch when it runs
    files: str | None = None  # the files it needs under data_root (messages, docs); None: bundled or generated
    input_shape: tuple[int, ...] | None = None  # one input; None: whatever the files hold
    defaults: Mapping[str, Any] = field(default_factory=dict)  # task defaults it implies: model, top_bn, zca, augment


REGISTRY: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset: from then on configs, the preflight and training (in this process: the
    ``local`` executor; for Ray workers, put the entry's file beside the built-in ones and name it in this module's last
    import line) know it.
    A name already taken is refused."""
    if entry.name in REGISTRY:
        raise ValueError(f"dataset {entry.name!r} is already registered")
    REGISTRY[entry.name] = entry
    return entry


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def allowed_text() -> str:
    """The registered names as a validation error lists them: 'a', 'b' or 'c'."""
    quoted = [repr(n) for n in REGISTRY]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def get(name: str) -> DatasetEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(f"dataset must be one of {names()}, got {name!r}") from None


def data_root(root: str | os.PathLike | None) -> Path:
    """Where the data files are: ``task.data_root``, else $VAT_STUDY_DATA, else ``data/``."""
    return Path(root or os.environ.get("VAT_STUDY_DATA") or "data").expanduser()


def load_dataset(name: str, *, root: str | os.PathLike | None = None, download: bool = False,
                 idx_paths: Mapping[str, str] | None = None) -> Dataset:
    """Load a registered dataset from ``root`` (``data_root``); ``download``: a missing one may be
    fetched there first (where the entry can). Every problem is a ``DataError`` saying what to do."""
    entry = get(name)
    return entry.load(Source(name, data_root(root), download, {"idx_paths": dict(idx_paths or {})}))


from . import digits, moons, mnist, cifar10, svhn, idx  # noqa: E402,F401,I001  (the built-in entries, in this order)
