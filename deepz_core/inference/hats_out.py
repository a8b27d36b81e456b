"""Predictions as a HATS catalogue (LSDB's format), written by the lsdb and hats libraries: the
folder ``lsdb.open_catalog`` opens, partitioned on the sky by HEALPix, with the mixture columns
``weights``, ``means``, ``stds`` as fixed-size lists and deepz's provenance among the
``hats.properties`` (``deepz_version``, ``deepz_run_id``, ...). The predictions need coordinates:
``ra``/``dec``, ``RA``/``DEC`` or ``coord_ra``/``coord_dec`` from the catalogue (passed through
by ``predict``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.columns import few
from deepz_core.catalog.validation import check_sky
from deepz_core.errors import ConfigError
from deepz_core.inference.provenance import flat

COORDINATE_PAIRS = (("ra", "dec"), ("RA", "DEC"), ("coord_ra", "coord_dec"))
HEALPIX_COLUMN = "_healpix_29"  # lsdb computes it from ra, dec


def find_coordinate_pair(names: list[str]) -> tuple[str, str] | None:
    """The (ra, dec) columns among ``names`` (ra/dec, RA/DEC or DP0's coord_ra/coord_dec), None
    when there are none."""
    for ra, dec in COORDINATE_PAIRS:
        if ra in names and dec in names:
            return ra, dec
    return None


def coordinate_pair(names: list[str]) -> tuple[str, str]:
    """The (ra, dec) columns among a catalogue's column ``names`` (those of its predictions, which
    carry them); ConfigError listing the ``names`` when it has none: checked on the catalogue
    before predicting (``stream.hats_coordinates``, ``Run.predict``)."""
    found = find_coordinate_pair(names)
    if found is not None:
        return found
    pairs = ", ".join("/".join(p) for p in COORDINATE_PAIRS)
    raise ConfigError(
        f"--out-format hats needs coordinates: the catalogue has none of {pairs} (its columns: "
        f"{few(names, 8)}); give them, or write .parquet"
    )


def check_sky_coordinates(cat: Catalog, source: str) -> tuple[str, str]:
    """The (ra, dec) columns of the catalogue ``cat`` read from ``source`` (``coordinate_pair``:
    ConfigError without any), after checking that every galaxy has a finite ra and dec on the
    sky (``validation.check_sky``: CatalogError naming the column, rows and values): checked
    before predicting, as a streamed prediction's preflight checks every row (``catalog.scan``)."""
    ra, dec = coordinate_pair(list(cat.columns()))
    columns = cat.columns()
    check_sky(columns[ra], ra, "ra", source)
    check_sky(columns[dec], dec, "dec", source)
    return ra, dec


def is_hats_output(folder: Path) -> bool:
    """A folder a previous HATS output left (safe to replace)."""
    return (folder / "hats.properties").is_file()


HIVE_COLUMNS = ("Norder", "Dir", "Npix")  # the pixel folders' names, read back as columns


def is_hats_predictions(folder: Path | str) -> bool:
    """A HATS catalogue folder as ``write_hats`` leaves it (``dataset/`` with the pixel files)."""
    return Path(folder).is_dir() and (Path(folder) / "dataset").is_dir()


def read_hats_table(folder: Path | str) -> Any:
    """The predictions of a HATS output ``folder`` as one pyarrow Table (all pixels, without the
    partition columns Norder/Dir/Npix)."""
    import pyarrow.dataset as ds

    data = ds.dataset(Path(folder) / "dataset", format="parquet", partitioning="hive").to_table()
    return data.drop_columns([c for c in HIVE_COLUMNS if c in data.column_names])


def hats_provenance(folder: Path | str) -> dict[str, str]:
    """deepz's provenance from the ``hats.properties`` of a HATS output (fields without their
    ``deepz_`` prefix, e.g. ``z_grid``); {} when there is none."""
    path = Path(folder) / "hats.properties"
    if not path.is_file():
        return {}
    lines = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip()[6:]: v.strip() for k, v in lines if k.strip().startswith("deepz_")}


def write_hats(table: Any, folder: Path | str, prov: dict[str, str], name: str = "deepz") -> int:
    """Write the predictions ``table`` (pyarrow) as a HATS catalogue in ``folder`` through lsdb,
    replacing a previous HATS output there (another non-empty folder is refused); rows written.
    The catalogue is complete or absent: it is written beside ``folder`` and renamed into place."""
    import lsdb
    import pandas as pd

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not is_hats_output(folder):
        raise ConfigError(f"--out {folder}: a non-empty folder that is no HATS catalogue")
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    frame = frame.drop(columns=[HEALPIX_COLUMN], errors="ignore")
    ra, dec = coordinate_pair(list(frame.columns))
    bad = ~(np.isfinite(frame[ra].to_numpy(float)) & np.isfinite(frame[dec].to_numpy(float)))
    if bad.any():
        raise ConfigError(
            f"--out-format hats: {int(bad.sum())} rows without finite {ra}/{dec} (e.g. ref_id "
            f"{frame['ref_id'].to_numpy()[bad][:3].tolist()}) cannot be placed on the sky"
        )
    catalog = lsdb.from_dataframe(
        frame, catalog_name=name, ra_column=ra, dec_column=dec, margin_threshold=None
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        catalog.write_catalog(
            tmp / "hats",
            as_collection=False,
            progress_bar=False,
            addl_hats_properties=flat(prov),
        )
        if folder.exists():
            shutil.rmtree(folder)
        (tmp / "hats").rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(frame)
