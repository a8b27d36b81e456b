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
    "pretrain": "loss: NLL [nats/galaxy] + autoencoder |dx|/err",
    "finetune": "NLL [nats per galaxy]",
}
LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


def histogram(values: np.ndarray, xlabel: str, title: str, bins: int = 50) -> go.Figure:
    """Histogram of the finite ``values`` (N,): galaxies per bin against ``xlabel``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
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
    fig.update_layout(
        title="Signal-to-noise per band (median, 16-84th percentiles; red: no filter curve)",
        xaxis_title="band",
        yaxis_title="SNR = flux / flux error",
        yaxis={"type": "log", "dtick": 1},
        height=360,
        **LAYOUT,
    )
    return fig


def training_curves(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> go.Figure:
    """Training loss and held-out NLL (mean over members, min-max band) against epoch, one panel
    per phase (``deepz_core.jobs.status.training_curves``)."""
    phases = list(curves) or ["finetune"]
    fig = make_subplots(rows=1, cols=len(phases), subplot_titles=phases)
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
                row=1,
                col=i,
            )
            fig.add_scatter(
                x=x,
                y=c["val_mean"],
                mode="lines+markers",
                name=f"{phase}: held-out NLL (mean over members)",
                row=1,
                col=i,
            )
        fig.update_xaxes(title_text="epoch", row=1, col=i)
        fig.update_yaxes(title_text=Y_TITLES.get(phase, "loss"), row=1, col=i)
    fig.update_layout(height=380, legend={"orientation": "h", "y": -0.25}, **LAYOUT)
    return fig
