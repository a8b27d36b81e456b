"""Star-formation histories and dust laws against analytic answers."""

import numpy as np
from scipy import integrate

from deepz_core.sed import histories as pop

EDGES = np.concatenate([[0.0], np.logspace(6, 10.1, 40)])  # (A+1,) yr


def test_histories_are_normalised_and_vanish_before_formation() -> None:
    duration = np.array([3e8, 2e9, 1e10])
    tau = np.array([1e8, 1e9, 5e9])
    for mass in (
        pop.constant_sfh(EDGES, duration),
        pop.exponential_sfh(EDGES, duration, tau),
        pop.delayed_sfh(EDGES, duration, tau),
    ):
        np.testing.assert_allclose(mass.sum(axis=1), 1.0, rtol=1e-10)
        assert np.all(mass >= 0)
        assert np.all(mass[:, EDGES[:-1] >= duration[:, None][0]][0] == 0)


def test_delayed_history_matches_numerical_integral() -> None:
    duration, tau = np.array([4e9]), np.array([1.5e9])
    mass = pop.delayed_sfh(EDGES, duration, tau)[0]
    sfr = lambda age: (duration[0] - age) * np.exp(-(duration[0] - age) / tau[0])  # noqa: E731
    total = integrate.quad(sfr, 0, duration[0])[0]
    for k in (20, 30, 35):
        lo, hi = EDGES[k], min(EDGES[k + 1], duration[0])
        expected = integrate.quad(sfr, lo, hi)[0] / total if hi > lo else 0.0
        assert abs(mass[k] - expected) < 1e-6


def test_exponential_with_short_tau_forms_mass_at_the_start() -> None:
    duration = np.array([5e9])
    mass = pop.exponential_sfh(EDGES, duration, np.array([1e7]))[0]
    oldest = np.searchsorted(EDGES, duration[0]) - 1
    assert mass[oldest] > 0.99


def test_calzetti_colour_excess_definition() -> None:
    k = pop.calzetti_k(np.array([4400.0, 5500.0]))
    # E(B-V) = A_B - A_V: k(B) - k(V) ~ 1 (within the curve's 10% accuracy), k(V) ~ R_V = 4.05
    assert abs((k[0] - k[1]) - 1.0) < 0.12
    assert abs(k[1] - 4.05) < 0.15
    trans = pop.calzetti_transmission(np.array([5500.0]), np.array([0.0, 0.5]))
    assert trans[0, 0] == 1.0 and trans[1, 0] < 0.2
