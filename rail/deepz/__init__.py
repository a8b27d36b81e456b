"""deepz's RAIL stages (``pip install deepz[rail]``): ``DeepzInformer`` trains a deepz ensemble,
``DeepzEstimator`` predicts a qp mixmod p(z) for every input row. RAIL's ``import_and_attach_all``
finds them through this package; ceci pipelines import ``rail.estimation.algos.deepz``."""

from rail.estimation.algos.deepz import DeepzEstimator, DeepzInformer, DeepzModelHandle

__all__ = ["DeepzEstimator", "DeepzInformer", "DeepzModelHandle"]
