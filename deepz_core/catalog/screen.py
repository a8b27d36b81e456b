"""The photometric screen: which galaxies and bands the networks can trust (issue 23).

Real catalogues hold junk: blended or masked objects, a reference flux near zero, a band at 1e30 from
a bad pixel, placeholder codes. One such galaxy must not decide a run. Every catalogue row gets a bit
mask of :class:`PzFlag` reasons, and every band of every galaxy a usable/unusable verdict:

- the reference band must be measured and positive (flux ratios need it) and above its 1-sigma
  error (below it every ratio is noise divided by noise);
- a band is unusable when its flux or error is not finite, a placeholder code (-99, -999, -9999),
  an error <= 0, a value beyond any galaxy (brighter than AB magnitude 0 in the catalogue's own
  units), or, once the training population is known, a ratio more than ``COLOUR_SIGMA`` robust
  sigma from that population's median;
- galaxies with any flag are left out of the training loss (listed in the run's ``screen.json``);
  at prediction time unusable bands are imputed by the population's median ratio, and a galaxy
  with an unusable reference band or fewer than half its other bands usable gets no p(z);
- the template fit (``screen_template_fit``) reads fluxes, not ratios: the reference band is one
  band among the others, and a galaxy gets no p(z) when fewer than half of all its bands (and
  fewer than ``MIN_FIT_BANDS``) are usable;
- a whole catalogue whose median reference magnitude lies more than ``UNIT_SHIFT_MAG`` from the
  training population's (``TrainingMagnitudes``, stored with every run) has fluxes in another
  unit than declared: its prediction is refused (``judge_unit_shift``), whatever the networks
  read (the calibration, its pool scale and the combination with the template fit are binned in
  magnitude), unless asked for (``UnitCheck.allow``), which flags its rows outside the training
  magnitudes OUTSIDE_TRAINING.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepz_core.catalog.units import UNIT_ZEROPOINTS, zeropoint_unit
from deepz_core.catalog.validation import unusable_values
from deepz_core.errors import CatalogError, ConfigError

LOG = logging.getLogger("deepz")

COLOUR_SIGMA = 50.0  # robust sigma from the training median beyond which a ratio is junk
# robust sigma from the training median beyond which a reference magnitude (an input of networks
# with ``magnitude_input``) is outside the population: ~7 mag on PAUS-like mocks (sigma ~0.9,
# median ~21.7), so a factor 1000 in the flux unit (7.5 mag) is flagged, the mocks' bright end is not
MAG_SIGMA = 8.0
MIN_USABLE_FRACTION = 0.5  # of the non-reference bands, for a p(z) from imputed inputs
MIN_FIT_BANDS = 2  # template fit: a free amplitude needs at least one more band (one colour)


class PzFlag(enum.IntFlag):
    """Why a row's p(z) is missing or less trustworthy: the ``flag`` column, a bit mask."""

    NO_PZ = 1  # no p(z): every product of this row is NaN
    REF_UNUSABLE = 2  # reference-band flux or error missing, <= 0 or implausible: no flux ratios
    REF_LOW_SNR = 4  # reference-band flux below its 1-sigma error: ratios dominated by noise
    BAND_MISSING = 8  # a band NaN/inf, a placeholder code or an error <= 0: imputed
    BAND_IMPLAUSIBLE = 16  # a flux or error brighter than AB 0 (e.g. 1e30): imputed
    OUTSIDE_TRAINING = 32  # a ratio (imputed) or magnitude far outside the training population
    TOO_FEW_BANDS = 64  # fewer than half the other bands usable: no p(z)


FLAG_MEANINGS: dict[str, str] = {
    "NO_PZ": "no p(z): the products of this row are NaN",
    "REF_UNUSABLE": "reference-band flux or error missing, <= 0 or implausible (no flux ratios)",
    "REF_LOW_SNR": "reference-band flux below its 1-sigma error (ratios dominated by noise)",
    "BAND_MISSING": "a band's flux or error is NaN/inf, a placeholder (-99...) or error <= 0 "
    "(that band imputed)",
    "BAND_IMPLAUSIBLE": "a flux or error brighter than AB magnitude 0, e.g. 1e30 (band imputed)",
    "OUTSIDE_TRAINING": f"a flux ratio beyond {COLOUR_SIGMA:g} robust sigma of the training "
    f"population (band imputed), or a reference magnitude beyond {MAG_SIGMA:g} robust sigma of it "
    "(for networks that read it; extrapolated: a flux unit other than declared?), or outside the "
    "training magnitudes in a catalogue predicted with --allow-magnitude-shift",
    "TOO_FEW_BANDS": "fewer than half of the non-reference bands usable (the template fit: of all "
    "bands, and at least 2) (no p(z))",
}


def describe_flags(flags: int) -> list[str]:
    """Names of the bits set in ``flags``, e.g. ``['NO_PZ', 'REF_UNUSABLE']``."""
    return [f.name for f in PzFlag if flags & f and f.name is not None]


@dataclass(frozen=True)
class Screen:
    """Per-row flags (N,) int32 and per-band usability (N, B) bool of one catalogue."""

    flags: np.ndarray
    usable: np.ndarray

    @property
    def trainable(self) -> np.ndarray:
        """(N,) bool: rows with no flag at all, the only ones the training loss sees."""
        return self.flags == 0

    @property
    def predictable(self) -> np.ndarray:
        """(N,) bool: rows that get a p(z)."""
        return (self.flags & PzFlag.NO_PZ) == 0

    def counts(self) -> dict[str, int]:
        """Rows per flag name (flags that never occur are left out)."""
        out = {f.name: int(np.count_nonzero(self.flags & f)) for f in PzFlag}
        return {k: v for k, v in out.items() if v and k is not None}


def screen_photometry(flux: np.ndarray, error: np.ndarray, ref: int, fluxzp: float) -> Screen:
    """The screen from the photometry alone (no training population yet): (N, B) -> Screen."""
    missing, implausible = unusable_values(flux, error, fluxzp)
    usable = ~(missing | implausible)
    flags = np.zeros(len(flux), dtype=np.int32)
    others = np.arange(flux.shape[1]) != ref
    flags |= np.where((missing & others).any(1), PzFlag.BAND_MISSING, 0).astype(np.int32)
    flags |= np.where((implausible & others).any(1), PzFlag.BAND_IMPLAUSIBLE, 0).astype(np.int32)
    with np.errstate(invalid="ignore"):
        ref_ok = usable[:, ref] & (flux[:, ref] > 0)
        low = ref_ok & (flux[:, ref] < error[:, ref])
    flags |= np.where(~ref_ok, PzFlag.REF_UNUSABLE, 0).astype(np.int32)
    flags |= np.where(low, PzFlag.REF_LOW_SNR, 0).astype(np.int32)
    return _with_no_pz(Screen(flags, usable), ref)


def _with_no_pz(screen: Screen, ref: int) -> Screen:
    """Set TOO_FEW_BANDS and NO_PZ from the usable bands and the reference verdict."""
    usable, flags = screen.usable, screen.flags.copy()
    others = np.arange(usable.shape[1]) != ref
    n_others = max(int(others.sum()), 1)
    few = (usable[:, others].sum(1) < MIN_USABLE_FRACTION * n_others) & bool(others.any())
    flags |= np.where(few, PzFlag.TOO_FEW_BANDS, 0).astype(np.int32)
    no_pz = few | (flags & PzFlag.REF_UNUSABLE).astype(bool)
    flags |= np.where(no_pz, PzFlag.NO_PZ, 0).astype(np.int32)
    return Screen(flags, usable)


def screen_template_fit(flux: np.ndarray, error: np.ndarray, ref: int, fluxzp: float) -> Screen:
    """The screen of the template fit for fluxes and errors (N, B): the flags of
    ``screen_photometry`` (REF_UNUSABLE and REF_LOW_SNR reported, but the fit needs no ratios, so
    they cost no p(z)), with TOO_FEW_BANDS | NO_PZ where fewer than MIN_USABLE_FRACTION of all B
    bands, or fewer than MIN_FIT_BANDS, are usable. With the same usable bands a galaxy the
    networks give a p(z) (reference + half the others) always has enough for the fit (B >= 2)."""
    base = screen_photometry(flux, error, ref, fluxzp)
    flags = base.flags & ~np.int32(PzFlag.NO_PZ | PzFlag.TOO_FEW_BANDS)
    need = max(float(MIN_FIT_BANDS), MIN_USABLE_FRACTION * flux.shape[1])
    few = base.usable.sum(1) < need
    flags |= np.where(few, PzFlag.TOO_FEW_BANDS | PzFlag.NO_PZ, 0).astype(np.int32)
    return Screen(flags, base.usable)


@dataclass(frozen=True)
class InputStats:
    """Robust location and scale (B,) of each flux ratio over the training population.

    ``loc`` is the median, ``scale`` the interquartile range / 1.349 (a Gaussian's sigma; 1 where
    a band has no spread, e.g. the reference band's ratio, always 1). Stored with the model.
    """

    loc: np.ndarray
    scale: np.ndarray

    def sigmas(self, ratio: np.ndarray) -> np.ndarray:
        """(N, B) robust sigma of each ratio from the population median (NaN stays NaN)."""
        return (np.asarray(ratio, dtype=np.float64) - self.loc) / self.scale


def fit_input_stats(ratio: np.ndarray, use: np.ndarray) -> InputStats:
    """InputStats of the rows ``use`` (N,) bool of flux ratios (N, B); needs >= 1 row."""
    sample = np.asarray(ratio, dtype=np.float64)[use]  # (n, B)
    if not len(sample):
        raise ValueError("fit_input_stats: no usable galaxy to fit the input statistics on")
    q1, loc, q3 = np.nanpercentile(sample, [25.0, 50.0, 75.0], axis=0)  # (B,) each
    scale = (q3 - q1) / 1.349
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return InputStats(np.nan_to_num(loc), scale)


def screen_population(screen: Screen, ratio: np.ndarray, stats: InputStats, ref: int) -> Screen:
    """Add OUTSIDE_TRAINING for ratios (N, B) beyond COLOUR_SIGMA robust sigma of ``stats``."""
    with np.errstate(invalid="ignore"):
        far = np.abs(stats.sigmas(ratio)) > COLOUR_SIGMA  # (N, B); NaN compares False
    far &= screen.usable
    usable = screen.usable & ~far
    flags = screen.flags | np.where(far.any(1), PzFlag.OUTSIDE_TRAINING, 0).astype(np.int32)
    return _with_no_pz(Screen(flags, usable), ref)


def screen_magnitude(screen: Screen, mag: np.ndarray, loc: float, scale: float) -> Screen:
    """Add OUTSIDE_TRAINING for reference magnitudes (N,) beyond MAG_SIGMA robust sigma of the
    training population's (median ``loc``, robust sigma ``scale``): the networks that read the
    magnitude extrapolate there, and a whole catalogue there has fluxes in another unit than
    declared (x1000: 7.5 mag). Nothing is imputed; the flag warns."""
    with np.errstate(invalid="ignore"):
        far = np.abs((np.asarray(mag, dtype=np.float64) - loc) / scale) > MAG_SIGMA
    flags = screen.flags | np.where(far, PzFlag.OUTSIDE_TRAINING, 0).astype(np.int32)
    return Screen(flags, screen.usable)


UNIT_SHIFT_MAG = 5.0  # a catalogue this much fainter/brighter (median) than the training one
MIN_SHIFT_GALAXIES = 20  # fewer finite reference magnitudes: no verdict on the catalogue's unit
MAG_PERCENTILES = (0.1, 99.9)  # the training magnitudes' range stored with a run
MAG_RANGE_MARGIN = 1.0  # mag beyond that range: a reference magnitude outside the training one
REFERENCE_MAGNITUDES = "reference_magnitudes"  # their key in a run's model.json metadata
TRAINING_SOURCE = "training population"  # stored with the run (older runs: what stands in)
UNIT_MATCH_MAG = 0.7  # a unit whose zero-point lies this close to the one that fits: named


@dataclass(frozen=True)
class TrainingMagnitudes:
    """The reference-band AB magnitudes of a run's training population (the galaxies its loss
    saw): ``median``, robust sigma ``sigma`` (interquartile range / 1.349), the
    ``MAG_PERCENTILES`` range ``lo``, ``hi`` and the galaxies ``n``; NaN where a run made before
    they were stored does not know them (``source`` says what stands in for them)."""

    median: float
    sigma: float = float("nan")
    lo: float = float("nan")
    hi: float = float("nan")
    n: int = 0
    source: str = TRAINING_SOURCE

    def to_dict(self) -> dict[str, float | int]:
        """The JSON-ready values stored with the run (``from_dict`` reads them back)."""
        return {
            "median": self.median,
            "sigma": self.sigma,
            "lo": self.lo,
            "hi": self.hi,
            "percentiles": list(MAG_PERCENTILES),
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, doc: Any) -> TrainingMagnitudes:
        """The values ``to_dict`` stored; ConfigError naming the damaged value."""
        if not isinstance(doc, Mapping):
            raise ConfigError(f"'{REFERENCE_MAGNITUDES}' must be an object, got {doc!r:.60}")
        values = {}
        for key in ("median", "sigma", "lo", "hi"):
            value = doc.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(
                    f"'{REFERENCE_MAGNITUDES}.{key}' must be a number, got {value!r:.40}"
                )
            values[key] = float(value)
        if not np.isfinite(values["median"]):
            raise ConfigError(f"'{REFERENCE_MAGNITUDES}.median' must be finite, got {doc!r:.80}")
        n = doc.get("n", 0)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigError(f"'{REFERENCE_MAGNITUDES}.n' must be a count, got {n!r:.40}")
        return cls(**values, n=n)

    def outside(self, mag: np.ndarray) -> np.ndarray:
        """(N,) bool: reference magnitudes ``mag`` (N,) outside the training population's, i.e.
        beyond its ``MAG_PERCENTILES`` range by more than ``MAG_RANGE_MARGIN`` (where the range is
        unknown: beyond ``MAG_SIGMA`` robust sigma of its median; neither known: none). NaN is
        never outside."""
        mag = np.asarray(mag, dtype=np.float64)
        lo, hi = self.lo - MAG_RANGE_MARGIN, self.hi + MAG_RANGE_MARGIN
        if not (np.isfinite(lo) and np.isfinite(hi)):
            if not (np.isfinite(self.sigma) and self.sigma > 0):
                return np.zeros(mag.shape, dtype=bool)
            lo, hi = (self.median + s * MAG_SIGMA * self.sigma for s in (-1, 1))
        with np.errstate(invalid="ignore"):
            return (mag < lo) | (mag > hi)

    def shift(self, mag: np.ndarray, min_galaxies: int = MIN_SHIFT_GALAXIES) -> float | None:
        """The median of a catalogue's finite reference magnitudes ``mag`` (N,) minus the
        training median, in mag (> 0: fainter); None for fewer than ``min_galaxies`` of them."""
        finite = np.asarray(mag, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if len(finite) < min_galaxies:
            return None
        return float(np.median(finite)) - self.median


def fit_training_magnitudes(mag: np.ndarray, use: np.ndarray) -> TrainingMagnitudes | None:
    """The TrainingMagnitudes of the reference magnitudes ``mag`` (N,) of the rows ``use`` (N,)
    bool (the galaxies the loss saw); None when none of them has a finite one."""
    sample = np.asarray(mag, dtype=np.float64)[np.asarray(use, dtype=bool)]
    sample = sample[np.isfinite(sample)]
    if not len(sample):
        return None
    lo, q1, median, q3, hi = np.percentile(
        sample, [MAG_PERCENTILES[0], 25, 50, 75, MAG_PERCENTILES[1]]
    )
    return TrainingMagnitudes(
        float(median), float((q3 - q1) / 1.349), float(lo), float(hi), len(sample)
    )


def screen_outside_magnitudes(
    screen: Screen, mag: np.ndarray, training: TrainingMagnitudes
) -> Screen:
    """Add OUTSIDE_TRAINING for reference magnitudes (N,) outside the training population's
    (``TrainingMagnitudes.outside``), whatever the networks read: the run's calibration and the
    combination with the template fit are binned in magnitude. Nothing is imputed."""
    far = training.outside(mag)
    flags = screen.flags | np.where(far, PzFlag.OUTSIDE_TRAINING, 0).astype(np.int32)
    return Screen(flags, screen.usable)


def unit_shift(mag: np.ndarray, training: TrainingMagnitudes) -> float | None:
    """The median shift (mag) of a catalogue's reference magnitudes ``mag`` (N,) from the
    training population's when it exceeds ``UNIT_SHIFT_MAG``: no sample of the same survey
    differs that much, fluxes in another unit than declared do (nJy read as uJy: 7.5 mag).
    None otherwise, and for fewer than ``MIN_SHIFT_GALAXIES`` magnitudes."""
    shift = training.shift(mag)
    if shift is None or abs(shift) <= UNIT_SHIFT_MAG:
        return None
    return shift


def likely_unit(shift: float, fluxzp: float) -> str:
    """What a catalogue's fluxes look like when their magnitudes (zero-point ``fluxzp``) lie a
    median ``shift`` mag from the training ones: '~x1000 too large: nJy values read as uJy?'
    when a usual unit's zero-point lies within ``UNIT_MATCH_MAG`` of ``fluxzp - shift``."""
    factor = float(f"{10 ** (0.4 * abs(shift)):.2g}")
    text = f"~x{factor:g} too {'large' if shift < 0 else 'small'}"
    declared = zeropoint_unit(fluxzp)
    near = [u for u, zp in UNIT_ZEROPOINTS.items() if abs(zp - (fluxzp - shift)) < UNIT_MATCH_MAG]
    if declared is None or not near:
        return f"{text}?"
    return f"{text}: {near[0]} values read as {declared}?"


def unit_shift_message(
    shift: float, training: TrainingMagnitudes, column: str, fluxzp: float, source: str
) -> str:
    """The one line refusing a prediction of ``source`` whose reference flux ``column`` (zero-point
    ``fluxzp``) gives magnitudes a median ``shift`` mag from the training population's: the
    likely factor and unit, the fixes and the override."""
    way = "fainter" if shift > 0 else "brighter"
    declared = zeropoint_unit(fluxzp)
    unit = f"declared {declared}" if declared else f"FLUXZP {fluxzp:g}"
    known = "" if training.source == TRAINING_SOURCE else f", from its {training.source}"
    return (
        f"{source}: column '{column}' ({unit}) gives reference magnitudes a median "
        f"{abs(shift):.1f} mag {way} than the run's training population (median AB "
        f"{training.median + shift:.1f} against {training.median:.1f}{known}): fluxes "
        f"{likely_unit(shift, fluxzp)} Declare the catalogue's "
        "unit (--flux-unit nJy, a FLUXZP header or the column's TUNIT; other column names: "
        "--rename), or predict a sample really this much "
        f"{way} with --allow-magnitude-shift (API: allow_magnitude_shift=True), which flags "
        "the rows outside the training magnitudes OUTSIDE_TRAINING (README: magnitudes and units)"
    )


@dataclass(frozen=True)
class UnitCheck:
    """How a prediction treats a catalogue whose reference magnitudes lie a unit's shift from
    the run's training population (``unit_shift``): refused (CatalogError) unless ``allow``;
    with ``allow`` predicted, with a warning, its rows outside the training magnitudes flagged
    OUTSIDE_TRAINING. ``shifted``: the verdict on the whole catalogue when it was judged already
    (a stream's preflight: its chunks and parts are not judged again); None: judge the
    catalogue given, which is then the whole prediction."""

    allow: bool = False
    shifted: bool | None = None

    def judged(self, shifted: bool) -> UnitCheck:
        """This check with the whole catalogue's verdict ``shifted``."""
        return UnitCheck(self.allow, shifted)


def judge_unit_shift(
    mag: np.ndarray,
    training: TrainingMagnitudes | None,
    check: UnitCheck,
    column: str,
    fluxzp: float,
    source: str = "the catalogue",
) -> bool:
    """Whether the rows of a catalogue are to be flagged for a unit's shift: ``check.shifted``
    when judged already, else whether the reference magnitudes ``mag`` (N,) of the whole
    catalogue ``source`` (flux ``column``, zero-point ``fluxzp``) lie a median more than
    ``UNIT_SHIFT_MAG`` from the ``training`` population's (False when unknown). A shift without
    ``check.allow`` is refused: CatalogError, the one line of ``unit_shift_message``; with it,
    one warning."""
    if check.shifted is not None or training is None:
        return bool(check.shifted)
    shift = unit_shift(mag, training)
    if shift is None:
        return False
    if not check.allow:
        raise CatalogError(unit_shift_message(shift, training, column, fluxzp, source))
    far = int(np.count_nonzero(training.outside(mag)))
    LOG.warning(
        "%s: reference magnitudes a median %.1f mag %s than the run's training population, "
        "predicted as asked (--allow-magnitude-shift, allow_magnitude_shift=True): %d of %d "
        "galaxies outside the training magnitudes flagged OUTSIDE_TRAINING",
        source,
        abs(shift),
        "fainter" if shift > 0 else "brighter",
        far,
        len(mag),
    )
    return True


MAX_LISTED = 10_000  # ref_ids listed per flag in a run's screen.json (the counts are complete)


def screened_rows(
    ref_id: np.ndarray, flags: np.ndarray, limit: int = MAX_LISTED
) -> dict[str, list[int]]:
    """ref_ids per flag name (the first ``limit`` of each), for the run's record of the galaxies
    left out of the loss."""
    out: dict[str, list[int]] = {}
    for flag in PzFlag:
        hit = (flags & flag) != 0
        if hit.any() and flag.name is not None:
            out[flag.name] = [int(i) for i in np.asarray(ref_id)[hit][:limit]]
    return out


def screen_line(counts: dict[str, int], n_rows: int, where: str) -> str:
    """The one line on the galaxies a training screen left out of the loss (run log and terminal):
    ``"screen: 7 of 1000 galaxies left out of the loss (NO_PZ 3, ...); their ref_ids are in
    WHERE"``, or ``"screen: none of the N galaxies flagged"``. ``counts``: rows per flag name
    plus the total under ``"left_out_of_loss"`` (flags shown in bit order)."""
    flagged = {f.name: counts[f.name] for f in PzFlag if f.name and counts.get(f.name)}
    total = counts.get("left_out_of_loss", 0)
    if not total:
        return f"screen: none of the {n_rows} galaxies flagged"
    shown = ", ".join(f"{k} {v}" for k, v in flagged.items())
    return (
        f"screen: {total} of {n_rows} galaxies left out of the loss ({shown}); their ref_ids "
        f"are in {where}"
    )
