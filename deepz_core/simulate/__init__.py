"""Simulators: the E20 SPS pretraining prior and the PAUS-COSMOS-like observed mock (with a choice
of SED family, ``SED_FAMILIES``)."""

from deepz_core.simulate.cache import (
    KINDS,
    cached_simulation,
    cached_simulation_path,
    demo_catalog_path,
    simulate,
)
from deepz_core.simulate.families import SED_FAMILIES

__all__ = [
    "KINDS",
    "SED_FAMILIES",
    "cached_simulation",
    "cached_simulation_path",
    "demo_catalog_path",
    "simulate",
]
