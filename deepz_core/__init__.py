"""deepz: deep-learning photometric redshifts (re-implementation of DEEPZ, Eriksen et al. 2020)."""

__version__ = "0.1.0"
