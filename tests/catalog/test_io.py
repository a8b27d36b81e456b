"""Tests for deepz_core.catalog.io: round trips, layouts, bad files, fuzzed readers."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepz_core.catalog.catalog import FITS_STRUCTURAL, Catalog, Exposures
from deepz_core.catalog.io import catalog_format, exposures_sidecar, read_catalog, write_catalog
from deepz_core.errors import CatalogError, OutputExistsError

FORMATS = ("fits", "fits.gz", "parquet", "csv", "h5")
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_TMP = settings(FUZZ, suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_catalog(rng: np.random.Generator, n: int = 5, exposures: bool = True) -> Catalog:
    """Small consistent catalogue: bands NB455, g; NB455 coadd = mean of 1-3 exposures."""
    ref_id = np.arange(n, dtype=np.int64) * 11 + 100
    counts = rng.integers(1, 4, n)
    exp = Exposures(
        ref_id=np.repeat(ref_id, counts),
        band=np.full(counts.sum(), "NB455"),
        exp_num=np.concatenate([np.arange(c) for c in counts]),
        flux=rng.normal(10, 2, counts.sum()),
        flux_error=rng.uniform(0.5, 1.5, counts.sum()),
    )
    w = exp.flux_error**-2
    cells = np.repeat(np.arange(n), counts)
    coadd = np.bincount(cells, w * exp.flux) / np.bincount(cells, w)
    flux = np.column_stack([coadd, rng.normal(30, 5, n)])
    error = np.column_stack([np.bincount(cells, w) ** -0.5, rng.uniform(0.1, 1, n)])
    return Catalog(
        ref_id=ref_id,
        bands=("NB455", "g"),
        flux=flux,
        flux_error=error,
        zspec=np.where(np.arange(n) % 2 == 0, rng.uniform(0, 1.5, n), np.nan),
        mag=rng.uniform(18, 22.5, n),
        fluxzp=26.0,
        exposures=exp if exposures else None,
        extra={
            "ra": rng.uniform(0, 360, n),
            "field": np.array(["COSMOS", "W3", "", "x y", "é"] * n)[:n],
            "star": np.arange(n) % 3 == 0,
            "nobs": np.arange(n, dtype=np.int64),
        },
        meta={
            "NOISELESS": True,
            "SURVEY": "PAUS",
            "NBAND": 2,
            "SCALE": 0.1 + 0.2,
            "LONGKEYWORD": "x",
        },
    )


def assert_same(a: Catalog, b: Catalog) -> None:
    """Exact equality of every field (NaN == NaN)."""
    assert a.bands == b.bands and a.fluxzp == b.fluxzp and a.meta == b.meta
    for name in ("ref_id", "flux", "flux_error", "zspec"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.mag is None) == (b.mag is None)
    if a.mag is not None:
        np.testing.assert_array_equal(a.mag, b.mag)
    assert list(a.extra) == list(b.extra)
    for name in a.extra:
        np.testing.assert_array_equal(a.extra[name], b.extra[name])
        assert a.extra[name].dtype.kind == b.extra[name].dtype.kind, name
    assert (a.exposures is None) == (b.exposures is None)
    if a.exposures is not None:
        for name in ("ref_id", "band", "exp_num", "flux", "flux_error"):
            np.testing.assert_array_equal(getattr(a.exposures, name), getattr(b.exposures, name))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("exposures", [True, False])
def test_round_trip(tmp_path: Path, rng: np.random.Generator, fmt: str, exposures: bool) -> None:
    cat = make_catalog(rng, exposures=exposures)
    path = write_catalog(cat, tmp_path / f"cat.{fmt}")
    before = digest(path)
    assert_same(read_catalog(path), cat)
    assert digest(path) == before  # reading never modifies the input
    sidecar = tmp_path / f"cat.exposures.{fmt}"
    assert sidecar.exists() == (exposures and fmt in ("csv", "parquet"))


@pytest.mark.parametrize("fmt", ["fits", "parquet"])
def test_an_existing_file_is_replaced_only_when_asked(
    tmp_path: Path, rng: np.random.Generator, fmt: str
) -> None:
    path = tmp_path / f"cat.{fmt}"
    path.write_bytes(b"the user's file")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_catalog(make_catalog(rng), path)
    assert path.read_bytes() == b"the user's file"
    cat = make_catalog(rng)
    assert_same(read_catalog(write_catalog(cat, path, overwrite=True)), cat)


def test_an_existing_exposures_sidecar_is_not_replaced(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    side = tmp_path / "cat.exposures.parquet"
    side.write_bytes(b"someone's exposures")
    with pytest.raises(OutputExistsError, match="exposures sidecar"):
        write_catalog(make_catalog(rng, exposures=False), tmp_path / "cat.parquet")
    assert side.read_bytes() == b"someone's exposures"
    assert not (tmp_path / "cat.parquet").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_sidecar_explicit_path_and_stale_sidecar(
    tmp_path: Path, rng: np.random.Generator, fmt: str
) -> None:
    cat = make_catalog(rng)
    path = write_catalog(cat, tmp_path / f"cat.{fmt}")
    assert exposures_sidecar(path) == tmp_path / f"cat.exposures.{fmt}"
    moved = tmp_path / "elsewhere" / "exp.fits"
    write_catalog(cat, moved)  # FITS file whose EXPOSURES HDU serves as explicit exposures
    exposures_sidecar(path).unlink()
    assert read_catalog(path).exposures is None
    assert_same(read_catalog(path, exposures_path=moved), cat)
    write_catalog(cat, path, overwrite=True)
    write_catalog(replace(cat, exposures=None), path, overwrite=True)  # removes the stale sidecar
    assert not exposures_sidecar(path).exists()


def test_fits_layout_and_external_files(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    path = write_catalog(cat, tmp_path / "cat.fits")
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "GALAXIES", "EXPOSURES"]
        assert hdul["GALAXIES"].header["FLUXZP"] == 26.0
        assert hdul["GALAXIES"].header["NOISELESS"] is True
        assert hdul["EXPOSURES"].columns.names == [
            "ref_id",
            "band",
            "exp_num",
            "flux",
            "flux_error",
        ]
    # a plain table written by someone else: first table HDU, no FLUXZP, meta in primary header
    table = Table(
        {"ref_id": [1, 2], "flux_r": [1.0, 2.0], "flux_error_r": [0.1, 0.2], "ra": [1, 2]}
    )
    hdu = fits.table_to_hdu(table)
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "CFHT"
    other = tmp_path / "other.fit"
    fits.HDUList([primary, hdu]).writeto(other)
    got = read_catalog(other)
    assert got.bands == ("r",) and got.fluxzp == 23.9 and got.meta == {"TELESCOP": "CFHT"}
    assert got.mag is None and np.isnan(got.zspec).all() and list(got.extra) == ["ra"]


def test_survey_fits_headers_are_read_not_refused(tmp_path: Path) -> None:
    """HIERARCH cards ('ESO DET CHIP', ESO/VISTA/KiDS pipelines) and EXTNAME, through read_catalog,
    streamed chunks and the API's Catalog.from_table(Table.read(...)), are dropped, never a
    refusal; simple keys are kept and FLUXZP still sets the zero-point."""
    from deepz_core.catalog.io import iter_rows

    table = Table({"ref_id": [1, 2, 3], "flux_i": [10.0, 11, 12], "flux_error_i": [1.0, 1, 1]})
    hdu = fits.table_to_hdu(table)
    hdu.header["EXTNAME"] = "GALAXIES"
    hdu.header["HIERARCH ESO DET CHIP"] = "ccd1"
    hdu.header["FLUXZP"] = 25.0
    hdu.header["OBSERVER"] = "me"
    primary = fits.PrimaryHDU()
    primary.header["HIERARCH ESO OBS NAME"] = "KiDS"
    path = tmp_path / "eso.fits"
    fits.HDUList([primary, hdu]).writeto(path)
    for cat in (
        read_catalog(path),
        next(iter_rows(path, (0, 3), 2)),
        Catalog.from_table(Table.read(path)),
    ):
        assert cat.meta == {"OBSERVER": "me"} and cat.fluxzp == 25.0
    assert read_catalog(write_catalog(read_catalog(path), tmp_path / "again.fits")).meta == {
        "OBSERVER": "me"
    }


def test_external_csv_parquet_hdf5(tmp_path: Path) -> None:
    frame = pd.DataFrame({"ref_id": [5, 6], "flux_u": [1.0, -0.5], "flux_error_u": [0.3, 0.3]})
    frame.to_parquet(tmp_path / "p.pq")
    assert read_catalog(tmp_path / "p.pq").fluxzp == 23.9
    (tmp_path / "c.csv").write_text(
        "# a free comment\n# FLUXZP = 31.4\n# NOISELESS = T\nref_id,flux_u,flux_error_u\n5,1,0.3\n"
    )
    got = read_catalog(tmp_path / "c.csv")
    assert got.fluxzp == 31.4 and got.meta == {"NOISELESS": True}
    with h5py.File(tmp_path / "g.hdf5", "w") as f:
        group = f.create_group("galaxies")
        group["ref_id"] = [5, 6]
        group["flux_u"] = [1.0, 2.0]
        group["flux_error_u"] = [0.3, 0.3]
        group.attrs["FLUXZP"] = 25.0
    got = read_catalog(tmp_path / "g.hdf5")
    assert got.bands == ("u",) and got.fluxzp == 25.0


def write_table(table: Table, path: Path) -> Path:
    """``table`` as a file of the format its extension names (HDF5: dataset 'galaxies')."""
    if path.suffix == ".h5":
        table.write(path, path="galaxies")
    else:
        table.write(path)
    return path


@pytest.mark.parametrize("fmt", ["fits", "parquet", "csv", "h5"])
def test_uint64_ids_are_exact_or_refused_in_every_format(tmp_path: Path, fmt: str) -> None:
    """uint64 ids that fit int64 are read exactly; ids beyond it are refused in one line (they
    used to wrap silently to -616, -615, ...)."""
    top = np.iinfo(np.int64).max
    cols = {"flux_i": [10.0, 11.0], "flux_error_i": [1.0, 1.0]}
    ok = Table({"ref_id": np.array([top - 1, top], dtype=np.uint64), **cols})
    assert read_catalog(write_table(ok, tmp_path / f"ok.{fmt}")).ref_id.tolist() == [top - 1, top]
    big = np.array([18446744073709551000, 18446744073709551001], dtype=np.uint64)
    path = write_table(Table({"ref_id": big, **cols}), tmp_path / f"big.{fmt}")
    with pytest.raises(CatalogError, match=r"column 'ref_id' .*int64 range \(e.g. 184467440737"):
        read_catalog(path)


CSV_HEAD = "ref_id,flux_g,flux_error_g,flux_r,flux_error_r\n"


@pytest.mark.parametrize(
    "text, match",
    [
        ("ident,flux_g,flux_error_g\n1,1,1\n", r"missing required column 'ref_id'"),
        ("REF_ID,flux_g,flux_error_g\n1,1,1\n", r"'ref_id' \(found 'REF_ID'"),
        (
            "ref_id,flux_g,flux_error_g,flux_r\n1,1,1,1\n",
            r"'flux_r' has no matching 'flux_error_r'",
        ),
        ("ref_id,flux_error_g\n1,1\n", r"'flux_error_g' has no matching 'flux_g'"),
        ("ref_id,ra,dec\n1,1,1\n", r"no bands"),
        (
            CSV_HEAD + "1,1,1,1,1\n2,abc,1,1,1\n",
            r"column 'flux_g' is not numeric: 'abc' in row 1\b",
        ),
        (CSV_HEAD + "1,1,1,1,1\nx,1,1,1,1\n", r"column 'ref_id' is not integer"),
        (CSV_HEAD + "2,nan,1,1,1\n3,,1,1,1\n", r"'flux_g' has NaN/inf values for every galaxy"),
        (CSV_HEAD + "1,1,1,1,inf\n2,1,1,1,nan\n", r"'flux_error_r' has NaN/inf values for every"),
        (CSV_HEAD + "1,1,0,1,1\n2,1,-1,1,1\n", r"'flux_error_g' has non-positive values for every"),
        (CSV_HEAD + "7,1,1,1,1\n7,1,1,1,1\n", r"column 'ref_id' has duplicates: 7"),
        (CSV_HEAD, r"no galaxies"),
        ("# FLUXZP = 23.9\n", r"no header row"),
        (CSV_HEAD + "1,1,1,1,1\n2,1,1", r"truncated CSV file"),
        ('# FLUXZP = "abc"\n' + CSV_HEAD + "1,1,1,1,1\n", r"FLUXZP"),
    ],
)
def test_bad_csv_galaxies(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CatalogError, match=match) as err:
        read_catalog(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


EXP_HEAD = "ref_id,band,exp_num,flux,flux_error\n"


@pytest.mark.parametrize(
    "text, match",
    [
        (EXP_HEAD + "9,g,0,1,1\n", r"exposures column 'ref_id' names unknown galaxies: ref_id 9"),
        (
            EXP_HEAD + "1,z,0,1,1\n",
            r"exposures column 'band' has bands not in the catalogue \(.*\): z",
        ),
        (EXP_HEAD + "1,g,0,1,1\n1,g,0,1,1\n", r"duplicate \(ref_id, band, exp_num\) in rows 1"),
        (EXP_HEAD + "1,g,0,1,1\n1,g,1,3,1\n", r"column 'flux_g' disagrees .* ref_id 1"),
        ("ref_id,band,flux,flux_error\n1,g,1,1\n", r"lack required column\(s\) exp_num"),
        (EXP_HEAD + "1,g,0.5,1,1\n", r"column 'exp_num' has non-integer values"),
    ],
)
def test_bad_csv_exposures(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "c.csv").write_text(CSV_HEAD + "1,1,1,1,1\n")
    side = tmp_path / "c.exposures.csv"
    side.write_text(text)
    with pytest.raises(CatalogError, match=match) as err:
        read_catalog(tmp_path / "c.csv")
    assert str(err.value).startswith(str(side))


def test_exposures_without_information_are_left_out(tmp_path: Path) -> None:
    """A NaN flux or a zero error among the exposures: those rows are left out (noted), and the
    coadd is checked against the mean of the others (1, not the 2 the NaN row would spoil)."""
    (tmp_path / "c.csv").write_text(CSV_HEAD + "1,1,1,1,1\n")
    (tmp_path / "c.exposures.csv").write_text(EXP_HEAD + "1,g,0,1,1\n1,g,1,nan,1\n1,g,2,5,0\n")
    cat = read_catalog(tmp_path / "c.csv")
    assert cat.exposures.exp_num.tolist() == [0]
    assert cat.notes[0].startswith(f"{tmp_path / 'c.exposures.csv'}: 2 of 3 single exposures")
    assert "rows 1, 2" in cat.notes[0]


def test_consistent_exposures_pass(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(CSV_HEAD + "1,2,0.5,1,1\n")
    (tmp_path / "c.exposures.csv").write_text(EXP_HEAD + "1,g,0,1,1\n1,g,1,3,1\n")
    assert len(read_catalog(tmp_path / "c.csv").exposures) == 2


def test_bad_fits_columns(tmp_path: Path) -> None:
    table = Table({"ref_id": [1, 2], "flux_g": ["a", "b"], "flux_error_g": [1.0, 1.0]})
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]).writeto(tmp_path / "s.fits")
    with pytest.raises(CatalogError, match=r"s.fits: column 'flux_g' is not numeric"):
        read_catalog(tmp_path / "s.fits")
    fits.PrimaryHDU().writeto(tmp_path / "empty.fits")
    with pytest.raises(CatalogError, match=r"empty.fits holds no table \(only an empty primary"):
        read_catalog(tmp_path / "empty.fits")


def test_an_image_only_fits_says_what_it_holds(tmp_path: Path) -> None:
    """First-use review: 'image.fits: no table found (expected 'galaxies')' did not say that the
    file is an image; the message names the file once and what it holds."""
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(tmp_path / "image.fits")
    with pytest.raises(CatalogError) as err:
        read_catalog(tmp_path / "image.fits")
    message = str(err.value)
    assert message.endswith(
        "image.fits holds no table (only an image in HDU 0): deepz needs a FITS binary table "
        "of galaxies"
    )
    assert message.count("image.fits") == 1


def test_bad_meta_and_multidim_extras(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = make_catalog(rng, exposures=False)
    wide = replace(cat, extra={"pz": np.ones((cat.n_galaxies, 3))})
    with pytest.raises(CatalogError, match=r"w.csv: extra column 'pz' is not 1-D"):
        write_catalog(wide, tmp_path / "w.csv")
    assert read_catalog(write_catalog(wide, tmp_path / "w.fits")).extra["pz"].shape == (5, 3)
    nan_flux = cat.flux.copy()
    nan_flux[:, 1] = np.nan
    with pytest.raises(CatalogError, match=r"n.h5: column 'flux_g' has NaN/inf values for every"):
        write_catalog(replace(cat, flux=nan_flux), tmp_path / "n.h5")
    assert not (tmp_path / "n.h5").exists()
    nan_flux = cat.flux.copy()
    nan_flux[1, 1] = np.nan  # one galaxy: left to the photometric screen, written as it is
    got = read_catalog(write_catalog(replace(cat, flux=nan_flux), tmp_path / "one.h5"))
    assert np.isnan(got.flux[1, 1]) and np.isfinite(np.delete(got.flux, 1, axis=0)).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_missing_and_unknown_files(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / f"e.{fmt}"
    empty.write_bytes(b"")
    with pytest.raises(CatalogError, match=rf"e.{fmt}: empty file"):
        read_catalog(empty)
    with pytest.raises(CatalogError, match=r"missing\..*: no such file"):
        read_catalog(tmp_path / f"missing.{fmt}")
    with pytest.raises(CatalogError, match=r"cat.txt: unknown catalogue file extension"):
        catalog_format(tmp_path / "cat.txt")


@pytest.mark.parametrize(
    "src, dst, match",
    [
        ("csv", "fits", r"x.fits: not a FITS file"),
        ("parquet", "fits", r"x.fits: not a FITS file \(looks like parquet\)"),
        ("fits", "parquet", r"x.parquet: not a PARQUET file \(looks like fits\)"),
        ("csv", "h5", r"x.h5: not a HDF5 file"),
        ("h5", "csv", r"x.csv: not a CSV text file \(looks like hdf5\)"),
        ("garbage", "parquet", r"x.parquet: not a PARQUET file"),
        ("garbage", "csv", r"x.csv: not a CSV text file"),
    ],
)
def test_wrong_content_for_extension(
    tmp_path: Path, rng: np.random.Generator, src: str, dst: str, match: str
) -> None:
    if src == "garbage":
        data = bytes(range(256)) * 4
    else:
        data = write_catalog(make_catalog(rng), tmp_path / f"src.{src}").read_bytes()
    (tmp_path / f"x.{dst}").write_bytes(data)
    with pytest.raises(CatalogError, match=match):
        read_catalog(tmp_path / f"x.{dst}")


@pytest.mark.parametrize("fmt", ["fits", "fits.gz", "parquet", "h5"])
def test_truncated_binary_files(tmp_path: Path, rng: np.random.Generator, fmt: str) -> None:
    data = write_catalog(make_catalog(rng), tmp_path / f"src.{fmt}").read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 1):
        (tmp_path / f"t.{fmt}").write_bytes(data[:cut])
        with pytest.raises(CatalogError, match=rf"t.{fmt}: "):
            read_catalog(tmp_path / f"t.{fmt}")


MAGIC = {
    "fits": b"SIMPLE  =",
    "fits.gz": b"\x1f\x8b",
    "parquet": b"PAR1",
    "h5": b"\x89HDF\r\n\x1a\n",
}


@FUZZ_TMP
@given(fmt=st.sampled_from([*FORMATS, "fz"]), data=st.binary(max_size=4000), magic=st.booleans())
def test_fuzz_random_bytes_raise_catalog_error(
    tmp_path: Path, fmt: str, data: bytes, magic: bool
) -> None:
    """Random bytes (optionally behind the right magic number) never escape as another error."""
    if magic:
        data = MAGIC.get(fmt, b"") + data + (b"PAR1" if fmt == "parquet" else b"")
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(data)
    try:
        read_catalog(path)
    except CatalogError as err:
        assert str(path) in str(err)
    else:  # only a CSV of random text could ever parse, and then it must be valid
        assert fmt == "csv"


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("valid")
    cat = make_catalog(np.random.default_rng(5))
    return {fmt: write_catalog(cat, root / f"v.{fmt}").read_bytes() for fmt in FORMATS}


@FUZZ_TMP
@given(fmt=st.sampled_from(FORMATS), fraction=st.floats(0, 1, exclude_max=True), flip=st.booleans())
def test_fuzz_truncated_or_corrupted_files(
    tmp_path: Path, valid_files: dict[str, bytes], fmt: str, fraction: float, flip: bool
) -> None:
    """Truncated (or byte-flipped) valid files raise CatalogError, or read as a valid catalogue
    when the cut leaves a complete file (CSV at a row end, FITS at an HDU end)."""
    data = bytearray(valid_files[fmt])
    cut = int(fraction * len(data))
    if flip:
        data[cut] ^= 0xFF
    else:
        data = data[:cut]
    path = tmp_path / f"t.{fmt}"
    path.write_bytes(bytes(data))
    try:
        cat = read_catalog(path)
    except CatalogError as err:
        assert str(path) in str(err)
    else:
        assert flip or fmt in ("csv", "fits")
        assert cat.n_galaxies >= 1


band_names = st.text("abcdefgXYZ0123456789_", min_size=1, max_size=6).filter(
    lambda s: not s.startswith("error")
)
finite = st.floats(-1e30, 1e30, allow_nan=False, allow_infinity=False)
positive = st.floats(1e-30, 1e30, allow_nan=False, allow_infinity=False)
meta_keys = st.from_regex(r"[A-Z][A-Z0-9_]{0,11}", fullmatch=True).filter(
    lambda k: not FITS_STRUCTURAL.match(k) and k != "FLUXZP"
)
meta_values = st.one_of(
    st.booleans(),
    st.integers(-(2**31), 2**31),
    finite,
    st.text("abc XYZ_-.:/", max_size=20).map(str.rstrip),  # FITS drops trailing blanks
)


@st.composite
def catalogues(draw: st.DrawFn) -> Catalog:
    """Random small valid catalogues (no exposures) with one extra column and some meta."""
    n = draw(st.integers(1, 6))
    bands = tuple(draw(st.lists(band_names, min_size=1, max_size=3, unique=True)))

    def values(elements: st.SearchStrategy, size: int) -> np.ndarray:
        return np.array(draw(st.lists(elements, min_size=size, max_size=size)), float)

    ids = st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n, unique=True)
    return Catalog(
        ref_id=np.array(draw(ids)),
        bands=bands,
        flux=values(finite, n * len(bands)).reshape(n, -1),
        flux_error=values(positive, n * len(bands)).reshape(n, -1),
        zspec=values(st.one_of(st.just(np.nan), st.floats(0, 10, exclude_max=True)), n),
        mag=values(st.floats(10, 30), n) if draw(st.booleans()) else None,
        fluxzp=draw(st.floats(0, 40)),
        extra={"x": values(st.one_of(finite, st.just(np.nan)), n)},
        meta=draw(st.dictionaries(meta_keys, meta_values, max_size=3)),
    )


@FUZZ_TMP
@given(cat=catalogues(), fmt=st.sampled_from(FORMATS))
def test_property_write_read_round_trips(tmp_path: Path, cat: Catalog, fmt: str) -> None:
    assert_same(read_catalog(write_catalog(cat, tmp_path / f"p.{fmt}", overwrite=True)), cat)


@pytest.mark.parametrize("layout", ["table", "fixed"])
def test_pandas_hdf5_is_refused_saying_what_to_write(tmp_path: Path, layout: str) -> None:
    """DataFrame.to_hdf stores PyTables blocks, not columns: one line naming it, whole-file and
    streamed reads alike (it said 'none of the flux columns ... its columns: table')."""
    from deepz_core.catalog.io import count_rows, iter_rows

    frame = pd.DataFrame({"ref_id": [1, 2], "flux_i": [1.0, 2.0], "flux_error_i": [0.1, 0.1]})
    path = tmp_path / "pandas.h5"
    frame.to_hdf(path, key="galaxies", format=layout)
    match = r"HDF5 key 'galaxies' is a pandas HDFStore table \('frame(_table)?'.*Parquet"
    for read in (read_catalog, count_rows, lambda p: next(iter_rows(p, (0, 2), 2, ["flux_i"]))):
        with pytest.raises(CatalogError, match=match):
            read(path)


def test_hdf5_vlen_strings_from_other_writers(tmp_path: Path) -> None:
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        gal = f.create_group("galaxies")
        gal["ref_id"], gal["flux_g"], gal["flux_error_g"] = [1], [2.0], [0.5]
        gal["name"] = np.array(["gal-1"], dtype=h5py.string_dtype())
        gal.attrs["SURVEY"] = "PAUS"  # variable-length string attribute
        exp = f.create_group("exposures")
        exp["ref_id"], exp["exp_num"], exp["flux"], exp["flux_error"] = [1], [0], [2.0], [0.5]
        exp["band"] = np.array(["g"], dtype=h5py.string_dtype())
    cat = read_catalog(path)
    assert cat.extra["name"].tolist() == ["gal-1"] and cat.meta == {"SURVEY": "PAUS"}
    assert cat.exposures.band.tolist() == ["g"]
