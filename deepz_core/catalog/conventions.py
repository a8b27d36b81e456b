"""Survey conventions on input: the identifier (``objectId``, ``object_id``, ``id`` as well as
deepz's ``ref_id``), coordinates passed through (``ra``/``dec``, ``RA``/``DEC``,
``coord_ra``/``coord_dec``, ``_healpix_29``), AB magnitudes instead of fluxes
(deepz_core.catalog.magnitudes) and flux units (deepz_core.catalog.units).

``canonical_columns`` turns the columns of any file or table into deepz's canonical ones before
the catalogue is built; the CLI (``read_catalog``, streamed ``predict``), the API
(``Catalog.from_table``) and the Data page all go through it. ``needed_columns`` names the columns
of a file a streamed prediction has to read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from deepz_core.catalog.columns import (
    DEFAULT_FLUXZP,
    ERROR_PREFIX,
    FLUX_PREFIX,
    as_int64,
    check_unique_ids,
    few,
)
from deepz_core.catalog.magnitudes import convert_magnitudes, magnitude_columns, resolve_limits
from deepz_core.catalog.units import (
    UNIT_ZEROPOINTS,
    UNITS_KEY,
    ZP_TOLERANCE,
    column_units,
    name_zeropoint,
    resolve_fluxzp,
    unit_zeropoint,
)
from deepz_core.configs import Config, check_bool, check_real
from deepz_core.errors import CatalogError, ConfigError

ID_COLUMNS = ("objectId", "object_id", "id")  # the identifier when there is no ref_id, in order
COORDINATE_COLUMNS = ("ra", "dec", "RA", "DEC", "coord_ra", "coord_dec", "_healpix_29")


@dataclass(frozen=True)
class InputConventions(Config):
    """How a survey catalogue names and encodes its columns.

    ``id_column``: the identifier (None: ``ref_id``, else the first of objectId, object_id, id);
    ``magnitudes``: convert ``mag_<band>``/``magerr_<band>`` to fluxes (None: only when the table
    has no flux columns); ``mag_limits``: limiting AB magnitude per band (or magnitude column, or
    a short name such as ``u`` for ``lsst_u`` when unambiguous; a name that is no band is a
    ConfigError) for non-detections without a ``maglim_<band>`` value, at ``limit_nsigma`` sigma;
    ``nondetect`` /
    ``unobserved``: the magnitude codes of a non-detection (99) and of a band not observed (-99);
    ``flux_unit``: the unit of the flux columns (``nJy``, ``uJy``, ``nanomaggy``...) of a table
    that declares none (CSV, a Parquet file without unit metadata; one that declares another is
    refused); ``rename``: column name patterns with ``{b}`` for a band, each to the canonical
    name it stands for (``{"{b}_cModelFlux": "flux_lsst_{b}", "modelMag_{b}": "mag_{b}_sdss"}``;
    ``rename_columns``), or one column's name without ``{b}`` (``{"redshift": "zspec"}``, RAIL's
    spec-z column).

    >>> import deepz_core as dz
    >>> t = {"objectId": [11, 12], "mag_i": [22.5, 99.0], "magerr_i": [0.1, 99.0],
    ...      "mag_r": [23.0, 24.0], "magerr_r": [0.2, 0.3]}
    >>> cat = dz.Catalog.from_table(t, conventions=dz.InputConventions(mag_limits={"i": 25.0}))
    >>> cat.ref_id.tolist(), cat.bands, cat.fluxzp
    ([11, 12], ('i', 'r'), 23.9)
    >>> [round(float(v), 3) for v in (*cat.flux[:, 0], *cat.flux_error[:, 0])]
    [3.631, 0.0, 0.334, 0.363]
    """

    id_column: str | None = None
    magnitudes: bool | None = None
    mag_limits: Mapping[str, float] = field(default_factory=dict)
    limit_nsigma: float = 1.0
    nondetect: float = 99.0
    unobserved: float = -99.0
    flux_unit: str | None = None
    rename: Mapping[str, str] = field(default_factory=dict)

    CONFIG_NAME: ClassVar[str] = "input conventions"

    def __post_init__(self) -> None:
        if self.id_column is not None and not (isinstance(self.id_column, str) and self.id_column):
            raise ConfigError(f"id_column: expected a column name, got {self.id_column!r}")
        if self.magnitudes is not None:
            self._set("magnitudes", check_bool("magnitudes", self.magnitudes))
        if not isinstance(self.mag_limits, Mapping):
            raise ConfigError(f"mag_limits: expected {{band: magnitude}}, got {self.mag_limits!r}")
        limits = {str(k): check_real(f"mag_limits[{k}]", v) for k, v in self.mag_limits.items()}
        self._set("mag_limits", limits)
        self._set("limit_nsigma", check_real("limit_nsigma", self.limit_nsigma, 0.0, low_open=True))
        for name in ("nondetect", "unobserved"):
            self._set(name, check_real(name, getattr(self, name)))
        if self.flux_unit is not None and (
            not isinstance(self.flux_unit, str) or unit_zeropoint(self.flux_unit) is None
        ):
            known = ", ".join(UNIT_ZEROPOINTS)
            raise ConfigError(
                f"flux_unit: {self.flux_unit!r} is not a flux-density unit (known: {known}, or "
                "any astropy unit of Jy)"
            )

        if not isinstance(self.rename, Mapping):
            raise ConfigError(f"rename: expected {{pattern: name}}, got {self.rename!r}")
        self._set("rename", {str(k): str(v) for k, v in self.rename.items()})
        for pattern, target in self.rename.items():
            counts = (pattern.count(PLACEHOLDER), target.count(PLACEHOLDER))
            if counts not in ((1, 1), (0, 0)) or not (pattern and target):
                raise ConfigError(
                    f"--rename: {pattern}={target} needs {PLACEHOLDER} once on each side "
                    "(the band), e.g. {b}_cModelFlux=flux_lsst_{b}, or on neither (one "
                    "column), e.g. redshift=zspec"
                )

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``flux_unit`` and ``rename`` only when set (keys of datasets written
        before they existed match).

        >>> import deepz_core as dz
        >>> fields = dz.InputConventions(id_column="objectId", mag_limits={"i": 25.0}).to_dict()
        >>> fields["id_column"], fields["mag_limits"], "flux_unit" in fields
        ('objectId', {'i': 25.0}, False)
        """
        out = {**super().to_dict(), "mag_limits": dict(self.mag_limits)}
        out["rename"] = dict(self.rename)
        for name in ("flux_unit", "rename"):
            if not out.get(name):
                out.pop(name, None)
        return out


PLACEHOLDER = "{b}"  # the band in a --rename pattern


def rename_columns(names: Sequence[str], rename: Mapping[str, str], source: str) -> dict[str, str]:
    """{file column: canonical name} of the ``names`` that a ``rename`` pattern matches whole
    (``{b}`` stands for a band: letters, digits, _; a pattern without it names one column).
    Where two patterns match one column the more specific wins (the longer fixed text:
    ``mag_err_{b}_lsst`` over ``mag_{b}_lsst`` for ``mag_err_u_lsst``), whatever their order;
    CatalogError when they are as specific, a new name is already a column or two columns get
    one name."""
    out: dict[str, str] = {}
    by: dict[str, str] = {}  # file column -> the pattern that renamed it
    for pattern, target in sorted(rename.items(), key=lambda kv: -_fixed_text(kv[0])):
        for name, new in _matches(names, pattern, target).items():
            if name in by and _fixed_text(by[name]) == _fixed_text(pattern):
                raise CatalogError(
                    f"{source}: column {name!r} matches two --rename patterns as specific, "
                    f"{by[name]!r} and {pattern!r}: make them tell it apart"
                )
            if name not in by:
                out[name], by[name] = new, pattern
    clashes = sorted({v for v in out.values() if v in names and v not in out}) or sorted(
        v for v in set(out.values()) if list(out.values()).count(v) > 1
    )
    if clashes:
        raise CatalogError(
            f"{source}: --rename gives names twice or names already there: {clashes}"
        )
    return out


def _fixed_text(pattern: str) -> int:
    """How specific a ``rename`` pattern is: its characters besides ``{b}``."""
    return len(pattern.replace(PLACEHOLDER, ""))


def _matches(names: Sequence[str], pattern: str, target: str) -> dict[str, str]:
    """{column: new name} of the ``names`` one ``rename`` pattern matches whole."""
    if PLACEHOLDER not in pattern:  # one column, named whole
        return {pattern: target} if pattern in names else {}
    head, tail = pattern.split(PLACEHOLDER)
    regex = re.compile(f"{re.escape(head)}(?P<b>\\w+){re.escape(tail)}")
    found = ((name, regex.fullmatch(name)) for name in names)
    return {name: target.replace(PLACEHOLDER, m["b"]) for name, m in found if m is not None}


def conventions_of(value: InputConventions | Mapping[str, Any] | None) -> InputConventions:
    """An InputConventions from itself, a mapping of its fields, or None (the defaults)."""
    if value is None:
        return InputConventions()
    if isinstance(value, InputConventions):
        return value
    return InputConventions.from_dict(value)


def identifier(names: Sequence[str], conv: InputConventions) -> str | None:
    """The column that identifies galaxies: ``conv.id_column``, else ref_id, else the first of
    ID_COLUMNS present; None if none is."""
    if conv.id_column is not None:
        return conv.id_column
    return next((c for c in ("ref_id", *ID_COLUMNS) if c in names), None)


def canonical_columns(
    columns: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    source: str,
    conv: InputConventions | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(columns, meta) in deepz's canonical names: ``ref_id`` from the identifier column (the
    original stays as an extra), fluxes from magnitudes where asked or needed, with FLUXZP set to
    the zero-point they are in. Raises CatalogError naming a missing identifier column or mixed
    units; non-integer or repeated ids name the user's identifier column (``column 'objectId'
    has duplicates: 7, 9``), as the streamed preflight does, not ``ref_id``."""
    conv = conv or InputConventions()
    cols, meta = dict(columns), dict(meta)
    if conv.rename:
        names = rename_columns(list(cols), conv.rename, source)
        conv = renamed_magnitudes(conv, names, list(cols))
        if conv.flux_unit is None:
            meta = rubin_flux_unit(names, meta)
        cols, meta = _renamed(cols, meta, names)
    ident = identifier(list(cols), conv)
    if conv.id_column is not None and ident not in cols:
        raise CatalogError(f"{source}: identifier column {ident!r} (id_column) is not in the table")
    if ident is not None and ident != "ref_id":  # errors name the user's column, not ref_id
        cols["ref_id"] = as_int64(cols[ident], ident, source)
        check_unique_ids(cols["ref_id"], source, ident)
    if conv.flux_unit is not None:
        meta = declare_flux_unit(list(cols), meta, conv.flux_unit, source)
    if _converts_magnitudes(list(cols), conv):
        units = column_units(meta)
        fluxes = [c for c in cols if c.startswith(FLUX_PREFIX)]
        header = meta.pop("FLUXZP", meta.pop("fluxzp", None))
        zp = resolve_fluxzp(units, fluxes, header, source)
        zp = DEFAULT_FLUXZP if zp is None else zp
        cols = convert_magnitudes(
            cols,
            zp,
            conv.mag_limits,
            conv.limit_nsigma,
            conv.nondetect,
            conv.unobserved,
            source,
        )
        meta["FLUXZP"] = zp
    return cols, meta


def _renamed(
    cols: dict[str, np.ndarray], meta: dict[str, Any], names: Mapping[str, str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Columns and meta (its column units too) with the file columns ``names`` renamed."""
    units = meta.get(UNITS_KEY)
    if units:
        meta = {**meta, UNITS_KEY: {names.get(k, k): v for k, v in units.items()}}
    return {names.get(k, k): v for k, v in cols.items()}, meta


def rubin_flux_unit(names: Mapping[str, str], meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` with the nanojansky zero-point (31.4) as FLUXZP when every file column that
    ``names`` ({file column: canonical name}) renames to a flux or flux error is a Rubin pipelines
    flux column (u_cModelFlux, u_cModelFluxErr: nJy by definition) and the table states no unit
    for them (no unit, no FLUXZP header): how the Data page reads the same file. Otherwise
    ``meta`` unchanged."""
    out = dict(meta)
    fluxes = [old for old, new in names.items() if new.startswith(FLUX_PREFIX)]
    stated = set(column_units(out)) & set(fluxes) or any(str(k).upper() == "FLUXZP" for k in out)
    zp = None if stated else name_zeropoint(fluxes)
    if zp is not None:
        out["FLUXZP"] = zp
    return out


def declare_flux_unit(
    names: Sequence[str], meta: Mapping[str, Any], unit: str, source: str
) -> dict[str, Any]:
    """``meta`` with the zero-point of ``unit`` as its FLUXZP (the fluxes' unit given on the
    command line, ``--flux-unit``); CatalogError when the table declares another (TUNIT, a
    Parquet field's unit or a FLUXZP header), naming both."""
    zp = unit_zeropoint(unit)
    assert zp is not None  # InputConventions checked it
    out = dict(meta)
    header = out.pop("FLUXZP", out.pop("fluxzp", None))
    fluxes = [c for c in names if c.startswith(FLUX_PREFIX)]
    declared = resolve_fluxzp(column_units(out), fluxes, header, source)
    if declared is not None and abs(declared - zp) > ZP_TOLERANCE:
        raise CatalogError(
            f"{source}: --flux-unit {unit} (AB zero-point {zp:g}) disagrees with the unit the "
            f"table declares (zero-point {declared:g}); give one of them"
        )
    out["FLUXZP"] = zp
    return out


def renamed_magnitudes(
    conv: InputConventions, names: Mapping[str, str], columns: Sequence[str]
) -> InputConventions:
    """``conv`` converting magnitudes (``magnitudes`` True) when it leaves that open (None) and
    ``rename`` ({file column: new name} of the file's ``columns``) names a band's magnitude
    column (``mag_<band>`` with its error column): a band renamed to magnitudes among flux bands
    (a flux column that held magnitudes) is converted, not left out."""
    if conv.magnitudes is not None:
        return conv
    renamed = [names.get(c, c) for c in columns]
    if any(b.mag in names.values() for b in magnitude_columns(renamed)):
        return dataclasses.replace(conv, magnitudes=True)
    return conv


def _converts_magnitudes(names: list[str], conv: InputConventions) -> bool:
    """Whether magnitudes become fluxes: as asked, else when no column holds a flux."""
    if conv.magnitudes is not None:
        return conv.magnitudes and bool(magnitude_columns(names))
    has_flux = any(c.startswith(FLUX_PREFIX) for c in names)
    return not has_flux and bool(magnitude_columns(names))


def needed_columns(
    names: Sequence[str],
    bands: Sequence[str] | None,
    keep: Sequence[str] = (),
    conv: InputConventions | None = None,
    source: str = "catalogue",
) -> list[str] | None:
    """The columns of a file with column ``names`` that a prediction for ``bands`` reads (None:
    all, when the bands are unknown): identifier, zspec, mag, coordinates, ``keep``, and each
    band's flux and error, or its magnitude, error and limit columns. Raises ConfigError for a
    ``keep`` column and CatalogError for flux columns the file lacks."""
    if bands is None:
        return None
    conv = conv or InputConventions()
    if conv.rename:  # decide on the canonical names, read the file's
        new = rename_columns(names, conv.rename, source)
        old = {v: k for k, v in new.items()}
        plain = dataclasses.replace(renamed_magnitudes(conv, new, names), rename={})
        chosen = needed_columns([new.get(n, n) for n in names], bands, keep, plain, source)
        return None if chosen is None else [old.get(n, n) for n in chosen]
    wanted = {"ref_id", "zspec", "mag", *COORDINATE_COLUMNS, *keep}
    wanted.add(identifier(names, conv) or "ref_id")
    fluxes = {p + b for b in bands for p in (FLUX_PREFIX, ERROR_PREFIX)}
    if _converts_magnitudes(list(names), conv):
        magnitudes = magnitude_columns(names)
        limited = resolve_limits(conv.mag_limits, magnitudes)  # ConfigError for no band
        for band in magnitudes:
            if band.band in bands or band.mag in limited:  # limits are checked in every chunk
                wanted |= {band.mag, band.error, band.limit or band.mag}
    elif not fluxes & set(names):
        raise CatalogError(
            f"{source}: none of the flux columns asked for ({few(sorted(fluxes), 4)}) is in the "
            f"file; its columns: {few(list(names), 8)}; other names: --rename"
        )
    missing = [k for k in keep if k not in names]
    if missing:
        raise ConfigError(f"--keep-columns: {missing} not in the catalogue (columns: {names[:8]})")
    return [n for n in names if n in wanted | fluxes]
