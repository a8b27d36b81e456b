"""Value checks of a catalogue (format-free): unique ids, spec-z and magnitudes in range, bands
that are measured at all, valid single exposures and coadds consistent with them, flux columns
that hold AB magnitudes (``magnitude_bands``: values falling as the other bands brighten, judged
on the rows ``judged_ranges`` names), coordinates on the sky (``check_sky``, a HATS output). Bad
values of single galaxies are left to the photometric screen (``deepz_core.catalog.screen``). A
catalogue a trained run predicts (``validate``'s ``predicting``) keeps its spec-z codes and
infinite magnitudes: the prediction reads them as unknown (``unknown_cells``), saying so in one
line per column (``unknown_note``), which training, for which spec-z are labels, refuses."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np

from deepz_core.catalog.catalog import (
    ERROR_PREFIX,
    FLUX_PREFIX,
    Catalog,
    exposure_index,
    exposure_order,
    few,
)
from deepz_core.catalog.columns import (
    as_float64,
    check_unique_ids,
    file_label,
    file_rows,
    file_rows_text,
    plural,
)
from deepz_core.catalog.conventions import COORDINATE_COLUMNS
from deepz_core.errors import CatalogError

LOG = logging.getLogger("deepz")

BRIGHTEST_AB = 0.0  # no galaxy in a photo-z catalogue is brighter than AB magnitude 0

COADD_RTOL = 1e-3  # coadd vs exposures: flagged only when off by > 1e-3 relative ...


COADD_SIGMA_TOL = 0.05  # ... AND by > 0.05 sigma of the inverse-variance mean


def _check(bad: np.ndarray, message: str, labels: np.ndarray, unique: bool = False) -> None:
    """Raise CatalogError '<message> <first few labels[bad]>' if any ``bad``."""
    if np.any(bad):
        shown = np.unique(labels[bad]) if unique else labels[bad]
        raise CatalogError(f"{message} {few(shown)}")


PLACEHOLDERS = (-99.0, -999.0, -9999.0)  # "not measured" in many survey catalogues


def is_placeholder(flux: np.ndarray) -> np.ndarray:
    """Fluxes that are a catalogue's "not measured" code rather than a measurement (bool, same
    shape): the network would read -99 as a real, very negative flux."""
    return np.isin(flux, PLACEHOLDERS)


def unusable_values(flux: np.ndarray, error: np.ndarray, fluxzp: float) -> tuple[np.ndarray, ...]:
    """(missing, implausible), each (N, B) bool, from fluxes and errors alone (float64 tests).

    missing: not finite, a placeholder code or an error <= 0; implausible: |flux| or error
    brighter than AB magnitude ``BRIGHTEST_AB`` in these units (``fluxzp``: mag = fluxzp - 2.5
    log10 flux), e.g. 1e30 from a bad pixel.
    """
    flux = np.asarray(flux, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        missing = ~np.isfinite(flux) | ~np.isfinite(error) | is_placeholder(flux)
        missing |= ~(error > 0)
        ceiling = 10.0 ** ((fluxzp - BRIGHTEST_AB) / 2.5)
        implausible = ~missing & ((np.abs(flux) > ceiling) | (error > ceiling))
    return missing, implausible


def unusable_exposures(flux: np.ndarray, error: np.ndarray) -> np.ndarray:
    """(M,) bool: single exposures that carry no information, left out when a catalogue is read:
    a flux that is NaN/inf, or an error that is NaN/inf or <= 0 (no inverse-variance weight)."""
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(flux) | ~np.isfinite(error) | ~(error > 0)


def unusable_exposures_note(bad: np.ndarray, source: str) -> str:
    """'source: 1 of 660,000 single exposures left out ...': what ``unusable_exposures`` left out
    (``bad`` (M,) bool, some True), for the caller's log and the Data page's notes."""
    return (
        f"{source}: {int(bad.sum()):,} of {bad.size:,} single exposures left out (flux NaN/inf "
        f"or error NaN/inf or <= 0: no information; rows {few(np.flatnonzero(bad))}); coadds "
        "rebuilt from exposures use the others"
    )


def without_unusable_exposures(cat: Catalog, source: str) -> tuple[Catalog, np.ndarray]:
    """(``cat`` without its ``unusable_exposures``, (M',) file rows of the exposures kept); the
    ones left out are counted in a warning on the ``deepz`` logger and in ``cat.notes``."""
    exp = cat.exposures
    if exp is None:
        return cat, np.zeros(0, np.int64)
    bad = unusable_exposures(exp.flux, exp.flux_error)
    if not bad.any():
        return cat, np.arange(len(exp))
    note = unusable_exposures_note(bad, source)
    LOG.warning(note)
    return replace(cat, exposures=exp.select(~bad), notes=(*cat.notes, note)), np.flatnonzero(~bad)


ZSPEC_MAX = 10.0  # spectroscopic redshifts lie in [0, ZSPEC_MAX); 99, -99, -1 are "none" codes


def bad_zspec(z: np.ndarray) -> np.ndarray:
    """(N,) bool: spec-z that are not NaN (unknown) and not in [0, ZSPEC_MAX): inf, negative, or
    a catalogue's "no redshift" code (99, -99, -1, 999)."""
    with np.errstate(invalid="ignore"):
        return np.isinf(z) | (z < 0) | (z >= ZSPEC_MAX)


def check_zspec(z: np.ndarray, ref_id: np.ndarray, source: str) -> None:
    """CatalogError naming the rows whose spec-z is outside [0, ZSPEC_MAX) and saying what such
    values usually are, so that 1,280 galaxies with zspec = 99 are not reported as 'no spec-z'."""
    bad = bad_zspec(z)
    if not bad.any():
        return
    values = np.unique(z[bad])
    codes = [v for v in values if v in (99, -99, -1, 999, -999, 9999, -9999)]
    hint = f" (e.g. {values[0]:g})" if not codes else f" ({', '.join(f'{v:g}' for v in codes[:3])})"
    raise CatalogError(
        f"{source}: column 'zspec' has {int(bad.sum())} value(s) outside [0, {ZSPEC_MAX:g}){hint} "
        f"for ref_id {few(ref_id[bad])}: spectroscopic redshifts lie in [0, {ZSPEC_MAX:g}); "
        "'no redshift' codes such as 99, -99 or -1 must be NaN"
    )


def check_coordinate_types(cat: Catalog, source: str) -> None:
    """CatalogError naming the column, the cells and their rows when a coordinate column
    (``conventions.COORDINATE_COLUMNS``: ra/dec, RA/DEC, coord_ra/coord_dec, _healpix_29) holds
    text: predictions carry the coordinates, as numbers."""
    for name in COORDINATE_COLUMNS:
        if name in cat.extra:
            as_float64(cat.extra[name], name, source)


SKY_RANGES = {"ra": (-360.0, 360.0), "dec": (-90.0, 90.0)}  # degrees; HEALPix wraps an ra


def check_sky(values: np.ndarray, column: str, axis: str, source: str) -> None:
    """CatalogError naming ``column`` (the ``axis`` 'ra' or 'dec' of the sky, degrees), its cells
    and their file rows (``source``: a file or a chunk label 'file[start:stop]') when a value
    is not finite or outside SKY_RANGES: a HATS output places every galaxy on the sky."""
    low, high = SKY_RANGES[axis]
    values = as_float64(values, column, source)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(values) & (values >= low) & (values <= high))
    if bad.any():
        rows = file_rows(np.flatnonzero(bad), source)
        raise CatalogError(
            f"{file_label(source)}: column '{column}' has {plural(int(bad.sum()), 'value', 'values')}"
            f" off the sky ({few([f'{v:g}' for v in values[bad]])}; {file_rows_text(rows)}): "
            f"--out-format hats needs a finite {axis} in [{low:g}, {high:g}] degrees for every "
            "row; fix those rows, or write .parquet"
        )


UNKNOWN_CELLS = {  # column -> (its bad values: 'values' in words, what reading them as unknown does)
    "zspec": (
        f"values outside [0, {ZSPEC_MAX:g})",
        "without a pit; training refuses such 'no redshift' codes: write them as NaN",
    ),
    "mag": ("infinite values", "as a missing mag"),
}


def unknown_cells(cat: Catalog) -> dict[str, np.ndarray]:
    """``{column: (N,) bool}`` of the values a prediction reads as unknown (NaN), for the columns
    that have some: spec-z outside [0, ZSPEC_MAX) (``bad_zspec``: "no redshift" codes 99, -99,
    -1, inf; the networks do not read the spec-z, which only gives the pit) and infinite
    magnitudes (``mag``: the calibration's magnitude bins, read as NaN when missing)."""
    cells = {"zspec": bad_zspec(cat.zspec)}
    if cat.mag is not None:
        cells["mag"] = np.isinf(cat.mag)
    return {k: v for k, v in cells.items() if v.any()}


def without_unknown_cells(cat: Catalog, cells: dict[str, np.ndarray]) -> Catalog:
    """``cat`` with the ``cells`` of ``unknown_cells`` set to NaN (a copy when there are some)."""
    if not cells:
        return cat
    changes = {}
    for column, bad in cells.items():
        values = np.array(getattr(cat, column), dtype=np.float64)
        values[bad] = np.nan
        changes[column] = values
    return replace(cat, **changes)


def unknown_note(column: str, rows: np.ndarray, values: np.ndarray) -> str:
    """The one warning of a prediction about the values of ``column`` (a key of UNKNOWN_CELLS)
    it reads as unknown: how many, which values, the first file ``rows`` (K,) and what it
    means, e.g. "column 'zspec' has 3 values outside [0, 10) (-99, 99; rows 300, 512, 900):
    read as unknown (NaN) in the predictions ...". The same line whether the catalogue is read
    whole (``unknown_cells``) or scanned in chunks (the streamed preflight, ``catalog.scan``)."""
    what, means = UNKNOWN_CELLS[column]
    what = what if len(rows) != 1 else what.replace("values", "value")
    shown = few([f"{v:g}" for v in np.unique(values)])
    return (
        f"column '{column}' has {len(rows):,} {what} ({shown}; {file_rows_text(rows)}): read as "
        f"unknown (NaN) in the predictions, {means}"
    )


def validate(
    cat: Catalog,
    source: str = "catalogue",
    exposures_source: str | None = None,
    measured_bands: bool = True,
    *,
    predicting: bool = False,
) -> Catalog:
    """Check values; raise CatalogError naming ``source``, the column and a few offending rows.

    ref_id unique, zspec NaN or in [0, ZSPEC_MAX) (``check_zspec``), mag NaN or finite, exposures valid and each coadd
    consistent with its exposures (see ``check_coadd``). A band whose fluxes are NaN/inf or a
    placeholder code (-99...), or whose errors are NaN/inf or <= 0, for EVERY galaxy is refused
    (remove it; ``check_measured_bands``) unless not ``measured_bands``: a chunk of a catalogue
    (its other rows may have the band) or a catalogue a trained run predicts (the band is imputed
    in every galaxy). Such values in some galaxies are left to the photometric screen
    (``deepz_core.catalog.screen``), which flags those galaxies instead of failing the whole catalogue.
    Single exposures without information (``unusable_exposures``) are left out, with a note.
    ``predicting``: a catalogue (or a chunk of one) a trained run predicts: no band needs values
    (as without ``measured_bands``), a spec-z outside [0, ZSPEC_MAX) or an infinite mag is no
    error but unknown (the prediction reads it as NaN, with one warning: ``unknown_cells``), and
    coordinate columns must hold numbers (``check_coordinate_types``).
    Returns ``cat`` (a copy without those exposures when it had some).
    """
    if cat.n_galaxies == 0 or not cat.bands:
        raise CatalogError(
            f"{source}: no {'bands' if cat.n_galaxies else 'galaxies (empty table)'}"
        )
    check_unique_ids(cat.ref_id, source)
    if measured_bands and not predicting:
        check_measured_bands(cat, source)
    if predicting:
        check_coordinate_types(cat, source)
    else:
        check_zspec(cat.zspec, cat.ref_id, source)
    if cat.mag is not None and not predicting:
        _check(np.isinf(cat.mag), f"{source}: column 'mag' has inf values for ref_id", cat.ref_id)
    if not np.isfinite(cat.fluxzp):
        raise CatalogError(f"{source}: header FLUXZP = {cat.fluxzp} is not finite")
    if cat.exposures is not None:
        cat, rows = without_unusable_exposures(cat, exposures_source or source)
        _validate_exposures(cat, exposures_source or source, rows)
    return cat


def check_measured_bands(cat: Catalog, source: str) -> None:
    """CatalogError naming the column when a band's fluxes are NaN/inf or a placeholder code, or
    its errors NaN/inf or <= 0, for every galaxy of ``cat`` (more than one): nothing to train on.
    The message gives both ways out: remove or fill the band to train, or predict the file with
    a trained run, which imputes the band and flags every galaxy BAND_MISSING."""
    checks = (
        (FLUX_PREFIX, "NaN/inf", ~np.isfinite(cat.flux)),
        (FLUX_PREFIX, "placeholder (-99, -999, -9999)", is_placeholder(cat.flux)),
        (ERROR_PREFIX, "NaN/inf", ~np.isfinite(cat.flux_error)),
        (ERROR_PREFIX, "non-positive", cat.flux_error <= 0),
    )
    for prefix, what, bad in checks:  # bad: (N, B)
        j = int(np.argmax(bad.all(axis=0)))
        column = f"{prefix}{cat.bands[j]}"
        if cat.n_galaxies > 1 and bad[:, j].all():
            raise CatalogError(
                f"{source}: column '{column}' has {what} values for every galaxy: "
                f"remove band {cat.bands[j]!r} (its {FLUX_PREFIX}/{ERROR_PREFIX} "
                "columns) or fill it in to train on it; predicting the file with a trained run "
                "(deepz predict, run.predict(path)) imputes it, flagged BAND_MISSING"
            )


def _validate_exposures(cat: Catalog, source: str, rows: np.ndarray) -> None:
    """Exposure membership, duplicates and coadd consistency; ``rows`` (M,) label each exposure
    with its row in the file."""
    exp = cat.exposures
    assert exp is not None
    prefix = f"{source}: exposures column"
    gal, band = exposure_index(cat)
    _check(gal < 0, f"{prefix} 'ref_id' names unknown galaxies: ref_id", exp.ref_id, True)
    _check(band < 0, f"{prefix} 'band' has bands not in the catalogue {cat.bands}:", exp.band, True)
    order = exposure_order(gal, band, exp.exp_num)
    same = (np.diff(gal[order]) == 0) & (np.diff(band[order]) == 0)
    same &= np.diff(exp.exp_num[order]) == 0
    dup = np.zeros(len(exp), bool)
    dup[order[1:][same]] = True
    _check(dup, f"{source}: exposures have duplicate (ref_id, band, exp_num) in rows", rows)
    check_coadd(cat, gal, band, source)


def coadd_mismatch(cat: Catalog, gal: np.ndarray, band: np.ndarray) -> tuple[np.ndarray, ...]:
    """(bad, coadd, mean), each (N, B): cells whose coadd differs from the inverse-variance mean m +- s
    of its exposures by more than COADD_RTOL * max(|coadd|, |m|) AND more than COADD_SIGMA_TOL * s
    (both must fail); cells without exposures or whose coadd the screen finds unusable (NaN, a
    placeholder, error <= 0, brighter than AB 0 such as 1e30: flagged and imputed, as without
    exposures) are never bad, and a non-finite mean always is."""
    exp = cat.exposures
    assert exp is not None
    n, b = cat.flux.shape
    key = gal * b + band
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # absurd errors -> bad
        weight = exp.flux_error**-2  # (M,)
        sw = np.bincount(key, weight, minlength=n * b)  # (N * B,)
        mean = np.bincount(key, weight * exp.flux, minlength=n * b) / sw
        coadd = cat.flux.reshape(-1)
        diff = np.abs(coadd - mean)
        bad = (diff > COADD_RTOL * np.maximum(np.abs(coadd), np.abs(mean))) & (
            diff > COADD_SIGMA_TOL * sw**-0.5
        )
    bad = (sw > 0) & (bad | ~np.isfinite(mean))
    missing, implausible = unusable_values(cat.flux, cat.flux_error, cat.fluxzp)
    bad &= ~(missing | implausible).reshape(-1)  # a missing or absurd coadd: the screen's business
    return bad.reshape(n, b), coadd.reshape(n, b), mean.reshape(n, b)


# coadd / exposure mean -> the units that give it, as (coadds' unit, exposures' unit) pairs
UNIT_RATIOS: dict[float, tuple[tuple[str, str], ...]] = {
    1e-3: (("mJy", "µJy"), ("µJy", "nJy")),
    1e-6: (("Jy", "µJy"), ("mJy", "nJy")),
    1e-9: (("Jy", "nJy"),),
    1 / 3.631: (("nanomaggies", "µJy"),),
    1 / 3631: (("nanomaggies", "nJy"),),
}
UNIT_RATIO_RTOL = 0.02  # a cell's coadd / mean within 2% of the factor ...
UNIT_RATIO_SHARE = 0.8  # ... in at least 80% of the cells with exposures


def unit_ratio(coadd: np.ndarray, mean: np.ndarray) -> float | None:
    """The constant factor coadd / mean (either way round: a UNIT_RATIOS key or its inverse) that
    most cells with exposures share, i.e. coadds and exposures in different flux units; None if
    there is none. ``coadd``, ``mean``: (N, B) as from ``coadd_mismatch``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (coadd / mean)[np.isfinite(coadd / mean) & (coadd != 0)]
    if ratio.size < 3:
        return None
    for factor in (f for key in UNIT_RATIOS for f in (key, 1 / key)):
        close = np.abs(ratio / factor - 1) < UNIT_RATIO_RTOL
        if close.mean() >= UNIT_RATIO_SHARE:
            return factor
    return None


def unit_ratio_text(factor: float) -> str:
    """'the coadds are 1,000 times smaller than ... (mJy vs µJy?)': what a ``unit_ratio`` means."""
    key = min(UNIT_RATIOS, key=lambda k: abs(abs(np.log(k)) - abs(np.log(factor))))
    pairs = UNIT_RATIOS[key] if factor < 1 else tuple((b, a) for a, b in UNIT_RATIOS[key])
    size = 1 / factor if factor < 1 else factor
    way = "smaller" if factor < 1 else "larger"
    times = f"{size:,.0f}" if size >= 10 else f"{size:.4g}"
    units = " or ".join(f"coadds in {a} and exposures in {b}" for a, b in pairs)
    return (
        f"the coadds are {times} times {way} than the inverse-variance mean of their "
        f"exposures in nearly every galaxy and band: a unit mismatch ({units}?); write both "
        "tables in the same unit (or give each its unit) and import again"
    )


def check_coadd(cat: Catalog, gal: np.ndarray, band: np.ndarray, source: str) -> None:
    """Raise if any coadd disagrees with its exposures (the test of ``coadd_mismatch``), saying
    so once when coadds and exposures differ by a unit factor (``unit_ratio``)."""
    bad, coadd, mean = coadd_mismatch(cat, gal, band)
    factor = unit_ratio(coadd, mean) if bad.any() else None
    if factor is not None:
        raise CatalogError(f"{source}: {unit_ratio_text(factor)}")
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, j])
        raise CatalogError(
            f"{source}: column 'flux_{cat.bands[j]}' disagrees with the inverse-variance mean of "
            f"its exposures for ref_id {few(cat.ref_id[rows])} "
            f"(coadd {coadd[rows[0], j]:.6g} vs mean {mean[rows[0], j]:.6g}; tolerance "
            f"{COADD_RTOL:g} relative and {COADD_SIGMA_TOL:g} sigma)"
        )


MAGNITUDE_RHO = -0.5  # a flux column whose rank correlation with the other bands is below this...
MAGNITUDE_RANGE = (10.0, 35.0)  # ... and MAGNITUDE_SHARE of whose values lie in this AB range ...
MAGNITUDE_SHARE = 0.9  # ... none below 0 but the codes: AB magnitudes, not a flux
MAGNITUDE_CODES = (99.0, -99.0)  # a magnitude catalogue's non-detection and not-observed codes
MAGNITUDE_MIN_GALAXIES = 30  # fewer galaxies with values: the column is not judged
CORRELATION_ROWS = 10_000  # galaxies (evenly spaced blocks of rows) the correlation is measured on
CORRELATION_BLOCKS = 10  # ... in this many blocks: cheap to read alone from any file format


def judged_ranges(n: int) -> list[tuple[int, int]]:
    """The row ranges [start, stop) of an ``n``-row catalogue whose fluxes ``magnitude_bands``
    judges: all rows up to CORRELATION_ROWS, else CORRELATION_BLOCKS evenly spaced blocks of
    CORRELATION_ROWS // CORRELATION_BLOCKS rows, first and last rows included. A streamed
    prediction reads these blocks alone (``stream.preflight``), so the verdict is the same as
    for the catalogue read whole, wherever a band turns into magnitudes."""
    if n <= CORRELATION_ROWS:
        return [(0, n)]
    size = CORRELATION_ROWS // CORRELATION_BLOCKS
    starts = np.linspace(0, n - size, CORRELATION_BLOCKS).astype(np.int64)
    return [(int(s), int(s) + size) for s in starts]


def judged_rows(n: int) -> np.ndarray:
    """(M,) the rows of ``judged_ranges(n)``, in order."""
    return np.concatenate([np.arange(s, e) for s, e in judged_ranges(n)])


@dataclass(frozen=True)
class MagnitudeBand:
    """A flux column whose values are AB magnitudes, and the evidence: the range of its values
    (bar the codes 99/-99), how many rows hold each code, and its rank correlation with the other
    bands' brightness."""

    band: str
    low: float
    high: float
    codes: tuple[tuple[float, int], ...]  # (code, rows holding it), codes present only
    rho: float

    def evidence(self) -> str:
        """'values 18.2-26.9 (and 99 in 31 rows) fall as the other bands brighten (rank
        correlation -0.93)'."""
        codes = ", ".join(f"{c:g} in {plural(n, 'row', 'rows')}" for c, n in self.codes)
        also = f" (and {codes})" if codes else ""
        return (
            f"values {self.low:.1f}-{self.high:.1f}{also} fall as the other bands brighten "
            f"(rank correlation {self.rho:.2f})"
        )


def normalized_ranks(values: np.ndarray) -> np.ndarray:
    """(N,) ranks of ``values`` (N,) among their finite ones, scaled to (0, 1), ties sharing their
    mean rank; NaN where a value is not finite."""
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    if not ok.any():
        return out
    _, inverse, counts = np.unique(values[ok], return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mean rank of each distinct value
    out[ok] = (mean_rank[inverse.reshape(-1)] - 0.5) / ok.sum()
    return out


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (N,) over the rows where both are finite
    (NaN with fewer than MAGNITUDE_MIN_GALAXIES such rows, or a constant one)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < MAGNITUDE_MIN_GALAXIES:
        return float("nan")
    rx, ry = normalized_ranks(x[ok]), normalized_ranks(y[ok])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / norm) if norm > 0 else float("nan")


def magnitude_like(values: np.ndarray) -> bool:
    """Whether a column's values (N,) look like AB magnitudes: at least MAGNITUDE_MIN_GALAXIES
    finite values besides the codes (MAGNITUDE_CODES, placeholders), none below 0, and a share
    MAGNITUDE_SHARE of them within MAGNITUDE_RANGE. Fluxes in any unit fail (noise makes faint
    fluxes negative; nJy, mJy or Jy put them far from 10-35)."""
    v = values[np.isfinite(values) & ~np.isin(values, MAGNITUDE_CODES) & ~is_placeholder(values)]
    if v.size < MAGNITUDE_MIN_GALAXIES or v.min() < 0:
        return False
    low, high = MAGNITUDE_RANGE
    return bool(((v >= low) & (v <= high)).mean() >= MAGNITUDE_SHARE)


def brightness_ranks(flux: np.ndarray) -> np.ndarray:
    """(N, B) normalized ranks of each band's fluxes (N, B) across galaxies, placeholders and
    non-finite values at the neutral 0.5: a galaxy's brightness in every band."""
    clean = np.where(is_placeholder(flux), np.nan, flux)
    ranks = np.stack([normalized_ranks(clean[:, j]) for j in range(flux.shape[1])], axis=1)
    return np.where(np.isfinite(ranks), ranks, 0.5)


def magnitude_bands(flux: np.ndarray, bands: tuple[str, ...]) -> list[MagnitudeBand]:
    """The bands whose flux column (of ``flux`` (N, B), any unit) holds AB magnitudes: values
    ``magnitude_like`` that FALL as the galaxy brightens, i.e. whose rank correlation with the
    median rank of the other bands' fluxes is below MAGNITUDE_RHO (a flux rises with them; a
    noisy one is uncorrelated, never anti-correlated). Measured on the ``judged_ranges`` of the
    catalogue, the rows a streamed prediction reads for it too; none with fewer than two
    bands."""
    flux = np.asarray(flux, dtype=np.float64)
    if flux.shape[1] < 2:
        return []
    flux = flux[judged_rows(len(flux))]
    suspects = [j for j in range(flux.shape[1]) if magnitude_like(flux[:, j])]
    if not suspects:
        return []
    ranks = brightness_ranks(flux)
    out = []
    for j in suspects:
        others = np.median(np.delete(ranks, j, axis=1), axis=1)  # (N,)
        values = np.where(is_placeholder(flux[:, j]), np.nan, flux[:, j])
        values = np.where(np.isclose(values, MAGNITUDE_CODES[1]), np.nan, values)  # not observed
        rho = rank_correlation(values, others)
        if rho < MAGNITUDE_RHO:
            out.append(_magnitude_band(bands[j], flux[:, j], rho))
    return out


def _magnitude_band(band: str, values: np.ndarray, rho: float) -> MagnitudeBand:
    """The evidence of one band ``magnitude_bands`` found (``values`` (N,): its column)."""
    codes = tuple((c, int(np.isclose(values, c).sum())) for c in MAGNITUDE_CODES)
    real = values[np.isfinite(values) & ~np.isin(values, MAGNITUDE_CODES)]
    low, high = (float(real.min()), float(real.max())) if real.size else (np.nan, np.nan)
    return MagnitudeBand(band, low, high, tuple((c, n) for c, n in codes if n), rho)


def magnitude_advice(band: str, renamable: bool = True) -> str:
    """What to do with a band whose flux columns hold magnitudes: name them as magnitudes (with
    the --rename example when ``renamable``: the file names them flux_<band>/flux_error_<band>)."""
    flux, error, mag, magerr = (
        f"{p}{band}" for p in (FLUX_PREFIX, ERROR_PREFIX, "mag_", "magerr_")
    )
    how = f" (--rename '{flux}={mag},{error}={magerr}')" if renamable else ""
    return (
        f"name its columns {mag} and {magerr}{how}, which deepz converts to fluxes (99: not "
        "detected), or convert them to fluxes yourself"
    )


def check_not_magnitudes(cat: Catalog, source: str, file_columns: Collection[str] = ()) -> None:
    """CatalogError naming the first band of ``cat`` whose flux column holds AB magnitudes
    (``magnitude_bands``), the evidence and what to do (``magnitude_advice``, with a --rename
    example when ``file_columns``, the file's own, name its flux and error columns so)."""
    found = magnitude_bands(cat.flux, cat.bands)
    if found:
        band = found[0]
        names = {p + band.band for p in (FLUX_PREFIX, ERROR_PREFIX)}
        raise CatalogError(
            f"{source}: column '{FLUX_PREFIX}{band.band}' looks like AB magnitudes, not a flux: "
            f"{band.evidence()}; {magnitude_advice(band.band, names <= set(file_columns))}"
        )
