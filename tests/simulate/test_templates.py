"""The template-based pretraining simulation (deepz_core.simulate.templates, E20 Sec. 3.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepz_core.catalog.io import read_catalog, write_catalog
from deepz_core.cli.main import main
from deepz_core.errors import ConfigError
from deepz_core.sed.bands import band_set
from deepz_core.simulate import simulate
from deepz_core.simulate.sps import SPSConfig
from deepz_core.simulate.templates import TemplateSimConfig, simulate_templates
from deepz_core.templatefit.fit import TemplateFitConfig, fit_catalog

pytestmark = pytest.mark.usefixtures("one_thread")
BANDS = band_set("paus_cosmos")


@pytest.fixture(scope="module")
def sim():
    return simulate_templates(300, BANDS, seed=3)


def test_format_and_noise_model_match_the_sps_simulation(sim) -> None:
    cfg = SPSConfig()
    assert sim.meta == {"NOISELESS": True, "SIMKIND": "templates", "SEED": 3}
    assert sim.flux.shape == (300, 46) and np.all(sim.flux > 0)
    snr = sim.flux / sim.flux_error
    narrow = np.array([b.startswith("NB") for b in BANDS])
    assert np.allclose(snr[:, narrow], cfg.snr_narrow) and np.allclose(
        snr[:, ~narrow], cfg.snr_broad
    )
    z = sim.extra["ztrue"]
    assert z.min() >= cfg.z[0] and z.max() <= cfg.z[1] and np.allclose(sim.zspec, np.round(z, 3))
    i_mag = 23.9 - 2.5 * np.log10(sim.flux[:, BANDS.index("subaru_i")])
    assert (
        np.allclose(i_mag, sim.mag)
        and cfg.mag_i[0] <= sim.mag.min() <= sim.mag.max() <= cfg.mag_i[1]
    )
    ratio = sim.flux / sim.flux[:, [BANDS.index("subaru_i")]]
    assert np.all(np.abs(ratio) <= cfg.max_colour)


def test_seeded_and_written_like_any_simulation(sim, tmp_path: Path) -> None:
    again = simulate("templates", 300, BANDS, seed=3)
    assert np.array_equal(again.flux, sim.flux)
    assert not np.array_equal(simulate_templates(50, BANDS, seed=4).flux, sim.flux[:50])
    write_catalog(sim, tmp_path / "t.fits")
    back = read_catalog(tmp_path / "t.fits")
    assert back.meta["NOISELESS"] is True and np.allclose(back.flux, sim.flux)
    out = tmp_path / "cli.fits"
    assert (
        main(["simulate", "--kind", "templates", "--n", "20", "--bands", "sdss", "--out", str(out)])
        == 0
    )
    assert read_catalog(out).bands == band_set("sdss")


def test_colours_span_the_template_range(sim) -> None:
    """Blue (young, line-emitting) and red (old, dusty) galaxies both occur."""
    ub = sim.flux[:, BANDS.index("cfht_u")] / sim.flux[:, BANDS.index("subaru_z")]
    assert np.percentile(ub, 10) < 0.05 and np.percentile(ub, 90) > 0.3  # SPS sim: 0.04, 0.33


def test_the_template_fit_recovers_simulated_redshifts(sim) -> None:
    cat = sim.select(np.arange(40))
    noisy = cat.flux + cat.flux_error * np.random.default_rng(0).standard_normal(cat.flux.shape)
    cat = type(cat)(cat.ref_id, cat.bands, noisy, cat.flux_error, cat.zspec, cat.mag)
    t = fit_catalog(
        cat, TemplateFitConfig(dz=0.005, top_stride=32, coarse_stride=4), calibrate=False
    )
    dz = np.abs(np.asarray(t["zphot"]) - cat.zspec) / (1 + cat.zspec)
    assert np.mean(dz < 0.02) >= 0.85


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ConfigError, match="ebv"):
        TemplateSimConfig(ebv=(0.5, 0.1))
    with pytest.raises(ConfigError, match="max_seds"):
        TemplateSimConfig(max_seds=0)
    for seds in ((), (0, 0), (8,)):
        with pytest.raises(ConfigError, match="seds"):
            TemplateSimConfig(seds=seds)
    with pytest.raises(ConfigError, match="max_seds"):
        TemplateSimConfig(seds=(0, 1), max_seds=3)


def test_seds_restricts_the_galaxies_to_the_chosen_continua() -> None:
    from deepz_core.sed.template_sets import flux_table

    cfg = TemplateSimConfig(ebv=(0.0, 0.0), max_seds=1, ew_oii_max=0.0, seds=(2,))
    cat = simulate_templates(20, BANDS, seed=5, config=cfg)
    z = cat.extra["ztrue"]
    model = np.stack([flux_table(BANDS, z[i : i + 1])[0, :, 2] for i in range(len(z))])  # (N, B)
    ratio = cat.flux / model  # one SED, no dust, no lines: a single scale per galaxy
    np.testing.assert_allclose(ratio / ratio[:, :1], 1.0, rtol=1e-3)
    with pytest.raises(ConfigError, match="n must be"):
        simulate_templates(0, BANDS, 1)
