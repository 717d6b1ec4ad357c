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
