"""`repalign_jax.plots`: PNG files on the Agg backend, and the data each figure shows.

The functions save and close their figure; the `drawn` fixture keeps the closed figures
(it wraps `pyplot.close`) so that their lines can be compared with the input.
"""

import matplotlib
import matplotlib.colors
import numpy as np
import pytest

from repalign_jax import plots

matplotlib.use("Agg")  # before any figure; `plots.pyplot()` selects it as well

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch):
    plt = plots.pyplot()
    real_close = plt.close
    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    yield figs
    for fig in figs:
        real_close(fig)


def assert_png(path):
    assert path.is_file() and path.stat().st_size > len(PNG)
    assert path.read_bytes()[: len(PNG)] == PNG


def lines_by_style(ax, style):
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == style]


def test_pyplot_is_agg():
    import matplotlib.pyplot

    assert plots.pyplot() is matplotlib.pyplot
    assert matplotlib.get_backend().lower() == "agg"


def test_colours_span_viridis_from_dark_to_light():
    plt = plots.pyplot()
    c = plots.colours(4)
    assert c.shape == (4, 4)
    np.testing.assert_allclose(c[0], plt.cm.viridis(0.0))
    np.testing.assert_allclose(c[-1], plt.cm.viridis(0.9))
    np.testing.assert_allclose(c[1], plt.cm.viridis(0.3))
    assert plots.colours(0).shape == (1, 4)  # at least one colour


def hyw_data(n=3, t=50):
    rng = np.random.default_rng(0)
    ts = np.arange(t, dtype=float)
    measured = tuple(rng.normal(size=(n, t)) for _ in range(3))
    theory = tuple(rng.normal(size=(n, t)) for _ in range(3))
    return ts, measured, theory


def test_plot_hyw_writes_a_png_of_measured_solid_and_theory_dashed(tmp_path, drawn):
    ts, measured, theory = hyw_data()
    labels = ["gain 0.9", "gain 1.0", "gain 1.1"]
    path = tmp_path / "hyw.png"
    plots.plot_hyw(path, ts, measured, theory, labels, title="two points")
    assert_png(path)
    (fig,) = drawn
    assert fig.get_suptitle() == "two points"
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["h = ||dh||^2", "y = ||dyh||^2", "w"]
    palette = plots.colours(3)
    for ax, meas, th in zip(axes, measured, theory):
        solid, dashed = lines_by_style(ax, "-"), lines_by_style(ax, "--")
        assert len(solid) == len(dashed) == 3
        for k in range(3):
            np.testing.assert_array_equal(solid[k].get_xdata(), ts)
            np.testing.assert_array_equal(solid[k].get_ydata(), meas[k])
            np.testing.assert_array_equal(dashed[k].get_ydata(), th[k])
            np.testing.assert_allclose(matplotlib.colors.to_rgba(solid[k].get_color()), palette[k])
            np.testing.assert_allclose(matplotlib.colors.to_rgba(dashed[k].get_color()), palette[k])
    legend = axes[0].get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == labels


def test_plot_hyw_without_a_title_has_no_suptitle(tmp_path, drawn):
    ts, measured, theory = hyw_data(n=1)
    plots.plot_hyw(str(tmp_path / "a.png"), ts, measured, theory, ["only"])  # a str path works too
    assert_png(tmp_path / "a.png")
    assert drawn[0].get_suptitle() == ""


def test_lines_that_do_not_match_the_labels_are_refused_before_drawing(tmp_path, drawn):
    ts, measured, theory = hyw_data(n=3)
    with pytest.raises(ValueError, match=r"^plot_hyw: measured h has shape \(3, 50\), expected"):
        plots.plot_hyw(tmp_path / "a.png", ts, measured, theory, ["one", "two"])
    with pytest.raises(ValueError, match=r"^plot_hyw: theory w has shape \(3, 49\)"):
        plots.plot_hyw(tmp_path / "a.png", ts, measured, theory[:2] + (theory[2][:, 1:],), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"^plot_loss: 1 plateaus for 3 labels$"):
        plots.plot_loss(tmp_path / "b.png", ts, measured[0], None, ["a", "b", "c"], plateaus=[1.0])
    with pytest.raises(
        ValueError, match=r"^plot_loss: measured has shape \(3, 50\), expected \(labels, epochs\) = \(2, 50\)$"
    ):
        plots.plot_loss(tmp_path / "b.png", ts, measured[0], None, ["a", "b"])
    assert not drawn and not list(tmp_path.iterdir())  # nothing drawn, nothing written


def test_plot_loss_curves_plateaus_and_log_floor(tmp_path, drawn):
    ts = np.arange(100.0)
    measured = np.stack([np.exp(-ts / 20), np.exp(-ts / 40)])
    measured[0, -5:] = 0.0  # a round-off floor: not positive, left out of the limits
    theory = 1.1 * measured
    path = tmp_path / "loss.png"
    plots.plot_loss(path, ts, measured, theory, ["a", "b"], plateaus=[30.0, np.nan])
    assert_png(path)
    (ax,) = drawn[0].axes
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "loss: network (solid), theory (dashed)"
    solid, dashed, dotted = (lines_by_style(ax, s) for s in ("-", "--", ":"))
    assert len(solid) == len(dashed) == 2
    for k in range(2):
        np.testing.assert_array_equal(solid[k].get_ydata(), measured[k])
        np.testing.assert_array_equal(dashed[k].get_ydata(), theory[k])
    assert len(dotted) == 1  # the NaN plateau draws nothing
    np.testing.assert_array_equal(dotted[0].get_xdata(), [30.0, 30.0])
    positive = measured[measured > 0]
    bottom = max(np.percentile(positive, 1) / 3, positive.max() * 1e-12)
    assert ax.get_ylim()[0] == pytest.approx(bottom)


def test_plot_loss_without_theory_or_plateaus(tmp_path, drawn):
    ts = np.arange(10.0)
    measured = np.stack([np.linspace(1, 0.1, 10)])
    plots.plot_loss(tmp_path / "l.png", ts, measured, None, ["net"], title="my title")
    assert_png(tmp_path / "l.png")
    (ax,) = drawn[0].axes
    assert ax.get_title() == "my title"
    assert len(ax.get_lines()) == 1 and ax.get_lines()[0].get_linestyle() == "-"


def test_plot_vs_gain_shows_one_point_per_run(tmp_path, drawn):
    gains = np.array([0.9, 1.0, 1.1])
    plateau, eta_enc, eta_dec, tau = [300.0, 200.0, 100.0], [1e-3, 2e-3, 3e-3], [1e-2, 2e-2, 3e-2], [50.0, 40.0, 30.0]
    path = tmp_path / "gain.png"
    plots.plot_vs_gain(path, gains, plateau, eta_enc, eta_dec, tau)
    assert_png(path)
    axes = drawn[0].axes
    assert len(axes) == 3
    ys = [[ln.get_ydata() for ln in ax.get_lines()] for ax in axes]
    for ax in axes:
        for ln in ax.get_lines():
            np.testing.assert_array_equal(ln.get_xdata(), gains)
            assert ln.get_linestyle() == "None"  # markers only
    np.testing.assert_array_equal(ys[0][0], plateau)
    np.testing.assert_array_equal(ys[1][0], eta_enc)
    np.testing.assert_array_equal(ys[1][1], eta_dec)
    np.testing.assert_array_equal(ys[2][0], tau)
    assert axes[1].get_yscale() == "log" and axes[0].get_yscale() == "linear"


def test_plot_predicted_vs_measured_scatter_and_identity_line(tmp_path, drawn):
    predicted = np.array([0.1, 0.5, np.nan, 0.9])
    measured = np.array([0.2, 0.4, 0.3, 1.2])
    path = tmp_path / "pm.png"
    plots.plot_predicted_vs_measured(path, predicted, measured)
    assert_png(path)
    (ax,) = drawn[0].axes  # no colour: no colour bar
    offsets = np.asarray(ax.collections[0].get_offsets())
    np.testing.assert_array_equal(offsets[[0, 1, 3]], np.column_stack([predicted, measured])[[0, 1, 3]])
    (identity,) = ax.get_lines()
    # over the finite pairs only: from min(0.1, 0.2) to max(0.9, 1.2)
    np.testing.assert_array_equal(identity.get_xdata(), [0.1, 1.2])
    np.testing.assert_array_equal(identity.get_ydata(), [0.1, 1.2])
    assert ax.get_title() == "final h: measured vs predicted"


def test_plot_predicted_vs_measured_with_colour_adds_a_labelled_colour_bar(tmp_path, drawn):
    plots.plot_predicted_vs_measured(tmp_path / "c.png", [1.0, 2.0], [1.5, 2.5], colour=[0.9, 1.4], label="gain")
    assert_png(tmp_path / "c.png")
    fig = drawn[0]
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[0].collections[0].get_array(), [0.9, 1.4])
    assert fig.axes[1].get_ylabel() == "gain"


def test_plot_predicted_vs_measured_all_nan_draws_no_identity_line(tmp_path, drawn):
    plots.plot_predicted_vs_measured(tmp_path / "n.png", [np.nan, np.nan], [1.0, 2.0])
    assert_png(tmp_path / "n.png")
    assert drawn[0].axes[0].get_lines() == []


def test_every_figure_is_closed(tmp_path):
    """Nothing is left open: a sweep draws hundreds of figures."""
    plt = plots.pyplot()
    before = set(plt.get_fignums())
    ts, measured, theory = hyw_data(n=2)
    plots.plot_hyw(tmp_path / "1.png", ts, measured, theory, ["a", "b"])
    plots.plot_loss(tmp_path / "2.png", ts, np.abs(measured[0]) + 0.1, None, ["a", "b"])
    plots.plot_vs_gain(tmp_path / "3.png", [1, 2], [1, 2], [1, 2], [1, 2], [1, 2])
    plots.plot_predicted_vs_measured(tmp_path / "4.png", [1, 2], [1, 2], colour=[1, 2])
    assert set(plt.get_fignums()) == before
    for k in range(1, 5):
        assert_png(tmp_path / f"{k}.png")
