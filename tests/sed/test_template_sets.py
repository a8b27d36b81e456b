"""Template sets (deepz_core.sed.template_sets): which bands a set covers over a redshift range,
and the way out its refusal names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepz_core.errors import ConfigError
from deepz_core.sed import template_sets
from deepz_core.sed.template_sets import (
    check_bands_coverable,
    compute_flux_table,
    load_template_set,
    set_info,
)

LSST = ["lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y"]


@pytest.mark.parametrize("name", ["bcnz2", "kcorrect"])
def test_a_u_band_is_covered_at_any_redshift_blueward_of_the_lyman_limit_being_dark(
    name: str,
) -> None:
    """Regression: lsst_u (3053 A) at z = 3.5 reaches 678 A rest, below bcnz2's 900 A, and every
    LSST run to z > 2.39 was refused a combination; light blueward of the Lyman limit is absorbed,
    and the set's spectra count as dark there."""
    check_bands_coverable(LSST, 3.5, name)
    check_bands_coverable(LSST, 6.0, name)


def test_the_u_band_flux_beyond_the_templates_blue_end_is_the_lyman_break() -> None:
    """What the check now allows is computed: finite, non-negative, the u band dropping out."""
    z = np.array([1.0, 2.5, 3.0, 3.5])
    table = compute_flux_table(load_template_set("bcnz2"), ["lsst_u", "lsst_r"], z)[:, :, :40]
    assert np.isfinite(table).all() and (table >= 0).all()
    u_over_r = (table[:, 0] / table[:, 1]).mean(1)  # (Z,) over the continua
    assert np.all(np.diff(u_over_r) < 0) and u_over_r[-1] < 1e-2 * u_over_r[0]


def test_a_band_redder_than_the_set_names_the_set_that_covers_it() -> None:
    with pytest.raises(ConfigError, match=r"'euclid_h'.*'bcnz2': template set 'kcorrect' covers"):
        check_bands_coverable(["subaru_i", "euclid_h"], 1.5, "bcnz2")


def test_a_set_starting_redward_of_the_lyman_limit_says_up_to_which_z(monkeypatch) -> None:
    uv = dataclasses.replace(set_info("kcorrect"), name="uv", version="uv-1", lambda_min=1200.0)
    monkeypatch.setitem(template_sets.SETS, "uv", uv)
    check_bands_coverable(["lsst_u"], 1.5, "uv")  # 3053 / 2.5 = 1221 A
    with pytest.raises(ConfigError, match=r"'lsst_u' \(3053-.*up to z = 1\.54"):
        check_bands_coverable(["lsst_u"], 3.0, "uv")
