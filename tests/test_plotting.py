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
