"""Figures of the experiments report (matplotlib, Agg backend): each function takes the numbers a
section computed and writes one PNG. No science here, only drawing."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Rows = Sequence[Mapping[str, float]]


def _save(fig: Figure, path: Path) -> str:
    """Write ``fig`` to ``path`` (PNG) and close it; the file's name, for the report."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _centres(rows: Rows) -> np.ndarray:
    return np.array([0.5 * (r["lo"] + r["hi"]) for r in rows])


def binned_lines(
    path: Path,
    lines: Mapping[str, Rows],
    xlabel: str,
    title: str,
    key: str = "sigma68",
    logx: bool = False,
) -> str:
    """One line per method of ``key`` per bin (E20 Fig. 2 and Fig. 3 layout)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rows in lines.items():
        rows = [r for r in rows if r["n"] > 0]
        ax.plot(_centres(rows), [r[key] for r in rows], marker="o", ms=3, label=label)
    ax.set(xlabel=xlabel, ylabel=f"{key} of (zp - zs)/(1 + zs)", title=title)
    if logx:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def alpha_sweep(path: Path, sweep: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    """sigma68 vs alpha; one line per (keep/drop, single/ensemble) (E20 Fig. 6)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"keep": "-", "drop": "--"}
    colours = {"single": "tab:blue", "ensemble": "black"}
    for mode, d in sweep.items():
        for kind in ("single", "ensemble"):
            ax.plot(
                d["alpha"],
                d[kind],
                styles[mode],
                color=colours[kind],
                marker="o",
                ms=3,
                label=f"{kind}, {'keep one per band' if mode == 'keep' else 'drop incomplete'}",
            )
    ax.set(
        xlabel="alpha (probability of keeping an exposure)",
        ylabel="sigma68",
        title="Randomized coadds (E20 Fig. 6)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def pit_histograms(
    path: Path, hists: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str
) -> str:
    """PIT density per method (E20 Fig. 8); a calibrated p(z) is flat at 1."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (counts, edges) in hists.items():
        ax.stairs(counts, edges, label=label)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="PIT", ylabel="density", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def completeness(
    path: Path, curves: Mapping[str, Mapping[str, Sequence[float]]], target: float
) -> str:
    """sigma68 and outlier fraction vs completeness (E20 Fig. 9)."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    for label, c in curves.items():
        a1.plot(c["completeness"], c["sigma68"], label=label)
        a2.plot(c["completeness"], c["outlier_fraction"], label=label)
    a1.axhline(target, color="grey", ls=":", label=f"PAUS target {target}")
    a1.set(ylabel="sigma68", title="Quality cuts (E20 Fig. 9)")
    a2.set(xlabel="completeness", ylabel="strict outlier fraction")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a1.legend(fontsize=8)
    return _save(fig, path)


def u_band_outliers(
    path: Path,
    x: Sequence[float],
    lines: Mapping[str, Sequence[float]],
    references: Collection[str] = (),
) -> str:
    """Strict outlier fraction vs u-band flux added to the test set (E20 Fig. B1); the lines named
    in ``references`` (flat by construction) dashed grey."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, y in lines.items():
        style = {"color": "grey", "ls": "--"} if label in references else {"marker": "o", "ms": 3}
        ax.plot(100 * np.asarray(x), y, label=label, **style)
    ax.set(
        xlabel="u-band flux added to every test galaxy (%)",
        ylabel="strict outlier fraction",
        title="Photometric outliers (E20 Fig. B1)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def denoising(
    path: Path,
    wavelength: Sequence[float],
    ratio: Sequence[float],
    corr: np.ndarray,
    labels: Sequence[str],
) -> str:
    """Top: sigma68(denoised - true)/error per band; bottom: correlation of the denoised narrow-band
    residuals (E20 Fig. 5)."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(6, 8), gridspec_kw={"height_ratios": [1, 1.6]})
    a1.plot(wavelength, ratio, "o", ms=3)
    a1.axhline(1.0, color="grey", lw=0.8)
    a1.set(
        xlabel="band mean wavelength (A)",
        ylabel="sigma68(f_denoised - f_true) / sigma",
        title="Autoencoder denoising (E20 Fig. 5)",
    )
    im = a2.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    step = max(1, len(labels) // 10)
    a2.set_xticks(range(0, len(labels), step), labels[::step], rotation=90, fontsize=6)
    a2.set_yticks(range(0, len(labels), step), labels[::step], fontsize=6)
    fig.colorbar(im, ax=a2, shrink=0.8)
    return _save(fig, path)


def bars(path: Path, values: Mapping[str, float], ylabel: str, title: str) -> str:
    """One bar per configuration (Sec. 3.3, Appendix E)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(list(values), list(values.values()))
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", labelsize=8)
    return _save(fig, path)


def jsonable(obj: Any) -> Any:
    """Numbers and containers as plain JSON values (NaN -> None)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.integer | int) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return None if not np.isfinite(obj) else float(obj)
    return obj
