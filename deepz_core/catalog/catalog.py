"""The canonical deepz catalogue: coadded fluxes per galaxy and band plus optional single exposures.

E20 Sec. 2: PAUS measures every galaxy several times per narrow band; the network sees the single
exposures (E20 Sec. 4.3), the coadd is their inverse-variance weighted mean. Fluxes are in units
fixed by the AB zero-point ``fluxzp`` (mag = fluxzp - 2.5 log10 flux; 23.9 = microJansky).
File formats live in ``deepz_core.catalog.io``; this module is format-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from astropy.table import Table

from deepz_core.catalog.columns import (
    DEFAULT_FLUXZP,
    ERROR_PREFIX,
    EXPOSURE_COLUMNS,
    FLUX_PREFIX,
    GALAXY_COLUMNS,
    as_float64,
    as_int64,
    few,
)
from deepz_core.catalog.units import UNITS_KEY, column_units, resolve_fluxzp
from deepz_core.errors import CatalogError

_META_KEY = re.compile(r"^[A-Z0-9_\-]+$")
FITS_STRUCTURAL = re.compile(  # header keys that describe the table itself, never meta
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|TFIELDS|EXTNAME|EXTVER|EXTLEVEL"
    r"|CHECKSUM|DATASUM|COMMENT|HISTORY|INHERIT|THEAP|T[A-Z]+\d+|)$"
)


def native_array(values: Any) -> np.ndarray:
    """Native-endian ndarray copy: masked -> filled (NaN for floats), bytes/object str -> str."""
    if np.ma.isMaskedArray(values):
        fill = np.nan if values.dtype.kind == "f" else values.fill_value
        values = values.filled(fill)
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8", "replace")
    items = arr.reshape(-1).tolist() if arr.dtype.kind == "O" else None
    if items is not None and all(isinstance(v, str | bytes) for v in items):
        text = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in items]
        return np.array(text, dtype=str).reshape(arr.shape)
    if arr.dtype.byteorder not in ("=", "|"):
        return arr.astype(arr.dtype.newbyteorder("="))
    return np.array(arr)


def _clean_meta(meta: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """Upper-case keys (FITS style), plain Python scalar values; reserved/odd keys rejected (meta
    given explicitly; files and tables are read through ``kept_meta``)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in meta.items():
        name, value = str(key).upper(), _plain(value)
        if not _meta_key_ok(name):
            raise CatalogError(f"meta key {key!r} is reserved or not of the form [A-Z0-9_-]+")
        if not _meta_value_ok(value):
            raise CatalogError(
                f"meta key {name!r}: value {value!r} is not a bool/int/finite float/str"
            )
        out[name] = value
    return out


def kept_meta(meta: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The header values of a file or table that a catalogue keeps (upper-case keys of the form
    [A-Z0-9_-]+, plain values); the rest is dropped, never refused: FITS structure (EXTNAME,
    TTYPEn...), HIERARCH keys with spaces ('ESO DET CHIP'), comment lists. FLUXZP and units are
    read before (``catalog_from_columns``)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in meta.items():
        name, value = str(key).upper(), _plain(value)
        if _meta_key_ok(name) and _meta_value_ok(value):
            out[name] = value
    return out


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def _meta_key_ok(name: str) -> bool:
    """An upper-case meta key deepz can write in every format and that is not reserved."""
    return bool(_META_KEY.match(name)) and name != "FLUXZP" and not FITS_STRUCTURAL.match(name)


def _meta_value_ok(value: Any) -> bool:
    """A bool, int, str or finite float."""
    return isinstance(value, bool | int | str) or (isinstance(value, float) and np.isfinite(value))


def _shaped(values: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """float64 (or int64 ref_id) array of exactly ``shape``, else CatalogError."""
    arr = values if name == "ref_id" else as_float64(values, name, "catalogue")
    if arr.shape != shape:
        raise CatalogError(f"catalogue: '{name}' has shape {arr.shape}, expected {shape}")
    return arr


def check_band_names(bands: tuple[str, ...]) -> None:
    """Band names: non-empty, unique, and not 'error' / 'error_*' (ambiguous with flux_error_*)."""
    for name in bands:
        if not name or name == "error" or name.startswith("error_"):
            raise CatalogError(f"band name {name!r} is empty or reserved (column 'flux_{name}')")
    if len(set(bands)) != len(bands):
        raise CatalogError(f"duplicate band names in {bands}")


@dataclass(frozen=True, eq=False)
class Exposures:
    """Single-exposure fluxes in long format, one row per measurement, all arrays (M,).

    ``band`` holds catalogue band names; ``flux``/``flux_error`` use the catalogue zero-point.
    """

    ref_id: np.ndarray
    band: np.ndarray
    exp_num: np.ndarray
    flux: np.ndarray
    flux_error: np.ndarray

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "ref_id", as_int64(self.ref_id, "ref_id", "exposures"))
        set_(self, "band", native_array(self.band).astype(str))
        set_(self, "exp_num", as_int64(self.exp_num, "exp_num", "exposures"))
        set_(self, "flux", as_float64(self.flux, "flux", "exposures"))
        set_(self, "flux_error", as_float64(self.flux_error, "flux_error", "exposures"))
        shapes = {name: getattr(self, name).shape for name in EXPOSURE_COLUMNS}
        if len(set(shapes.values())) != 1 or len(self.ref_id.shape) != 1:
            raise CatalogError(f"exposures: columns must all be 1-D of one length, got {shapes}")

    def __len__(self) -> int:
        return int(self.ref_id.shape[0])

    def __repr__(self) -> str:
        """One line, not every array: ``Exposures(1200 single exposures of 150 galaxies)``."""
        galaxies = len(np.unique(self.ref_id))
        return f"Exposures({len(self)} single exposures of {galaxies} galaxies)"

    def select(self, mask_or_indices: np.ndarray) -> Exposures:
        """Rows picked by a (M,) bool mask or integer indices.

        >>> import deepz_core as dz
        >>> exp = dz.Exposures.from_table({"ref_id": [1, 1, 2], "band": ["i", "i", "i"],
        ...     "exp_num": [0, 1, 0], "flux": [10.0, 11.0, 20.0], "flux_error": [1.0, 1.0, 1.0]})
        >>> exp.select(exp.ref_id == 1)
        Exposures(2 single exposures of 1 galaxies)
        """
        idx = np.asarray(mask_or_indices)
        return Exposures(*(getattr(self, name)[idx] for name in EXPOSURE_COLUMNS))

    def to_table(self) -> Table:
        """astropy Table with columns ref_id, band, exp_num, flux, flux_error.

        >>> import deepz_core as dz
        >>> exp = dz.Exposures.from_table({"ref_id": [1, 1, 2], "band": ["i", "i", "i"],
        ...     "exp_num": [0, 1, 0], "flux": [10.0, 11.0, 20.0], "flux_error": [1.0, 1.0, 1.0]})
        >>> exp.to_table().colnames
        ['ref_id', 'band', 'exp_num', 'flux', 'flux_error']
        """
        return Table({name: getattr(self, name) for name in EXPOSURE_COLUMNS})

    @classmethod
    def from_table(cls, table: Table | Mapping[str, Any], source: str = "exposures") -> Exposures:
        """From a table/mapping holding the five exposure columns (others ignored).

        >>> import deepz_core as dz
        >>> exp = dz.Exposures.from_table({"ref_id": [1, 1, 2], "band": ["i", "i", "i"],
        ...     "exp_num": [0, 1, 0], "flux": [10.0, 11.0, 20.0], "flux_error": [1.0, 1.0, 1.0]})
        >>> exp, dz.Exposures.from_table(exp.to_table()).exp_num.tolist()
        (Exposures(3 single exposures of 2 galaxies), [0, 1, 0])
        """
        return exposures_from_columns({k: native_array(table[k]) for k in table.keys()}, source)


@dataclass(frozen=True, eq=False)
class Catalog:
    """Galaxies (N,) in bands (B,): coadded flux/flux_error (N, B) in units set by ``fluxzp``.

    ``zspec`` (N,) is NaN where unknown (None -> all NaN); ``mag`` (N,) is the AB magnitude in the
    selection band; ``extra`` holds other per-galaxy columns (N, ...); ``meta`` simple header values
    with upper-case keys; ``notes`` what reading it left out (e.g. unusable single exposures), for
    the caller's log. Shapes and dtypes are checked here; values by ``validate``.
    """

    ref_id: np.ndarray
    bands: tuple[str, ...]
    flux: np.ndarray
    flux_error: np.ndarray
    zspec: np.ndarray | None = None
    mag: np.ndarray | None = None
    fluxzp: float = DEFAULT_FLUXZP
    exposures: Exposures | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bands = tuple(str(b) for b in self.bands)
        check_band_names(bands)
        n = np.shape(self.ref_id)[0] if np.ndim(self.ref_id) == 1 else -1
        zspec = np.full(max(n, 0), np.nan) if self.zspec is None else self.zspec
        values = {
            "ref_id": _shaped(as_int64(self.ref_id, "ref_id", "catalogue"), "ref_id", (n,)),
            "bands": bands,
            "flux": _shaped(self.flux, "flux", (n, len(bands))),
            "flux_error": _shaped(self.flux_error, "flux_error", (n, len(bands))),
            "zspec": _shaped(zspec, "zspec", (n,)),
            "mag": None if self.mag is None else _shaped(self.mag, "mag", (n,)),
            "fluxzp": float(self.fluxzp),
            "extra": {str(k): np.asarray(v) for k, v in self.extra.items()},
            "meta": _clean_meta(self.meta),
            "notes": tuple(str(n) for n in self.notes),
        }
        for name, arr in values["extra"].items():
            if name in GALAXY_COLUMNS or name.startswith(FLUX_PREFIX) or arr.shape[:1] != (n,):
                raise CatalogError(
                    f"catalogue: extra column '{name}' is reserved or not ({n}, ...)"
                )
        if self.exposures is not None and not isinstance(self.exposures, Exposures):
            raise CatalogError(
                f"catalogue: exposures must be Exposures, not {type(self.exposures)}"
            )
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def n_galaxies(self) -> int:
        return int(self.ref_id.shape[0])

    def __len__(self) -> int:
        """The number of galaxies (rows)."""
        return self.n_galaxies

    def __repr__(self) -> str:
        """A summary line, not every array (a notebook echoes it):
        ``Catalog(3000 galaxies x 6 bands lsst_u..lsst_y; 784 with a spec-z; fluxzp 23.9)``."""
        b = self.bands
        bands = ", ".join(b) if len(b) <= 4 else f"{b[0]}..{b[-1]}"
        parts = [
            f"{self.n_galaxies} galaxies x {len(self.bands)} bands {bands}",
            f"{int(self.has_zspec.sum())} with a spec-z",
            f"fluxzp {self.fluxzp:g}",
        ]
        if self.exposures is not None:
            parts.append(f"{len(self.exposures)} single exposures")
        if self.extra:
            parts.append(f"extra columns {', '.join(self.extra)}")
        return f"Catalog({'; '.join(parts)})"

    @property
    def has_zspec(self) -> np.ndarray:
        """(N,) bool: galaxies with a spectroscopic redshift."""
        return ~np.isnan(self.zspec)

    def band_index(self, name: str) -> int:
        """Column of band ``name`` in flux (N, B).

        >>> import deepz_core as dz
        >>> cat = dz.Catalog.from_table({"ref_id": [1, 2, 3], "flux_i": [10.0, 20.0, -1.0],
        ...     "flux_error_i": [1.0, 1.0, 1.0], "zspec": [0.3, float("nan"), 0.8]})
        >>> cat.band_index("i"), cat.flux[:, cat.band_index("i")].tolist()
        (0, [10.0, 20.0, -1.0])
        """
        try:
            return self.bands.index(name)
        except ValueError:
            known = ", ".join(self.bands)
            raise CatalogError(f"unknown band {name!r}; catalogue bands: {known}") from None

    def magnitudes(self, band: str) -> np.ndarray:
        """(N,) AB magnitudes fluxzp - 2.5 log10 flux in ``band``; NaN where flux <= 0.

        >>> import deepz_core as dz
        >>> cat = dz.Catalog.from_table({"ref_id": [1, 2, 3], "flux_i": [10.0, 20.0, -1.0],
        ...     "flux_error_i": [1.0, 1.0, 1.0], "zspec": [0.3, float("nan"), 0.8]})
        >>> cat.magnitudes("i").round(2).tolist()  # fluxzp 23.9: microJansky
        [21.4, 20.65, nan]
        """
        flux = self.flux[:, self.band_index(band)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(flux > 0, self.fluxzp - 2.5 * np.log10(flux), np.nan)

    def select(self, mask_or_indices: np.ndarray | list[int]) -> Catalog:
        """Sub-catalogue from a (N,) bool mask or unique integer indices; exposures follow.

        >>> import deepz_core as dz
        >>> cat = dz.Catalog.from_table({"ref_id": [1, 2, 3], "flux_i": [10.0, 20.0, -1.0],
        ...     "flux_error_i": [1.0, 1.0, 1.0], "zspec": [0.3, float("nan"), 0.8]})
        >>> cat.select(cat.has_zspec).ref_id.tolist(), cat.select([2, 0]).ref_id.tolist()
        ([1, 3], [3, 1])
        """
        idx = np.asarray(mask_or_indices)
        if idx.dtype == bool and idx.shape != (self.n_galaxies,):
            raise CatalogError(f"select: mask has shape {idx.shape}, expected ({self.n_galaxies},)")
        if idx.dtype != bool and len(np.unique(idx)) != idx.size:
            raise CatalogError("select: duplicate indices would duplicate ref_id")
        ref_id = self.ref_id[idx]
        exposures = self.exposures
        if exposures is not None:
            exposures = exposures.select(np.isin(exposures.ref_id, ref_id))
        return replace(
            self,
            ref_id=ref_id,
            flux=self.flux[idx],
            flux_error=self.flux_error[idx],
            zspec=self.zspec[idx],
            mag=None if self.mag is None else self.mag[idx],
            exposures=exposures,
            extra={k: v[idx] for k, v in self.extra.items()},
        )

    def columns(self) -> dict[str, np.ndarray]:
        """Canonical galaxy columns in file order: ref_id, flux_b/flux_error_b per band, zspec,
        mag (if any), extras.

        >>> import deepz_core as dz
        >>> cat = dz.Catalog.from_table({"ref_id": [1, 2, 3], "flux_i": [10.0, 20.0, -1.0],
        ...     "flux_error_i": [1.0, 1.0, 1.0], "zspec": [0.3, float("nan"), 0.8]})
        >>> list(cat.columns())
        ['ref_id', 'flux_i', 'flux_error_i', 'zspec']
        """
        cols: dict[str, np.ndarray] = {"ref_id": self.ref_id}
        for j, band in enumerate(self.bands):
            cols[FLUX_PREFIX + band] = self.flux[:, j]
            cols[ERROR_PREFIX + band] = self.flux_error[:, j]
        cols["zspec"] = self.zspec
        if self.mag is not None:
            cols["mag"] = self.mag
        cols.update(self.extra)
        return cols

    def to_table(self) -> Table:
        """astropy Table of the galaxy columns; ``meta`` holds FLUXZP and the header keys.

        >>> import deepz_core as dz
        >>> cat = dz.Catalog.from_table({"ref_id": [1, 2, 3], "flux_i": [10.0, 20.0, -1.0],
        ...     "flux_error_i": [1.0, 1.0, 1.0], "zspec": [0.3, float("nan"), 0.8]})
        >>> t = cat.to_table()
        >>> t.colnames, t.meta["FLUXZP"]
        (['ref_id', 'flux_i', 'flux_error_i', 'zspec'], 23.9)
        """
        return Table(self.columns(), meta={"FLUXZP": self.fluxzp, **self.meta})

    @classmethod
    def from_table(
        cls,
        table: Any,
        exposures: Exposures | None = None,
        source: str = "table",
        conventions: Any = None,
    ) -> Catalog:
        """A catalogue from an astropy Table, a pandas DataFrame or a mapping of (N,) columns in
        the canonical layout (``ref_id``, ``flux_<band>``, ``flux_error_<band>``, optional
        ``zspec`` and ``mag``); header values from the Table's ``meta`` or the DataFrame's
        ``attrs`` (FLUXZP sets the flux unit, 23.9 = microJansky by default; astropy column
        units such as nJy set it too). Survey spellings are read as well (``conventions``, an
        ``InputConventions`` or a mapping of its fields): ``objectId``/``object_id``/``id`` as
        the identifier, ``mag_<band>``/``magerr_<band>`` AB magnitudes (99 = non-detection).

        >>> import deepz_core as dz
        >>> from astropy.table import Table
        >>> t = Table({"ref_id": [1, 2], "flux_i": [10.0, 20.0], "flux_error_i": [1.0, 1.0],
        ...            "flux_r": [8.0, 15.0], "flux_error_r": [1.0, 1.0]})
        >>> dz.Catalog.from_table(t).bands
        ('i', 'r')
        >>> dz.Catalog.from_table(t.to_pandas()).n_galaxies
        2
        """
        if hasattr(table, "colnames"):  # astropy
            names, meta = list(table.colnames), dict(table.meta)
        elif hasattr(table, "columns") and hasattr(table, "attrs"):  # pandas
            names, meta = [str(c) for c in table.columns], dict(table.attrs)
        elif isinstance(table, Mapping):
            names, meta = list(table), {}
        else:
            raise CatalogError(
                f"{source}: expected an astropy Table, a pandas DataFrame or a "
                f"mapping of columns, got {type(table).__name__}"
            )
        from deepz_core.catalog.conventions import canonical_columns, conventions_of

        columns = {name: native_array(np.asarray(table[name])) for name in names}
        units = {n: str(table[n].unit) for n in names if getattr(table[n], "unit", None)}
        meta[UNITS_KEY] = units
        conv = conventions_of(conventions)
        columns, meta = canonical_columns(columns, meta, source, conv)
        return catalog_from_columns(columns, meta, source, exposures)


@dataclass(frozen=True, eq=False)
class DenseExposures:
    """Single exposures as dense tensors (N, B, X), X = most exposures of one galaxy in one band.

    Slots are filled in exp_num order; unused slots have mask False and flux = error = 0.
    """

    flux: np.ndarray  # (N, B, X) float32
    error: np.ndarray  # (N, B, X) float32
    mask: np.ndarray  # (N, B, X) bool


def exposure_order(gal: np.ndarray, band: np.ndarray, exp_num: np.ndarray) -> np.ndarray:
    """``np.lexsort((exp_num, band, gal))``, skipped when the exposures are in that order already
    (files written by deepz are: the sort costs ~0.5 CPU s per reading of the demo)."""
    if len(gal) > 1:
        step = np.diff(gal)
        same = step == 0
        step_band = np.diff(band)
        in_order = (step > 0) | (same & (step_band > 0))
        in_order |= same & (step_band == 0) & (np.diff(exp_num) >= 0)
        if not in_order.all():
            return np.lexsort((exp_num, band, gal))
    return np.arange(len(gal))


def dense_exposures(cat: Catalog) -> DenseExposures:
    """Scatter the long-format exposures into (N, B, X) tensors (vectorised; X = 0 if none)."""
    n, b = cat.flux.shape
    exp = cat.exposures
    if exp is None or len(exp) == 0:
        empty = np.zeros((n, b, 0), np.float32)
        return DenseExposures(empty, empty.copy(), np.zeros((n, b, 0), bool))
    gal, band = exposure_index(cat)
    if (gal < 0).any() or (band < 0).any():
        raise CatalogError("dense_exposures: exposures of unknown galaxies or bands (run validate)")
    key = gal * b + band  # (M,)
    order = exposure_order(gal, band, exp.exp_num)  # = np.lexsort((exp.exp_num, key))
    sorted_key = key[order]
    rows = np.arange(len(order))
    starts = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    slot = rows - np.maximum.accumulate(np.where(starts, rows, 0))  # (M,) position in its cell
    x = int(slot.max()) + 1
    flux = np.zeros((n, b, x), np.float32)
    error = np.zeros((n, b, x), np.float32)
    mask = np.zeros((n, b, x), bool)
    idx = (gal[order], band[order], slot)
    flux[idx] = exp.flux[order]
    error[idx] = exp.flux_error[order]
    mask[idx] = True
    return DenseExposures(flux, error, mask)


def coadd_from_exposures(dense: DenseExposures) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance mean flux and its error (N, B) float64; NaN where a cell has no exposure."""
    error = dense.error.astype(np.float64)
    weight = np.zeros_like(error)
    weight[dense.mask] = error[dense.mask] ** -2  # (N, B, X)
    sw = weight.sum(axis=-1)  # (N, B)
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = (weight * dense.flux).sum(axis=-1) / sw
        err = sw**-0.5
    none = sw == 0
    flux[none] = np.nan
    err[none] = np.nan
    return flux, err


# ---------------------------------------------------------------- named columns -> objects


def _column(columns: Mapping[str, np.ndarray], name: str, n: int, source: str) -> np.ndarray:
    """Float64 (n,) column ``name``; CatalogError if not numeric or not 1-D of length n."""
    values = as_float64(columns[name], name, source)
    if values.shape != (n,):
        raise CatalogError(f"{source}: column '{name}' has shape {values.shape}, expected ({n},)")
    return values


def discover_bands(names: list[str], source: str) -> tuple[str, ...]:
    """Bands from the ``flux_<band>`` columns in column order; each needs ``flux_error_<band>``."""
    fluxes = [c[len(FLUX_PREFIX) :] for c in names if c.startswith(FLUX_PREFIX)]
    fluxes = [b for b in fluxes if not b.startswith("error_")]
    errors = [c[len(ERROR_PREFIX) :] for c in names if c.startswith(ERROR_PREFIX)]
    if not fluxes and not errors:
        raise CatalogError(
            f"{source}: no bands: no 'flux_<band>'/'flux_error_<band>' (or 'mag_<band>'/"
            f"'magerr_<band>') columns (columns: {few(names, 8)}); other names: --rename"
        )
    for band in fluxes:
        if band not in errors:
            raise CatalogError(
                f"{source}: column 'flux_{band}' has no matching 'flux_error_{band}'"
            )
    for band in errors:
        if band not in fluxes:
            raise CatalogError(
                f"{source}: column 'flux_error_{band}' has no matching 'flux_{band}'"
            )
    try:
        check_band_names(tuple(fluxes))
    except CatalogError as err:
        raise CatalogError(f"{source}: {err}") from None
    return tuple(fluxes)


def catalog_from_columns(
    columns: Mapping[str, np.ndarray],
    meta: Mapping[str, Any] | None = None,
    source: str = "columns",
    exposures: Exposures | None = None,
) -> Catalog:
    """Catalog from named (N,) columns in file order and header ``meta`` (FLUXZP -> fluxzp)."""
    names = list(columns)
    if "ref_id" not in names:
        near = [c for c in names if c.lower() == "ref_id"]
        hint = (
            f" (found {near[0]!r}; names are case-sensitive)"
            if near
            else " (or objectId, object_id, id; name another identifier with --id-column)"
        )
        raise CatalogError(f"{source}: missing required column 'ref_id'{hint}")
    bands = discover_bands(names, source)
    ref_id = as_int64(columns["ref_id"], "ref_id", source).reshape(-1)
    n = len(ref_id)
    fluxes = [_column(columns, FLUX_PREFIX + b, n, source) for b in bands]
    errors = [_column(columns, ERROR_PREFIX + b, n, source) for b in bands]
    opt = {k: _column(columns, k, n, source) for k in ("zspec", "mag") if k in columns}
    used = {"ref_id", "zspec", "mag"} | {p + b for b in bands for p in (FLUX_PREFIX, ERROR_PREFIX)}
    units = column_units(meta or {})
    meta = {str(k).upper(): v for k, v in (meta or {}).items() if k != UNITS_KEY}
    header = meta.pop("FLUXZP", None)
    header = header.item() if isinstance(header, np.generic) else header
    flux_names = [p + b for b in bands for p in (FLUX_PREFIX, ERROR_PREFIX)]
    fluxzp = resolve_fluxzp(units, flux_names, header, source)  # TUNIT / FLUXZP, checked
    try:
        return Catalog(
            ref_id=ref_id,
            bands=bands,
            flux=np.stack(fluxes, axis=1),  # (N, B)
            flux_error=np.stack(errors, axis=1),  # (N, B)
            zspec=opt.get("zspec"),
            mag=opt.get("mag"),
            fluxzp=DEFAULT_FLUXZP if fluxzp is None else fluxzp,
            exposures=exposures,
            extra={k: native_array(columns[k]) for k in names if k not in used},
            meta=kept_meta(meta),
        )
    except CatalogError as err:
        raise CatalogError(f"{source}: {err}") from None


def exposures_from_columns(columns: Mapping[str, np.ndarray], source: str) -> Exposures:
    """Exposures from (M,) columns ref_id, band, exp_num, flux, flux_error (others ignored)."""
    missing = [c for c in EXPOSURE_COLUMNS if c not in columns]
    if missing:
        raise CatalogError(f"{source}: exposures lack required column(s) {', '.join(missing)}")
    band = native_array(columns["band"])
    if band.dtype.kind not in "UiuO":
        raise CatalogError(f"{source}: exposures column 'band' holds {band.dtype}, not band names")
    return Exposures(
        ref_id=as_int64(columns["ref_id"], "ref_id", source),
        band=band.astype(str),
        exp_num=as_int64(columns["exp_num"], "exp_num", source),
        flux=as_float64(columns["flux"], "flux", source),
        flux_error=as_float64(columns["flux_error"], "flux_error", source),
    )


def _lookup(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(M,) int64 position of each of ``values`` in ``table`` (unique entries); -1 if absent."""
    if len(table) == 0:
        return np.full(len(values), -1, np.int64)
    if len(values) > 1:  # runs of equal values (exposures grouped by galaxy, band): look up once
        head = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        if len(head) < len(values) // 2:
            found = _lookup(table, values[head])
            return np.repeat(found, np.diff(np.append(head, len(values))))
    order = np.argsort(table, kind="stable")
    idx = order[np.searchsorted(table, values, sorter=order).clip(0, len(table) - 1)]
    idx[table[idx] != values] = -1
    return idx.astype(np.int64)


def exposure_index(cat: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(M,) galaxy row and (M,) band column of every exposure; -1 where unknown."""
    exp = cat.exposures
    assert exp is not None
    return _lookup(cat.ref_id, exp.ref_id), _lookup(np.array(cat.bands, dtype=str), exp.band)
