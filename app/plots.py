"""Plotly figure builders for the analysis pages: pure functions of arrays, no Streamlit.

Every axis names its quantity and unit. Scatter plots of more than ``MAX_POINTS`` points are binned
on the server (np.histogram2d -> Heatmap, log colour scale); smaller ones use WebGL (Scattergl).
Paper figures referred to are from Eriksen et al. 2020 (E20).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from deepz_core.catalog.units import zeropoint_unit

MAX_POINTS = 100_000
COLORS = qualitative.Plotly
OUTLIER = 0.02  # strict outlier |Δz|/(1+z_s) > 0.02 (E20 eq. 5)
ZS = "z<sub>s</sub> (spectroscopic redshift)"
ZP = "z<sub>p</sub> (photo-z: mode of p(z))"
Z = "redshift z"
MAG = "m<sub>AB</sub> [mag] (catalogue mag, else the reference band)"
SIGMA = "σ<sub>68</sub> of Δz/(1+z<sub>s</sub>)"


def outlier_title(outlier: float = OUTLIER) -> str:
    return f"outlier fraction (|Δz|/(1+z<sub>s</sub>) > {outlier:g})"


COMPLETENESS = "completeness (fraction of galaxies kept)"
PZ = "p(z) [per unit z]"


def _finish(fig: go.Figure, title: str | None = None, height: int = 420) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _line(x: Any, y: Any, name: str, mode: str = "lines", **kw: Any) -> go.Scatter:
    """A Scatter trace (lines by default)."""
    return go.Scatter(x=x, y=y, name=name, mode=mode, **kw)


def _two_panels(fig: go.Figure, x: Any, c: Mapping[str, Any], name: str, **kw: Any) -> None:
    """σ68 (row 1) and outlier fraction (row 2) of ``c`` against ``x``, one legend entry."""
    for row, key in ((1, "sigma68"), (2, "outlier_fraction")):
        trace = _line(x, c[key], name, legendgroup=name, showlegend=row == 1, **kw)
        fig.add_trace(trace, row=row, col=1)


def _panel_axes(fig: go.Figure, x_title: str, outlier: float = OUTLIER) -> None:
    fig.update_yaxes(title=SIGMA, row=1, col=1)
    fig.update_yaxes(title=outlier_title(outlier), row=2, col=1)
    fig.update_xaxes(title=x_title, row=2, col=1)


def _side_label(
    fig: go.Figure, x: float, text: str, xrange: Sequence[float], y: float, color: str = "black"
) -> None:
    """``text`` beside the vertical line at ``x``, on the side with more room inside ``xrange``
    (the x-axis limits [lo, hi]), at height ``y`` (paper units, 0 = bottom, 1 = top), so the
    label never leaves the axes nor covers the y axis."""
    lo, hi = float(xrange[0]), float(xrange[1])
    at = min(max(float(x), lo), hi)
    right = at - lo <= hi - at  # more room to the right of the line
    fig.add_annotation(
        x=at,
        y=y,
        xref="x",
        yref="paper",
        text=text,
        showarrow=False,
        xanchor="left" if right else "right",
        xshift=3 if right else -3,
        yanchor="top" if y >= 0.5 else "bottom",
        font={"color": color, "size": 11},
        bgcolor="rgba(255,255,255,0.6)",
    )


def _vline(
    fig: go.Figure,
    x: float | None,
    text: str,
    xrange: Sequence[float],
    y: float = 1.0,
    **line: Any,
) -> None:
    """A vertical line at x labelled ``text`` inside ``xrange`` at paper height ``y`` (see
    ``_side_label``; no label when x lies outside ``xrange``, where the line is not seen either);
    skipped when x is None or not finite."""
    if x is not None and np.isfinite(x):
        style = {"color": "black", "dash": "dash"} | line
        fig.add_vline(x=x, line=style)
        if xrange[0] <= x <= xrange[1]:
            _side_label(fig, x, text, xrange, y, style["color"])


def _z_range(*arrays: np.ndarray) -> tuple[float, float]:
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    hi = float(np.percentile(finite, 99.9)) if finite.size else 1.5
    return 0.0, max(hi * 1.05, 0.1)


def _reference_lines(fig: go.Figure, lo: float, hi: float, outlier: float = OUTLIER) -> None:
    """The diagonal z_p = z_s and the outlier bounds z_p = z_s ± outlier (1 + z_s), each clipped
    to the square [lo, hi]² the axes show (a line past the frame looks like a drawing error),
    and the frame itself drawn."""
    z = np.array([lo, hi])
    black = {"color": "black", "width": 1}
    fig.add_trace(_line(z, z, "z<sub>p</sub> = z<sub>s</sub>", line=black, hoverinfo="skip"))
    grey = {"color": "grey", "width": 1, "dash": "dash"}
    for sign in (1, -1):
        x, y = clipped_bound(lo, hi, sign * outlier)
        name = f"outlier bounds ±{outlier:g}(1+z<sub>s</sub>)"
        fig.add_trace(_line(x, y, name, showlegend=sign > 0, line=grey, legendgroup="bounds"))
    frame = {"showline": True, "mirror": True, "linecolor": "grey", "linewidth": 1}
    fig.update_xaxes(**frame)
    fig.update_yaxes(**frame)


def clipped_bound(lo: float, hi: float, k: float) -> tuple[np.ndarray, np.ndarray]:
    """End points of the line z_p = z_s + k (1 + z_s) inside the square [lo, hi]² (z_s from
    where it enters the square to where it leaves it; empty when it misses it)."""
    z0 = max(lo, (lo - k) / (1 + k))  # z_p >= lo
    z1 = min(hi, (hi - k) / (1 + k))  # z_p <= hi
    if z1 <= z0:
        return np.zeros(0), np.zeros(0)
    x = np.array([z0, z1])
    return x, x + k * (1 + x)


def density_heatmap(
    zs: np.ndarray,
    zp: np.ndarray,
    bins: int | None = None,
    title: str | None = None,
    outlier: float = OUTLIER,
) -> go.Figure:
    """z_p vs z_s as a 2-D histogram with a log10 colour scale (E20 Fig. D1); any number of points.
    Default bins: 2 sqrt(N) per axis, between 30 and 200."""
    zs, zp = np.asarray(zs, float), np.asarray(zp, float)
    ok = np.isfinite(zs) & np.isfinite(zp)
    bins = bins or int(np.clip(2 * np.sqrt(ok.sum()), 30, 200))
    lo, hi = _z_range(zs[ok], zp[ok])
    counts, xe, ye = np.histogram2d(zs[ok], zp[ok], bins=bins, range=[[lo, hi], [lo, hi]])
    with np.errstate(divide="ignore"):
        logc = np.where(counts > 0, np.log10(counts), np.nan).T  # (y, x)
    fig = go.Figure(
        go.Heatmap(
            x=0.5 * (xe[1:] + xe[:-1]),
            y=0.5 * (ye[1:] + ye[:-1]),
            z=logc.astype(np.float32),  # half the bytes sent (200 x 200 bins: 0.85 -> 0.43 MB)
            customdata=counts.T.astype(np.int32),  # the same colours and hover counts
            colorscale="Viridis",
            colorbar={"title": "log<sub>10</sub> N"},
            name="galaxies",
            hovertemplate="z_s %{x:.3f}<br>z_p %{y:.3f}<br>N %{customdata:.0f}<extra></extra>",
        )
    )
    _reference_lines(fig, lo, hi, outlier)
    fig.update_xaxes(title=ZS, range=[lo, hi])
    fig.update_yaxes(title=ZP, range=[lo, hi])
    return _finish(fig, title or f"z<sub>p</sub> vs z<sub>s</sub> ({int(ok.sum()):,} galaxies)")


def zp_zs_scatter(
    zs: np.ndarray,
    zp: np.ndarray,
    ids: np.ndarray,
    highlight: int | None = None,
    color: np.ndarray | None = None,
    color_title: str = "ODDS",
    max_points: int = MAX_POINTS,
    outlier: float = OUTLIER,
) -> go.Figure:
    """Clickable z_p vs z_s scatter (Scattergl; the ref_id as text in customdata, so a 19-digit
    id is shown exactly); binned above ``max_points``. ``highlight``: the ref_id to mark with a
    star; ``outlier``: the outlier bounds drawn."""
    zs, zp, ids = np.asarray(zs, float), np.asarray(zp, float), np.asarray(ids)
    if len(zs) > max_points:
        fig = density_heatmap(zs, zp, outlier=outlier)
    else:
        marker: dict[str, Any] = {"size": 5, "opacity": 0.7}
        if color is not None:
            marker |= {"color": color, "colorscale": "Viridis", "colorbar": {"title": color_title}}
        fig = go.Figure(
            go.Scattergl(
                x=zs,
                y=zp,
                mode="markers",
                customdata=ids.astype(str),
                marker=marker,
                name="galaxies",
                hovertemplate="ref_id %{customdata}<br>z_s %{x:.4f}<br>z_p %{y:.4f}<extra></extra>",
            )
        )
        lo, hi = _z_range(zs, zp)
        _reference_lines(fig, lo, hi, outlier)
        fig.update_xaxes(title=ZS, range=[lo, hi])
        fig.update_yaxes(title=ZP, range=[lo, hi])
        _finish(fig, f"z<sub>p</sub> vs z<sub>s</sub>: click a point ({len(zs):,} galaxies)")
    if highlight is not None and (ids == highlight).any():
        i = int(np.flatnonzero(ids == highlight)[0])
        star = {
            "symbol": "star",
            "size": 16,
            "color": "red",
            "line": {"color": "black", "width": 1},
        }
        fig.add_trace(_line([zs[i]], [zp[i]], f"ref_id {highlight}", "markers", marker=star))
    return fig


def metrics_vs_mag(series: Mapping[str, Any], outlier: float = OUTLIER) -> go.Figure:
    """σ68 and outlier fraction (|Δz|/(1+z_s) > ``outlier``) per magnitude bin, one line per run
    (E20 Fig. 2). ``series``: name -> deepz_core.pz.metrics.BinnedMetrics."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for k, (name, b) in enumerate(series.items()):
        c = {"sigma68": b.sigma68, "outlier_fraction": b.outlier_fraction}
        style = {"color": COLORS[k % len(COLORS)]}
        hover = [f"N = {n}" for n in b.counts]
        _two_panels(fig, b.centers, c, name, line=style, mode="lines+markers", text=hover)
    _panel_axes(fig, MAG, outlier)
    return _finish(fig, "Scatter and outliers vs magnitude (E20 Fig. 2)", height=560)


def pit_figure(series: Mapping[str, tuple[np.ndarray, np.ndarray, Any]]) -> go.Figure:
    """PIT histograms (density on [0, 1]) with the uniform line; KS statistic and p-value in the
    legend (E20 Fig. 8). ``series``: name -> (density (K,), edges (K+1,), (statistic, pvalue))."""
    fig = go.Figure()
    for k, (name, (density, edges, ks)) in enumerate(series.items()):
        label = f"{name} (KS D = {ks[0]:.3f}, p = {ks[1]:.2g})"
        x = np.repeat(edges, 2)[1:-1]
        style = {"color": COLORS[k % len(COLORS)], "width": 2}
        fig.add_trace(_line(x, np.repeat(density, 2), label, line=style))
    fig.add_hline(y=1.0, line={"color": "black", "dash": "dash"}, annotation_text="uniform")
    fig.update_xaxes(title="PIT = ∫<sub>0</sub><sup>z<sub>s</sub></sup> p(z) dz", range=[0, 1])
    fig.update_yaxes(title="density of PIT values", rangemode="tozero")
    return _finish(fig, "Probability integral transform (E20 Fig. 8)")


def count_step(top: float, ticks: int = 6) -> int:
    """A round integer tick step (1, 2, 5 x 10^k) giving about ``ticks`` ticks from 0 to ``top``
    (a count axis: never a fraction of a galaxy)."""
    raw = max(float(top), 1.0) / ticks
    decade = 10 ** int(np.floor(np.log10(raw)))
    step = next((m * decade for m in (1, 2, 5, 10) if m * decade >= raw), 10 * decade)
    return max(int(round(step)), 1)


def spec_density_figure(series: Mapping[str, Any]) -> go.Figure:
    """σ68 vs the number of training spec-z in the galaxy's Δz = 0.001 bin, with the number of
    test galaxies per bin as bars (E20 Fig. 3). ``series``: name -> BinnedMetrics."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for k, (name, b) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        fig.add_trace(
            go.Bar(
                x=b.centers,
                y=b.counts,
                name=f"{name}: galaxies per bin",
                opacity=0.25,
                marker_color=color,
                width=np.diff(b.edges),
            ),
            secondary_y=True,
        )
        trace = _line(b.centers, b.sigma68, f"{name}: σ68", "lines+markers", line={"color": color})
        fig.add_trace(trace, secondary_y=False)
    right = max((float(b.edges[-1]) for b in series.values() if len(b.edges)), default=1.0)
    xticks = {"tickmode": "linear", "tick0": 0, "dtick": count_step(right)}  # whole galaxies
    fig.update_xaxes(title="training spec-z per Δz = 0.001 bin [galaxies]", **xticks)
    fig.update_yaxes(title=SIGMA, secondary_y=False)
    top = max((float(np.max(b.counts)) for b in series.values() if len(b.counts)), default=1.0)
    counts_axis = {"tickmode": "linear", "tick0": 0, "dtick": count_step(top), "showgrid": False}
    fig.update_yaxes(
        title="test galaxies [N]",
        secondary_y=True,
        range=[0, 1.08 * max(top, 1.0)],  # bars from 0, the tallest not clipped
        tickformat=",d",
        **counts_axis,
    )
    return _finish(fig, "Scatter vs spectroscopic density (E20 Fig. 3)")


def _support(
    grid: np.ndarray, pdf: np.ndarray, frac: float = 1e-3, pad: float = 0.05
) -> list[float]:
    """x range where pdf exceeds ``frac`` of its peak, padded."""
    above = (
        np.flatnonzero(pdf >= frac * np.nanmax(pdf)) if np.nanmax(pdf) > 0 else np.arange(len(grid))
    )
    return [max(grid[0], grid[above[0]] - pad), min(grid[-1], grid[above[-1]] + pad)]


def _odds_window(fig: go.Figure, mode: float, width: float, xrange: Sequence[float]) -> None:
    """The ODDS window [mode - width/2, mode + width/2] shaded, labelled beside its edge on the side
    with room, above the bottom row where the mode's label sits."""
    fig.add_vrect(
        x0=mode - width / 2, x1=mode + width / 2, fillcolor="orange", opacity=0.3, line_width=0
    )
    lo, hi = float(xrange[0]), float(xrange[1])
    edge = mode + width / 2 if mode - lo <= hi - mode else mode - width / 2
    _side_label(fig, edge, "ODDS window", xrange, 0.12, "darkorange")


def pz_figure(
    grid: np.ndarray,
    pdf: np.ndarray,
    *,
    members: np.ndarray | None = None,
    members_used: np.ndarray | None = None,
    components: np.ndarray | None = None,
    zspec: float | None = None,
    mode: float | None = None,
    odds_window: float | None = None,
    title: str | None = None,
    label: str = "ensemble p(z)",
    mode_label: str = "mode",
    median: float | None = None,
    interval: tuple[float, float] | None = None,
    raw_pdf: np.ndarray | None = None,
) -> go.Figure:
    """A galaxy's ensemble p(z) on the grid (called ``label`` in the legend), with its members'
    p(z) (E, G) (dotted when the member trained on the galaxy), mixture components (K, G), z_s
    line, the mode line (labelled ``mode_label``) and the ODDS window shaded. A calibrated p(z)
    adds the ``median`` and 68% ``interval`` of the curve drawn and ``raw_pdf`` (G,), the p(z)
    before calibration whose mode z_p is, drawn faintly: the figure never marks a 'mode' that
    the curve drawn does not peak at without saying so."""
    fig = go.Figure()
    xrange = _support(grid, pdf if raw_pdf is None else np.maximum(pdf, raw_pdf))
    if mode is not None and odds_window is not None and np.isfinite(mode):
        _odds_window(fig, mode, odds_window, xrange)
    if interval is not None and all(np.isfinite(interval)):
        fig.add_vrect(
            x0=interval[0], x1=interval[1], fillcolor="crimson", opacity=0.08, line_width=0
        )
    grey = {"color": "lightgrey", "width": 1}
    for i, comp in enumerate(components if components is not None else []):
        name = "mixture components (weighted)"
        fig.add_trace(_line(grid, comp, name, legendgroup="comp", showlegend=i == 0, line=grey))
    for e, member in enumerate(members if members is not None else []):
        used = True if members_used is None else bool(members_used[e])
        style = {"color": "steelblue", "width": 1, "dash": "solid" if used else "dot"}
        name = "members (dotted: trained on this galaxy)"
        fig.add_trace(_line(grid, member, name, legendgroup="m", showlegend=e == 0, line=style))
    if raw_pdf is not None:
        faint = {"color": "grey", "width": 2, "dash": "dash"}
        fig.add_trace(_line(grid, raw_pdf, "p(z) before calibration", line=faint))
    fig.add_trace(_line(grid, pdf, label, line={"color": "crimson", "width": 3}))
    _vline(fig, zspec, "z<sub>s</sub>", xrange)
    _vline(fig, mode, mode_label, xrange, 0.02, color="crimson", dash="solid", width=1)
    if interval is not None and all(np.isfinite(interval)):
        _side_label(fig, interval[1], "68% interval", xrange, 0.88, "crimson")
    _vline(fig, median, "median", xrange, 0.22, color="crimson", dash="dot", width=2)
    fig.update_xaxes(title=Z, range=xrange)
    fig.update_yaxes(title=PZ, rangemode="tozero")
    return _finish(fig, title or "p(z)")


CALIBRATED_MODE_LABEL = "z<sub>p</sub>: mode before calibration"


def pz_markers(g: Mapping[str, Any], raw_pdf: np.ndarray | None = None) -> dict[str, Any]:
    """``pz_figure`` keyword arguments for the mode, median, 68% interval and raw p(z) of a galaxy
    (the dict of ``deepz_core.evaluation.galaxy.galaxy_pz``): a calibrated p(z) gets its median and
    interval marked and its z_p line called the mode before calibration."""
    if not g.get("calibrated"):
        return {"mode": g["mode"]}
    return {
        "mode": g["mode"],
        "mode_label": CALIBRATED_MODE_LABEL,
        "median": g["zmedian"],
        "interval": (g["z_lo68"], g["z_hi68"]),
        "raw_pdf": raw_pdf,
    }


def flux_unit_label(fluxzp: float) -> str:
    """The flux unit of AB zero-point ``fluxzp`` for an axis: 'µJy' (23.9), 'nJy' (31.4, a DP0
    catalogue), 'nanomaggy' (22.5)...; 'AB zero-point <zp>' for any other."""
    name = zeropoint_unit(fluxzp)
    if name is None:
        return f"AB zero-point {fluxzp:g}"
    return "µJy" if name == "uJy" else name


def sed_figure(
    s: Mapping[str, Any], title: str | None = None, model: Mapping[str, Any] | None = None
) -> go.Figure:
    """Coadd fluxes ± errors of narrow and broad bands vs effective wavelength, single exposures as
    small points. ``s``: the dict of ``deepz_core.evaluation.galaxy.sed``; ``model``: a best-fit
    model's fluxes (B,) per band (``flux``) and its ``label``, drawn as open diamonds."""
    unit = flux_unit_label(float(s.get("fluxzp", 23.9)))
    fig = go.Figure()
    if len(s["exp_flux"]):
        fig.add_trace(
            go.Scattergl(
                x=s["exp_wavelength"],
                y=s["exp_flux"],
                mode="markers",
                name="single exposures",
                marker={"size": 4, "color": "grey", "opacity": 0.6},
                error_y={"array": s["exp_error"], "thickness": 0.5, "color": "lightgrey"},
            )
        )
    narrow = np.asarray(s["narrow"], bool)
    bands = np.asarray(s["bands"])
    usable = np.asarray(s.get("usable", np.ones(len(bands), bool)), bool)
    for label, pick, color, size in (
        ("narrow bands (coadd)", narrow & usable, "crimson", 7),
        ("broad bands (coadd)", ~narrow & usable, "navy", 11),
    ):
        if pick.any():
            fig.add_trace(
                go.Scatter(
                    x=s["wavelength"][pick],
                    y=s["flux"][pick],
                    mode="markers",
                    name=label,
                    text=bands[pick],
                    marker={"size": size, "color": color},
                    error_y={"array": s["error"][pick]},
                )
            )
    if not usable.all():  # junk values (1e30, -99, NaN) would set the axis: listed, not drawn
        fig.add_annotation(
            text=unusable_note(s, ~usable),
            x=0,
            y=1,
            xref="paper",
            yref="paper",
            xanchor="left",
            yanchor="top",
            align="left",
            showarrow=False,
            font={"size": 10, "color": "darkorange"},
            bgcolor="rgba(255,255,255,0.7)",
        )
    if model is not None:
        order = np.argsort(s["wavelength"])
        fig.add_trace(
            go.Scatter(
                x=np.asarray(s["wavelength"])[order],
                y=np.asarray(model["flux"])[order],
                mode="lines+markers",
                name=str(model.get("label", "model")),
                line={"color": "orange", "width": 1},
                marker={"symbol": "diamond-open", "size": 9, "color": "orange"},
            )
        )
    fig.update_xaxes(
        title="effective wavelength [Å]"
        if s.get("known", True)
        else "band index (unknown filter curves)"
    )
    fig.update_yaxes(title=f"flux [{unit}]")
    return _finish(fig, title or "SED")


UNUSABLE_SHOWN = 6  # unusable bands named in the SED's note


def unusable_note(s: Mapping[str, Any], pick: np.ndarray) -> str:
    """'Not drawn: NB465 (flux 1e+30), ...': the bands ``pick`` (B,) whose values the screen
    finds unusable, with their values: they stay off the flux axis (a 1e30 would flatten it,
    a cross at 0 would look like a measured 0); the networks impute them, the template fit
    leaves them out."""
    bands = np.asarray(s["bands"])[pick]
    shown = [
        f"{b} (flux {f:g}, error {e:g})"
        for b, f, e in zip(
            bands, np.asarray(s["flux"])[pick], np.asarray(s["error"])[pick], strict=True
        )
    ][:UNUSABLE_SHOWN]
    more = f" and {len(bands) - UNUSABLE_SHOWN} more" if len(bands) > UNUSABLE_SHOWN else ""
    lines = [", ".join(shown[i : i + 2]) for i in range(0, len(shown), 2)]  # plotly never wraps
    return (
        f"Not drawn, unusable values:<br>{',<br>'.join(lines)}{more}.<br>"
        "The networks see an imputed value instead; the template fit leaves them out."
    )


def chi2_figure(
    z: np.ndarray, chi2: np.ndarray, z_best: float | None = None, zspec: float | None = None
) -> go.Figure:
    """chi2_min(z) of a template fit on the redshifts where it was solved (the search refines
    near the minimum), with the best redshift and z_s marked (what eazy-py's viewer shows)."""
    fig = go.Figure(
        go.Scatter(x=z, y=chi2, mode="lines+markers", name="χ²<sub>min</sub>(z)", marker_size=3)
    )
    marks = [v for v in (z_best, zspec) if v is not None and np.isfinite(v)]
    span = np.concatenate([np.asarray(z, float), marks]) if len(z) or marks else np.zeros(1)
    xrange = [float(np.min(span)), float(np.max(span))]  # what the autorange shows (unpadded)
    _vline(fig, z_best, "best fit", xrange, 0.02, color="crimson", dash="solid", width=1)
    _vline(fig, zspec, "z<sub>s</sub>", xrange)
    fig.update_xaxes(title=Z)
    fig.update_yaxes(title="χ² (minimum over templates)", type="log")
    return _finish(fig, "χ²(z) of the template fit")


def dropping_figure(
    grid: np.ndarray,
    full: np.ndarray,
    variants: np.ndarray,
    labels: Sequence[str],
    zspec: float | None = None,
) -> go.Figure:
    """Fig. 7 of E20: p(z) from the full coadd (thick red) and with single exposures left out
    (thin lines, (V, G), named by ``labels`` in their hover text), the envelope of all variants
    shaded, z_s as a vertical line."""
    fig = go.Figure()
    if len(variants):
        lo, hi = variants.min(axis=0), variants.max(axis=0)
        fig.add_trace(_line(grid, hi, "max", line={"width": 0}, showlegend=False))
        fill = {"fill": "tonexty", "fillcolor": "rgba(70,130,180,0.2)"}
        fig.add_trace(_line(grid, lo, "range of all variants", line={"width": 0}, **fill))
    for curve, label in zip(variants[: len(labels)], labels, strict=False):
        thin = {"line": {"width": 1}, "opacity": 0.8, "hovertemplate": f"{label}<extra></extra>"}
        fig.add_trace(_line(grid, curve, label, showlegend=False, **thin))
    fig.add_trace(_line(grid, full, "full coadd", line={"color": "red", "width": 3}))
    xrange = _support(grid, full, pad=0.1)
    _vline(fig, zspec, "z<sub>s</sub>", xrange)
    fig.update_xaxes(title=Z, range=xrange)
    fig.update_yaxes(title=PZ, rangemode="tozero")
    return _finish(fig, "Leaving single exposures out (E20 Fig. 7)", height=460)


def spread_histogram(spread: np.ndarray, bins: int = 40) -> go.Figure:
    """Histogram of the per-galaxy std of leave-one-out modes."""
    fig = go.Figure(go.Histogram(x=np.asarray(spread, float), nbinsx=bins, name="galaxies"))
    fig.update_xaxes(title="std of leave-one-out modes [Δz]")
    fig.update_yaxes(title="galaxies [N]")
    return _finish(fig, "Spread of the modes")


def quality_curves(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    target: float | None = 0.0035,
    current: Mapping[str, float] | None = None,
    title: str = "Quality cuts (E20 Fig. 9)",
    outlier: float = OUTLIER,
    target_fraction: float = 0.5,
) -> go.Figure:
    """σ68 (top) and outlier fraction (|Δz|/(1+z_s) > ``outlier``, bottom) vs completeness for
    each cut (dict of deepz_core.pz.metrics.completeness_curve outputs); a σ68 ``target`` for the
    best ``target_fraction`` (PAUS: 0.0035 for 50%; None: no line); ``current``: the selected cut
    (completeness, sigma68, outlier_fraction) as a marker."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for k, (name, c) in enumerate(curves.items()):
        style = {"color": COLORS[k % len(COLORS)], "dash": "dash" if "optimal" in name else "solid"}
        _two_panels(fig, c["completeness"], c, name, line=style)
    if target is not None:
        name = f"target σ68 = {target:g}(1+z), best {target_fraction:.0%}"
        dot = {"color": "black", "dash": "dot"}
        fig.add_trace(_line([0, 1], [target, target], name, line=dot), row=1, col=1)
        fig.add_vline(x=target_fraction, line={"color": "grey", "dash": "dot", "width": 1})
    if current is not None and np.isfinite(current.get("sigma68", np.nan)):
        cut = {k: [current[k]] for k in ("sigma68", "outlier_fraction")}
        cross = {"symbol": "x", "size": 13, "color": "red"}
        _two_panels(fig, [current["completeness"]], cut, "your cut", mode="markers", marker=cross)
    _panel_axes(fig, COMPLETENESS, outlier)
    fig.update_xaxes(range=[0, 1.02], row=2, col=1)
    return _finish(fig, title, height=600)


# --- survey products of a predicted catalogue (Predict page) --------------------------------------


def nz_figure(grid: np.ndarray, nz: np.ndarray, n: int, title: str | None = None) -> go.Figure:
    """n(z) of a selection as its stacked p(z) (``deepz_core.evaluation.survey.stacked_nz``)."""
    fig = go.Figure(
        go.Scatter(
            x=grid,
            y=nz,
            mode="lines",
            name=f"stacked p(z) of {n:,} galaxies",
            fill="tozeroy",
            line={"color": "crimson", "width": 2},
        )
    )
    fig.update_xaxes(title=Z, range=_support(grid, nz, pad=0.05) if n else None)
    fig.update_yaxes(title="n(z) [per unit z, integrates to 1]", rangemode="tozero")
    return _finish(fig, title or f"Redshift distribution n(z) ({n:,} galaxies)")


def bin_range(edges: np.ndarray, k: int, z_top: float) -> str:
    """'0.50 ≤ z_p < 1.00' for bin ``k`` of ``edges`` (K+1,); the last bin 'z_p ≥ 1.00' when its
    upper edge reaches ``z_top`` (the p(z) grid's end: no z_p lies beyond, so an upper edge
    there would claim a range the data do not reach)."""
    zp = "z<sub>p</sub>"
    if k == len(edges) - 2 and edges[k + 1] >= z_top - 1e-9:
        return f"{zp} ≥ {edges[k]:.2f}"
    return f"{edges[k]:.2f} ≤ {zp} < {edges[k + 1]:.2f}"


def tomography_figure(
    grid: np.ndarray, nz: np.ndarray, edges: np.ndarray, counts: np.ndarray
) -> go.Figure:
    """Each tomographic bin's n(z) (K, G) (stacked p(z) of the galaxies with z_p in the bin),
    with the bins' z_p edges (K+1,) shaded: the tails show how far true redshifts leak out."""
    fig = go.Figure()
    for k in range(len(counts)):
        color = COLORS[k % len(COLORS)]
        fig.add_vrect(x0=edges[k], x1=edges[k + 1], fillcolor=color, opacity=0.08, line_width=0)
        label = f"bin {k + 1}: {bin_range(edges, k, float(grid[-1]))} ({counts[k]:,})"
        fig.add_trace(_line(grid, nz[k], label, line={"color": color, "width": 2}))
    top = nz.max(axis=0) if len(nz) else np.zeros_like(grid)
    fig.update_xaxes(title=Z, range=_support(grid, top, pad=0.1) if top.max() > 0 else None)
    fig.update_yaxes(title="n(z) of the bin [per unit z]", rangemode="tozero")
    return _finish(fig, "Tomographic bins by photo-z: each bin's stacked p(z)", height=460)


def sky_figure(
    ra: np.ndarray, dec: np.ndarray, color: np.ndarray | None = None, max_points: int = MAX_POINTS
) -> go.Figure:
    """The galaxies on the sky: ra (increasing to the left, as on the sky) vs dec [deg], coloured
    by ``color`` (the photo-z); binned (counts per cell) above ``max_points``."""
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.sum() > max_points:
        counts, xe, ye = np.histogram2d(ra[ok], dec[ok], bins=200)
        fig = go.Figure(
            go.Heatmap(
                x=0.5 * (xe[1:] + xe[:-1]),
                y=0.5 * (ye[1:] + ye[:-1]),
                z=np.where(counts > 0, counts, np.nan).T,
                colorscale="Viridis",
                colorbar={"title": "galaxies"},
            )
        )
    else:
        marker: dict[str, Any] = {"size": 4, "opacity": 0.7}
        if color is not None:
            c = np.asarray(color, float)[ok]
            marker |= {"color": c, "colorscale": "Viridis", "colorbar": {"title": "z<sub>p</sub>"}}
        fig = go.Figure(go.Scattergl(x=ra[ok], y=dec[ok], mode="markers", marker=marker))
    fig.update_xaxes(title="right ascension [deg]", autorange="reversed")
    fig.update_yaxes(title="declination [deg]", scaleanchor="x", scaleratio=1)
    return _finish(fig, f"Sky positions ({int(ok.sum()):,} galaxies)", height=480)


# --- the combination of the networks with the template fit (deepz_core.hybrid; beyond E20) -----

ESTIMATORS = {"network": "network", "templatefit": "template fit", "combined": "combined"}


COMBINATION_METRICS = (  # (summary key, column title); a summary without one shows "—"
    ("sigma68", "σ68"),
    ("outliers", "outliers"),
    ("catastrophic", "catastrophic"),
    ("pit_ks", "PIT KS"),
)


def combination_rows(summary: Mapping[str, Any], catastrophic: bool = True) -> list[dict[str, Any]]:
    """The table of ``Run.combination_summary()``: one row per half magnitude and an 'all' row
    first; per estimator (network, template fit, combined) σ68, the outlier fractions (at the
    summary's ``outlier_threshold``; ``catastrophic``: the catastrophic ones too) and the PIT KS
    statistic over the out-of-fold spec-z galaxies."""
    shown = [(m, t) for m, t in COMBINATION_METRICS if catastrophic or m != "catastrophic"]

    def row(label: str, n: int, scores: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"magnitude": label, "galaxies": int(n)}
        for metric, title in shown:
            for key, name in ESTIMATORS.items():
                out[f"{title} {name}"] = float(scores.get(key, {}).get(metric, np.nan))
        return out

    rows = [row("all", summary.get("n", 0), summary.get("overall", {}))]
    for b in summary.get("per_magnitude", []):
        rows.append(row(f"{b['lo']:.1f}-{b['hi']:.1f}", b.get("n", 0), b))
    return rows


def combination_vs_mag(summary: Mapping[str, Any], title: str | None = None) -> go.Figure:
    """σ68 per half magnitude of the network, the template fit and their combination (three
    lines; N per bin on hover), from ``Run.combination_summary()``."""
    bins = [b for b in summary.get("per_magnitude", []) if b.get("n", 0)]
    x = [(b["lo"] + b["hi"]) / 2 for b in bins]
    hover = [f"{b['lo']:.1f}-{b['hi']:.1f}: N = {b['n']}" for b in bins]
    fig = go.Figure()
    # the combination is drawn first, wide and pale, so that an estimator it equals stays visible
    styles = {
        "combined": ({"color": COLORS[2], "width": 6}, 0.45),
        "network": ({"color": COLORS[0], "dash": "dot", "width": 2}, 1.0),
        "templatefit": ({"color": COLORS[1], "dash": "dash", "width": 2}, 1.0),
    }
    for key, (style, opacity) in styles.items():
        y = [b.get(key, {}).get("sigma68", np.nan) for b in bins]
        rank = list(ESTIMATORS).index(key)  # the legend reads network, template fit, combined
        trace = _line(x, y, ESTIMATORS[key], "lines+markers", line=style, text=hover)
        fig.add_trace(trace.update(opacity=opacity, legendrank=rank))
    fig.update_xaxes(title=MAG)
    fig.update_yaxes(title=SIGMA, type="log")
    return _finish(fig, title or "Network, template fit and their combination vs magnitude")
