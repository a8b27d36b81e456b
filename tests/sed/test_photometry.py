"""Synthetic photometry against analytic answers."""

import numpy as np
import pytest

from deepz_core.sed.bands import band_set, get_band
from deepz_core.sed.photometry import BandPhotometry
from deepz_core.sed.ssp import log_grid


@pytest.fixture(scope="module")
def phot() -> BandPhotometry:
    wav = log_grid()
    return BandPhotometry(band_set("paus_cosmos") + band_set("sdss"), wav[wav < 12000])


def test_flat_fnu_spectrum_gives_equal_ab_fluxes_at_any_redshift(phot: BandPhotometry) -> None:
    wav = log_grid()[: phot.n_rest]
    spectrum = (1.0 / wav**2)[None, :].repeat(3, axis=0)  # f_nu constant <=> f_lambda ~ lambda^-2
    z = np.array([0.0, 0.37, 1.2])
    flux = phot.fluxes(spectrum.astype(np.float32), z)
    # an AB-flat source has the same flux in every band (up to the common (1+z) dimming)
    rel = flux / flux[:, :1]
    np.testing.assert_allclose(rel, 1.0, rtol=5e-3)


def test_redshifted_line_lands_in_its_narrow_band_only(phot: BandPhotometry) -> None:
    wav = log_grid()[: phot.n_rest]
    spectrum = np.zeros((1, len(wav)), dtype=np.float32)
    spectrum[0, np.argmin(np.abs(wav - 5006.8))] = 1.0
    z = np.array([6450.0 / 5006.8 - 1.0])  # [OIII] 5007 at the centre of NB645
    flux = phot.fluxes(spectrum, z)[0]
    narrow = [i for i, b in enumerate(phot.bands) if get_band(b).is_narrow]
    lit = [phot.bands[i] for i in narrow if flux[i] > 1e-3 * flux.max()]
    assert lit == ["NB645"]
