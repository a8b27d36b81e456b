"""Where the app keeps its files, and uploaded catalogues stored once by content hash.

Folders live under ``DEEPZ_HOME`` (default: the working directory): ``runs/<run-id>/`` training
runs, ``data/uploads/<sha256>.<ext>`` uploaded files exactly as received, ``data/uploads/
catalog-<key>.fits`` canonical catalogues built from them (plus a ``.json`` note of where they came
from), ``data/sims/`` simulations. A catalogue is named by ``'demo'`` or its ``<key>``.

Uploads that do not read as a table are deleted at once; the folder stays under a quota (env
``DEEPZ_UPLOAD_QUOTA_GB``, default 20), the least recently used files no run reads evicted first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepz_core.catalog.columns import ERROR_PREFIX, FLUX_PREFIX
from deepz_core.catalog.conventions import InputConventions, canonical_columns
from deepz_core.catalog.formats.common import Columns
from deepz_core.catalog.io import SUFFIXES, read_tables
from deepz_core.errors import CatalogError
from deepz_core.files import atomic_write, atomic_write_json
from deepz_core.rundir import list_runs

DEMO = "demo"
_KEY = re.compile(r"^[0-9a-f]{16,64}$")


def home() -> Path:
    """The app's data root: env ``DEEPZ_HOME``, else the working directory."""
    return Path(os.environ.get("DEEPZ_HOME") or Path.cwd()).resolve()


def runs_dir() -> Path:
    return home() / "runs"


def uploads_dir() -> Path:
    return home() / "data" / "uploads"


def sims_dir() -> Path:
    return home() / "data" / "sims"


def upload_suffix(filename: str) -> str:
    """The catalogue extension of an uploaded file name, lower case (``.fits.gz``, ``.csv``...).
    Raises CatalogError naming the file when the extension is not a catalogue format."""
    lower = filename.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix
    known = ", ".join(sorted(SUFFIXES))
    raise CatalogError(f"{filename}: unknown catalogue file extension (expected one of {known})")


def save_upload(data: bytes, filename: str, role: str = "galaxies") -> Path:
    """Write ``data`` once to ``data/uploads/<sha256>.<ext>`` (kept if already there) and check
    that it reads as a table for ``role`` (see ``raw_columns``); its path. A file that does not
    read is deleted again (CatalogError saying why, naming ``filename``), and the folder is kept
    under its quota (``enforce_quota``: the oldest unused uploads go first)."""
    suffix = upload_suffix(filename)
    path = uploads_dir() / f"{hashlib.sha256(data).hexdigest()}{suffix}"
    new = not path.exists()
    if new:
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
    else:
        os.utime(path)  # used now: the last to be evicted
    try:
        raw_columns(path, role)
        enforce_quota(keep=(path,))
    except CatalogError as exc:
        if new or "quota" not in str(exc):
            path.unlink(missing_ok=True)
        reason = str(exc).replace(str(path), filename)
        raise CatalogError(f"{reason} (the upload was not kept)") from None
    return path


def upload_quota() -> int:
    """Bytes data/uploads may hold (env ``DEEPZ_UPLOAD_QUOTA_GB``, default 20 GB)."""
    text = os.environ.get("DEEPZ_UPLOAD_QUOTA_GB", "20")
    try:
        gb = float(text)
    except ValueError:
        gb = float("nan")
    if not gb > 0:
        raise CatalogError(f"DEEPZ_UPLOAD_QUOTA_GB must be a number of GB > 0, got {text!r}")
    return int(gb * 1e9)


def used_by_runs() -> set[str]:
    """Real paths of the files runs under ``runs_dir()`` read (catalogue, exposures, pretraining)."""
    used = set()
    for run in list_runs(runs_dir()):
        config = run.config()
        for key in ("catalog", "exposures", "pretrain"):
            if isinstance(config.get(key), str):
                used.add(os.path.realpath(config[key]))
    return used


def enforce_quota(keep: tuple[Path, ...] = (), quota: int | None = None) -> list[str]:
    """Delete uploads, least recently used first, until data/uploads holds at most ``quota`` bytes
    (``upload_quota()``); files a run reads and ``keep`` are never deleted (a canonical catalogue
    goes with its note). CatalogError (saying "quota") when the files that must stay exceed the
    quota alone. Names deleted."""
    quota = upload_quota() if quota is None else quota
    files = [p for p in uploads_dir().glob("*") if p.is_file() and p.suffix != ".json"]
    total = sum(p.stat().st_size for p in files)
    protected = used_by_runs() | {os.path.realpath(p) for p in keep}
    removable = sorted(
        (p for p in files if os.path.realpath(p) not in protected), key=lambda p: p.stat().st_mtime
    )
    removed = []
    for path in removable:
        if total <= quota:
            break
        total -= path.stat().st_size
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
        removed.append(path.name)
    if total > quota:
        raise CatalogError(
            f"the uploads folder is full ({total / 1e9:.1f} GB of a {quota / 1e9:.1f} GB quota, "
            "held by files that runs use): delete old runs, or raise DEEPZ_UPLOAD_QUOTA_GB"
        )
    return removed


FROM_MAGNITUDES_KEY = "_from_magnitudes"  # meta: {flux column: the magnitude column it came from}


def converted_columns(names: list[str]) -> dict[str, str]:
    """{flux_<band>: mag_<band>, flux_error_<band>: magerr_<band>} of the magnitude bands among
    ``names`` (``magnitudes.magnitude_columns``): which file column each converted flux is."""
    from deepz_core.catalog.magnitudes import magnitude_columns

    out: dict[str, str] = {}
    for band in magnitude_columns(names):
        out[FLUX_PREFIX + band.band] = band.mag
        out[ERROR_PREFIX + band.band] = band.error
    return out


def raw_columns(
    path: Path | str, role: str = "galaxies", magnitudes: bool = False
) -> tuple[Columns, dict[str, Any], Columns | None]:
    """(columns, meta, exposure columns inside the same file or None) of the table playing
    ``role`` ('galaxies', 'exposures' or 'specz'; the first table of the file if none is named so).
    ``magnitudes``: galaxies' ``mag_<band>``/``magerr_<band>`` columns become fluxes (in the
    FLUXZP the meta then says; deepz_core.catalog.magnitudes)."""
    names = ("galaxies", "exposures") if role == "galaxies" else (role,)
    tables = read_tables(path, names)
    columns, meta = tables[role]
    if not columns:
        raise CatalogError(f"{path}: the table has no columns")
    if magnitudes and role == "galaxies":
        conv = InputConventions(magnitudes=True)
        before = set(columns)
        converted = converted_columns(list(columns))
        columns, meta = canonical_columns(columns, meta, Path(path).name, conv)
        meta[FROM_MAGNITUDES_KEY] = {k: v for k, v in converted.items() if k not in before}
    inner = tables["exposures"][0] if role == "galaxies" and "exposures" in tables else None
    return columns, meta, inner


def recipe_key(recipe: dict[str, Any]) -> str:
    """Content key of a canonical catalogue: hash of its inputs' hashes and the column mapping."""
    blob = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def canonical_path(key: str) -> Path:
    """``data/uploads/catalog-<key>.fits``; a key that is not hexadecimal raises CatalogError."""
    if not _KEY.match(key):
        raise CatalogError(f"catalogue key must be hexadecimal, got {key!r}")
    return uploads_dir() / f"catalog-{key}.fits"


@dataclass(frozen=True)
class StoredCatalog:
    """A canonical catalogue the app can train on."""

    key: str
    path: Path
    label: str
    info: dict[str, Any]


def write_note(key: str, info: dict[str, Any]) -> None:
    """Remember where catalogue ``key`` came from (file names, counts, time)."""
    atomic_write_json(canonical_path(key).with_suffix(".json"), {**info, "created": time.time()})


def stored_catalogs() -> list[StoredCatalog]:
    """Canonical catalogues built from uploads, newest first."""
    folder = uploads_dir()
    if not folder.exists():
        return []
    out = []
    for path in folder.glob("catalog-*.fits"):
        key = path.stem.removeprefix("catalog-")
        try:
            info = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            info = {}
        n = info.get("n")
        count = f"{n:,}" if isinstance(n, int) else "?"
        label = f"{info.get('name', key)} ({count} galaxies, {key[:8]})"
        out.append(StoredCatalog(key, path, label, info))
    return sorted(out, key=lambda c: c.info.get("created", 0), reverse=True)


def resolve_catalog(choice: str | None) -> Path | None:
    """Path of the catalogue named ``choice`` ('demo' is not resolved here: None for it, for an
    unknown key, or for a key whose file is gone)."""
    if not choice or choice == DEMO or not _KEY.match(choice):
        return None
    path = canonical_path(choice)
    return path if path.exists() else None


def catalog_display_name(path: Path | str) -> str:
    """The name a person gave catalogue ``path`` (the Data page's 'Name' of an imported
    catalogue), 'demo' for the cached demo mock, else the file name."""
    path = Path(path)
    stem = path.stem.removeprefix("catalog-")
    if path.name.startswith("catalog-") and _KEY.match(stem):
        try:
            return str(json.loads(path.with_suffix(".json").read_text()).get("name") or stem[:8])
        except (OSError, ValueError):
            return stem[:8]
    if path.parent.name == "sims" and path.name.startswith("paus-mock_n10000_s42_"):
        return "demo"
    return path.name


def predictions_dir() -> Path:
    """``data/predictions/``: one folder per catalogue predicted by the app (Predict page)."""
    return home() / "data" / "predictions"


def remember_catalog(choice: str) -> None:
    """Remember the catalogue chosen last (``data/last_catalog.json``), for new browser tabs."""
    atomic_write_json(home() / "data" / "last_catalog.json", {"catalog": choice})


def last_catalog() -> str | None:
    """The catalogue chosen last on this server, if it still exists ('demo' always does)."""
    try:
        choice = json.loads((home() / "data" / "last_catalog.json").read_text()).get("catalog")
    except (OSError, ValueError, AttributeError):
        return None
    if choice == DEMO or resolve_catalog(choice) is not None:
        return choice
    return None
