"""Column mapping: recognise common spellings of catalogue columns and rename them to canonical names.

Survey catalogues name the same quantity in many ways (``ID``, ``objid``; ``FLUX_NB455``,
``nb455_flux``; ``FLUXERR_NB455``, ``nb455_err``; ``z_spec``, ``redshift``; ``i_mag``). The guesses
here are only a starting point: the Data page shows them and lets the user correct every entry.
Canonical names are those of ``deepz_core.catalog.catalog`` (docs/design.md, Catalogue).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache

import numpy as np

from deepz_core.catalog.columns import ERROR_PREFIX, EXPOSURE_COLUMNS, FLUX_PREFIX, GALAXY_COLUMNS
from deepz_core.errors import CatalogError

# Normalised aliases (lower case, letters and digits only), most specific first.
ID_ALIASES = ("refid", "id", "objid", "objectid", "sourceid", "srcid", "galaxyid", "galid", "seqid")
ZSPEC_ALIASES = ("zspec", "specz", "zs", "redshift", "zspecbest", "zsp", "zspectro")
MAG_ALIASES = ("mag", "imag", "magi", "imagauto", "magautoi", "magiauto")
EXPOSURE_ALIASES: dict[str, tuple[str, ...]] = {
    "ref_id": ID_ALIASES,
    "band": ("band", "filter", "filtername", "bandname", "filt"),
    "exp_num": (
        "expnum",
        "exp",
        "exposure",
        "exposurenum",
        "exposurenumber",
        "expid",
        "exposureid",
    ),
    "flux": ("flux", "expflux", "fluxexp"),
    "flux_error": ("fluxerror", "fluxerr", "error", "err", "fluxunc", "eflux", "fluxsigma"),
}
SPECZ_ALIASES: dict[str, tuple[str, ...]] = {"ref_id": ID_ALIASES, "zspec": ZSPEC_ALIASES}

_ERR = r"(?:flux[_-]?err(?:or)?|err(?:or)?[_-]?flux|e[_-]?flux|flux[_-]?unc|flux[_-]?sigma|dflux)"
_ERROR_PATTERNS = (
    re.compile(rf"^{_ERR}[_-]?(?P<band>.+)$", re.IGNORECASE),
    re.compile(rf"^(?P<band>.+?)[_-]?(?:{_ERR}|err(?:or)?|unc|sigma)$", re.IGNORECASE),
)
_FLUX_PATTERNS = (
    re.compile(r"^flux[_-]?(?P<band>.+)$", re.IGNORECASE),
    re.compile(r"^(?P<band>.+?)[_-]?flux$", re.IGNORECASE),
)


def normalise(name: str) -> str:
    """Lower case, letters and digits only: ``'Z_SPEC'`` -> ``'zspec'``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def _known_bands() -> dict[str, str]:
    from deepz_core.sed.bands import band_names

    return {b.lower(): b for b in band_names()}


def canonical_band(text: str, bands: Iterable[str] | None = None) -> str:
    """The band name ``text`` refers to: a case-insensitive match in ``bands`` (default: the known
    filter curves, e.g. ``'nb455'`` -> ``'NB455'``), else ``text`` without stray separators."""
    clean = text.strip().strip("_-")
    lookup = _known_bands() if bands is None else {b.lower(): b for b in bands}
    return lookup.get(clean.lower(), clean)


def split_flux_column(name: str) -> tuple[str, str] | None:
    """('flux' | 'error', band text) when ``name`` looks like a flux or flux-error column."""
    for kind, patterns in (("error", _ERROR_PATTERNS), ("flux", _FLUX_PATTERNS)):
        for pattern in patterns:
            match = pattern.match(name)
            if match:
                band = re.sub(r"^flux[_-]?", "", match["band"], flags=re.IGNORECASE)
                if band.strip("_-"):
                    return kind, band
    if name.lower() in _known_bands():
        return "flux", name
    return None


@dataclass(frozen=True)
class GalaxyMapping:
    """Which source column provides each canonical galaxy column.

    ``bands``: (band name, flux column, flux-error column) per band, in catalogue order.
    """

    ref_id: str | None = None
    zspec: str | None = None
    mag: str | None = None
    bands: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)

    def targets(self) -> dict[str, str]:
        """Canonical name -> source column, for every mapped column."""
        out = {k: getattr(self, k) for k in GALAXY_COLUMNS if getattr(self, k)}
        for band, flux, error in self.bands:
            out[FLUX_PREFIX + band] = flux
            out[ERROR_PREFIX + band] = error
        return out

    @classmethod
    def from_json(cls, text: str) -> GalaxyMapping:
        """Inverse of ``to_json``."""
        d = json.loads(text)
        bands = tuple((str(b), str(f), str(e)) for b, f, e in d.get("bands", ()))
        return cls(d.get("ref_id"), d.get("zspec"), d.get("mag"), bands)

    def to_json(self) -> str:
        """The mapping as canonical JSON (keys sorted): a stable key for caches and comparisons."""
        return json.dumps(
            {
                "ref_id": self.ref_id,
                "zspec": self.zspec,
                "mag": self.mag,
                "bands": [list(b) for b in self.bands],
            },
            sort_keys=True,
        )


def _first_alias(names: Sequence[str], aliases: Sequence[str], taken: set[str]) -> str | None:
    """The column whose normalised name comes earliest in ``aliases`` (None if none matches)."""
    by_norm: dict[str, str] = {}
    for name in names:
        if name not in taken:
            by_norm.setdefault(normalise(name), name)
    return next((by_norm[a] for a in aliases if a in by_norm), None)


def _looks_like_ugriz(names: Sequence[str]) -> bool:
    """Columns named by bare band letters (SDSS PhotoObj's u, g, r, i, z magnitudes)."""
    bare = {normalise(n) for n in names}
    return len(bare & {"u", "g", "r", "i"}) >= 2


def guess_zspec(names: Sequence[str], taken: set[str]) -> str | None:
    """The spec-z column: a known spelling, else a column named ``z`` (SDSS SpecObj's redshift)
    unless the other columns are bare band letters (then ``z`` is the z-band magnitude)."""
    found = _first_alias(names, ZSPEC_ALIASES, taken)
    if found is None and not _looks_like_ugriz(names):
        found = next((n for n in names if n not in taken and normalise(n) == "z"), None)
    return found


def guess_galaxy_mapping(names: Sequence[str]) -> GalaxyMapping:
    """Best guess of the galaxy mapping from the column names of a file (bands in file order;
    a band is kept only when both its flux and its error column were recognised)."""
    ref_id = _first_alias(names, ID_ALIASES, set())
    zspec = guess_zspec(names, {ref_id} if ref_id else set())
    mag = _first_alias(names, MAG_ALIASES, {c for c in (ref_id, zspec) if c})
    flux: dict[str, str] = {}
    error: dict[str, str] = {}
    for name in names:
        if name in (ref_id, zspec, mag):
            continue
        found = split_flux_column(name)
        if found is not None:
            target = flux if found[0] == "flux" else error
            target.setdefault(canonical_band(found[1]), name)
    bands = tuple((b, flux[b], error[b]) for b in flux if b in error)
    return GalaxyMapping(ref_id, zspec, mag, bands)


def guess_columns(
    names: Sequence[str], aliases: Mapping[str, Sequence[str]]
) -> dict[str, str | None]:
    """Canonical name -> best matching source column (or None) for a small table, e.g.
    ``guess_columns(names, EXPOSURE_ALIASES)``; each source column is used at most once."""
    taken: set[str] = set()
    out: dict[str, str | None] = {}
    for target, options in aliases.items():
        out[target] = _first_alias(names, options, taken)
        if out[target]:
            taken.add(out[target])
    return out


def mapping_problems(
    targets: Mapping[str, str | None], names: Sequence[str], required: Sequence[str], source: str
) -> list[str]:
    """Readable problems of a mapping: required targets unmapped, unknown or re-used columns."""
    problems = [f"{source}: choose the column for '{t}'" for t in required if not targets.get(t)]
    used: dict[str, str] = {}
    for target, column in targets.items():
        if not column:
            continue
        if column not in names:
            problems.append(f"{source}: column {column!r} (for '{target}') is not in the file")
        elif column in used:
            problems.append(
                f"{source}: column {column!r} is used for both '{used[column]}' and '{target}'"
            )
        used.setdefault(column, target)
    return problems


def galaxy_mapping_problems(mapping: GalaxyMapping, names: Sequence[str], source: str) -> list[str]:
    """Problems of a galaxy mapping: no ID, no bands, bad band names, unknown/re-used columns."""
    problems = mapping_problems(mapping.targets(), names, ("ref_id",), source)
    if not mapping.bands:
        problems.append(f"{source}: no bands mapped (give each band a flux and an error column)")
    seen: set[str] = set()
    for band, flux, error in mapping.bands:
        if not band or band.startswith("error") or band in seen:
            problems.append(f"{source}: band name {band!r} is empty, reserved or repeated")
        if not flux or not error:
            problems.append(f"{source}: band {band!r} needs both a flux and an error column")
        seen.add(band)
    return problems


def apply_galaxy_mapping(
    columns: Mapping[str, np.ndarray], mapping: GalaxyMapping, keep_extra: bool = True
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Canonical columns (ref_id, flux_*/flux_error_*, zspec, mag, then extras) and notes about
    unmapped columns that had to be left out. Raises CatalogError for a column not in ``columns``."""
    targets = mapping.targets()
    missing = [c for c in targets.values() if c not in columns]
    if missing:
        raise CatalogError(f"mapped column(s) {missing} not in the file")
    out = {target: columns[source] for target, source in targets.items()}
    notes: list[str] = []
    used = set(targets.values())
    for name, values in columns.items():
        if name in used or not keep_extra:
            continue
        reserved = name in GALAXY_COLUMNS or name.startswith(FLUX_PREFIX) or name in out
        if reserved or np.ndim(values) < 1:
            notes.append(f"column {name!r} left out (unmapped, and its name is reserved)")
        else:
            out[name] = values
    return out, notes


def apply_exposure_mapping(
    columns: Mapping[str, np.ndarray], mapping: Mapping[str, str | None], bands: Sequence[str]
) -> dict[str, np.ndarray]:
    """The five canonical exposure columns; band values matched case-insensitively to ``bands``
    (``'nb455'`` -> ``'NB455'``). Raises CatalogError for an unmapped or unknown column."""
    out: dict[str, np.ndarray] = {}
    for target in EXPOSURE_COLUMNS:
        column = mapping.get(target)
        if not column or column not in columns:
            raise CatalogError(f"exposures: no column mapped to '{target}'")
        out[target] = columns[column]
    names, inverse = np.unique(np.asarray(out["band"]).astype(str), return_inverse=True)
    fixed = np.array([canonical_band(n, bands) for n in names.tolist()], dtype=str)
    out["band"] = fixed[inverse.reshape(-1)] if len(names) else np.asarray(out["band"], dtype=str)
    return out


# ---------------------------------------------------------------- band names

_DECORATION = re.compile(
    r"^(?:flux|mag|model|cmodel|psf|petro|auto|aper|kron|gaap|calib|corr|dered|total)[_-]?|"
    r"[_-]?(?:flux|mag|model|cmodel|psf|petro|auto|aper|kron|gaap|calib|corr|dered|total|ab)$",
    re.IGNORECASE,
)
SURVEY_SETS = ("sdss", "lsst", "hsc", "euclid")  # band sets whose names end in a band letter


def band_letter(name: str) -> str | None:
    """The filter a band name stands for (``FLUX_G`` -> 'g', ``i_cmodel`` -> 'i', ``Ks``...);
    None when it is not a single filter letter."""
    text = name.strip()
    for _ in range(4):  # peel prefixes and suffixes like flux_, _auto, cmodel_
        stripped = _DECORATION.sub("", text).strip("_-")
        if stripped == text:
            break
        text = stripped
    letter = text.lower()
    return letter if letter in ("u", "g", "r", "i", "z", "y", "j", "h", "vis") else None


def suggest_band_names(bands: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Known band names for bands without a filter curve, per survey whose set has every one of
    their filters, the likelier survey first: ``['FLUX_G', 'FLUX_R']`` -> {'sdss': ('sdss_g',
    'sdss_r'), 'lsst': (...), 'hsc': (...)}. Renaming them lets 'auto' pretraining simulate the
    bands. {} when some band is not a filter letter."""
    from deepz_core.sed.bands import band_set

    letters = [band_letter(b) for b in bands]
    if not letters or None in letters:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for survey in SURVEY_SETS:
        names = {n.split("_", 1)[1]: n for n in band_set(survey)}
        if all(letter in names for letter in letters):
            out[survey] = tuple(names[letter] for letter in letters)  # type: ignore[index]
    # y without u: HSC before LSST; u without y: SDSS first (the default order)
    if "y" in letters and "u" not in letters and "hsc" in out:
        out = {"hsc": out.pop("hsc"), **out}
    elif "y" in letters and "lsst" in out:
        out = {"lsst": out.pop("lsst"), **out}
    return out


def band_names_hint(bands: Sequence[str]) -> str:
    """' (for lsst filters name them lsst_u, ...: columns flux_lsst_u or mag_u_lsst; or sdss)'
    for bands named by a filter letter (``u`` from ``mag_u``: no filter curve), from
    ``suggest_band_names``; '' when they are not filter letters."""
    suggested = suggest_band_names(bands)
    if not suggested:
        return ""
    survey, names = next(iter(suggested.items()))
    others = ", ".join(list(suggested)[1:])
    letter = names[0].split("_", 1)[1]
    return (
        f" (for {survey} filters name them {', '.join(names)}: columns flux_{names[0]} or "
        f"mag_{letter}_{survey}{'; or ' + others if others else ''})"
    )


def _filter_letter(band: str) -> str | None:
    """The filter letter of a band name: ``band_letter`` ('u_cModel' -> 'u'), or the letter after
    a survey prefix of deepz's own names ('lsst_u' -> 'u', 'sdss_g' -> 'g')."""
    letter = band_letter(band)
    if letter is None and "_" in band and band.split("_", 1)[0].lower() in SURVEY_SETS:
        letter = band_letter(band.split("_", 1)[1])
    return letter


def match_run_bands(bands: Sequence[str], run_bands: Sequence[str]) -> dict[str, str]:
    """{band: run band} for the bands of a guessed mapping that a run knows by another name: a
    band not among ``run_bands`` whose filter letter is that of exactly one run band (u_cModel
    -> lsst_u, FLUX_G -> sdss_g). {} unless every such band finds its own run band, one to one
    (a partial or ambiguous match renames nothing: the page then says which bands are missing)."""
    have = set(run_bands)
    unknown = [b for b in bands if b not in have]
    free = [r for r in run_bands if r not in set(bands)]
    by_letter: dict[str, list[str]] = {}
    for r in free:
        letter = _filter_letter(r)
        if letter is not None:
            by_letter.setdefault(letter, []).append(r)
    out: dict[str, str] = {}
    for b in unknown:
        letter = _filter_letter(b)
        matches = by_letter.get(letter, []) if letter is not None else []
        if len(matches) != 1:
            return {}
        out[b] = matches[0]
    return out if len(set(out.values())) == len(out) else {}


def renamed_bands(mapping: GalaxyMapping, rename: Mapping[str, str]) -> GalaxyMapping:
    """``mapping`` with its bands renamed by ``rename`` (columns unchanged)."""
    bands = tuple((rename.get(b, b), f, e) for b, f, e in mapping.bands)
    return replace(mapping, bands=bands)
