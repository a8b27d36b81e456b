"""Column mapping: auto-detection of common spellings and renaming to canonical names."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_core.catalog.mapping import (
    EXPOSURE_ALIASES,
    SPECZ_ALIASES,
    GalaxyMapping,
    apply_exposure_mapping,
    apply_galaxy_mapping,
    canonical_band,
    galaxy_mapping_problems,
    guess_columns,
    guess_galaxy_mapping,
    split_flux_column,
)
from deepz_core.errors import CatalogError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("FLUX_NB455", ("flux", "NB455")),
        ("flux_NB455", ("flux", "NB455")),
        ("nb455_flux", ("flux", "nb455")),
        ("NB455", ("flux", "NB455")),
        ("FLUXERR_NB455", ("error", "NB455")),
        ("flux_error_NB455", ("error", "NB455")),
        ("flux_err_subaru_i", ("error", "subaru_i")),
        ("nb455_err", ("error", "nb455")),
        ("nb455_flux_err", ("error", "nb455")),
        ("ra", None),
        ("zspec", None),
    ],
)
def test_split_flux_column(name: str, expected: tuple[str, str] | None) -> None:
    assert split_flux_column(name) == expected


def test_canonical_band_matches_known_filters_case_insensitively() -> None:
    assert canonical_band("nb455") == "NB455"
    assert canonical_band("SUBARU_I") == "subaru_i"
    assert canonical_band("my_band_") == "my_band"
    assert canonical_band("x", ["X", "Y"]) == "X"


@pytest.mark.parametrize("id_name", ["id", "ID", "objid", "ref_id", "Object_ID"])
@pytest.mark.parametrize("z_name", ["z_spec", "ZSPEC", "zspec", "redshift"])
@pytest.mark.parametrize("mag_name", ["i_mag", "mag_i", "MAG"])
def test_guess_scalar_columns(id_name: str, z_name: str, mag_name: str) -> None:
    names = ["ra", id_name, "FLUX_NB455", "FLUXERR_NB455", z_name, mag_name]
    m = guess_galaxy_mapping(names)
    assert (m.ref_id, m.zspec, m.mag) == (id_name, z_name, mag_name)
    assert m.bands == (("NB455", "FLUX_NB455", "FLUXERR_NB455"),)


def test_guess_bands_in_file_order_and_only_complete_pairs() -> None:
    names = [
        "objid",
        "nb465_flux",
        "nb465_err",
        "FLUX_NB455",
        "FLUXERR_NB455",
        "flux_radius",
        "subaru_i",
        "subaru_i_err",
        "z_err",
    ]
    m = guess_galaxy_mapping(names)
    assert [b for b, _, _ in m.bands] == ["NB465", "NB455", "subaru_i"]
    assert m.bands[2] == ("subaru_i", "subaru_i", "subaru_i_err")
    assert galaxy_mapping_problems(m, names, "f.csv") == []


def test_mapping_json_round_trip_and_targets() -> None:
    m = GalaxyMapping("ID", "z", None, (("NB455", "F1", "E1"),))
    assert GalaxyMapping.from_json(m.to_json()) == m
    assert m.targets() == {
        "ref_id": "ID",
        "zspec": "z",
        "flux_NB455": "F1",
        "flux_error_NB455": "E1",
    }


def test_mapping_problems_name_the_column() -> None:
    m = GalaxyMapping(None, None, None, (("NB455", "F", "F"), ("", "G", "")))
    problems = " | ".join(galaxy_mapping_problems(m, ["F", "G"], "cat.csv"))
    assert "'ref_id'" in problems
    assert "'F' is used for both" in problems
    assert "needs both a flux and an error column" in problems
    assert "empty, reserved or repeated" in problems


def test_apply_galaxy_mapping_renames_and_keeps_extras() -> None:
    cols = {
        "ID": np.arange(3),
        "F": np.ones(3),
        "E": np.ones(3),
        "ra": np.zeros(3),
        "flux_auto": np.ones(3),
    }
    out, notes = apply_galaxy_mapping(cols, GalaxyMapping("ID", None, None, (("NB455", "F", "E"),)))
    assert list(out) == ["ref_id", "flux_NB455", "flux_error_NB455", "ra"]
    assert any("flux_auto" in n for n in notes)
    with pytest.raises(CatalogError, match="not in the file"):
        apply_galaxy_mapping(cols, GalaxyMapping("nope", None, None, ()))


def test_exposure_and_specz_guesses() -> None:
    guess = guess_columns(["objid", "filter", "expnum", "flux", "flux_err"], EXPOSURE_ALIASES)
    assert guess == {
        "ref_id": "objid",
        "band": "filter",
        "exp_num": "expnum",
        "flux": "flux",
        "flux_error": "flux_err",
    }
    assert guess_columns(["ID", "Z_SPEC", "quality"], SPECZ_ALIASES) == {
        "ref_id": "ID",
        "zspec": "Z_SPEC",
    }


def test_apply_exposure_mapping_fixes_band_case() -> None:
    cols = {
        "id": np.array([1, 1]),
        "filter": np.array(["nb455", "NB465"]),
        "n": np.array([0, 1]),
        "f": np.ones(2),
        "e": np.ones(2),
    }
    mapping = {"ref_id": "id", "band": "filter", "exp_num": "n", "flux": "f", "flux_error": "e"}
    out = apply_exposure_mapping(cols, mapping, ["NB455", "NB465"])
    assert out["band"].tolist() == ["NB455", "NB465"]
    with pytest.raises(CatalogError, match="'flux_error'"):
        apply_exposure_mapping(cols, {**mapping, "flux_error": None}, ["NB455"])


def test_z_alone_is_the_spec_z_unless_the_columns_are_ugriz() -> None:
    from deepz_core.catalog.mapping import guess_zspec

    assert guess_galaxy_mapping(["objid", "z", "flux_g", "flux_err_g"]).zspec == "z"
    assert guess_zspec(["objid", "u", "g", "r", "i", "z"], set()) is None  # SDSS magnitudes
    assert guess_zspec(["id", "Z_SPEC", "z"], set()) == "Z_SPEC"


def test_known_band_names_are_suggested() -> None:
    from deepz_core.catalog.mapping import band_letter, suggest_band_names

    assert band_letter("FLUX_G") == "g" and band_letter("i_cmodel") == "i"
    assert band_letter("NB455") is None
    sdss = suggest_band_names(["FLUX_U", "FLUX_G", "FLUX_R", "FLUX_I", "FLUX_Z"])
    assert list(sdss)[0] == "sdss" and sdss["sdss"] == (
        "sdss_u",
        "sdss_g",
        "sdss_r",
        "sdss_i",
        "sdss_z",
    )
    grizy = suggest_band_names(["g", "r", "i", "z", "y"])
    assert list(grizy)[0] == "hsc" and "sdss" not in grizy
    assert list(suggest_band_names(["u", "g", "r", "i", "z", "y"])) == ["lsst"]
    assert suggest_band_names(["NB455", "g"]) == {}


def test_guessed_bands_take_a_run_s_names_by_filter_letter() -> None:
    """Eleventh session: a DP0 file's bands are guessed as u_cModel...; a run knows lsst_u...:
    matched one to one by filter letter, or not at all."""
    from deepz_core.catalog.mapping import match_run_bands, renamed_bands

    lsst = [f"lsst_{b}" for b in "ugrizy"]
    dp0 = [f"{b}_cModel" for b in "ugrizy"]
    assert match_run_bands(dp0, lsst) == dict(zip(dp0, lsst, strict=True))
    assert match_run_bands(["FLUX_G", "FLUX_R"], ["sdss_g", "sdss_r"]) == {
        "FLUX_G": "sdss_g",
        "FLUX_R": "sdss_r",
    }
    assert match_run_bands(["lsst_g", "r_cModel"], lsst) == {"r_cModel": "lsst_r"}
    assert match_run_bands(dp0, ["sdss_g", "hsc_g"]) == {}  # ambiguous / missing: no rename
    assert match_run_bands(["NB455"], lsst) == {}
    assert match_run_bands(lsst, lsst) == {}
    mapping = guess_galaxy_mapping(["objectId", "g_cModelFlux", "g_cModelFluxErr"])
    renamed = renamed_bands(mapping, {"g_cModel": "lsst_g"})
    assert renamed.bands == (("lsst_g", "g_cModelFlux", "g_cModelFluxErr"),)
