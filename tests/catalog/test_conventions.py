"""Survey conventions (issue 20, part 3): objectId / object_id / id as the identifier (or a
configured column), the columns a streamed prediction reads, and the conventions' checks."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.conventions import (
    InputConventions,
    canonical_columns,
    conventions_of,
    needed_columns,
    rename_columns,
)
from deepz_core.errors import CatalogError, ConfigError

FLUX = {"flux_g": np.ones(2), "flux_error_g": np.ones(2)}


@pytest.mark.parametrize("name", ["objectId", "object_id", "id"])
def test_survey_identifiers(name: str) -> None:
    cat = Catalog.from_table({name: np.array([5, 6]), **FLUX})
    assert cat.ref_id.tolist() == [5, 6] and name in cat.extra


def test_ref_id_wins_and_a_configured_column_is_used() -> None:
    cols = {"ref_id": np.array([1, 2]), "objectId": np.array([7, 8]), "src": np.array([3, 4])}
    assert Catalog.from_table({**cols, **FLUX}).ref_id.tolist() == [1, 2]
    conv = InputConventions(id_column="src")
    assert Catalog.from_table({**cols, **FLUX}, conventions=conv).ref_id.tolist() == [3, 4]
    with pytest.raises(CatalogError, match="identifier column 'nope'"):
        canonical_columns(cols, {}, "t.fits", InputConventions(id_column="nope"))


def test_needed_columns_of_flux_and_magnitude_files() -> None:
    names = ["objectId", "coord_ra", "coord_dec", "flux_g", "flux_error_g", "flux_r", "x", "y"]
    assert needed_columns(names, ["g"], ("x",)) == [
        "objectId",
        "coord_ra",
        "coord_dec",
        "flux_g",
        "flux_error_g",
        "x",
    ]
    mags = ["id", "mag_u_lsst", "mag_err_u_lsst", "maglim_u_lsst", "mag_g_lsst", "mag_err_g_lsst"]
    assert needed_columns(mags, ["lsst_u"]) == mags[:4]
    # a limit is checked in every chunk: its band comes along (a limit naming no band fails here)
    limited = InputConventions(mag_limits={"g": 25.0})
    assert needed_columns(mags, ["lsst_u"], conv=limited) == mags
    with pytest.raises(ConfigError, match="'z' names no band"):
        needed_columns(mags, ["lsst_u"], conv=InputConventions(mag_limits={"z": 25.0}))
    assert needed_columns(names, None) is None
    with pytest.raises(ConfigError, match=r"--keep-columns: \['z'\] not in the catalogue"):
        needed_columns(names, ["g"], ("z",))


def test_conventions_are_checked_and_round_trip() -> None:
    conv = InputConventions(mag_limits={"g": 25}, limit_nsigma=5)
    assert InputConventions.from_dict(conv.to_dict()) == conv
    assert conventions_of(conv.to_dict()) == conv and conventions_of(None) == InputConventions()
    with pytest.raises(ConfigError, match=r"mag_limits\[g\]"):
        InputConventions(mag_limits={"g": "deep"})
    with pytest.raises(ConfigError, match="limit_nsigma"):
        InputConventions(limit_nsigma=0)
    with pytest.raises(ConfigError, match="unknown input conventions config fields"):
        conventions_of({"id": "x"})


def test_a_flux_unit_declares_the_fluxes_of_a_table_that_declares_none() -> None:
    """Review, tenth session: an LSST CSV in nJy had no way to say so on the command line; read
    as microJansky, 83% of its galaxies got flag 0 and photo-z 5x worse."""
    from deepz_core.catalog.units import UNITS_KEY

    nano = Catalog.from_table(FLUX | {"id": np.array([1, 2])}, conventions={"flux_unit": "nJy"})
    assert nano.fluxzp == 31.4
    plain = InputConventions()
    assert "flux_unit" not in plain.to_dict()  # keys of datasets written before it still match
    conv = InputConventions(flux_unit="nJy")
    assert InputConventions.from_dict(conv.to_dict()) == conv
    with pytest.raises(ConfigError, match="'furlong' is not a flux-density unit"):
        InputConventions(flux_unit="furlong")
    declared = {UNITS_KEY: {"flux_g": "uJy", "flux_error_g": "uJy"}}
    cols = FLUX | {"ref_id": np.array([1, 2])}
    with pytest.raises(CatalogError, match="--flux-unit nJy .* disagrees"):
        canonical_columns(cols, declared, "t.fits", conv)
    _, meta = canonical_columns(cols, {**declared, "FLUXZP": 23.9}, "t.fits", plain)
    assert meta["FLUXZP"] == 23.9  # nothing changes without it


def test_rename_patterns_read_survey_column_names() -> None:
    """Review, tenth session: LSST DP0's u_cModelFlux and SDSS's modelMag_u could not be read
    without rewriting the file."""
    from deepz_core.catalog.units import UNITS_KEY

    dp0 = {"objectId": np.array([1, 2]), "g_cModelFlux": np.ones(2), "g_cModelFluxErr": np.ones(2)}
    rename = {"{b}_cModelFlux": "flux_lsst_{b}", "{b}_cModelFluxErr": "flux_error_lsst_{b}"}
    conv = InputConventions(rename=rename, flux_unit="nJy")
    cat = Catalog.from_table(dp0, conventions=conv)
    assert cat.bands == ("lsst_g",) and cat.fluxzp == 31.4
    units = {UNITS_KEY: {"g_cModelFlux": "nJy", "g_cModelFluxErr": "nJy"}}
    cols, meta = canonical_columns(dp0, units, "dp0", InputConventions(rename=rename))
    assert meta[UNITS_KEY]["flux_lsst_g"] == "nJy" and "flux_error_lsst_g" in cols
    names = [*dp0, "other"]
    assert needed_columns(names, ["lsst_g"], conv=conv) == list(dp0)  # the file's names
    sdss = {"modelMag_{b}": "mag_{b}_sdss", "modelMagErr_{b}": "magerr_{b}_sdss"}
    mags = {"objid": np.array([3]), "modelMag_r": np.array([20.0]), "modelMagErr_r": [0.1]}
    cat = Catalog.from_table(mags, conventions=InputConventions(id_column="objid", rename=sdss))
    assert cat.bands == ("sdss_r",) and cat.flux[0, 0] == pytest.approx(10 ** (0.4 * 3.9))
    assert InputConventions.from_dict(conv.to_dict()) == conv
    assert "rename" not in InputConventions().to_dict()
    with pytest.raises(ConfigError, match=r"needs \{b\} once on each side"):
        InputConventions(rename={"modelMag_{b}": "mag_u"})
    clash = {"g_cModelFlux": np.ones(2), "flux_lsst_g": np.ones(2), "objectId": np.array([1, 2])}
    with pytest.raises(CatalogError, match="names already there"):
        canonical_columns(clash, {}, "dp0", InputConventions(rename=rename))


def test_renamed_rubin_flux_columns_without_a_unit_are_nanojansky() -> None:
    """Eleventh session's app review: a unit-less DP0 export read through ``--rename`` was taken
    as microJansky by the CLI (magnitudes 7.5 too bright) while the Data page read it as nJy."""
    dp0 = {"objectId": np.array([1, 2]), "g_cModelFlux": np.ones(2), "g_cModelFluxErr": np.ones(2)}
    rename = {"{b}_cModelFlux": "flux_lsst_{b}", "{b}_cModelFluxErr": "flux_error_lsst_{b}"}
    assert Catalog.from_table(dp0, conventions={"rename": rename}).fluxzp == 31.4
    given = InputConventions(rename=rename, flux_unit="uJy")  # the user's word wins
    assert Catalog.from_table(dp0, conventions=given).fluxzp == 23.9
    _, meta = canonical_columns(dp0, {"FLUXZP": 22.5}, "dp0", InputConventions(rename=rename))
    assert meta["FLUXZP"] == 22.5  # a header is kept
    other = {"{b}_flux": "flux_lsst_{b}", "{b}_fluxErr": "flux_error_lsst_{b}"}
    plain = {"objectId": np.array([1, 2]), "g_flux": np.ones(2), "g_fluxErr": np.ones(2)}
    assert Catalog.from_table(plain, conventions={"rename": other}).fluxzp == 23.9  # not Rubin's


def test_a_rename_without_a_band_names_one_column() -> None:
    """RAIL's catalogues hold the spec-z as ``redshift``, which no deepz convention read (review,
    tenth session): ``--rename redshift=zspec``."""
    rail = {"id": np.array([5, 6]), "mag_i_lsst": np.array([21.0, 22.0])}
    rail |= {"mag_err_i_lsst": np.array([0.05, 0.1]), "redshift": np.array([0.4, 1.2])}
    rename = {"redshift": "zspec", "mag_{b}_lsst": "mag_{b}", "mag_err_{b}_lsst": "magerr_{b}"}
    conv = InputConventions(rename=rename)
    cat = Catalog.from_table(rail, conventions=conv)
    assert cat.zspec.tolist() == [0.4, 1.2] and cat.ref_id.tolist() == [5, 6]
    assert "redshift" in needed_columns([*rail, "other"], ["i"], conv=conv)
    assert rename_columns(["z"], {"redshift": "zspec"}, "rail") == {}  # absent: nothing
    with pytest.raises(ConfigError, match="on neither"):
        InputConventions(rename={"redshift": "zspec_{b}"})


def test_the_more_specific_rename_pattern_wins_whatever_the_order() -> None:
    """Review of the tenth session: ``mag_{b}_lsst`` also matches ``mag_err_u_lsst`` (band
    'err_u'), and which pattern renamed it hung on their order."""
    mags = ["mag_u_lsst", "mag_err_u_lsst"]
    forward = {"mag_{b}_lsst": "mag_lsst_{b}", "mag_err_{b}_lsst": "magerr_lsst_{b}"}
    backward = dict(reversed(list(forward.items())))
    want = {"mag_u_lsst": "mag_lsst_u", "mag_err_u_lsst": "magerr_lsst_u"}
    assert rename_columns(mags, forward, "rail") == want == rename_columns(mags, backward, "rail")
    cmodel = ["subaru_r_cModelFlux", "u_cModelFlux"]  # a band may hold "_" (deepz's own names)
    named = {"{b}_cModelFlux": "flux_{b}", "u_cModelFlux": "flux_lsst_u"}  # one column: wins
    assert rename_columns(cmodel, named, "dp0") == {
        "subaru_r_cModelFlux": "flux_subaru_r",
        "u_cModelFlux": "flux_lsst_u",
    }
    tie = {"{b}_cModelFlux": "flux_{b}", "u_cModelFlu{b}": "flux_{b}"}  # 11 fixed characters each
    with pytest.raises(CatalogError, match="'u_cModelFlux' matches two --rename patterns"):
        rename_columns(cmodel, tie, "dp0")


def test_a_repeated_or_bad_identifier_names_the_users_column() -> None:
    """Eleventh session: ``train --id-column objectId`` said "column 'ref_id' has duplicates"
    (a column the file does not have) where ``predict`` named objectId."""
    table = {"objectId": [11, 12, 12, 13], "flux_i": [1.0] * 4, "flux_error_i": [0.1] * 4}
    with pytest.raises(CatalogError, match=r"column 'objectId' has duplicates: 12$"):
        Catalog.from_table(table, conventions={"id_column": "objectId"})
    with pytest.raises(CatalogError, match=r"column 'objectId' has duplicates: 12$"):
        Catalog.from_table(table)  # found by its survey name
    table["objectId"] = [1.0, 2.5, 3.0, 4.0]
    with pytest.raises(CatalogError, match=r"column 'objectId' has non-integer values in rows 1"):
        Catalog.from_table(table)
