"""app.plots: every builder returns a plotly Figure with the expected traces and axis titles."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from app import plots
from deepz_core.pz import metrics


def _types(fig: go.Figure) -> list[str]:
    return [t.type for t in fig.data]


@pytest.fixture
def zz(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    zs = rng.uniform(0.05, 1.2, 500)
    return zs, zs + 0.01 * (1 + zs) * rng.normal(size=500)


def test_density_heatmap_log_counts(zz) -> None:
    zs, zp = zz
    fig = plots.density_heatmap(zs, zp, bins=40)
    heat = fig.data[0]
    assert heat.type == "heatmap"
    counts = np.asarray(heat.customdata)
    assert counts.sum() == pytest.approx(500, abs=2)  # a point or two may sit past the 99.9th pct
    assert np.nanmax(np.asarray(heat.z, float)) == pytest.approx(np.log10(counts.max()))
    assert "z<sub>s</sub>" in fig.layout.xaxis.title.text
    assert "z<sub>p</sub>" in fig.layout.yaxis.title.text


def test_scatter_uses_webgl_with_ids_and_highlight(zz) -> None:
    zs, zp = zz
    ids = np.arange(100, 600)
    fig = plots.zp_zs_scatter(zs, zp, ids, highlight=105, color=np.ones(500))
    assert _types(fig)[0] == "scattergl"
    assert list(fig.data[0].customdata[:3]) == ["100", "101", "102"]  # text: exact in JS
    star = fig.data[-1]
    assert star.marker.symbol == "star" and star.x[0] == pytest.approx(zs[5])
    assert "spectroscopic" in fig.layout.xaxis.title.text


def test_scatter_keeps_19_digit_ids_exact(zz) -> None:
    """Survey ids above 2**53 are text in the figure's JSON, never a (rounded) JS number."""
    import json

    zs, zp = zz
    ids = np.int64(1237648720693755918) + np.arange(500) * 7
    fig = plots.zp_zs_scatter(zs, zp, ids, highlight=int(ids[3]))
    text = fig.to_json()
    assert '"1237648720693755939"' in text and fig.data[-1].name == f"ref_id {ids[3]}"
    assert json.loads(text)["data"][0]["customdata"][3] == "1237648720693755939"


def test_chi2_and_sed_with_a_model() -> None:
    fig = plots.chi2_figure(np.linspace(0, 1, 11), np.linspace(5, 50, 11), 0.3, 0.31)
    assert fig.layout.yaxis.type == "log" and "χ²" in fig.layout.yaxis.title.text
    sed = {
        "bands": ["a", "b"],
        "wavelength": np.array([5000.0, 4000.0]),
        "narrow": np.array([False, False]),
        "known": True,
        "flux": np.array([1.0, 2.0]),
        "error": np.array([0.1, 0.1]),
        "exp_wavelength": np.zeros(0),
        "exp_flux": np.zeros(0),
        "exp_error": np.zeros(0),
    }
    fig = plots.sed_figure(sed, "SED", {"flux": np.array([1.1, 1.9]), "label": "best fit"})
    model = next(t for t in fig.data if t.name == "best fit")
    assert list(model.x) == [4000.0, 5000.0] and list(model.y) == [1.9, 1.1]


def test_scatter_bins_above_threshold(zz) -> None:
    zs, zp = zz
    fig = plots.zp_zs_scatter(zs, zp, np.arange(500), max_points=100)
    assert _types(fig)[0] == "heatmap"
    assert "scattergl" not in _types(fig)


def _binned(zz) -> metrics.BinnedMetrics:
    zs, zp = zz
    mag = np.linspace(18, 22.5, zs.size)
    return metrics.binned_metrics(zp, zs, mag)


def test_metrics_vs_mag_two_panels(zz) -> None:
    b = _binned(zz)
    fig = plots.metrics_vs_mag({"run a": b, "run b": b})
    assert len(fig.data) == 4  # σ68 and outliers per run
    assert fig.layout.xaxis2.title.text == plots.MAG
    assert fig.layout.yaxis.title.text == plots.SIGMA
    assert fig.layout.yaxis2.title.text == plots.outlier_title(0.02)


def test_pit_figure_reports_ks(rng) -> None:
    pit = rng.uniform(size=300)
    density, edges = metrics.pit_histogram(pit, 10)
    fig = plots.pit_figure({"r1": (density, edges, metrics.pit_ks(pit))})
    assert len(fig.data) == 1 and "KS D" in fig.data[0].name
    assert fig.layout.shapes[0].y0 == 1.0  # the uniform line
    assert "PIT" in fig.layout.xaxis.title.text


def test_spec_density_figure(zz) -> None:
    zs, zp = zz
    b = metrics.sigma68_vs_spec_density(zp, zs, zs)
    fig = plots.spec_density_figure({"r1": b})
    assert _types(fig) == ["bar", "scatter"]
    assert "0.001" in fig.layout.xaxis.title.text
    assert fig.layout.yaxis.title.text == plots.SIGMA
    counts = fig.layout.yaxis2
    top = float(np.max(b.counts))
    assert counts.tickmode == "linear" and counts.tick0 == 0
    assert isinstance(counts.dtick, int) and counts.dtick >= 1
    assert counts.range[0] == 0 and counts.range[1] > top  # bars from 0, the tallest not clipped
    ticks = np.arange(0, counts.range[1], counts.dtick)  # what plotly draws: 0, dtick, 2 dtick...
    assert np.all(ticks == np.round(ticks)) and np.all(np.diff(ticks) == counts.dtick)
    assert 3 <= ticks.size <= 8
    assert fig.layout.xaxis.tick0 == 0 and isinstance(fig.layout.xaxis.dtick, int)  # x: counts


@pytest.mark.parametrize(
    ("top", "step"), [(0, 1), (3, 1), (7, 2), (103, 20), (1517, 500), (20_000, 5000)]
)
def test_count_step_is_a_round_integer(top: float, step: int) -> None:
    assert plots.count_step(top) == step


def _label_x(fig: go.Figure, text: str) -> tuple[float, str, float]:
    a = [a for a in fig.layout.annotations if a.text == text][0]
    return a.x, a.xanchor, a.y


@pytest.mark.parametrize(("mode", "side"), [(0.001, "left"), (0.5, None), (1.499, "right")])
def test_pz_figure_labels_stay_inside_the_axes(mode: float, side: str | None) -> None:
    """'ODDS window', 'mode' and 'z_s' sit inside the x limits, written towards the side with
    room (never over the y axis nor past the right edge), each on its own row."""
    grid = np.round(np.arange(0, 1501) * 0.001, 12)
    pdf = np.exp(-0.5 * ((grid - mode) / 0.02) ** 2)
    zspec = mode + 0.01 if mode < 1 else mode - 0.01
    fig = plots.pz_figure(grid, pdf, zspec=zspec, mode=mode, odds_window=0.003)
    lo, hi = fig.layout.xaxis.range
    rows = []
    for text in ("ODDS window", "mode", "z<sub>s</sub>"):
        x, anchor, y = _label_x(fig, text)
        assert lo <= x <= hi
        assert anchor == ("left" if x - lo <= hi - x else "right")  # text runs into the room
        assert 0 <= y <= 1
        rows.append(y)
    assert len(set(rows)) == 3  # one row each: the labels never overlap each other
    if side is not None:  # at z = 0 written to the right of the line, at z_max to the left
        assert _label_x(fig, "mode")[1] == side == _label_x(fig, "ODDS window")[1]


def test_pz_figure_members_components_and_odds_window() -> None:
    grid = np.round(np.arange(0, 1501) * 0.001, 12)
    pdf = np.exp(-0.5 * ((grid - 0.5) / 0.02) ** 2)
    members = np.stack([pdf, pdf])
    fig = plots.pz_figure(
        grid,
        pdf,
        members=members,
        members_used=np.array([True, False]),
        components=pdf[None, :] / 2,
        zspec=0.51,
        mode=0.5,
        odds_window=0.003,
    )
    names = [t.name for t in fig.data]
    assert names[-1] == "ensemble p(z)"
    assert [t.line.dash for t in fig.data[1:3]] == ["solid", "dot"]
    rect = [s for s in fig.layout.shapes if s.type == "rect"][0]
    assert (rect.x0, rect.x1) == pytest.approx((0.4985, 0.5015))
    assert len([s for s in fig.layout.shapes if s.type == "line"]) == 2  # z_s and mode
    lo, hi = fig.layout.xaxis.range
    assert lo < 0.45 and hi > 0.55 and hi < 1.0  # zoomed on the support
    assert fig.layout.yaxis.title.text == plots.PZ


def test_a_calibrated_pz_never_marks_a_mode_it_does_not_peak_at() -> None:
    """First-use review: the calibrated p(z) peaked near 0.93 while a red line 'mode' stood at
    z_p = 0.645 (the raw p(z)'s mode). The line is called what it is, the median and 68%
    interval of the curve drawn are marked, and the raw p(z) is drawn faintly."""
    grid = np.round(np.arange(0, 1501) * 0.001, 12)
    raw = np.exp(-0.5 * ((grid - 0.645) / 0.03) ** 2)
    calibrated = np.exp(-0.5 * ((grid - 0.93) / 0.1) ** 2)
    g = {"mode": 0.645, "calibrated": True, "zmedian": 0.93, "z_lo68": 0.83, "z_hi68": 1.03}
    fig = plots.pz_figure(grid, calibrated, odds_window=0.003, **plots.pz_markers(g, raw))
    texts = [a.text for a in fig.layout.annotations]
    assert "mode" not in texts and plots.CALIBRATED_MODE_LABEL in texts
    assert "median" in texts and "68% interval" in texts
    lines = {round(s.x0, 3) for s in fig.layout.shapes if s.type == "line"}
    assert lines == {0.645, 0.93}
    rects = [(s.x0, s.x1) for s in fig.layout.shapes if s.type == "rect"]
    assert (0.83, 1.03) in rects
    assert [t.name for t in fig.data] == ["p(z) before calibration", "ensemble p(z)"]
    lo, hi = fig.layout.xaxis.range
    assert lo < 0.6 and hi > 1.03  # both curves in view
    raw_only = plots.pz_markers({"mode": 0.5, "calibrated": False}, raw)
    assert raw_only == {"mode": 0.5}  # an uncalibrated p(z) peaks at its mode: nothing more


def test_sed_figure_narrow_broad_exposures() -> None:
    s = {
        "bands": ["NB455", "NB465", "subaru_i"],
        "wavelength": np.array([4550.0, 4650, 7684]),
        "narrow": np.array([True, True, False]),
        "known": True,
        "flux": np.ones(3),
        "error": np.full(3, 0.1),
        "fluxzp": 23.9,
        "exp_wavelength": np.array([4550.0, 4550]),
        "exp_flux": np.array([0.9, 1.1]),
        "exp_error": np.array([0.2, 0.2]),
    }
    fig = plots.sed_figure(s)
    assert _types(fig) == ["scattergl", "scatter", "scatter"]
    assert len(fig.data[1].x) == 2 and len(fig.data[2].x) == 1
    assert fig.layout.xaxis.title.text == "effective wavelength [Å]"
    assert "µJy" in fig.layout.yaxis.title.text
    s |= {"known": False, "exp_flux": np.zeros(0)}
    fig = plots.sed_figure(s)
    assert "band index" in fig.layout.xaxis.title.text and len(fig.data) == 2


def test_sed_figure_lists_unusable_bands_off_the_flux_axis() -> None:
    """Review, ninth session: one band at 1e30 squashed the SED flat and nothing said it was
    imputed. First-use review: drawn at 0 it looked as if the app had replaced 1e30 by 0; the
    band is left off the flux axis and named with its value in a note on the figure."""
    s = {
        "bands": ["NB455", "NB465", "subaru_i"],
        "wavelength": np.array([4550.0, 4650, 7684]),
        "narrow": np.array([True, True, False]),
        "known": True,
        "flux": np.array([1.0, 1e30, 2.0]),
        "error": np.full(3, 0.1),
        "usable": np.array([True, False, True]),
        "fluxzp": 23.9,
        "exp_wavelength": np.zeros(0),
        "exp_flux": np.zeros(0),
        "exp_error": np.zeros(0),
    }
    fig = plots.sed_figure(s)
    plotted = np.concatenate([np.asarray(t.y, float) for t in fig.data])
    assert plotted.max() == 2.0
    assert sum(len(t.x) for t in fig.data) == 2  # NB465 is not drawn, at 0 or anywhere
    (note,) = [a.text for a in fig.layout.annotations]
    assert note.startswith("Not drawn, unusable values:<br>NB465 (flux 1e+30, error 0.1).")
    assert "imputed" in note and "template fit leaves them out" in note
    s["usable"] = np.array([False, False, True])
    s["flux"] = np.array([1e30, 1e30, 2.0])
    (note,) = [a.text for a in plots.sed_figure(s).layout.annotations]
    assert note.startswith(  # plotly never wraps: at most two bands per line (a browser review)
        "Not drawn, unusable values:<br>NB455 (flux 1e+30, error 0.1), NB465 (flux 1e+30, "
        "error 0.1).<br>"
    )


def test_dropping_figure() -> None:
    grid = np.linspace(0, 1.5, 151)
    full = np.exp(-0.5 * ((grid - 0.5) / 0.05) ** 2)
    variants = np.stack([np.roll(full, k) for k in range(5)])
    fig = plots.dropping_figure(grid, full, variants, ["a", "b"], zspec=0.52)
    names = [t.name for t in fig.data]
    assert names[1] == "range of all variants" and names[-1] == "full coadd"
    assert names[2:4] == ["a", "b"] and not fig.data[2].showlegend
    assert fig.layout.xaxis.title.text == plots.Z


def test_spread_histogram(rng) -> None:
    fig = plots.spread_histogram(rng.exponential(0.001, 100))
    assert _types(fig) == ["histogram"]
    assert "modes" in fig.layout.xaxis.title.text


def test_quality_curves_target_and_current(zz) -> None:
    zs, zp = zz
    odds = 1 / (1 + np.abs(zp - zs))
    curves = {
        "ODDS cut": metrics.odds_curve(zp, zs, odds),
        "optimal": metrics.optimal_curve(zp, zs),
    }
    current = {"completeness": 0.5, "sigma68": 0.004, "outlier_fraction": 0.01}
    fig = plots.quality_curves(curves, 0.0035, current)
    names = [t.name for t in fig.data]
    assert names.count("ODDS cut") == 2 and names.count("your cut") == 2
    target = [t for t in fig.data if t.name.startswith("target σ68")][0]
    assert list(target.y) == [0.0035, 0.0035]
    assert fig.layout.xaxis2.title.text == plots.COMPLETENESS
    fig = plots.quality_curves(curves, target=None)
    assert not any(t.name.startswith("target") for t in fig.data)


def test_data_histogram_leaves_out_and_counts_values_beyond_its_range() -> None:
    """Eleventh session: the Data page's magnitude histogram ran to m = 46 for one near-zero
    reference flux; with a range the values beyond it are left out and counted in the title."""
    from app.plots_data import histogram

    values = np.r_[np.linspace(20.0, 25.0, 99), 46.4]
    fig = histogram(values, "m [AB mag]", "Magnitudes", value_range=(19.9, 25.1))
    assert fig.layout.title.text == "Magnitudes (1 beyond 19.9-25.1)"
    assert max(fig.data[0].x) < 25.1 and sum(fig.data[0].y) == 99
    assert histogram(values, "m", "Magnitudes").layout.title.text == "Magnitudes"


def test_sed_axis_names_a_nanojansky_unit() -> None:
    """Eleventh session: a DP0 catalogue's SED was labelled 'flux [AB zero-point 31.4]'."""
    from app.plots import flux_unit_label

    assert flux_unit_label(31.4) == "nJy" and flux_unit_label(23.9) == "µJy"
    assert flux_unit_label(22.5) == "nanomaggy" and flux_unit_label(25.0) == "AB zero-point 25"


@pytest.mark.parametrize("outlier", [0.02, 0.15])
def test_reference_lines_stay_inside_the_frame(zz, outlier: float) -> None:
    """First-use review: on Results the z_p = z_s line and its outlier bounds ran past the top
    of the plot frame; every reference line ends inside the axes' square, which is framed."""
    fig = plots.density_heatmap(*zz, outlier=outlier)
    lo, hi = fig.layout.yaxis.range
    assert tuple(fig.layout.xaxis.range) == (lo, hi)
    lines = [t for t in fig.data if t.type == "scatter"]
    assert len(lines) == 3
    for t in lines:
        x, y = np.asarray(t.x, float), np.asarray(t.y, float)
        assert x.min() >= lo - 1e-12 and x.max() <= hi + 1e-12
        assert y.min() >= lo - 1e-12 and y.max() <= hi + 1e-12
    upper = lines[1]
    assert upper.y[-1] == pytest.approx(hi)  # it reaches the top edge, not beyond
    assert fig.layout.xaxis.mirror and fig.layout.yaxis.showline


def test_the_last_tomographic_bin_claims_no_range_beyond_the_grid() -> None:
    """First-use review: '1.00 <= z_p < 2.00' for a catalogue whose redshifts stop at 1.5 (the
    grid's end, 2, was the last edge); such a bin reads 'z_p ≥ 1.00'."""
    grid = np.round(np.arange(0, 2001) * 0.001, 12)
    nz = np.stack([np.exp(-0.5 * ((grid - m) / 0.1) ** 2) for m in (0.5, 1.2)])
    fig = plots.tomography_figure(grid, nz, np.array([0.0, 1.0, 2.0]), np.array([10, 5]))
    assert [t.name for t in fig.data] == [
        "bin 1: 0.00 ≤ z<sub>p</sub> < 1.00 (10)",
        "bin 2: z<sub>p</sub> ≥ 1.00 (5)",
    ]
    fig = plots.tomography_figure(grid, nz, np.array([0.0, 1.0, 1.5]), np.array([10, 5]))
    assert fig.data[1].name == "bin 2: 1.00 ≤ z<sub>p</sub> < 1.50 (5)"
