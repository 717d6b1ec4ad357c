"""Figure conventions: percent ticks with the decimals the ticks need, error axes never below 0,
plain log ticks, captions that are never cut off."""

from __future__ import annotations

from vat_study.analysis.plotting import palette, percent, percent_decimals, plt, save


def test_percent_ticks_get_the_decimals_they_need():
    assert percent_decimals([0.02, 0.0225, 0.025, 0.0275]) == 2  # every 0.25 %: not "2.2 %, 2.5 %, 2.8 %"
    assert percent_decimals([0.02, 0.025, 0.03]) == 1
    assert percent_decimals([0.0, 0.02, 0.04]) == 0


def test_an_error_axis_stops_at_zero_and_prints_percent(tmp_path):
    fig, ax = plt.subplots()
    ax.errorbar([1, 2], [0.02, 0.03], yerr=[0.05, 0.01])  # a wide t interval at two seeds
    percent(ax)
    assert ax.get_ylim()[0] == 0
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(label.endswith(" %") for label in labels)
    note = "a caption long enough to be wrapped: " + "word " * 60
    paths = save(fig, tmp_path / "f", note=note)
    assert all(p.exists() for p in paths)


def test_every_line_of_a_figure_gets_a_colour_of_its_own():
    from matplotlib.colors import to_rgba

    for n in (3, 10, 12, 20, 31):
        colours = palette([f"variant {i}" for i in range(n)])
        assert len(colours) == n and len({to_rgba(c) for c in colours.values()}) == n, n


def test_a_legend_beside_the_axes_widens_the_figure_instead_of_squeezing_them(tmp_path):
    """Five long entries go beside the axes; the saved figure keeps the axes as wide as the
    same figure without a legend (before, tight_layout shrank them to make room)."""
    from PIL import Image

    from vat_study.analysis.plotting import legend_beside

    def axes_width(legend: bool) -> float:
        fig, ax = plt.subplots(figsize=(6, 4))
        for i in range(5):
            ax.plot([0, 1], [i, i], label=f"vat (power_iteration_stochastic=false), eval_bn=running, line {i}")
        if legend:
            legend_beside(ax)
        fig.tight_layout()
        width = ax.get_position().width * fig.get_figwidth()
        save(fig, tmp_path / f"f{legend}")
        return width

    assert axes_width(True) >= 0.95 * axes_width(False)
    assert Image.open(tmp_path / "fTrue.png").width > 1.3 * Image.open(tmp_path / "fFalse.png").width


def test_an_inside_legend_wider_than_half_its_axes_goes_beside_them():
    from vat_study.analysis.plotting import legend_beside

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="train ε = 5, task.eval_bn=running, clean_stochastic=false")
    legend_beside(ax)  # one entry, but a long one
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1
    fig2, ax2 = plt.subplots(figsize=(4, 3))
    ax2.plot([0, 1], [0, 1], label="vat")
    legend_beside(ax2)
    assert ax2.get_legend().get_window_extent().x1 <= ax2.get_window_extent().x1 + 1  # inside
    plt.close(fig)
    plt.close(fig2)


def _label_boxes(fig) -> list:
    """(text, pixel box) of every tick label the figure draws (in its axes' view, non-empty)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for minor in (False, True):
                locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
                ticks = axis.get_minor_ticks(len(locs)) if minor else axis.get_major_ticks(len(locs))
                out += [(t.label1.get_text(), t.label1.get_window_extent(renderer)) for loc, t in zip(locs, ticks)
                        if lo <= loc <= hi and t.label1.get_visible() and t.label1.get_text()]
    return out


def _overlapping(fig) -> list:
    boxes = _label_boxes(fig)
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]


def test_log_axis_tick_labels_never_overlap(tmp_path, monkeypatch):
    """The TPE study's Fig. 3 printed "2x10^0 3x10^04x10^0": matplotlib's log axis labels the
    minor ticks of a narrow decade, and in a narrow panel they run into each other. save() drops
    each label that would overlap one already kept (majors first), as the rendered extents say."""
    from vat_study.analysis import plotting

    monkeypatch.setattr(plotting.plt, "close", lambda fig: None)  # the saved figure stays open to measure
    for x, crowded in (([1.2, 2.2, 3.1, 4.5, 6.0], True), ([0.12, 0.5, 2.0, 9.0], False)):
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.scatter(x, [0.1] * len(x))
        ax.set_xscale("log")  # matplotlib's own labels: "2x10^0", "3x10^0", ...
        fig.tight_layout()
        if crowded:  # as drawn without save(): the labels run into each other
            assert _overlapping(fig), "no longer crowded without save(): the case proves nothing"
        save(fig, tmp_path / "f")
        assert not _overlapping(fig), _overlapping(fig)
        assert len(_label_boxes(fig)) >= 2  # thinned, not emptied


def test_a_ci_cut_at_zero_is_said_under_the_figure(tmp_path, monkeypatch):
    """An error bar or band that reaches below 0 % is cut at the axis; the caption says so."""
    from vat_study.analysis import plotting
    from vat_study.analysis.plotting import CLIPPED_NOTE, t_band

    notes = []
    monkeypatch.setattr(plotting.plt, "close", lambda fig: notes.append(" ".join(t.get_text() for t in fig.texts)))
    fig, ax = plt.subplots()
    ax.errorbar([1, 2], [0.02, 0.03], yerr=[0.05, 0.01])  # 2 % +- 5 %: the bar reaches -3 %
    percent(ax)
    save(fig, tmp_path / "a", note="Points: means")
    fig, ax = plt.subplots()
    t_band(ax, [1, 2], [0.01, 0.02], [0.02, 0.001], "C0")  # the band's floor at 0 cuts it
    save(fig, tmp_path / "b")
    fig, ax = plt.subplots()
    ax.errorbar([1, 2], [0.20, 0.30], yerr=[0.05, 0.01])  # nowhere near 0
    percent(ax)
    save(fig, tmp_path / "c", note="Points: means")
    squash = [" ".join(n.split()) for n in notes]
    assert " ".join(CLIPPED_NOTE.split()) in squash[0] and squash[0].startswith("Points: means")
    assert " ".join(CLIPPED_NOTE.split()) in squash[1]
    assert "cut at 0" not in squash[2]
