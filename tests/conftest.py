"""Shared fixtures: fixed seeds, quiet progress bars, an isolated cache for tests that write one."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

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
