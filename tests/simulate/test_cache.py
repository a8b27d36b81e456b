"""The simulation cache: keys by everything that determines a simulation, the SED family included."""

import numpy as np
import pytest

from deepz_core.catalog.io import read_catalog
from deepz_core.errors import ConfigError
from deepz_core.sed.bands import band_set
from deepz_core.simulate import cached_simulation, cached_simulation_path
from deepz_core.simulate.cache import DEMO

BANDS = band_set("paus_cosmos")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPZ_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_the_demo_file_name_is_the_one_before_families(cache) -> None:
    path = cached_simulation_path(DEMO["kind"], DEMO["n"], BANDS, DEMO["seed"])
    assert path.name == "paus-mock_n10000_s42_7a693d08152d19fe.fits"
    assert path == cached_simulation_path("paus-mock", 10_000, BANDS, 42, sed_family="sps")


def test_the_family_is_part_of_the_key_and_the_name(cache) -> None:
    sps = cached_simulation_path("paus-mock", 10_000, BANDS, 42)
    kc = cached_simulation_path("paus-mock", 10_000, BANDS, 42, sed_family="kcorrect")
    assert kc.name.startswith("paus-mock-kcorrect_n10000_s42_")
    assert kc.name.split("_")[-1] != sps.name.split("_")[-1]
    with pytest.raises(ConfigError, match="sed_family"):
        cached_simulation_path("lsst-deep", 100, BANDS, 1, sed_family="kcorrect")


def test_a_cached_family_is_simulated_once_and_read_back(cache) -> None:
    path = cached_simulation("paus-mock", 30, BANDS, 2, sed_family="kcorrect")
    cat = read_catalog(path)
    assert cat.meta["SEDFAM"] == "kcorrect" and cat.n_galaxies == 30
    stamp = path.stat().st_mtime_ns
    assert cached_simulation("paus-mock", 30, BANDS, 2, sed_family="kcorrect") == path
    assert path.stat().st_mtime_ns == stamp
    assert np.isfinite(cat.flux).all()


def test_a_simulation_another_process_wrote_meanwhile_is_no_error(cache, monkeypatch) -> None:
    """Review, tenth session: two runs with --pretrain auto could both find no cached file, and
    the second write was refused as an existing output (the key fixes the galaxies)."""
    from pathlib import Path

    path = cached_simulation("paus-mock", 20, BANDS, 3)
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda p: False if p == path else real_exists(p))
    assert cached_simulation("paus-mock", 20, BANDS, 3) == path  # written again, not refused
    assert read_catalog(path).n_galaxies == 20
