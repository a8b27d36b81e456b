"""Flux units (issue 20, part 3): FITS TUNIT, astropy and Parquet units set the zero-point, agree
with FLUXZP or are refused, mixed or unknown units are refused, and written catalogues carry
TUNIT. The nJy catalogue of the issue (TUNIT='nJy', no FLUXZP) gave magnitudes 7.5 too bright."""

from __future__ import annotations

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable, Table

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.import_report import Source, fluxzp_origin, source_fluxzp
from deepz_core.catalog.io import read_catalog, write_catalog
from deepz_core.catalog.mapping import guess_galaxy_mapping
from deepz_core.catalog.units import (
    name_zeropoint,
    resolve_fluxzp,
    unit_zeropoint,
    zeropoint_unit,
)
from deepz_core.errors import CatalogError


@pytest.mark.parametrize(
    "unit, zp",
    [
        ("Jy", 8.9),
        ("mJy", 16.4),
        ("uJy", 23.9),
        ("µJy", 23.9),
        ("microJy", 23.9),
        ("nJy", 31.4),
        ("nanomaggies", 22.5),
        ("nmgy", 22.5),
        ("maggy", 0.0),
        ("1e-9 Jy", 31.4),
        ("erg / (s cm2 Hz)", -48.6),
        ("MJy", -6.1),  # megajansky, not mJy
    ],
)
def test_unit_zeropoints(unit: str, zp: float) -> None:
    assert unit_zeropoint(unit) == pytest.approx(zp, abs=1e-9)


@pytest.mark.parametrize("unit", ["count", "ADU", "mag", "mag(AB)", "W", "MJY", ""])
def test_units_that_are_no_flux_density(unit: str) -> None:
    assert unit_zeropoint(unit) is None


def _flux_table(rng: np.random.Generator, n: int = 50) -> tuple[Table, np.ndarray]:
    """Fluxes in nJy of galaxies with known AB magnitudes (N, 2)."""
    mag = rng.uniform(20, 25, (n, 2))
    njy = 10 ** (-0.4 * (mag - 31.4))
    t = Table({"ref_id": np.arange(n)})
    for j, band in enumerate(("g", "r")):
        t[f"flux_{band}"] = njy[:, j]
        t[f"flux_error_{band}"] = 0.1 * njy[:, j]
    return t, mag


def test_nanojansky_fits_catalogue_gives_the_right_magnitudes(rng, tmp_path) -> None:
    t, mag = _flux_table(rng)
    for name in t.colnames[1:]:
        t[name].unit = "nJy"
    t.write(tmp_path / "njy.fits")
    assert fits.getheader(tmp_path / "njy.fits", 1)["TUNIT2"] == "nJy"
    cat = read_catalog(tmp_path / "njy.fits")
    assert cat.fluxzp == 31.4
    np.testing.assert_allclose(cat.magnitudes("g"), mag[:, 0], atol=1e-9)  # not 7.5 mag off


def test_units_from_parquet_astropy_and_hdf5(rng, tmp_path) -> None:
    t, mag = _flux_table(rng)
    q = QTable(t)
    for name in t.colnames[1:]:
        t[name].unit = "nJy"
    t.write(tmp_path / "a.parquet")  # astropy's own unit metadata
    arrays = {k: pa.array(np.asarray(t[k])) for k in t.colnames}
    unit = {"unit": "nJy"}
    fields = [
        pa.field(k, a.type, metadata=unit if k != "ref_id" else None) for k, a in arrays.items()
    ]
    pq.write_table(pa.table(arrays, schema=pa.schema(fields)), tmp_path / "b.parquet")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        for k in t.colnames:
            f[f"galaxies/{k}"] = np.asarray(t[k])
            if k != "ref_id":
                f[f"galaxies/{k}"].attrs["unit"] = "nJy"
    for path in ("a.parquet", "b.parquet", "c.h5"):
        np.testing.assert_allclose(read_catalog(tmp_path / path).magnitudes("r"), mag[:, 1])
    for name in q.colnames[1:]:
        q[name] = q[name] * 1e-9 * u.Jy  # a Quantity column in Jy
    np.testing.assert_allclose(Catalog.from_table(q).magnitudes("g"), mag[:, 0])


def test_mixed_unknown_and_disagreeing_units_are_refused(rng, tmp_path) -> None:
    t, _ = _flux_table(rng)
    for name, unit in zip(t.colnames[1:], ["nJy", "nJy", "uJy", "uJy"], strict=True):
        t[name].unit = unit
    with pytest.raises(CatalogError, match=r"mixed units \(flux_g \[nJy\].*flux_r \[uJy\]"):
        Catalog.from_table(t)
    t["flux_r"].unit = t["flux_error_r"].unit = "furlong"
    with pytest.raises(CatalogError, match="'flux_r' has unit 'furlong', not a flux density"):
        Catalog.from_table(t)
    for name in t.colnames[1:]:
        t[name].unit = "count"
    with pytest.raises(CatalogError, match=r"flux_g \[ct\] holds counts.*set the FLUXZP header"):
        Catalog.from_table(t)
    t.meta["FLUXZP"] = 30.0  # counts calibrated by the header
    assert Catalog.from_table(t).fluxzp == 30.0
    for name in t.colnames[1:]:
        t[name].unit = "nJy"
    t.meta["FLUXZP"] = 23.9
    with pytest.raises(CatalogError, match=r"FLUXZP = 23.9 disagrees with the unit of flux_g"):
        Catalog.from_table(t)
    t.meta["FLUXZP"] = 31.4
    assert Catalog.from_table(t).fluxzp == 31.4
    assert resolve_fluxzp({}, ["flux_g"], None, "x") is None  # neither: the caller's default


def test_written_catalogues_carry_tunit(rng, tmp_path) -> None:
    t, _ = _flux_table(rng)
    t.meta["FLUXZP"] = 22.5  # nanomaggies
    cat = Catalog.from_table(t)
    write_catalog(cat, tmp_path / "c.fits")
    write_catalog(cat, tmp_path / "c.parquet")
    header = fits.getheader(tmp_path / "c.fits", "GALAXIES")
    units = {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}") for i in range(1, header["TFIELDS"] + 1)}
    assert units["flux_g"] == units["flux_error_r"] == "nanomaggy" and units["ref_id"] is None
    schema = pq.read_schema(tmp_path / "c.parquet")
    assert schema.field("flux_r").metadata == {b"unit": b"nanomaggy"}
    for path in ("c.fits", "c.parquet"):
        assert read_catalog(tmp_path / path).fluxzp == 22.5
    assert zeropoint_unit(23.9) == "uJy" and zeropoint_unit(25.0) is None


def test_the_data_page_zero_point_follows_the_units(rng) -> None:
    t, _ = _flux_table(rng)
    columns = {k: np.asarray(t[k]) for k in t.colnames}
    mapping = guess_galaxy_mapping(list(columns))
    units = {"_units": {k: "nJy" for k in t.colnames[1:]}}
    assert source_fluxzp(Source(columns, mapping, "up.fits", units)) == 31.4
    assert source_fluxzp(Source(columns, mapping, "up.fits", {})) == 23.9
    mixed = {"_units": {"flux_g": "nJy", "flux_r": "mJy"}}
    with pytest.raises(CatalogError, match="mixed units"):
        source_fluxzp(Source(columns, mapping, "up.fits", mixed))


def test_rubin_pipeline_columns_without_a_unit_are_nanojansky(rng) -> None:
    """Eleventh session: a DP0 table exported to Parquet (u_cModelFlux, u_cModelFluxErr; no unit
    in the file) was read as microJansky: magnitudes 7.5 too bright and no word. Rubin pipelines
    fluxes are nJy by definition; other unit-less names stay an assumption, said to be one."""
    n = 8
    columns: dict[str, np.ndarray] = {"objectId": np.arange(n) + 1651589610221862935}
    for b in "gri":
        columns[f"{b}_cModelFlux"] = rng.uniform(100.0, 1000.0, n)
        columns[f"{b}_cModelFluxErr"] = np.full(n, 10.0)
    mapping = guess_galaxy_mapping(list(columns))
    zp, origin = fluxzp_origin(Source(columns, mapping, "dp0.parquet", {}))
    assert zp == 31.4 and "u_cModelFlux" not in origin and "g_cModelFlux" in origin
    assert name_zeropoint(["u_psfFlux", "u_psfFluxErr", "r_free_cModelFlux"]) == 31.4
    assert name_zeropoint(["flux_u", "flux_error_u"]) is None
    assert name_zeropoint(["u_cModelFlux", "FLUX_G"]) is None and name_zeropoint([]) is None
    plain = {"ref_id": np.arange(n), "flux_g": np.ones(n), "flux_error_g": np.ones(n)}
    zp, origin = fluxzp_origin(Source(plain, guess_galaxy_mapping(list(plain)), "p.csv", {}))
    assert zp == 23.9 and origin.startswith("assumed")
    said = {"_units": {f"{b}_cModelFlux{e}": "uJy" for b in "gri" for e in ("", "Err")}}
    assert fluxzp_origin(Source(columns, mapping, "dp0.fits", said))[0] == 23.9  # a unit wins
