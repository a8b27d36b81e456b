"""Provenance of every prediction deepz writes: deepz version, run id, model checksum, catalogue
path and checksum, redshift grid, creation time. ``provenance`` builds it once per output; the
writers carry it as FITS header cards (``fits_cards``), Parquet schema metadata
(``parquet_metadata``, key ``deepz_provenance``), qp HDF5 attributes and HATS properties
(``flat``)."""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir
from deepz_core.training.config import run_pz_config
from deepz_core.version import VERSION

PARQUET_KEY = b"deepz_provenance"
IN_MEMORY = "(in memory)"
FITS_KEYS = {  # provenance field -> FITS keyword, comment
    "deepz_version": ("DZVERS", "deepz version"),
    "run_id": ("DZRUNID", "deepz run that predicted"),
    "model_sha256": ("DZMODSHA", "sha256 of the run's model.safetensors"),
    "catalog": ("DZCAT", "catalogue predicted"),
    "catalog_sha256": ("DZCATSHA", "sha256 of the catalogue"),
    "z_grid": ("DZZGRID", "redshift grid z_min:z_max:dz of the products"),
    "odds_window": ("DZODDSW", "total width of the odds column's window"),
    "created": ("DATE", "UTC time the file was written"),
}
_BLOCK = 1 << 20


def deepz_version() -> str:
    """The version of the deepz package (``deepz_core.version``)."""
    return VERSION


def file_sha256(path: Path | str) -> str:
    """sha256 of a file, or of a folder's files (names and bytes, sorted): read once per process
    and file version."""
    path = Path(path).resolve()  # relative names too: the files are named relative to it
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _sha256(str(path), stamp)


@functools.lru_cache(maxsize=16)
def _sha256(root: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        if len(stamp) > 1:
            digest.update(str(Path(name).relative_to(root)).encode())
        with open(name, "rb") as fh:
            while block := fh.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def arrays_sha256(arrays: list[np.ndarray]) -> str:
    """sha256 of in-memory columns (a catalogue that has no file)."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def grid_text(pz: PzConfig) -> str:
    """'z_min:z_max:dz' of the run's p(z) grid (PzConfig)."""
    return f"{pz.z_min:g}:{pz.z_max:g}:{pz.dz:g}"


def provenance(
    run_dir: Path | str, catalog: Path | str | None, catalog_sha256: str | None = None
) -> dict[str, str]:
    """The provenance of predictions of ``catalog`` (a file or HATS folder; None: a catalogue in
    memory whose ``catalog_sha256`` the caller gives) by the run in ``run_dir``."""
    run = RunDir(Path(run_dir))
    pz = run_pz_config(run)
    return {
        "deepz_version": deepz_version(),
        "run_id": run.run_id,
        "model_sha256": file_sha256(run.file("model.safetensors")),
        "catalog": IN_MEMORY if catalog is None else str(Path(catalog).resolve()),
        "catalog_sha256": catalog_sha256 or (file_sha256(catalog) if catalog else ""),
        "z_grid": grid_text(pz),
        "odds_window": f"{pz.odds_window:g}",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
    }


def fit_provenance(catalog: Path | str, pz: PzConfig) -> dict[str, str]:
    """The provenance of a template fit of ``catalog`` (a file) on the p(z) grid ``pz``: the
    fields of ``provenance`` that a fit has (no run, no model; its template set and zero-points
    are in its own meta: TFSET, TFNAME, ZPCAL)."""
    return {
        "deepz_version": deepz_version(),
        "catalog": str(Path(catalog).resolve()),
        "catalog_sha256": file_sha256(catalog),
        "z_grid": grid_text(pz),
        "odds_window": f"{pz.odds_window:g}",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
    }


def provenance_meta(prov: dict[str, str]) -> dict[str, str]:
    """``prov`` as table meta under its FITS keywords (``FITS_KEYS``), which the table writers
    put in the FITS header and the Parquet metadata."""
    return {FITS_KEYS[k][0]: v for k, v in prov.items() if k in FITS_KEYS}


ODDS_WINDOW_META = FITS_KEYS["odds_window"][0]  # table meta key: the odds column's window


def fits_cards(prov: dict[str, str]) -> list[tuple[str, str, str]]:
    """(keyword, value, comment) header cards; long values continue over CONTINUE cards and
    carry no comment."""
    cards = []
    for field_name, value in prov.items():
        if field_name in FITS_KEYS:
            key, comment = FITS_KEYS[field_name]
            cards.append((key, value, comment if len(value) + len(comment) < 60 else ""))
    return cards


def from_fits_header(header: Any) -> dict[str, str]:
    """The provenance written by ``fits_cards`` back from a header."""
    return {k: str(header[key]) for k, (key, _) in FITS_KEYS.items() if key in header}


def parquet_metadata(prov: dict[str, str]) -> dict[bytes, bytes]:
    """Parquet schema metadata ``{b"deepz_provenance": JSON}``."""
    return {PARQUET_KEY: json.dumps(prov, sort_keys=True).encode()}


def from_parquet_metadata(metadata: dict[bytes, bytes] | None) -> dict[str, str]:
    """The provenance in Parquet schema metadata ({} when there is none)."""
    raw = (metadata or {}).get(PARQUET_KEY)
    return json.loads(raw) if raw else {}


def flat(prov: dict[str, str]) -> dict[str, str]:
    """``deepz_<field>`` keys (HATS properties, HDF5 attributes)."""
    return {f"deepz_{k}" if not k.startswith("deepz_") else k: v for k, v in prov.items()}
