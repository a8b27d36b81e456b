"""The real catalogue of the peer benchmark: SDSS Main Galaxy Sample photometry shipped in MLZ.

Source: the sdist of MLZ 1.2 on PyPI (``mlz``; Carrasco Kind & Brunner 2013, NCSA open-source
license, LICENSE.txt inside the sdist) holds ``mlz/test/SDSS_MGS.train`` and ``SDSS_MGS.test``:
2 x 5,000 galaxies drawn at random from the SDSS Main Galaxy Sample, each with its spectroscopic
redshift and extinction-corrected model magnitudes u, g, r, i, z with their errors (the same two
files are in ``mlz-desc`` 1.2, whose sdist lacks the license text). The files are not committed:
this script reads them from the sdist, found in ``--cache`` or fetched there with
``pip download --no-deps --no-build-isolation mlz==1.2`` (numpy must be importable: its
setup.py imports it), and checks their SHA-256.

Columns (the files' header line omits ``eu``; the package's SDSS_MGS.inputs names all 19):
zs, u, g, r, i, z, u-g, g-r, r-i, i-z, eu, eg, er, ei, ez, eu-g, eg-r, er-i, ei-z.

Conversion to deepz's catalogue (FLUXZP 23.9: microJansky):
- SDSS magnitudes are asinh magnitudes (Lupton, Gunn & Szalay 1999) with softening b per band
  (u 1.4e-10, g 0.9e-10, r 1.2e-10, i 1.8e-10, z 7.4e-10, in units of 3631 Jy); they are inverted
  exactly: f/f0 = 2 b sinh(-m ln10 / 2.5 - ln b), and the errors propagated with the exact
  derivative: sigma_f/f0 = sigma_m (ln10 / 2.5) sqrt((f/f0)^2 + 4 b^2). At these magnitudes
  (r < 17.8) this differs from Pogson by < 0.002 mag; it stays valid for faint or negative fluxes.
- The SDSS system is shifted to AB: u_AB = u_SDSS - 0.04, z_AB = z_SDSS + 0.02 (SDSS DR7
  photometric calibration notes); ``--no-ab-offsets`` leaves the SDSS zero-points.
- Non-detections and placeholders: a row with a non-finite magnitude or error, an error <= 0, or a
  magnitude equal to a placeholder code (+-99, -999, -9999) is not converted into a fake flux: it is
  left out of the catalogue, and counted and listed by ref_id in the provenance JSON. MLZ's files
  hold none (checked: every galaxy of the 10,000 is kept).
- ref_id: 1..5000 for the rows of SDSS_MGS.train, 5001..10000 for SDSS_MGS.test (file order).
- Bands are named sdss_u ... sdss_z (deepz_core.sed.bands has their filter curves); ``mag`` is the r-band
  AB magnitude (the MGS selection band; the MGS limit is Petrosian r < 17.77).

Usage, with deepz's venv (or any Python with numpy, astropy and pip), from the repository root:

    python scripts/peers/mlz_sdss.py --out bench-peers/real/catalog.fits
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from astropy.io import fits
from catalog_fits import FitsCatalog, atomic_write_text, write_catalog
from numpy.typing import NDArray

PACKAGE, VERSION = "mlz", "1.2"
SDISTS = ("MLZ-1.2.tar.gz", "MLZ-DESC-1.2.tar.gz")  # either holds the same two files
MEMBERS = {  # file name -> SHA-256 of its bytes (identical in mlz 1.2 and mlz-desc 1.2)
    "SDSS_MGS.train": "f16579e52e5bdafcb7afda2e98353d671cc446216b73068a16d7558ab0e09c04",
    "SDSS_MGS.test": "037f4fa18d298c4d3077bea5665161e2006240413e52e51a7aa7a18509274103",
}
BANDS = ("u", "g", "r", "i", "z")
COL_ZS, COL_MAG, COL_ERR, N_COLS = 0, 1, 10, 19  # zs; u..z at 1..5; eu..ez at 10..14
SOFTENING = {"u": 1.4e-10, "g": 0.9e-10, "r": 1.2e-10, "i": 1.8e-10, "z": 7.4e-10}  # Lupton b
AB_OFFSET = {"u": -0.04, "g": 0.0, "r": 0.0, "i": 0.0, "z": 0.02}  # m_AB - m_SDSS
FLUXZP = 23.9  # microJansky
F0_UJY = 10 ** (0.4 * FLUXZP)  # 3631 Jy in microJansky
PLACEHOLDERS = (99.0, -99.0, -999.0, -9999.0)
DEFAULT_CACHE = Path.home() / ".cache" / "deepz-peers"


def find_sdist(cache: Path) -> Path:
    """The MLZ sdist in ``cache``, downloaded there with pip when absent (PyPI only)."""
    for name in SDISTS:
        if (cache / name).is_file():
            return cache / name
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "-d",
        str(cache),
        f"{PACKAGE}=={VERSION}",
    ]
    subprocess.run(cmd, check=True)
    if not (cache / SDISTS[0]).is_file():
        raise FileNotFoundError(f"pip download left no {SDISTS[0]} in {cache}")
    return cache / SDISTS[0]


def read_member(source: Path, name: str) -> bytes:
    """Bytes of test/<name> from an MLZ sdist (.tar.gz) or a folder holding the file."""
    if source.is_dir():
        hits = sorted(source.rglob(name))
        if not hits:
            raise FileNotFoundError(f"{source}: no {name} below this folder")
        data = hits[0].read_bytes()
    else:
        with tarfile.open(source, "r:gz") as tar:
            found = [m for m in tar.getmembers() if m.name.endswith(f"test/{name}")]
            if not found:
                raise FileNotFoundError(f"{source}: no member ending in test/{name}")
            data = tar.extractfile(found[0]).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MEMBERS[name]:
        raise ValueError(
            f"{name}: SHA-256 {digest} is not that of MLZ 1.2's file ({MEMBERS[name]})"
        )
    return data


def parse(data: bytes) -> NDArray:
    """(N, 19) float64 table of one MLZ file (header line skipped)."""
    table = np.loadtxt(io.BytesIO(data), comments="#", ndmin=2)
    if table.shape[1] != N_COLS:
        raise ValueError(f"expected {N_COLS} columns, got {table.shape[1]}")
    return table


def sdss_flux(
    mag: NDArray, mag_err: NDArray, band: str, ab: bool = True
) -> tuple[NDArray, NDArray]:
    """Flux and error (N,) in microJansky from SDSS asinh magnitudes and their errors (N,)."""
    b = SOFTENING[band]
    x = 2.0 * b * np.sinh(-mag * np.log(10.0) / 2.5 - np.log(b))  # f / f0
    x_err = mag_err * (np.log(10.0) / 2.5) * np.sqrt(x**2 + 4.0 * b**2)
    scale = F0_UJY * (10 ** (-0.4 * AB_OFFSET[band]) if ab else 1.0)
    return x * scale, x_err * scale


def bad_rows(table: NDArray) -> NDArray:
    """(N,) bool: rows with a non-finite/placeholder magnitude, a bad error or a bad zspec."""
    mags = table[:, COL_MAG : COL_MAG + len(BANDS)]
    errs = table[:, COL_ERR : COL_ERR + len(BANDS)]
    bad = ~np.isfinite(mags) | np.isin(mags, PLACEHOLDERS) | ~np.isfinite(errs) | (errs <= 0)
    zs = table[:, COL_ZS]
    return bad.any(axis=1) | ~np.isfinite(zs) | (zs <= -1)


def to_columns(table: NDArray, ref_id: NDArray, ab: bool = True) -> list[fits.Column]:
    """deepz catalogue columns for the rows of an MLZ table (N, 19) and their ref_id (N,)."""
    cols = [fits.Column(name="ref_id", format="K", array=ref_id.astype(np.int64))]
    fluxes = {}
    for k, band in enumerate(BANDS):
        fluxes[band], err = sdss_flux(table[:, COL_MAG + k], table[:, COL_ERR + k], band, ab)
        cols.append(fits.Column(name=f"flux_sdss_{band}", format="D", array=fluxes[band]))
        cols.append(fits.Column(name=f"flux_error_sdss_{band}", format="D", array=err))
    mag_r = FLUXZP - 2.5 * np.log10(fluxes["r"])  # AB r: the MGS selection band
    cols.append(fits.Column(name="zspec", format="D", array=table[:, COL_ZS]))
    cols.append(fits.Column(name="mag", format="D", array=mag_r))
    return cols


def build(source: Path, ab: bool = True) -> tuple[FitsCatalog, dict[str, object]]:
    """The deepz catalogue of both MLZ files and a provenance record (counts, excluded rows)."""
    tables = [parse(read_member(source, name)) for name in MEMBERS]
    table = np.vstack(tables)
    ref_id = np.arange(1, table.shape[0] + 1, dtype=np.int64)
    bad = bad_rows(table)
    hdu = fits.BinTableHDU.from_columns(to_columns(table[~bad], ref_id[~bad], ab), name="GALAXIES")
    hdu.header["FLUXZP"] = (FLUXZP, "AB zero-point: microJansky")
    hdu.header["SURVEY"] = ("SDSS MGS", "Main Galaxy Sample, spectroscopic redshifts")
    hdu.header["SOURCE"] = (f"PyPI {PACKAGE} {VERSION} test/SDSS_MGS", "train then test rows")
    hdu.header["ABOFFSET"] = (ab, "u -0.04, z +0.02 applied to reach AB")
    prov = {
        "package": f"{PACKAGE}=={VERSION}",
        "sdist": source.name,
        "files": MEMBERS,
        "rows_per_file": [int(t.shape[0]) for t in tables],
        "n_total": int(table.shape[0]),
        "n_kept": int((~bad).sum()),
        "excluded_ref_id": ref_id[bad].tolist(),
        "ab_offsets": AB_OFFSET if ab else None,
        "softening_b": SOFTENING,
        "fluxzp": FLUXZP,
    }
    return FitsCatalog(hdu, None), prov


def main(argv: list[str] | None = None) -> int:
    """CLI: write the catalogue (--out .fits) and its provenance (<out>.provenance.json)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output FITS catalogue")
    p.add_argument("--source", type=Path, help="MLZ sdist (.tar.gz) or a folder with the files")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the sdist is kept")
    p.add_argument("--no-ab-offsets", action="store_true", help="keep SDSS zero-points")
    args = p.parse_args(argv)
    source = args.source or find_sdist(args.cache)
    cat, prov = build(source, ab=not args.no_ab_offsets)
    write_catalog(cat, args.out)
    atomic_write_text(args.out.with_suffix(".provenance.json"), json.dumps(prov, indent=1) + "\n")
    print(
        f"{args.out}: {prov['n_kept']} of {prov['n_total']} galaxies "
        f"({len(prov['excluded_ref_id'])} excluded), bands sdss_u..sdss_z"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
