"""Shared figure conventions: Agg backend, PNG (PDF beside it on request), readable sizes, tick
labels that never overlap, a note wherever an interval is cut at 0."""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import Formatter  # noqa: E402

plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "font.size": 10, "axes.grid": True,
                     "grid.alpha": 0.3, "legend.fontsize": 9})


def legend_beside(ax, inside: int = 4, handles: list | None = None) -> None:
    """The legend inside the axes for a few short entries, else to the right of them, where it
    hides none, with the figure widened by the legend's width so that the axes keep theirs (no
    panel squeezed to make room); ``handles``: entries of one's own (default: the axes' labelled
    artists). An inside legend wider than half the axes goes beside them too."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    if not handles:
        return
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    if len(handles) <= inside:
        legend = ax.legend(handles=handles, fontsize=8, loc="best")
        if legend.get_window_extent(renderer).width <= 0.5 * ax.get_window_extent(renderer).width:
            return
        legend.remove()
    legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=8)
    fig.set_figwidth(fig.get_figwidth() + legend.get_window_extent(renderer).width / fig.dpi + 0.2)


def palette(names) -> dict:
    """One colour per name, all distinct: matplotlib's 10-colour cycle for up to 10 names, tab20
    (then evenly spaced hues of a continuous map) beyond, so that no two lines share a colour."""
    names = list(dict.fromkeys(names))
    if len(names) <= 10:
        return {n: f"C{i}" for i, n in enumerate(names)}
    if len(names) <= 20:
        cmap = matplotlib.colormaps["tab20"]
        return {n: cmap(i) for i, n in enumerate(names)}
    cmap = matplotlib.colormaps["turbo"]
    return {n: cmap(i / (len(names) - 1)) for i, n in enumerate(names)}


def log_ticks_at(ax, values) -> None:
    """Log x-axis with ticks at the values actually run, printed plainly (0.5, 1, 2)."""
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(float(v) for v in values))))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_locator(NullLocator())


def plain_log(ax, axis: str = "x") -> None:
    """A log axis whose tick labels are plain numbers (0.3, 2, 10; never "2x10^0"): minor ones
    too where the axis spans less than a decade, else 2 and 5 of each decade; ``save`` drops any
    label that would still overlap another (``no_overlapping_ticks``)."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    target.set_major_formatter(plain)
    if lo > 0 and np.log10(hi / lo) < 1:
        target.set_minor_formatter(plain)
    else:
        target.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if round(v / 10 ** np.floor(np.log10(v)), 6) in (2, 5) else ""))


STABLE_METADATA = {".pdf": {"CreationDate": None}, ".png": {}}
"""No creation time in a PDF: a report rewritten from the same store is byte for byte the same."""

_FORMATS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("figure_formats", default=(".png",))


@contextlib.contextmanager
def figure_formats(pdf: bool = False):
    """Within it, ``save`` writes PNG, and PDF beside it where ``pdf`` (``vat-study report --pdf``)."""
    token = _FORMATS.set((".png", ".pdf") if pdf else (".png",))
    try:
        yield
    finally:
        _FORMATS.reset(token)


def formats() -> tuple[str, ...]:
    """The suffixes ``save`` writes now: (".png",), or (".png", ".pdf") within ``figure_formats(pdf=True)``."""
    return _FORMATS.get()


CLIPPED_NOTE = ("Intervals that reach below 0 are cut at 0 (an error rate, R_vadv or an SD norm is never negative); "
                "the CSV gives each interval in full")
"""The caption's note on a figure where an interval was cut at 0 (``percent``, ``t_band``)."""


def save(fig, stem: Path, note: str | None = None, tight: bool = True) -> list[Path]:
    """Write stem.png (and stem.pdf within ``figure_formats(pdf=True)``) with an optional footnote
    under the axes, and ``CLIPPED_NOTE`` where an interval was cut at 0; tick labels that would
    overlap are dropped first (``no_overlapping_ticks``). ``tight``: lay the axes out anew (False
    for a figure laid out already, e.g. axes sharing a colour bar). Returns the paths, PNG first."""
    import textwrap

    stem.parent.mkdir(parents=True, exist_ok=True)
    if any(getattr(ax, "_clipped_at_zero", False) for ax in fig.axes):
        note = f"{note}. {CLIPPED_NOTE}" if note else CLIPPED_NOTE
    lines = textwrap.wrap(note, width=max(40, int(fig.get_figwidth() * 15))) if note else []
    if lines and tight:  # wrapped to the figure's width, so that no caption is cut off
        fig.text(0.5, 0.01, "\n".join(lines), ha="center", va="bottom", fontsize=8, color="0.3")
        fig.tight_layout(rect=(0, 0.035 * (len(lines) + 0.5), 1, 1))
    elif tight:
        fig.tight_layout()
    elif lines:  # under the figure as it is laid out (the saved image is cut to what it draws)
        fig.text(0.5, -0.02, "\n".join(lines), ha="center", va="top", fontsize=8, color="0.3")
    no_overlapping_ticks(fig)
    paths = [stem.with_suffix(s) for s in formats()]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", metadata=STABLE_METADATA[p.suffix])  # legends beside the axes kept
    plt.close(fig)
    return paths


class _Thinned(Formatter):
    """A tick formatter that prints what ``inner`` prints except at the ``hidden`` values."""

    def __init__(self, inner: Formatter, hidden: list[float]) -> None:
        self.inner, self.hidden = inner, hidden

    def set_axis(self, axis) -> None:
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def set_locs(self, locs) -> None:
        self.locs = locs
        self.inner.set_locs(locs)

    def __call__(self, x, pos=None) -> str:
        return "" if _among(x, self.hidden) else self.inner(x, pos)

    def format_ticks(self, values) -> list[str]:
        return ["" if _among(v, self.hidden) else t for v, t in zip(values, self.inner.format_ticks(values))]

    def get_offset(self) -> str:
        return self.inner.get_offset()


def _among(x: float, values: list[float]) -> bool:
    return any(abs(x - v) <= 1e-9 * max(abs(x), abs(v), 1e-300) for v in values)


def _shown_labels(axis, minor: bool) -> list[tuple[float, object]]:
    """(tick value, label box in pixels) of the labels an axis draws now (in its view, non-empty)."""
    lo, hi = sorted(axis.get_view_interval())
    locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
    ticks = axis.get_minor_ticks(len(locs)) if minor else axis.get_major_ticks(len(locs))
    renderer = axis.figure.canvas.get_renderer()
    out = []
    for loc, tick in zip(locs, ticks):
        label = tick.label1
        if lo <= loc <= hi and label.get_visible() and label.get_text():
            out.append((float(loc), label.get_window_extent(renderer)))
    return out


def no_overlapping_ticks(fig) -> None:
    """Drop every tick label that would overlap one already kept, major labels kept first, in
    order along the axis: e.g. a log axis's minor labels where the decade is narrow."""
    fig.canvas.draw()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            kept: list = []
            for minor in (False, True):
                hidden = []
                for loc, box in _shown_labels(axis, minor):
                    if any(box.overlaps(k) for k in kept):
                        hidden.append(loc)
                    else:
                        kept.append(box)
                if hidden:
                    fmt = axis.get_minor_formatter() if minor else axis.get_major_formatter()
                    (axis.set_minor_formatter if minor else axis.set_major_formatter)(_Thinned(fmt, hidden))


def percent_decimals(locs) -> int:
    """The fewest decimals (0-3) that print every tick of an error axis (fractions) exactly in
    percent: ticks every 0.25 % get 2, every 0.5 % get 1, every 1 % get 0."""
    values = [100 * float(v) for v in locs]
    for d in range(4):
        if all(abs(round(v, d) - v) < 1e-6 for v in values):
            return d
    return 3


def percent(ax, axis: str = "y") -> None:
    """Tick labels of an axis of fractions in percent, with as many decimals as the ticks need."""
    from matplotlib.ticker import Formatter

    target = ax.yaxis if axis == "y" else ax.xaxis

    class _Percent(Formatter):
        def __call__(self, x, pos=None):
            return f"{100 * x:.{percent_decimals(target.get_majorticklocs())}f} %"

    target.set_major_formatter(_Percent())
    if axis == "y":  # an error rate is never below 0: a wide t interval at few seeds does not move the axis there
        lo, hi = ax.get_ylim()
        if lo < 0 < hi:
            ax.set_ylim(0, hi)
            if _bars_below_zero(ax):
                ax._clipped_at_zero = True


def _bars_below_zero(ax) -> bool:
    """Whether an error bar of ``ax`` (``errorbar``) reaches below 0 on the y axis."""
    from matplotlib.container import ErrorbarContainer

    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            for coll in c.lines[2]:
                if any(len(seg) and min(y for _, y in seg) < 0 for seg in coll.get_segments()):
                    return True
    return False


LABELS = {"val_error": "validation error (%)", "test_error": "test error (%)", "rvadv": "R_vadv (nats)",
          "eps": "ε (L2 norm of r)", "alpha": "α (weight of R)", "K": "K (power iterations)",
          "xi": "ξ (finite-difference step)", "step": "update"}
"""Paper-style axis labels of the names the analyses plot."""


def axis_label(name: str, log: bool = False) -> str:
    text = LABELS.get(name, name)
    return f"{text}, log scale" if log else text


def t_band(ax, x, mean, ci, color, alpha: float = 0.15, floor: float | None = 0.0) -> None:
    """A 95 % t confidence band over seeds around a mean line (none where it is undefined: one
    seed), cut at ``floor`` (0: errors, R_vadv and SD norms are never negative; None: uncut)."""
    import numpy as np

    ci = np.nan_to_num(np.asarray(ci, float), nan=0.0)
    mean = np.asarray(mean, float)
    low = mean - ci if floor is None else np.maximum(mean - ci, floor)
    if floor is not None and bool(np.any(mean - ci < floor)):
        ax._clipped_at_zero = True  # save() says so under the figure
    ax.fill_between(x, low, mean + ci, alpha=alpha, color=color, linewidth=0)


def log_y(ax) -> None:
    """A log y axis with plain tick labels (0.3, 2, 10), minor ones labelled within a decade."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    lo, hi = ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 else 99
    if decades < 0.7:
        ax.yaxis.set_minor_formatter(plain)
    elif decades < 2.5:  # label 2, 3 and 5 of each decade, so that labels never crowd
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if round(v / 10 ** np.floor(np.log10(v)), 6) in (2, 3, 5) else ""))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def reference_line(ax, y: float, label: str, color: str = "0.35", style: str = ":") -> None:
    """A horizontal reference (the baseline's value, the paper's value), labelled in the legend."""
    ax.axhline(y, color=color, linestyle=style, linewidth=1.2, label=label)
