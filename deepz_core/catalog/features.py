"""Network inputs: fluxes divided by a reference band's flux (E20 Sec. 2.2), and their screen.

All fluxes (coadds, their errors and single exposures) are divided by the reference-band coadd flux
(default subaru_i). The network scales the ratios itself (``ModelConfig.input_norm``). Every galaxy
is screened (``deepz_core.catalog.screen``): galaxies without a usable reference flux have no ratios and
are left out of the features, counted, never silently; the others carry their flags and a
usable/unusable verdict per band (unusable ratios are NaN here, imputed at prediction time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepz_core.catalog.catalog import Catalog, dense_exposures
from deepz_core.catalog.screen import (
    InputStats,
    PzFlag,
    Screen,
    TrainingMagnitudes,
    fit_input_stats,
    screen_magnitude,
    screen_outside_magnitudes,
    screen_photometry,
    screen_population,
)
from deepz_core.errors import ConfigError


def resolve_ref_band(bands: Sequence[str], ref_band: str | None = None) -> str:
    """The reference band: ``ref_band`` if given, else subaru_i, else the first band named i or
    ending in _i, in any case (``i`` from ``mag_i``, ``I``, ``lsst_i``, ``hsc_I``)."""
    if ref_band is not None:
        if ref_band not in bands:
            raise ConfigError(
                f"ref_band {ref_band!r} is not among the catalogue's bands {list(bands)}"
            )
        return ref_band
    if "subaru_i" in bands:
        return "subaru_i"
    ends = [b for b in bands if b.lower() == "i" or b.lower().endswith("_i")]
    if not ends:
        raise ConfigError(f"no i band among {list(bands)}; choose one with --ref-band")
    return ends[0]


def default_ref_band(bands: Sequence[str]) -> str:
    """A reference band to propose: ``resolve_ref_band``'s choice, else the last (usually
    reddest) band."""
    try:
        return resolve_ref_band(bands)
    except ConfigError:
        return bands[-1]


@dataclass(frozen=True, eq=False)
class Features:
    """Inputs for the N galaxies kept from a catalogue (all arrays float32 unless noted).

    ratio, ratio_error: (N, B) coadd flux and error over the reference flux (NaN where a band is
    unusable); exp_ratio, exp_error: (N, B, X) single exposures over the reference flux with
    ``exp_mask`` (N, B, X) bool, or None. flags: (N,) int32 ``PzFlag`` bits; usable: (N, B) bool.
    ``n_rows`` is the catalogue's row count, ``n_excluded`` its rows without a usable reference
    flux (not among the N); ``row_flags`` (n_rows,) int32 the photometric screen's flags of every
    catalogue row, those left out included (None: unknown).
    """

    bands: tuple[str, ...]
    ref_band: str
    rows: np.ndarray  # (N,) int64 rows of the source catalogue
    ref_id: np.ndarray  # (N,) int64
    ratio: np.ndarray
    ratio_error: np.ndarray
    zspec: np.ndarray  # (N,) float64, NaN where unknown
    mag: np.ndarray | None  # (N,) float64 AB: the catalogue's mag, else the reference band's
    exp_ratio: np.ndarray | None
    exp_error: np.ndarray | None
    exp_mask: np.ndarray | None
    n_excluded: int
    flags: np.ndarray
    usable: np.ndarray
    n_rows: int
    ref_mag: np.ndarray  # (N,) float32 AB magnitude of the reference-band flux
    row_flags: np.ndarray | None = None  # (n_rows,) int32 screen flags of every catalogue row

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def has_exposures(self) -> bool:
        return self.exp_mask is not None and bool(self.exp_mask.any())

    def subset(self, rows: np.ndarray) -> Features:
        """The galaxies at positions ``rows`` (indices or boolean mask) of this feature set."""
        per_galaxy = (
            "rows",
            "ref_id",
            "ratio",
            "ratio_error",
            "zspec",
            "mag",
            "exp_ratio",
            "exp_error",
            "exp_mask",
            "flags",
            "usable",
            "ref_mag",
        )
        picked = {
            k: None if getattr(self, k) is None else getattr(self, k)[rows] for k in per_galaxy
        }
        return dataclasses.replace(self, **picked, n_excluded=0)

    def exclusion_note(self) -> str:
        """One line on the galaxies left without a p(z) (reference flux missing or <= 0); "" when
        none."""
        if not self.n_excluded:
            return ""
        return (
            f"{self.n_excluded} galaxies without a p(z): reference band {self.ref_band} flux "
            "missing or <= 0"
        )

    @property
    def trainable(self) -> np.ndarray:
        """(N,) bool: galaxies without any flag, the only ones a training loss may see."""
        return self.flags == 0

    @property
    def predictable(self) -> np.ndarray:
        """(N,) bool: galaxies that get a p(z) (no NO_PZ flag)."""
        return (self.flags & PzFlag.NO_PZ) == 0

    def inputs(self, with_magnitude: bool) -> np.ndarray:
        """(N, F) the networks' raw inputs: the flux ratios (B columns, NaN where unusable) and,
        ``with_magnitude``, the reference band's AB magnitude as a last column."""
        if not with_magnitude:
            return self.ratio
        return np.concatenate([self.ratio, self.ref_mag[:, None]], axis=1)

    def input_stats(self, with_magnitude: bool = False) -> InputStats:
        """Robust statistics (F,) of the inputs of the galaxies that pass the photometric screen."""
        return fit_input_stats(self.inputs(with_magnitude), self.trainable)

    def against_population(self, stats: InputStats) -> Features:
        """These features with OUTSIDE_TRAINING (and what follows from it) flagged: ratios beyond
        ``COLOUR_SIGMA`` robust sigma of the training population ``stats`` and, when the stats
        have a magnitude column (networks that read it), reference magnitudes beyond
        ``MAG_SIGMA`` (``screen_magnitude``)."""
        ref, b = self.bands.index(self.ref_band), len(self.bands)
        bands_only = InputStats(stats.loc[:b], stats.scale[:b])
        screen = screen_population(Screen(self.flags, self.usable), self.ratio, bands_only, ref)
        if len(stats.loc) > b:
            screen = screen_magnitude(screen, self.ref_mag, stats.loc[b], stats.scale[b])
        ratio = np.where(screen.usable, self.ratio, np.float32(np.nan))
        return dataclasses.replace(self, flags=screen.flags, usable=screen.usable, ratio=ratio)

    def outside_magnitudes(self, training: TrainingMagnitudes) -> Features:
        """These features with OUTSIDE_TRAINING flagged where the reference magnitude lies
        outside the training population's ``training`` (``screen_outside_magnitudes``)."""
        screen = screen_outside_magnitudes(Screen(self.flags, self.usable), self.ref_mag, training)
        return dataclasses.replace(self, flags=screen.flags)

    def network_input(
        self, loc: np.ndarray, rows: slice | np.ndarray = slice(None), with_magnitude: bool = False
    ) -> np.ndarray:
        """(n, F) float32 inputs of ``rows`` with unusable bands imputed by the population median
        ``loc`` (F,) (a galaxy without a usable reference flux is not among the features); the
        reference magnitude last when ``with_magnitude``."""
        b = len(self.bands)
        ratio = np.where(self.usable[rows], self.ratio[rows], np.asarray(loc[:b], np.float32))
        if with_magnitude:
            ratio = np.concatenate([ratio, self.ref_mag[rows, None]], axis=-1)
        return ratio.astype(np.float32)


def build_features(
    cat: Catalog, ref_band: str | None = None, use_exposures: bool = True
) -> Features:
    """Divide every flux by the reference-band coadd flux, after the photometric screen: galaxies
    without a usable reference flux are left out (counted), unusable bands become NaN ratios."""
    ref = resolve_ref_band(cat.bands, ref_band)
    r = cat.bands.index(ref)
    screen = screen_photometry(cat.flux, cat.flux_error, r, cat.fluxzp)
    keep = np.flatnonzero((screen.flags & PzFlag.REF_UNUSABLE) == 0)
    usable = screen.usable[keep]
    scale = 1.0 / cat.flux[keep, r]  # (N,) float64: finite, > 0
    exp = dense_exposures(cat) if use_exposures and cat.exposures is not None else None
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.where(usable, cat.flux[keep] * scale[:, None], np.nan)
        ratio_error = np.where(usable, cat.flux_error[keep] * scale[:, None], np.nan)
    return Features(
        bands=tuple(cat.bands),
        ref_band=ref,
        rows=keep.astype(np.int64),
        ref_id=cat.ref_id[keep],
        ratio=ratio.astype(np.float32),
        ratio_error=ratio_error.astype(np.float32),
        zspec=np.asarray(cat.zspec, dtype=np.float64)[keep],
        mag=np.asarray(cat.magnitudes(ref) if cat.mag is None else cat.mag)[keep],
        exp_ratio=None if exp is None else exp.flux[keep] * scale[:, None, None].astype(np.float32),
        exp_error=None
        if exp is None
        else exp.error[keep] * scale[:, None, None].astype(np.float32),
        exp_mask=None if exp is None else exp.mask[keep],
        n_excluded=int(cat.n_galaxies - len(keep)),
        flags=screen.flags[keep],
        usable=usable,
        n_rows=cat.n_galaxies,
        ref_mag=(cat.fluxzp - 2.5 * np.log10(cat.flux[keep, r])).astype(np.float32),
        row_flags=screen.flags,
    )


def same_photometry(
    ratio: np.ndarray, error: np.ndarray, stored: np.ndarray, stored_error: np.ndarray
) -> np.ndarray:
    """(N,) bool: rows of flux ratios and errors (N, B) equal to the stored ones to float32 text
    precision.

    Tells a training galaxy from another galaxy that merely shares its ref_id (independent
    catalogues number 1, 2, ...); the tolerance absorbs a round trip through CSV or float32
    columns, not a change of photometry (an error's thousandth near zero flux). A band unusable
    in both (NaN ratio and error: a non-detection without a limit, -99, a NaN) is the same.
    """
    with np.errstate(invalid="ignore"):
        close = np.abs(ratio - stored) <= 1e-5 * np.abs(stored) + 1e-3 * stored_error  # (N, B)
        close &= np.abs(error - stored_error) <= 1e-5 * stored_error
    both_unusable = np.isnan(ratio) & np.isnan(stored) & np.isnan(error) & np.isnan(stored_error)
    return (close | both_unusable).all(axis=1)


REMEASURED_CHI2 = 1.0  # median over galaxies of their median chi2 per band, at most


def remeasured(
    ratio: np.ndarray, error: np.ndarray, stored: np.ndarray, stored_error: np.ndarray
) -> bool:
    """Whether galaxies (flux ratios and errors (K, B)) with the ref_ids of training galaxies
    (``stored``, ``stored_error``) but not their exact photometry are those galaxies measured
    again: the median over them of each one's median chi2 per band (bands usable in both) is at
    most ``REMEASURED_CHI2`` (noise redrawn: ~0.25). Another catalogue that merely numbers its
    galaxies like the training one (a mock's 1..N) lies far above (PAUS mocks ~2, synthetic ~30);
    False for no galaxy or nothing to compare."""
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = (np.asarray(ratio, np.float64) - stored) ** 2 / (
            np.asarray(error, np.float64) ** 2 + np.asarray(stored_error, np.float64) ** 2
        )
    chi2 = np.where(np.isfinite(chi2), chi2, np.nan)
    some = np.isfinite(chi2).any(axis=1)
    if not some.any():
        return False
    return float(np.median(np.nanmedian(chi2[some], axis=1))) <= REMEASURED_CHI2
