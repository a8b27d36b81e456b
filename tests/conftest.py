"""Shared fixtures: fixed seeds, quiet progress bars, an isolated cache for tests that write one."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of `make test`'s test processes: one thread each
    torch.set_num_threads(1)
os.environ.setdefault("DEEPZ_QUIET", "1")
# Pretrained weights are cached across runs (deepz_core.training.pretrained); tests that want it opt in.
os.environ["DEEPZ_PRETRAIN_CACHE"] = "0"


@pytest.fixture(autouse=True)
def _fixed_seeds() -> None:
    np.random.seed(1234)  # noqa: NPY002 - seeds legacy global users (e.g. sklearn)
    torch.manual_seed(1234)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20201)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks and small tensors run faster on one torch thread, much faster on busy cores
    (no spin-waiting). Opt in per module: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory: pytest.TempPathFactory):
    """A 150-galaxy PAUS-like mock with single exposures, as a canonical FITS file (built once)."""
    from deepz_core.catalog.io import write_catalog
    from deepz_core.sed.bands import band_set
    from deepz_core.simulate import simulate

    path = tmp_path_factory.mktemp("cat") / "small.fits"
    write_catalog(simulate("paus-mock", 150, band_set("paus_cosmos"), 1), path)
    return path


TINY_TRAIN = dict(schedule=((1, 1e-3),), batch_size=40, repetitions=1, folds=2, device="cpu")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny finished run (seconds) on 80 synthetic galaxies; returns its folder."""
    from deepz_core.catalog.io import write_catalog
    from deepz_core.jobs.training_run import create_run, execute_run, run_config
    from tests.synthetic import TINY_MODEL, synthetic_catalog

    root = tmp_path_factory.mktemp("tiny")
    write_catalog(synthetic_catalog(80, 0, exposures=False), root / "train.fits")
    config = run_config(
        str(root / "train.fits"), pretrain="none", model=TINY_MODEL, train={**TINY_TRAIN, "seed": 2}
    )
    run = create_run(root / "run", config)
    execute_run(run)
    return run.path


@pytest.fixture(scope="session")
def sky_catalog(tmp_path_factory: pytest.TempPathFactory):
    """200 new synthetic galaxies (ids 101..300) on a 1 x 1 degree patch (ra, dec) with an
    ``objectId`` column, the first 3 without a usable reference flux (no p(z)), as Parquet;
    returns (Catalog, path)."""
    from deepz_core.catalog.io import write_catalog
    from tests.synthetic import synthetic_catalog

    cat = synthetic_catalog(200, 5, exposures=False, first_id=101)
    rng = np.random.default_rng(7)
    cat.extra["ra"] = rng.uniform(150.0, 151.0, 200)
    cat.extra["dec"] = rng.uniform(1.5, 2.5, 200)
    cat.extra["objectId"] = cat.ref_id + 10**15
    cat.flux[:3, -1] = np.nan  # subaru_i, the reference band
    path = tmp_path_factory.mktemp("sky") / "sky.parquet"
    write_catalog(cat, path)
    return cat, path
