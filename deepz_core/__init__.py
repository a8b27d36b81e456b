"""deepz: deep-learning photometric redshifts for galaxy surveys, a re-implementation and extension
of DEEPZ (Eriksen et al. 2020, MNRAS 497, 4565).

The public Python API::

    import deepz_core as dz
    cat = dz.read_catalog("w3.fits")            # or dz.Catalog.from_table(Table | DataFrame)
    run = dz.train(cat, out="runs/w3", preset="quick", pretrain="auto")
    pz = run.predict(other)                      # astropy Table, one row per input row
    report = dz.evaluate(pz)
    run = dz.load_run("runs/w3")                 # later, from another process or a Dask worker

Everything else lives in the subpackages (catalog, pz, nets, training, inference, simulate,
templatefit, evaluation, jobs, cli, ...); see docs/design.md.
"""

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.io import read_catalog, write_catalog
from deepz_core.catalog.screen import FLAG_MEANINGS, PzFlag
from deepz_core.errors import CatalogError, ConfigError, DeepzError, InUseError, TrainingError
from deepz_core.evaluation.report import evaluate
from deepz_core.jobs.run import Run, load_run, train
from deepz_core.simulate.cache import simulate as simulate_catalog

__version__ = "0.2.0"

__all__ = [
    "FLAG_MEANINGS",
    "Catalog",
    "CatalogError",
    "ConfigError",
    "DeepzError",
    "Exposures",
    "InUseError",
    "PzFlag",
    "Run",
    "TrainingError",
    "evaluate",
    "load_run",
    "read_catalog",
    "simulate_catalog",
    "train",
    "write_catalog",
]
