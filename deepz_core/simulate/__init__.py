"""Simulators: the E20 SPS pretraining prior and the PAUS-COSMOS-like observed mock."""

from deepz_core.simulate.cache import (
    KINDS,
    cached_simulation,
    cached_simulation_path,
    demo_catalog_path,
    simulate,
)

__all__ = ["KINDS", "cached_simulation", "cached_simulation_path", "demo_catalog_path", "simulate"]
