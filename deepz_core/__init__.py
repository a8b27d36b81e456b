"""deepz: deep-learning photometric redshifts for galaxy surveys, a re-implementation and extension
of DEEPZ (Eriksen et al. 2020, MNRAS 497, 4565).

The public Python API::

    import deepz_core as dz
    cat = dz.read_catalog("w3.fits")            # or dz.Catalog.from_table(Table | DataFrame)
    run = dz.train(cat, out="runs/w3", preset="quick", pretrain="auto")
    run = dz.train("dp0.parquet", "runs/dp0", conventions={"flux_unit": "nJy"})  # survey spellings
    pz = run.predict(other)                      # astropy Table, one row per input row
    report = dz.evaluate(pz, profile="broad-band")  # thresholds of the survey (default: the run's)
    run = dz.load_run("runs/w3")                 # later, from another process or a Dask worker
    ens = dz.to_qp(pz)                           # a qp mixmod ensemble (qp-prob)
    run.predict("lsst.parquet", out="pz.hdf5")   # a qp file; .parquet/.fits/HATS carry qp metadata
    nz = dz.stacked_nz(pz, pz["odds"] > 0.5)     # n(z) of a selection: its stacked p(z)
    tomo = dz.tomographic_bins(pz, [0.2, 0.5, 0.8, 1.2])  # each photo-z bin's n(z)

Everything else lives in the subpackages (catalog, pz, nets, training, inference, simulate,
templatefit, evaluation, jobs, cli, ...); see docs/design.md.
"""

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.conventions import InputConventions
from deepz_core.catalog.io import read_catalog, write_catalog
from deepz_core.catalog.screen import FLAG_MEANINGS, PzFlag
from deepz_core.errors import (
    CatalogError,
    ConfigError,
    DeepzError,
    InUseError,
    OutputExistsError,
    TrainingError,
    TrainingWarning,
)
from deepz_core.evaluation.profiles import SurveyProfile
from deepz_core.evaluation.report import evaluate
from deepz_core.evaluation.survey import stacked_nz, tomographic_bins
from deepz_core.inference.qp_io import read_qp, to_qp
from deepz_core.jobs.run import Run, load_run, train
from deepz_core.simulate.cache import simulate as simulate_catalog
from deepz_core.version import VERSION

__version__ = VERSION

__all__ = [
    "Catalog",
    "CatalogError",
    "ConfigError",
    "DeepzError",
    "Exposures",
    "FLAG_MEANINGS",
    "InputConventions",
    "InUseError",
    "OutputExistsError",
    "PzFlag",
    "Run",
    "SurveyProfile",
    "TrainingError",
    "TrainingWarning",
    "evaluate",
    "load_run",
    "read_catalog",
    "read_qp",
    "simulate_catalog",
    "stacked_nz",
    "to_qp",
    "tomographic_bins",
    "train",
    "write_catalog",
]
