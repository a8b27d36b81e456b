"""Tests for deepz_core.catalog.catalog: dataclasses, validation, dense exposure tensors, coadds."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_core.catalog.catalog import (
    Catalog,
    Exposures,
    as_int64,
    coadd_from_exposures,
    dense_exposures,
    few,
)
from deepz_core.catalog.validation import COADD_RTOL, validate
from deepz_core.errors import CatalogError

BANDS = ("NB455", "NB465", "g")


def reference_coadd(exp: Exposures, ref_id: int, band: str) -> tuple[float, float]:
    """Inverse-variance mean and its error by a plain loop (independent of the library)."""
    rows = [i for i in range(len(exp)) if exp.ref_id[i] == ref_id and exp.band[i] == band]
    w = np.array([exp.flux_error[i] ** -2 for i in rows])
    f = np.array([exp.flux[i] for i in rows])
    return float((w * f).sum() / w.sum()), float(w.sum() ** -0.5)


def make_catalog(
    rng: np.random.Generator, n: int = 6, bands: tuple[str, ...] = BANDS, n_exp_bands: int = 2
) -> Catalog:
    """Random consistent catalogue: the first ``n_exp_bands`` bands have 1-3 exposures each."""
    ref_id = rng.choice(10**6, size=n, replace=False).astype(np.int64)
    flux = rng.normal(20.0, 5.0, (n, len(bands)))
    error = rng.uniform(0.5, 2.0, (n, len(bands)))
    counts = rng.integers(1, 4, size=(n, n_exp_bands))
    gal = np.repeat(np.arange(n * n_exp_bands) // n_exp_bands, counts.reshape(-1))
    band = np.repeat(np.tile(np.arange(n_exp_bands), n), counts.reshape(-1))
    exp_num = np.concatenate([np.arange(c) for c in counts.reshape(-1)] + [[]]) + 10
    m = len(gal)
    exp = Exposures(
        ref_id[gal], np.array(bands)[band], exp_num, rng.normal(20, 5, m), rng.uniform(1, 3, m)
    )
    for i in range(n):
        for j in range(n_exp_bands):
            flux[i, j], error[i, j] = reference_coadd(exp, ref_id[i], bands[j])
    zspec = np.where(rng.random(n) < 0.5, rng.uniform(0, 2, n), np.nan)
    return Catalog(
        ref_id=ref_id,
        bands=bands,
        flux=flux,
        flux_error=error,
        zspec=zspec,
        mag=rng.uniform(18, 23, n),
        fluxzp=23.9,
        exposures=exp.select(rng.permutation(m)),
        extra={"ra": rng.uniform(0, 360, n)},
        meta={"NOISELESS": False},
    )


def with_(cat: Catalog, **changes: object) -> Catalog:
    from dataclasses import replace

    return replace(cat, **changes)


def test_construction_coerces_and_defaults() -> None:
    cat = Catalog([3, 1], ["g", "r"], [[1, 2], [3, 4]], [[1, 1], [1, 1]], meta={"survey": "x"})
    assert cat.ref_id.dtype == np.int64 and cat.flux.dtype == np.float64
    assert cat.bands == ("g", "r") and cat.n_galaxies == 2
    assert np.isnan(cat.zspec).all() and not cat.has_zspec.any()
    assert cat.mag is None and cat.fluxzp == 23.9 and cat.exposures is None
    assert cat.meta == {"SURVEY": "x"}
    assert cat.band_index("r") == 1
    with pytest.raises(CatalogError, match="unknown band 'z'.*g, r"):
        cat.band_index("z")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"flux": np.ones((2, 3))}, "'flux' has shape"),
        ({"zspec": np.ones(3)}, "'zspec' has shape"),
        ({"bands": ("g", "g")}, "duplicate band"),
        ({"bands": ("g", "error_r")}, "reserved"),
        ({"extra": {"ra": np.ones(5)}}, "extra column 'ra'"),
        ({"extra": {"flux_x": np.ones(2)}}, "extra column 'flux_x'"),
        ({"meta": {"FLUXZP": 25.0}}, "FLUXZP"),
        ({"meta": {"LIST": [1, 2]}}, "LIST"),
        ({"ref_id": [1.5, 2.0]}, "non-integer"),
        ({"flux": np.array([["a", "b"], ["c", "d"]])}, "not numeric"),
    ],
)
def test_construction_rejects_bad_shapes_and_meta(kwargs: dict, match: str) -> None:
    base = {"ref_id": [1, 2], "bands": ("g", "r"), "flux": np.ones((2, 2))}
    base["flux_error"] = np.ones((2, 2))
    with pytest.raises(CatalogError, match=match):
        Catalog(**{**base, **kwargs})


def test_magnitudes_follow_the_zero_point() -> None:
    cat = Catalog(
        [1, 2, 3], ["i"], [[1.0], [10 ** (-0.4 * (22.5 - 26.0))], [-1.0]], np.ones((3, 1))
    )
    cat = with_(cat, fluxzp=26.0)
    mags = cat.magnitudes("i")
    np.testing.assert_allclose(mags[:2], [26.0, 22.5])
    assert np.isnan(mags[2])


def test_repr_and_len_summarise_instead_of_printing_every_array(rng) -> None:
    """Review, tenth session: a Catalog echoed in a notebook printed every flux array (and
    ``len(cat)`` was a TypeError)."""
    cat = make_catalog(rng, n=500)
    text = repr(cat)
    assert len(cat) == 500 and "\n" not in text and len(text) < 200, text
    assert text.startswith(f"Catalog(500 galaxies x {len(BANDS)} bands")
    assert f"{int(cat.has_zspec.sum())} with a spec-z" in text and "extra columns ra" in text
    assert repr(cat.exposures) == (
        f"Exposures({len(cat.exposures)} single exposures of 500 galaxies)"
    )


def test_few_lists_a_few_and_counts_the_rest() -> None:
    assert few([3, 17, 18, 20, 21]) == "3, 17, 18 (and 2 more)"
    assert few(np.array([4])) == "4"


def test_select_subsets_galaxies_and_exposures(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    mask = np.array([True, False, True, False, False, True])
    sub = cat.select(mask)
    assert sub.n_galaxies == 3 and sub.bands == cat.bands
    np.testing.assert_array_equal(sub.flux, cat.flux[mask])
    np.testing.assert_array_equal(sub.extra["ra"], cat.extra["ra"][mask])
    assert set(sub.exposures.ref_id) == set(cat.ref_id[mask])
    assert len(sub.exposures) == np.isin(cat.exposures.ref_id, cat.ref_id[mask]).sum()
    validate(sub)
    by_index = cat.select([5, 0])
    np.testing.assert_array_equal(by_index.ref_id, cat.ref_id[[5, 0]])
    with pytest.raises(CatalogError, match="mask has shape"):
        cat.select(np.ones(3, bool))
    with pytest.raises(CatalogError, match="duplicate"):
        cat.select([1, 1])


def test_table_round_trip(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    table = cat.to_table()
    assert table.colnames[:3] == ["ref_id", "flux_NB455", "flux_error_NB455"]
    assert table.meta["FLUXZP"] == 23.9
    back = Catalog.from_table(table, exposures=Exposures.from_table(cat.exposures.to_table()))
    np.testing.assert_array_equal(back.flux, cat.flux)
    np.testing.assert_array_equal(back.zspec, cat.zspec)
    np.testing.assert_array_equal(back.exposures.band, cat.exposures.band)
    assert back.meta == cat.meta and list(back.extra) == ["ra"]


def test_valid_catalogue_passes(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    assert validate(cat) is cat


def _set(array: np.ndarray, index: tuple, value: float) -> np.ndarray:
    out = array.copy()
    out[index] = value
    return out


@pytest.mark.parametrize(
    "field, index, value, match",
    [
        ("zspec", (0,), -0.5, r"column 'zspec'"),
        ("mag", (0,), np.inf, r"column 'mag'"),
    ],
)
def test_validate_rejects_bad_values(
    rng: np.random.Generator, field: str, index: tuple, value: float, match: str
) -> None:
    cat = make_catalog(rng)
    bad = with_(cat, **{field: _set(getattr(cat, field), index, value)})
    with pytest.raises(CatalogError, match="^my.fits: " + match) as err:
        validate(bad, "my.fits")
    assert str(cat.ref_id[index[0]]) in str(err.value)


@pytest.mark.parametrize(
    "field, index, value",
    [
        ("flux", (2, 2), np.nan),
        ("flux", (1, 1), -99.0),
        ("flux_error", (1, 0), np.inf),
        ("flux_error", (3, 2), 0.0),
        ("flux_error", (4, 2), -1.0),
    ],
)
def test_validate_leaves_bad_values_of_some_galaxies_to_the_screen(
    rng: np.random.Generator, field: str, index: tuple, value: float
) -> None:
    """One bad measurement no longer fails a whole catalogue: the galaxy is flagged instead."""
    from deepz_core.catalog.screen import PzFlag, screen_photometry

    cat = make_catalog(rng, bands=(*BANDS, "r"))
    bad = with_(cat, **{field: _set(getattr(cat, field), index, value)})
    assert validate(bad, "my.fits") is bad
    flags = screen_photometry(bad.flux, bad.flux_error, 3, bad.fluxzp).flags  # ref: none hit
    assert flags[index[0]] & PzFlag.BAND_MISSING
    assert not np.delete(flags, index[0]).any()


def test_an_empty_band_is_named_as_a_whole(rng: np.random.Generator) -> None:
    cat = make_catalog(rng, n_exp_bands=0)
    flux = cat.flux.copy()
    flux[:, 2] = np.nan
    with pytest.raises(
        CatalogError,
        match="^my.fits: column 'flux_g' has NaN/inf values for every galaxy: remove band 'g'",
    ):
        validate(with_(cat, flux=flux), "my.fits")


def test_validate_rejects_duplicates_and_empty(rng: np.random.Generator) -> None:
    cat = make_catalog(rng, n_exp_bands=0)
    dup = with_(cat, ref_id=np.r_[cat.ref_id[:-1], cat.ref_id[0]])
    with pytest.raises(CatalogError, match=f"column 'ref_id' has duplicates: {cat.ref_id[0]}"):
        validate(dup, "x.csv")
    with pytest.raises(CatalogError, match="no galaxies"):
        validate(cat.select(np.zeros(6, bool)), "x.csv")
    with pytest.raises(CatalogError, match="no bands"):
        validate(Catalog([1], (), np.zeros((1, 0)), np.zeros((1, 0))), "x.csv")


def _exposure_change(cat: Catalog, column: str, row: int, value: object) -> Catalog:
    exp = cat.exposures
    arrays = {
        c: getattr(exp, c).copy() for c in ("ref_id", "band", "exp_num", "flux", "flux_error")
    }
    if column == "band":
        arrays["band"] = arrays["band"].astype(object)
    arrays[column][row] = value
    return with_(cat, exposures=Exposures(**arrays))


@pytest.mark.parametrize(
    "column, value, match",
    [
        (
            "ref_id",
            123456789,
            r"exposures column 'ref_id' names unknown galaxies: ref_id 123456789",
        ),
        ("band", "NB999", r"exposures column 'band' has bands not in the catalogue \(.*\): NB999"),
        ("band", "g", r"column 'flux_\w+' disagrees"),
        ("flux", 1e4, r"column 'flux_NB4\d5' disagrees with the inverse-variance mean"),
    ],
)
def test_validate_rejects_bad_exposures(
    rng: np.random.Generator, column: str, value: object, match: str
) -> None:
    bad = _exposure_change(make_catalog(rng), column, 0, value)
    with pytest.raises(CatalogError, match="^e.csv: " + match):
        validate(bad, "c.csv", "e.csv")


@pytest.mark.parametrize("column, value", [("flux", np.nan), ("flux_error", -2.0)])
def test_exposures_without_information_are_left_out_with_a_note(
    rng: np.random.Generator, caplog: pytest.LogCaptureFixture, column: str, value: float
) -> None:
    """One NaN flux (or error <= 0) among the exposures no longer refuses the catalogue: that
    exposure is left out, counted in a warning and in the catalogue's notes; the survey's coadd
    (the mean of the others) agrees, and the coadd deepz builds from the exposures is that mean."""
    cat = make_catalog(rng)
    bad = _exposure_change(cat, column, 0, value)
    gal = int(np.flatnonzero(cat.ref_id == cat.exposures.ref_id[0])[0])
    band = str(cat.exposures.band[0])
    j = cat.bands.index(band)
    kept = cat.exposures.select(np.arange(1, len(cat.exposures)))
    flux, error = cat.flux.copy(), cat.flux_error.copy()
    others = ((kept.ref_id == cat.ref_id[gal]) & (kept.band == band)).any()
    if others:
        flux[gal, j], error[gal, j] = reference_coadd(kept, int(cat.ref_id[gal]), band)
    with caplog.at_level("WARNING", logger="deepz"):
        got = validate(with_(bad, flux=flux, flux_error=error), "c.csv", "e.csv")
    m = len(cat.exposures)
    note = f"e.csv: 1 of {m} single exposures left out (flux NaN/inf or error NaN/inf or <= 0"
    assert len(got.notes) == 1 and got.notes[0].startswith(note) and "rows 0)" in got.notes[0]
    assert note in caplog.text and len(got.exposures) == m - 1
    np.testing.assert_array_equal(got.exposures.flux, kept.flux)
    coadd, _ = coadd_from_exposures(dense_exposures(got))
    np.testing.assert_allclose(coadd[gal, j], flux[gal, j] if others else np.nan)


def test_validate_rejects_duplicate_exposures(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    exp = cat.exposures
    doubled = Exposures(
        *(
            np.r_[getattr(exp, c), getattr(exp, c)[:1]]
            for c in ("ref_id", "band", "exp_num", "flux", "flux_error")
        )
    )
    with pytest.raises(CatalogError, match=r"duplicate \(ref_id, band, exp_num\)"):
        validate(with_(cat, exposures=doubled))


def _scaled_errors(cat: Catalog, factor: float) -> Catalog:
    """Same inverse-variance means, exposure errors scaled by ``factor``."""
    exp = cat.exposures
    scaled = Exposures(exp.ref_id, exp.band, exp.exp_num, exp.flux, exp.flux_error * factor)
    return with_(cat, exposures=scaled)


def test_coadd_tolerance_is_mixed(rng: np.random.Generator) -> None:
    """Flagged only when off by > 1e-3 relative AND > 0.05 sigma of the exposure mean."""
    cat = make_catalog(rng)
    validate(with_(cat, flux=cat.flux.astype(np.float32).astype(np.float64)))
    off = cat.flux.copy()
    off[0, 0] *= 1 + 3 * COADD_RTOL  # ~0.06 off: ~0.1 sigma for errors ~0.6
    with pytest.raises(
        CatalogError, match=f"column 'flux_NB455' disagrees.*ref_id {cat.ref_id[0]}"
    ):
        validate(with_(cat, flux=off))
    validate(with_(_scaled_errors(cat, 1e3), flux=off))  # relative off, but << 0.05 sigma
    small = cat.flux.copy()
    small[0, 0] *= 1 + 0.1 * COADD_RTOL  # many sigma off with tiny errors, but < 1e-3 relative
    validate(with_(_scaled_errors(cat, 1e-6), flux=small))


def test_an_absurd_coadd_beside_its_exposures_is_left_to_the_screen(
    rng: np.random.Generator,
) -> None:
    """One galaxy's coadd at 1e30 (a bad pixel) or with error <= 0 next to sane exposures: the
    screen flags and imputes it; the catalogue is not refused for one junk value (found in the
    ninth session's review: the CLI and the app's import refused the whole file)."""
    from deepz_core.catalog.screen import PzFlag, screen_photometry

    cat = make_catalog(rng)
    flux, error = cat.flux.copy(), cat.flux_error.copy()
    flux[0, 0], error[1, 1] = 1e30, 0.0
    junk = with_(cat, flux=flux, flux_error=error)
    validate(junk)
    flags = screen_photometry(flux, error, len(cat.bands) - 1, cat.fluxzp).flags
    assert flags[0] & PzFlag.BAND_IMPLAUSIBLE and flags[1] & PzFlag.BAND_MISSING
    flux[2, 0] *= 1.5  # a sane coadd that disagrees with its exposures is still refused
    with pytest.raises(CatalogError, match=f"disagrees.*ref_id {cat.ref_id[2]}"):
        validate(with_(cat, flux=flux, flux_error=error))


def test_coadds_in_another_unit_than_their_exposures_are_named_once(
    rng: np.random.Generator,
) -> None:
    """Coadds in mJy beside exposures in microJansky: one message naming the unit mismatch."""
    cat = make_catalog(rng)
    with pytest.raises(
        CatalogError, match="1,000 times smaller.*coadds in mJy and exposures in µJy"
    ):
        validate(with_(cat, flux=cat.flux * 1e-3, flux_error=cat.flux_error * 1e-3))


def test_19_digit_ids_stored_as_floats_are_refused_with_the_reason() -> None:
    ids = np.array([1234567890123456001, 1234567890123456002], dtype=np.int64)
    with pytest.raises(CatalogError, match=r"cat.fits: column 'objid' holds ids as float64.*int64"):
        as_int64(ids.astype(np.float64), "objid", "cat.fits")
    assert as_int64(np.array([1.0, 2.0**53]), "id", "x").tolist() == [1, 2**53]  # exact: fine


def test_uint64_ids_convert_exactly_or_are_refused_naming_the_column() -> None:
    """uint64 ids that fit int64 keep their values; larger ones would wrap to negative numbers
    and are refused, as are integers beyond any integer type kept as Python ints or text."""
    top = np.iinfo(np.int64).max
    fits = np.array([1, top], dtype=np.uint64)
    assert as_int64(fits, "ref_id", "x").tolist() == [1, top]
    big = np.array([18446744073709551000 + i for i in range(3)], dtype=np.uint64)
    with pytest.raises(
        CatalogError, match=r"cat.fits: column 'ref_id' .*int64.*18446744073709551000"
    ):
        as_int64(big, "ref_id", "cat.fits")
    for values in (np.array([5, 10**23], dtype=object), np.array(["5", "-99999999999999999999"])):
        with pytest.raises(CatalogError, match="outside the int64 range"):
            as_int64(values, "objid", "x.csv")


def test_dense_exposures_places_values_in_slots() -> None:
    exp = Exposures(
        ref_id=[20, 10, 20, 20, 10],
        band=["a", "a", "a", "b", "a"],
        exp_num=[7, 3, 2, 1, 1],
        flux=[1.0, 2.0, 3.0, 4.0, 5.0],
        flux_error=[0.1, 0.2, 0.3, 0.4, 0.5],
    )
    cat = Catalog([10, 20], ("a", "b", "c"), np.ones((2, 3)), np.ones((2, 3)), exposures=exp)
    dense = dense_exposures(cat)
    assert dense.flux.shape == dense.error.shape == dense.mask.shape == (2, 3, 2)
    assert dense.flux.dtype == dense.error.dtype == np.float32 and dense.mask.dtype == bool
    np.testing.assert_array_equal(dense.flux[0, 0], [5.0, 2.0])  # ref 10, band a: exp 1, 3
    np.testing.assert_array_equal(dense.flux[1, 0], [3.0, 1.0])  # ref 20, band a: exp 2, 7
    np.testing.assert_array_equal(dense.error[1, 0], np.float32([0.3, 0.1]))
    np.testing.assert_array_equal(dense.mask[1, 1], [True, False])
    assert dense.flux[1, 1, 0] == 4.0 and dense.flux[1, 1, 1] == 0.0
    assert not dense.mask[:, 2].any() and not dense.mask[0, 1].any()


def test_dense_mask_counts_equal_exposure_counts(rng: np.random.Generator) -> None:
    cat = make_catalog(rng, n=40, n_exp_bands=2)
    dense = dense_exposures(cat)
    exp = cat.exposures
    for i, ref in enumerate(cat.ref_id):
        for j, band in enumerate(cat.bands):
            rows = (exp.ref_id == ref) & (exp.band == band)
            assert dense.mask[i, j].sum() == rows.sum()
            order = np.argsort(exp.exp_num[rows])
            got = dense.flux[i, j][dense.mask[i, j]]
            np.testing.assert_array_equal(got, exp.flux[rows][order].astype(np.float32))
    assert dense.mask.shape[2] == 3 and dense.mask.sum() == len(exp)


def test_coadd_from_exposures_is_inverse_variance_mean(rng: np.random.Generator) -> None:
    cat = make_catalog(rng, n=20)
    flux, error = coadd_from_exposures(dense_exposures(cat))
    assert flux.shape == error.shape == (20, 3)
    np.testing.assert_allclose(flux[:, :2], cat.flux[:, :2], rtol=1e-6)
    np.testing.assert_allclose(error[:, :2], cat.flux_error[:, :2], rtol=1e-6)
    assert np.isnan(flux[:, 2]).all() and np.isnan(error[:, 2]).all()


def test_dense_without_exposures_is_empty(rng: np.random.Generator) -> None:
    cat = with_(make_catalog(rng), exposures=None)
    dense = dense_exposures(cat)
    assert dense.flux.shape == (6, 3, 0) and not dense.mask.any()
    assert np.isnan(coadd_from_exposures(dense)[0]).all()


def test_dense_rejects_unknown_exposures(rng: np.random.Generator) -> None:
    bad = _exposure_change(make_catalog(rng), "ref_id", 0, -5)
    with pytest.raises(CatalogError, match="unknown"):
        dense_exposures(bad)


def test_absurdly_small_exposure_errors_do_not_pass_silently(rng: np.random.Generator) -> None:
    cat = _scaled_errors(make_catalog(rng), 1e-200)  # 1 / error**2 overflows
    with pytest.raises(CatalogError, match="disagrees"):
        validate(cat)
