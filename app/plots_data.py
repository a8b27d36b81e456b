"""Figures of the Data, Simulate and Train pages: pure functions returning plotly figures.

No streamlit import (tested directly). Histograms are binned here (np.histogram -> Bar), so any
number of galaxies is cheap to draw. Every axis names its quantity and unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

Y_TITLES = {  # what ``deepz_core.training.loop`` logs per epoch (mean over members and batches)
    "pretrain": "NLL + autoencoder term<br>(simulated galaxies)",
    "finetune": "NLL [nats/galaxy]<br>(training batches)",
}
HELDOUT = "held-out NLL [nats/galaxy]<br>(catalogue galaxies<br>never trained on)"
LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


def histogram(
    values: np.ndarray,
    xlabel: str,
    title: str,
    bins: int = 50,
    value_range: tuple[float, float] | None = None,
) -> go.Figure:
    """Histogram of the finite ``values`` (N,): galaxies per bin against ``xlabel``; with
    ``value_range`` (lo, hi) only the values inside it, the title counting those left out (a
    near-zero flux's m = 46 would squeeze every galaxy into a few bins)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if value_range is not None:
        inside = (values >= value_range[0]) & (values <= value_range[1])
        if not inside.all():
            title = (
                f"{title} ({int((~inside).sum()):,} beyond {value_range[0]:g}-{value_range[1]:g})"
            )
        values = values[inside]
    fig = go.Figure()
    if values.size:
        counts, edges = np.histogram(values, bins=bins)
        fig.add_bar(
            x=0.5 * (edges[1:] + edges[:-1]),
            y=counts,
            width=np.diff(edges),
            marker_color="#4C78A8",
            hovertemplate="%{x:.3g}: %{y} galaxies<extra></extra>",
        )
    fig.update_layout(
        title=title,
        xaxis_title=xlabel,
        yaxis_title="galaxies per bin",
        bargap=0.0,
        height=320,
        **LAYOUT,
    )
    return fig


def snr_per_band(bands: Sequence[str], snr: np.ndarray, has_curve: np.ndarray) -> go.Figure:
    """Median signal-to-noise per band with its 16-84th percentile range; ``snr`` (B, 3)."""
    snr = np.asarray(snr, dtype=np.float64)
    colour = np.where(np.asarray(has_curve, bool), "#4C78A8", "#E45756")
    fig = go.Figure(
        go.Scatter(
            x=list(bands),
            y=snr[:, 1],
            mode="markers",
            marker={"color": colour, "size": 8},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": snr[:, 2] - snr[:, 1],
                "arrayminus": snr[:, 1] - snr[:, 0],
            },
            hovertemplate="%{x}: median SNR %{y:.3g}<extra></extra>",
        )
    )
    values, labels = log_ticks(snr[np.isfinite(snr) & (snr > 0)])
    fig.update_layout(
        title="Signal-to-noise per band (median, 16-84th percentiles; red: no filter curve)",
        xaxis={"title": "band", "tickangle": -60, "automargin": True},
        yaxis={
            "title": "SNR = flux / flux error",
            "type": "log",
            "tickvals": values,
            "ticktext": labels,
            "automargin": True,
        },
        height=420,
        **{**LAYOUT, "margin": {"l": 70, "r": 20, "t": 50, "b": 90}},
    )
    return fig


def log_ticks(values: np.ndarray) -> tuple[list[float], list[str]]:
    """Tick positions 1, 2, 5 x 10^k covering ``values`` (> 0) and their plain labels ('0.5',
    '20', '1000'): readable on a log axis, unlike plotly's default exponents."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = (values.min(), values.max()) if values.size else (1.0, 100.0)
    ticks = [
        m * 10.0**k
        for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
        for m in (1, 2, 5)
    ]
    ticks = [t for t in ticks if lo / 2.5 <= t <= hi * 2.5]
    return ticks, [f"{t:g}" for t in ticks]


def training_curves(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> go.Figure:
    """Per phase (columns): the training loss (top row; in pretraining NLL plus the autoencoder
    term on simulated galaxies, so not comparable with an NLL) and the held-out NLL of the
    catalogue's galaxies each member never trained on (bottom row: mean over members, min-max
    band). ``curves``: ``deepz_core.jobs.status.training_curves``."""
    phases = list(curves) or ["finetune"]
    titles = [f"{p}: training loss" for p in phases] + [f"{p}: held-out NLL" for p in phases]
    fig = make_subplots(
        rows=2,
        cols=len(phases),
        subplot_titles=titles,
        shared_xaxes=True,
        vertical_spacing=0.14,
        horizontal_spacing=0.16,
    )
    for i, phase in enumerate(phases, start=1):
        c = curves.get(phase, {})
        fig.add_scatter(
            x=c.get("epoch", []),
            y=c.get("loss", []),
            mode="lines+markers",
            name=f"{phase}: training loss",
            row=1,
            col=i,
        )
        if c.get("val_epoch"):
            x = list(c["val_epoch"])
            fig.add_scatter(
                x=x + x[::-1],
                y=list(c["val_max"]) + list(c["val_min"])[::-1],
                fill="toself",
                line={"width": 0},
                opacity=0.2,
                hoverinfo="skip",
                name=f"{phase}: held-out NLL range over members",
                row=2,
                col=i,
            )
            fig.add_scatter(
                x=x,
                y=c["val_mean"],
                mode="lines+markers",
                name=f"{phase}: held-out NLL (mean over members)",
                row=2,
                col=i,
            )
        epochs = max(c.get("epoch", []) or [0])
        short = {"dtick": 1} if epochs <= 12 else {}  # whole epochs, no 1.5 between 1 and 2
        fig.update_xaxes(title_text="epoch", row=2, col=i, **short)
        fig.update_xaxes(row=1, col=i, **short)
        fig.update_yaxes(title_text=Y_TITLES.get(phase, "loss"), row=1, col=i)
        fig.update_yaxes(title_text=HELDOUT, row=2, col=i)
    fig.update_yaxes(automargin=True, title_font_size=11)
    fig.update_annotations(font_size=12)
    layout = {**LAYOUT, "margin": {"l": 90, "r": 20, "t": 50, "b": 50}}
    fig.update_layout(height=560, legend={"orientation": "h", "y": -0.15}, **layout)
    return fig
