"""Validation report and summary of a catalogue being imported (the Data page's numbers).

``prepare_catalog`` maps raw columns to canonical ones, joins an optional spec-z table on ref_id,
and checks values, collecting EVERY problem (``deepz_core.catalog.validation.validate`` stops at
the first): non-numeric columns, NaN/inf or placeholder (-99) fluxes, non-positive errors, flux
columns that hold AB magnitudes (fixed by converting them), duplicate ids, bad redshifts,
exposures of unknown galaxies or bands, duplicate exposures, coadds that disagree with their
exposures. Each problem says how it can be fixed (drop rows, or treat a value as unknown); the list holds the
problems the fixes would reveal too (a fixed point), so ``fix=True`` applies exactly the fixes
listed, and never one that would drop every galaxy. Values the photometric screen handles per
galaxy (NaN, placeholders, errors <= 0, fluxes brighter than AB 0) are no problem, as in the CLI:
they are listed apart (``Report.flagged``) and the galaxies are kept, flagged, unless
``drop_flagged``; single exposures without information (NaN flux, error <= 0) are left out with
a note, as in the CLI. ``summarize`` gives counts, bands, coverage and SNR.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from deepz_core.catalog.catalog import (
    DEFAULT_FLUXZP,
    ERROR_PREFIX,
    FLUX_PREFIX,
    Catalog,
    Exposures,
    as_float64,
    as_int64,
    catalog_from_columns,
    exposure_index,
    few,
    kept_meta,
)
from deepz_core.catalog.columns import plural
from deepz_core.catalog.features import resolve_ref_band
from deepz_core.catalog.magnitudes import fluxes_from_magnitudes
from deepz_core.catalog.mapping import (
    GalaxyMapping,
    apply_exposure_mapping,
    apply_galaxy_mapping,
    galaxy_mapping_problems,
    mapping_problems,
)
from deepz_core.catalog.units import column_units, name_zeropoint, resolve_fluxzp
from deepz_core.catalog.validation import (
    ZSPEC_MAX,
    bad_zspec,
    coadd_mismatch,
    is_placeholder,
    magnitude_bands,
    unit_ratio,
    unit_ratio_text,
    unusable_exposures,
    unusable_exposures_note,
    unusable_values,
    validate,
)
from deepz_core.errors import CatalogError, ConfigError

Columns = dict[str, np.ndarray]
FIX_ROUNDS = 3  # rounds of checks and fixes listed before giving up on a fixed point


@dataclass(frozen=True)
class Source:
    """One input table: its raw columns, the mapping to canonical names and a label for messages."""

    columns: Mapping[str, np.ndarray]
    mapping: Any  # GalaxyMapping for galaxies; {canonical: column} for exposures and spec-z
    name: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Problem:
    """One problem: where, what, and the rows a fix would drop (or set to unknown)."""

    source: str
    column: str
    message: str
    drop_galaxies: np.ndarray | None = None  # (N,) bool
    drop_exposures: np.ndarray | None = None  # (M,) bool
    unknown: np.ndarray | None = None  # (N,) bool: set ``column`` to NaN (unknown)
    mapping: bool = False  # a column mapping problem (not a value's)
    from_magnitudes: float | None = None  # convert ``column`` and its error from AB mag at this ZP
    shown: str = ""  # the column as the file names it, for the message ('' : ``column``)

    @property
    def fixable(self) -> bool:
        masks = (self.drop_galaxies, self.drop_exposures, self.unknown)
        return self.from_magnitudes is not None or any(m is not None for m in masks)

    @property
    def fix(self) -> str:
        """What ``fix=True`` would do, in words ('' if it cannot be fixed automatically)."""
        if self.from_magnitudes is not None:
            band = self.column.removeprefix(FLUX_PREFIX)
            return (
                f"convert {self.column} and {ERROR_PREFIX + band} from AB magnitudes and their "
                f"errors to fluxes (zero-point {self.from_magnitudes:g}; 99 = not detected and "
                "-99 = not observed become unknown, flagged)"
            )
        if self.unknown is not None:
            return f"treat {plural(int(self.unknown.sum()), 'value', 'values')} as unknown (NaN)"
        if self.drop_galaxies is not None:
            return f"drop {plural(int(self.drop_galaxies.sum()), 'galaxy', 'galaxies')}"
        if self.drop_exposures is not None:
            return f"drop {plural(int(self.drop_exposures.sum()), 'exposure', 'exposures')}"
        return ""

    def text(self) -> str:
        """'source: column 'x': message', without empty parts (never a stray ': ')."""
        name = self.shown or self.column
        where = f"column {name}: " if self.shown else (f"column '{name}': " if name else "")
        return f"{self.source}: {where}{self.message}" if self.source else where + self.message


@dataclass(frozen=True, eq=False)
class Report:
    """Outcome of ``prepare_catalog``: the catalogue (None while problems remain), problems, notes,
    and ``flagged``: values the photometric screen flags per galaxy (kept unless dropped on
    request; each Problem's ``drop_galaxies`` says which)."""

    catalog: Catalog | None
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()
    dropped_galaxies: int = 0
    dropped_exposures: int = 0
    flagged: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()  # e.g. a band left out because its error column is unmapped
    fixed: tuple[Problem, ...] = ()  # the problems whose fixes were applied (``fix=True``)
    dropped_with_galaxies: int = 0  # of ``dropped_exposures``: those of the dropped galaxies

    def dropped_text(self) -> str:
        """What the fixes dropped, explained: 'Dropped 3 galaxies and 650 exposures (442 by the
        fixes above and 208 of the dropped galaxies).'; '' when nothing was dropped."""
        if not (self.dropped_galaxies or self.dropped_exposures):
            return ""
        text = f"Dropped {plural(self.dropped_galaxies, 'galaxy', 'galaxies')}"
        if self.dropped_exposures:
            text += f" and {plural(self.dropped_exposures, 'exposure', 'exposures')}"
            listed = self.dropped_exposures - self.dropped_with_galaxies
            parts = [f"{listed:,} by the fixes above"] if listed else []
            if self.dropped_with_galaxies:
                parts.append(f"{self.dropped_with_galaxies:,} of the dropped galaxies")
            text += f" ({' and '.join(parts)})"
        return text + "."

    @property
    def n_flagged(self) -> int:
        """Galaxies with at least one value the screen flags."""
        masks = [p.drop_galaxies for p in self.flagged if p.drop_galaxies is not None]
        return int(np.logical_or.reduce(masks).sum()) if masks else 0

    @property
    def ok(self) -> bool:
        return self.catalog is not None and not self.problems

    @property
    def fixable(self) -> bool:
        return bool(self.problems) and all(p.fixable for p in self.problems)

    @property
    def mapping_failed(self) -> bool:
        """Whether the columns could not be mapped (a column missing, unmapped or not numeric)."""
        return any(p.mapping for p in self.problems)


@dataclass(frozen=True, eq=False)
class _Parts:
    """Typed canonical columns between checks: galaxies (N,), exposures (M,) or None."""

    galaxies: Columns
    bands: tuple[str, ...]
    exposures: Columns | None
    source: str
    exposures_source: str
    fluxzp: float = DEFAULT_FLUXZP  # the AB zero-point of the fluxes (magnitudes convert to it)
    measured_bands: bool = True  # a band without any value is a problem (False: a prediction's)


def prepare_catalog(
    galaxies: Source,
    exposures: Source | None = None,
    specz: Source | None = None,
    fluxzp: float | None = None,
    fix: bool = False,
    drop_flagged: bool = False,
    measured_bands: bool = True,
) -> Report:
    """Map, join, check. The problems listed include those their fixes would reveal (up to
    FIX_ROUNDS rounds); ``fix`` applies exactly those fixes. Values the screen flags per galaxy
    are kept (``Report.flagged``), or their galaxies dropped first with ``drop_flagged``.
    ``measured_bands``: a band without any value is a problem (``validation.validate``); False
    for a catalogue a trained run predicts, which imputes such a band (flagged BAND_MISSING)."""
    problems = _mapping_problems(galaxies, exposures, specz)
    if problems:
        return Report(None, tuple(problems))
    notes: list[str] = []
    warnings = tuple(left_out_bands(galaxies))
    try:
        parts = _load(galaxies, exposures, specz, notes)
        zp = fluxzp if fluxzp is not None else source_fluxzp(galaxies)
        parts = replace(parts, fluxzp=zp, measured_bands=measured_bands)
    except CatalogError as err:
        return Report(None, (Problem("", "", str(err)),), tuple(notes), warnings=warnings)
    dropped = [0, 0, 0]  # galaxies, exposures, exposures of dropped galaxies
    flagged = _flagged_values(parts, zp)
    if drop_flagged and flagged:
        parts = _apply_fixes(parts, flagged, dropped)
    problems = _listed_problems(parts)
    fixed: list[Problem] = []
    if problems and fix and all(p.fixable for p in problems):
        parts = _apply_fixes(parts, problems, dropped)
        fixed = in_file_names(problems, galaxies)
        problems = _value_problems(parts) + _coadd_problems(parts)  # empty at a fixed point
        flagged = flagged if drop_flagged else _flagged_values(parts, zp)  # those left
    problems, flagged = in_file_names(problems, galaxies), in_file_names(flagged, galaxies)
    common = {
        "notes": tuple(notes),
        "dropped_galaxies": dropped[0],
        "dropped_exposures": dropped[1],
        "dropped_with_galaxies": dropped[2],
        "flagged": tuple(flagged),
        "warnings": warnings,
        "fixed": tuple(fixed),
    }
    if problems:
        return Report(None, tuple(problems), **common)
    meta = {k: v for k, v in galaxies.meta.items() if str(k).upper() != "FLUXZP"}
    try:
        cat = _build(parts, {**kept_meta(meta), "FLUXZP": float(zp)})
    except CatalogError as err:
        return Report(None, (Problem("", "", str(err)),), **common)
    return Report(cat, (), **common)


def file_columns(galaxies: Source) -> dict[str, str]:
    """{canonical column: how the galaxies file names it} where the names differ: 'flux_lsst_u'
    -> "'u_cModelFlux' (band lsst_u)", 'ref_id' -> "'objectId' (ref_id)"."""
    mapping: GalaxyMapping = galaxies.mapping
    magnitudes = galaxies.meta.get("_from_magnitudes") or {}  # uploads.FROM_MAGNITUDES_KEY
    out: dict[str, str] = {}
    for band, flux, error in mapping.bands:
        for canonical, column in ((FLUX_PREFIX + band, flux), (ERROR_PREFIX + band, error)):
            if column in magnitudes:  # a flux converted from the file's magnitudes
                out[canonical] = f"'{magnitudes[column]}' (band {band}, as a flux)"
            elif column and column != canonical:
                out[canonical] = f"'{column}' (band {band})"
    for canonical, column in (("ref_id", mapping.ref_id), ("zspec", mapping.zspec)):
        if column and column != canonical:
            out[canonical] = f"'{column}' ({canonical})"
    if mapping.mag and mapping.mag != "mag":
        out["mag"] = f"'{mapping.mag}' (mag)"
    return out


def in_file_names(problems: list[Problem], galaxies: Source) -> list[Problem]:
    """``problems`` with the galaxies file's own column names in their messages (the columns
    the fixes act on stay canonical): a DP0 user reads 'u_cModelFlux', not 'flux_lsst_u'."""
    names = file_columns(galaxies)
    return [
        replace(p, shown=names[p.column]) if p.source == galaxies.name and p.column in names else p
        for p in problems
    ]


def source_fluxzp(galaxies: Source) -> float:
    """The AB zero-point of a galaxies table's mapped flux columns (``fluxzp_origin``)."""
    return fluxzp_origin(galaxies)[0]


def fluxzp_origin(galaxies: Source) -> tuple[float, str]:
    """(zero-point, where it comes from) for a galaxies table's mapped flux columns: their units
    (FITS TUNIT, Parquet/astropy units) and its FLUXZP header, which must agree; else Rubin
    pipelines column names (u_cModelFlux: nJy by definition); else 23.9 (microJansky), said to be
    an assumption. Raises CatalogError for mixed or unknown units."""
    columns = [c for _, flux, error in galaxies.mapping.bands for c in (flux, error)]
    header = next((v for k, v in galaxies.meta.items() if str(k).upper() == "FLUXZP"), None)
    units = column_units(galaxies.meta)
    zp = resolve_fluxzp(units, columns, header, galaxies.name)
    if zp is not None:
        said = sorted({units[c] for c in columns if c in units})
        where = f"the columns' unit ({', '.join(said)})" if said else "the FLUXZP header"
        return zp, f"from {where}"
    by_name = name_zeropoint(columns)
    if by_name is not None:
        return by_name, (
            f"nanojansky: {columns[0]!r} and the other flux columns are Rubin pipelines "
            "columns, in nJy by definition (the file states no unit)"
        )
    return DEFAULT_FLUXZP, (
        "assumed: the file states no unit (no TUNIT, no FLUXZP header), so microJansky; "
        "set the zero-point if the fluxes are in another unit (nJy 31.4, nanomaggy 22.5, Jy 8.9)"
    )


def left_out_bands(galaxies: Source) -> list[str]:
    """One sentence per flux column (flux_<band>) of ``galaxies`` that no mapped band uses: the
    band is left out of the catalogue, usually because its error column was not recognised (a
    misspelt name: the closest unmapped column is named)."""
    from difflib import get_close_matches

    mapping: GalaxyMapping = galaxies.mapping
    used = set(mapping.targets().values())
    unused = [c for c in galaxies.columns if c not in used]
    fluxes = [c for c in unused if c.startswith(FLUX_PREFIX) and not c.startswith(ERROR_PREFIX)]
    bands = [c.removeprefix(FLUX_PREFIX) for c in fluxes]
    out = []
    for column, band in zip(fluxes, bands, strict=True):
        if any(band.endswith("_" + other) for other in bands):  # flux_eror_X: X's error column
            continue
        close = get_close_matches(ERROR_PREFIX + band, [c for c in unused if c != column], 1)
        hint = f"; is {close[0]!r} its error column?" if close else ""
        out.append(
            f"{galaxies.name}: band {band!r} is left out: its flux column {column!r} has no "
            f"error column mapped (no {ERROR_PREFIX + band!r}){hint} Map it in the band table "
            "to keep the band."
        )
    return out


def _mapping_problems(gal: Source, exp: Source | None, spz: Source | None) -> list[Problem]:
    texts = galaxy_mapping_problems(gal.mapping, list(gal.columns), gal.name)
    if exp is not None:
        texts += mapping_problems(exp.mapping, list(exp.columns), list(exp.mapping), exp.name)
    if spz is not None:
        texts += mapping_problems(spz.mapping, list(spz.columns), ("ref_id", "zspec"), spz.name)
    return [Problem("", "", t, mapping=True) for t in texts]


def _load(gal: Source, exp: Source | None, spz: Source | None, notes: list[str]) -> _Parts:
    """Typed canonical columns; raises CatalogError naming the first column that is not numeric."""
    mapping: GalaxyMapping = gal.mapping
    cols, left_out = apply_galaxy_mapping(gal.columns, mapping)
    flux_only = {f"column {c!r} " for c in gal.columns if c.startswith(FLUX_PREFIX)}
    notes.extend(f"{gal.name}: {n}" for n in left_out if not n.startswith(tuple(flux_only)))
    n = len(np.atleast_1d(cols["ref_id"]))
    typed: Columns = {"ref_id": as_int64(cols["ref_id"], mapping.ref_id or "ref_id", gal.name)}
    for target, column in mapping.targets().items():
        if target != "ref_id":
            typed[target] = _float(cols[target], column, n, gal.name)
    typed.setdefault("zspec", np.full(n, np.nan))
    typed.update({k: v for k, v in cols.items() if k not in typed})
    bands = tuple(b for b, _, _ in mapping.bands)
    if spz is not None:
        _join_specz(typed, spz, notes)
    exposures = None
    if exp is not None:
        raw = apply_exposure_mapping(exp.columns, exp.mapping, bands)
        e = Exposures(**raw)  # raises CatalogError for non-numeric columns
        exposures = {k: getattr(e, k) for k in raw}
        bad = unusable_exposures(e.flux, e.flux_error)
        if bad.any():  # no information: left out, as by the CLI (validation.validate)
            notes.append(unusable_exposures_note(bad, exp.name))
            exposures = {k: v[~bad] for k, v in exposures.items()}
    return _Parts(typed, bands, exposures, gal.name, exp.name if exp else gal.name)


def _float(values: Any, column: str, n: int, source: str) -> np.ndarray:
    arr = as_float64(values, column, source)
    if arr.shape != (n,):
        raise CatalogError(f"{source}: column '{column}' has shape {arr.shape}, expected ({n},)")
    return arr


def _join_specz(typed: Columns, spz: Source, notes: list[str]) -> None:
    """Spec-z from another table, joined on ref_id; they replace the catalogue's own values."""
    ids = as_int64(spz.columns[spz.mapping["ref_id"]], spz.mapping["ref_id"], spz.name)
    z = as_float64(spz.columns[spz.mapping["zspec"]], spz.mapping["zspec"], spz.name)
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        notes.append(
            f"{spz.name}: ref_id {few(uniq[counts > 1])} appear more than once; "
            "the first value of each is used"
        )
    order = np.argsort(uniq)
    pos = np.searchsorted(uniq, typed["ref_id"], sorter=order).clip(0, max(len(uniq) - 1, 0))
    match = uniq[order][pos] == typed["ref_id"] if len(uniq) else np.zeros(len(pos), bool)
    typed["zspec"] = typed["zspec"].copy()
    typed["zspec"][match] = z[first[order][pos[match]]]
    unmatched = int((~np.isin(uniq, typed["ref_id"])).sum())
    notes.append(
        f"{spz.name}: spec-z joined for {int(match.sum())} galaxies"
        + (f"; {unmatched} ref_id not in the catalogue were ignored" if unmatched else "")
    )


def _value_problems(p: _Parts) -> list[Problem]:
    g, src = p.galaxies, p.source
    out: list[Problem] = []
    ids, inverse, counts = np.unique(g["ref_id"], return_inverse=True, return_counts=True)
    dup = counts[inverse.reshape(-1)] > 1
    if dup.any():
        message = (
            f"duplicate ids: {few(ids[counts > 1])} (the fix drops every row sharing such an "
            "id: which one is right cannot be told)"
        )
        out.append(Problem(src, "ref_id", message, dup))
    for band in p.bands:
        flux = g[FLUX_PREFIX + band]
        # dropping rows would drop them all; a prediction imputes such a band
        if p.measured_bands and len(flux) > 1 and not np.isfinite(flux).any():
            out.append(
                Problem(
                    src,
                    FLUX_PREFIX + band,
                    f"NaN/inf for every galaxy: remove band "
                    f"{band!r} (its flux and error columns) or fill it in",
                )
            )
    out += _magnitude_problems(p)
    bad_z = bad_zspec(g["zspec"])
    if bad_z.any():
        what = f"inf, negative or >= {ZSPEC_MAX:g} ('no redshift' code?)"
        out.append(Problem(src, "zspec", _rows(g, bad_z, what), unknown=bad_z))
    if "mag" in g and np.isinf(g["mag"]).any():
        out.append(
            Problem(src, "mag", _rows(g, np.isinf(g["mag"]), "inf"), unknown=np.isinf(g["mag"]))
        )
    if p.exposures is not None:
        out += _exposure_problems(p)
    return out


def _magnitude_problems(p: _Parts) -> list[Problem]:
    """Flux columns that hold AB magnitudes (``validation.magnitude_bands``), each with the
    evidence and the fix converting it (and its error column) to fluxes at ``p.fluxzp``."""
    flux = np.stack([p.galaxies[FLUX_PREFIX + b] for b in p.bands], axis=1)  # (N, B)
    return [
        Problem(
            p.source,
            FLUX_PREFIX + band.band,
            f"looks like AB magnitudes, not a flux: {band.evidence()}",
            from_magnitudes=p.fluxzp,
        )
        for band in magnitude_bands(flux, p.bands)
    ]


def _rows(
    g: Columns, bad: np.ndarray, what: str, noun: tuple[str, str] = ("value", "values")
) -> str:
    """'2 NaN/inf values, e.g. ref_id 3, 7': how many rows ``bad`` holds, and a few ids."""
    counted = plural(int(bad.sum()), *noun).split(" ", 1)
    return f"{counted[0]} {what + ' ' if what else ''}{counted[1]}, e.g. ref_id {few(g['ref_id'][bad])}"


def _flagged_values(p: _Parts, fluxzp: float) -> list[Problem]:
    """Per band, the galaxies whose values the photometric screen flags (NaN/inf, placeholders,
    errors <= 0, brighter than AB 0): kept, as by the CLI; ``drop_galaxies`` for dropping on
    request. A band bad for every galaxy is a problem of ``_value_problems`` instead."""
    g, src = p.galaxies, p.source
    out: list[Problem] = []
    for band in p.bands:
        flux, err = g[FLUX_PREFIX + band], g[ERROR_PREFIX + band]
        if len(flux) > 1 and not np.isfinite(flux).any():
            continue
        missing, implausible = unusable_values(flux[:, None], err[:, None], fluxzp)
        with np.errstate(invalid="ignore"):
            checks = (
                (FLUX_PREFIX + band, ~np.isfinite(flux), "NaN/inf"),
                (FLUX_PREFIX + band, is_placeholder(flux), "placeholder (-99, -999, -9999)"),
                (ERROR_PREFIX + band, ~np.isfinite(err), "NaN/inf"),
                (ERROR_PREFIX + band, np.isfinite(err) & (err <= 0), "zero or negative"),
                (
                    FLUX_PREFIX + band,
                    implausible[:, 0],
                    "implausible (brighter than AB 0, e.g. 1e30)",
                ),
            )
        for column, bad, what in (*checks, *_reference_checks(p, band)):
            if bad.any():
                out.append(Problem(src, column, _rows(g, bad, what), bad))
    return out


def _reference_checks(p: _Parts, band: str) -> list[tuple[str, np.ndarray, str]]:
    """For the catalogue's default reference band (``features.resolve_ref_band``; the Train
    form may choose another), the rows the screen gives no p(z) or noisy ratios: (column,
    rows (N,) bool, what). Empty for the other bands."""
    try:
        if band != resolve_ref_band(p.bands):
            return []
    except ConfigError:  # no i band: the Train form asks for one
        return []
    flux, err = p.galaxies[FLUX_PREFIX + band], p.galaxies[ERROR_PREFIX + band]
    with np.errstate(invalid="ignore"):
        nonpositive = np.isfinite(flux) & (flux <= 0) & ~is_placeholder(flux)
        low = np.isfinite(flux) & (flux > 0) & (flux < err)
    return [
        (FLUX_PREFIX + band, nonpositive, "zero or negative in the reference band: no p(z)"),
        (
            FLUX_PREFIX + band,
            low,
            "below its 1-sigma error in the reference band (REF_LOW_SNR: the ratios to it are "
            "noise)",
        ),
    ]


def _listed_problems(p: _Parts) -> list[Problem]:
    """The problems of ``p`` and those that applying their fixes would reveal, round after round
    until none is new (at most FIX_ROUNDS), each on ``p``'s rows; with no fix at all when the
    fixes together would drop every galaxy (one more problem then says so)."""
    listed: list[Problem] = []
    current, rows = p, _Rows.all(p)
    for round_ in range(FIX_ROUNDS):
        found = _value_problems(current) + _coadd_problems(current)
        listed += [rows.lift(prob, round_) for prob in found]
        if not found or not all(prob.fixable for prob in found):
            break
        drop_g, drop_e = _fix_masks(current, found)
        current, rows = _apply_fixes(current, found, [0, 0]), rows.keep(~drop_g, drop_e)
    drop = np.zeros(len(p.galaxies["ref_id"]), bool)
    for prob in listed:
        drop |= prob.drop_galaxies if prob.drop_galaxies is not None else False
    if len(drop) and drop.all() and all(prob.fixable for prob in listed):
        listed = [replace(prob, drop_galaxies=None) for prob in listed]
        listed.append(
            Problem(
                "",
                "",
                f"the fixes would drop every galaxy ({len(drop):,}): the problems above are "
                "in the whole catalogue, not in some galaxies; correct the file (or the column "
                "mapping) instead",
            )
        )
    return listed


@dataclass(frozen=True, eq=False)
class _Rows:
    """Indices of the galaxies (N,) and exposures (M,) left of the original tables after fixes."""

    galaxies: np.ndarray
    exposures: np.ndarray | None
    n: int
    m: int

    @staticmethod
    def all(p: _Parts) -> _Rows:
        n = len(p.galaxies["ref_id"])
        m = None if p.exposures is None else len(p.exposures["ref_id"])
        return _Rows(np.arange(n), None if m is None else np.arange(m), n, m or 0)

    def keep(self, galaxies: np.ndarray, drop_exposures: np.ndarray | None) -> _Rows:
        """The rows left after keeping ``galaxies`` (bool) and dropping ``drop_exposures``."""
        exp = self.exposures
        exp = None if exp is None or drop_exposures is None else exp[~drop_exposures]
        return replace(self, galaxies=self.galaxies[galaxies], exposures=exp)

    def lift(self, prob: Problem, round_: int) -> Problem:
        """``prob`` (found on the rows left) on the original rows; later rounds say so."""

        def up(mask: np.ndarray | None, index: np.ndarray | None, size: int) -> np.ndarray | None:
            if mask is None or index is None:
                return mask
            full = np.zeros(size, bool)
            full[index[mask]] = True
            return full

        message = (
            prob.message if round_ == 0 else f"once the fixes above are applied: {prob.message}"
        )
        return replace(
            prob,
            message=message,
            drop_galaxies=up(prob.drop_galaxies, self.galaxies, self.n),
            unknown=up(prob.unknown, self.galaxies, self.n),
            drop_exposures=up(prob.drop_exposures, self.exposures, self.m),
        )


def _exposure_problems(p: _Parts) -> list[Problem]:
    e, src = p.exposures, p.exposures_source
    assert e is not None
    out = []
    checks = (  # unusable values were left out on loading (_load)
        ("ref_id", ~np.isin(e["ref_id"], p.galaxies["ref_id"]), "galaxies not in the catalogue"),
        ("band", ~np.isin(e["band"], p.bands), "bands not in the catalogue"),
    )
    for column, bad, what in checks:
        if bad.any():
            shown = few(np.unique(e[column][bad])) if column in ("ref_id", "band") else ""
            detail = f": {shown}" if shown else f" (rows {few(np.flatnonzero(bad))})"
            out.append(
                Problem(
                    src,
                    column,
                    f"{plural(int(bad.sum()), 'exposure', 'exposures')} with {what}{detail}",
                    drop_exposures=bad,
                )
            )
    order = np.lexsort((e["exp_num"], e["band"], e["ref_id"]))
    same = np.zeros(len(order), bool)
    same[1:] = True
    for column in ("ref_id", "band", "exp_num"):
        values = e[column][order]
        same[1:] &= values[1:] == values[:-1]
    if same.any():
        bad = np.zeros(len(order), bool)
        bad[order[same]] = True
        out.append(
            Problem(
                src,
                "exp_num",
                f"{int(bad.sum()):,} duplicate (ref_id, band, exp_num) "
                f"exposure{'s' if bad.sum() != 1 else ''} (rows {few(np.flatnonzero(bad))})",
                drop_exposures=bad,
            )
        )
    return out


def _coadd_problems(p: _Parts) -> list[Problem]:
    """Coadds that differ from the inverse-variance mean of their exposures (the test of
    ``deepz_core.catalog.validation.check_coadd``), one problem per band."""
    if p.exposures is None or not len(p.exposures["flux"]):
        return []
    e = p.exposures
    valid = np.isin(e["ref_id"], p.galaxies["ref_id"]) & np.isin(e["band"], p.bands)
    p = replace(p, exposures={k: v[valid] for k, v in e.items()})  # the others: own problems
    cat = _build(p, {}, check=False)
    bad, coadd, mean = coadd_mismatch(cat, *exposure_index(cat))  # (N, B)
    factor = unit_ratio(coadd, mean) if bad.any() else None
    if factor is not None:  # one unit problem, not a galaxy's: no rows to drop
        return [Problem(p.source, "", unit_ratio_text(factor))]
    out = []
    for j in np.flatnonzero(bad.any(axis=0)):
        rows = bad[:, j]
        out.append(
            Problem(
                p.source,
                FLUX_PREFIX + cat.bands[j],
                "coadd differs from the inverse-variance mean of its exposures for "
                + _rows(p.galaxies, rows, "", ("galaxy", "galaxies")),
                rows,
            )
        )
    return out


def _fix_masks(p: _Parts, problems: list[Problem]) -> tuple[np.ndarray, np.ndarray | None]:
    """(galaxies (N,), exposures (M,) or None) that ``problems``' fixes drop, bool; exposures of
    dropped galaxies go with them."""
    drop = np.zeros(len(p.galaxies["ref_id"]), bool)
    for prob in problems:
        if prob.drop_galaxies is not None:
            drop |= prob.drop_galaxies
    e = p.exposures
    if e is None:
        return drop, None
    drop_e = ~np.isin(e["ref_id"], p.galaxies["ref_id"][~drop])
    for prob in problems:
        if prob.drop_exposures is not None:
            drop_e |= prob.drop_exposures
    return drop, drop_e


def _apply_fixes(p: _Parts, problems: list[Problem], dropped: list[int]) -> _Parts:
    """``p`` with every fix of ``problems`` applied; adds the rows dropped to ``dropped``."""
    drop, drop_e = _fix_masks(p, problems)
    g = dict(p.galaxies)
    for prob in problems:
        if prob.from_magnitudes is not None:
            g.update(_as_fluxes(g, prob.column, prob.from_magnitudes))
        if prob.unknown is not None:
            g[prob.column] = np.where(prob.unknown, np.nan, g[prob.column])
    g = {k: v[~drop] for k, v in g.items()}
    e = p.exposures
    if e is not None and drop_e is not None:
        dropped[1] += int(drop_e.sum())
        gone = np.isin(e["ref_id"], p.galaxies["ref_id"][drop]) & drop_e
        if len(dropped) > 2:
            dropped[2] += int(gone.sum())
        e = {k: v[~drop_e] for k, v in e.items()}
    dropped[0] += int(drop.sum())
    return replace(p, galaxies=g, exposures=e)


def _as_fluxes(g: Columns, column: str, fluxzp: float) -> Columns:
    """{flux column: fluxes, its error column: errors} (N,) in the unit of ``fluxzp`` from the
    AB magnitudes and magnitude errors those columns of ``g`` hold (99: not detected, -99: not
    observed, both unknown: ``magnitudes.fluxes_from_magnitudes`` without a limit)."""
    error = ERROR_PREFIX + column.removeprefix(FLUX_PREFIX)
    flux, flux_error = fluxes_from_magnitudes(g[column], g[error], fluxzp)
    return {column: flux, error: flux_error}


def _build(p: _Parts, meta: dict[str, Any], check: bool = True) -> Catalog:
    exposures = None if p.exposures is None else Exposures(**p.exposures)
    cat = catalog_from_columns(p.galaxies, meta, p.source, exposures)
    return validate(cat, p.source, p.exposures_source, p.measured_bands) if check else cat


@dataclass(frozen=True, eq=False)
class BandSummary:
    """Per band (B,): filter curve known, effective wavelength [A] (NaN if unknown), SNR percentiles."""

    bands: tuple[str, ...]
    has_curve: np.ndarray  # (B,) bool
    wavelength: np.ndarray  # (B,) [A]
    snr: np.ndarray  # (B, 3) 16th, 50th, 84th percentile of flux / flux_error
    exposures: np.ndarray  # (B,) median number of single exposures per galaxy (0 without)

    @property
    def without_curve(self) -> list[str]:
        """Bands without a filter curve (no SPS simulation through them)."""
        return [b for b, known in zip(self.bands, self.has_curve, strict=True) if not known]


@dataclass(frozen=True, eq=False)
class CatalogSummary:
    """What the Data page shows about a catalogue."""

    n_galaxies: int
    n_zspec: int
    n_exposures: int
    zspec: np.ndarray  # (n_zspec,) finite spectroscopic redshifts
    mag: np.ndarray  # (N,) AB magnitudes (NaN where unknown)
    mag_label: str
    bands: BandSummary
    fluxzp: float
    noiseless: bool

    @property
    def zspec_fraction(self) -> float:
        return self.n_zspec / max(self.n_galaxies, 1)


def _band_summary(cat: Catalog) -> BandSummary:
    from deepz_core.sed.bands import get_band, has_band

    known = np.array([has_band(b) for b in cat.bands])
    wave = np.array(
        [
            get_band(b).effective_wavelength if k else np.nan
            for b, k in zip(cat.bands, known, strict=True)
        ]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = cat.flux / cat.flux_error  # (N, B)
    with warnings.catch_warnings():  # a band without any value (a catalogue to predict): NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        snr_pct = np.nanpercentile(np.where(np.isfinite(snr), snr, np.nan), [16, 50, 84], axis=0)
    snr_pct = snr_pct.T
    counts = np.zeros(len(cat.bands))
    if cat.exposures is not None and len(cat.exposures):
        gal, band = exposure_index(cat)
        per_cell = np.bincount(gal * len(cat.bands) + band, minlength=cat.flux.size)
        per_cell = per_cell.reshape(cat.flux.shape)  # (N, B)
        counts = np.median(per_cell, axis=0)
    return BandSummary(cat.bands, known, wave, snr_pct, counts)


def summarize(cat: Catalog) -> CatalogSummary:
    """Counts, spec-z coverage, magnitudes and per-band SNR of a (validated) catalogue."""
    from deepz_core.catalog.features import resolve_ref_band

    z = cat.zspec[np.isfinite(cat.zspec)]
    if cat.mag is not None:
        mag, label = cat.mag, "catalogue magnitude 'mag' [AB mag]"
    else:
        try:
            ref = resolve_ref_band(cat.bands)
        except ConfigError:  # no i band: the first band stands in
            ref = cat.bands[0]
        mag, label = cat.magnitudes(ref), f"{ref} magnitude from its flux [AB mag]"
    return CatalogSummary(
        n_galaxies=cat.n_galaxies,
        n_zspec=int(z.size),
        n_exposures=0 if cat.exposures is None else len(cat.exposures),
        zspec=z,
        mag=np.asarray(mag, dtype=np.float64),
        mag_label=label,
        bands=_band_summary(cat),
        fluxzp=cat.fluxzp,
        noiseless=bool(cat.meta.get("NOISELESS", False)),
    )
