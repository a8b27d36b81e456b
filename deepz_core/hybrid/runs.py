"""A run's combination with the template fit: fitted once on its out-of-fold galaxies, stored in the
run folder, applied to any catalogue (beyond E20).

``fit_hybrid`` (``deepz combine``, ``train --templates``, ``Run.combine``):
1. the run's networks predict its training catalogue raw (uncalibrated), each training galaxy by
   the networks that never saw it; the template fit (set ``template_set``) fits every galaxy on the
   run's p(z) grid, its zero-points calibrated on the spec-z galaxies (E20 App. A; one number per
   band from thousands of galaxies, the only place a galaxy's own spec-z enters its combination)
   and stored;
2. the exponents (a, b) of p_net^a p_tf^b are chosen per half magnitude on the out-of-fold spec-z
   galaxies (``pz.pooling``), cross-fitted like the PIT calibration: the galaxies are cut into
   CROSS_FOLDS hash folds of ref_id, fold k is pooled with exponents chosen without it (its
   predictions, its metrics), every other galaxy with the exponents chosen on all;
3. the pooled PITs are calibrated (``fit_combination_calibration``, cross-fitted the same way;
   its magnitude bins broken where the exponents change, as the p(z) jump there); the
   calibrated products are those of g(F(z)) itself (``combine.calibrated_products``), also where
   the pooled p(z) is a few grid steps wide (the template fit's at the bright end);
4. ``hybrid.json`` (template set, zero-points, exponents, calibration, metrics of network, template
   fit and combination per half magnitude) and ``hybrid_predictions.fits`` (the training
   catalogue's combined predictions, one row per catalogue row) are written atomically.

``predict_hybrid`` applies it to a catalogue: the run's networks (raw), the template fit with the
stored zero-points, the stored exponents and calibration; a run band the catalogue lacks or has no
value of is imputed by the networks (one warning, BAND_MISSING) and not fitted by the template fit
(the fit of the catalogue without it). The template fit costs ~100 galaxies/s on
2 CPU cores, the networks thousands per second: the network-only prediction is the fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table
from torch import Tensor

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import Features
from deepz_core.catalog.io import read_catalog
from deepz_core.catalog.screen import PzFlag, UnitCheck
from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write_json, check_outputs, jsonable, read_json_object
from deepz_core.hybrid.combine import (
    chunked_loglik,
    network_log_pz,
    pooled_products,
    templatefit_log_pz,
)
from deepz_core.hybrid.pool import fit_combination_pool_scale
from deepz_core.inference.calibrate import (
    CROSS_FOLDS,
    MIN_GALAXIES,
    RunCalibration,
    calibration_fold,
    fit_run_calibration,
    heldout_stage_from_table,
    load_calibration,
)
from deepz_core.inference.predict import (
    galaxy_mags,
    network_products,
    predictions_table,
    table_format,
    write_table,
)
from deepz_core.inference.provenance import provenance
from deepz_core.inference.stream import carried_columns
from deepz_core.pz import metrics
from deepz_core.pz.calibration import (
    POOL_MIN_PER_BIN,
    PitTransform,
    PoolScale,
    half_mag_edges,
    pool_subset,
)
from deepz_core.pz.pooling import PoolingWeights, default_candidates, fit_pooling
from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir
from deepz_core.sed.template_sets import TEMPLATE_SETS
from deepz_core.templatefit.calibration import (
    check_bands,
    empty_bands,
    robust_coadds,
    without_bands,
)
from deepz_core.templatefit.config import TemplateFitConfig
from deepz_core.templatefit.fit import fit_catalog, fit_seconds
from deepz_core.training.config import load_run_config, run_pz_config

HYBRID_FILE = "hybrid.json"
HYBRID_PREDICTIONS = "hybrid_predictions.fits"
FIT_BLOCK = 5_000  # galaxies per block of (N, G) float64 log p(z) (fitting and predicting)
VERSION = 1
# the pooled p(z) change shape from one half magnitude to the next (the exponents do), so their
# calibration follows the magnitude more finely than the network's (measured: cross-fitted PIT KS
# 0.0052 with 1000 galaxies per bin, 0.0039 with 300, demo mock; one calibration per exponent bin,
# constant across it, 0.0053; docs/benchmarks.md), and its bins break where the exponents change
# (``fit_combination_calibration``); smoothing across magnitude, as for the networks, changed
# nothing measurable (a few bins between two breaks)
CALIBRATION_BINS = {"min_per_bin": 300, "max_bins": 12}
Log = Callable[[str], None]


@dataclass(frozen=True)
class Hybrid:
    """What ``hybrid.json`` holds: the template set and the zero-points (B,) of the run's bands,
    the exponents fitted on all out-of-fold galaxies (``weights``) and cross-fitted (``folds``),
    the calibration of the pooled p(z) (None: raw) and the fit's ``summary``."""

    template_set: str
    bands: tuple[str, ...]
    zero_points: np.ndarray
    weights: PoolingWeights
    folds: tuple[PoolingWeights, ...]
    calibration: RunCalibration | None
    summary: dict[str, Any]

    def exponents(
        self, mag: np.ndarray, ref_id: np.ndarray, training: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) (N,) of each galaxy: the cross-fitted exponents of its fold where ``training``
        (an out-of-fold training galaxy), else those fitted on all."""
        a, b = self.weights.at(mag)
        fold = calibration_fold(ref_id, len(self.folds))
        for k, w in enumerate(self.folds):
            rows = training & (fold == k)
            if rows.any():
                a[rows], b[rows] = w.at(np.asarray(mag)[rows])
        return a, b

    def zero_points_of(self, bands: tuple[str, ...]) -> np.ndarray:
        """(B,) zero-points of ``bands``, matched by name: hybrid.json keeps them per band, its
        keys sorted, not in the catalogue's order."""
        by_band = dict(zip(self.bands, map(float, self.zero_points), strict=True))
        missing = [b for b in bands if b not in by_band]
        if missing:
            raise ConfigError(f"{HYBRID_FILE}: no zero-points of bands {missing}")
        return np.asarray([by_band[b] for b in bands], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``hybrid.json`` (zero-points per band name)."""
        return {
            "version": VERSION,
            "template_set": self.template_set,
            "zero_points": dict(zip(self.bands, map(float, self.zero_points), strict=True)),
            "weights": self.weights.to_dict(),
            "folds": [w.to_dict() for w in self.folds],
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "summary": self.summary,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Hybrid:
        """The combination from its ``hybrid.json`` document; ConfigError naming the file when
        damaged or of another version."""
        try:
            if int(doc["version"]) != VERSION:
                raise ConfigError(f"{HYBRID_FILE}: unknown version {doc['version']!r}")
            cal = doc["calibration"]
            return cls(
                template_set=str(doc["template_set"]),
                bands=tuple(doc["zero_points"]),
                zero_points=np.asarray(list(doc["zero_points"].values()), dtype=np.float64),
                weights=PoolingWeights.from_dict(doc["weights"]),
                folds=tuple(PoolingWeights.from_dict(d) for d in doc["folds"]),
                calibration=None if cal is None else RunCalibration.from_dict(cal),
                summary=dict(doc["summary"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ConfigError(f"{HYBRID_FILE}: not a stored combination ({exc!r})") from None


def load_hybrid(run_path: Path | str) -> Hybrid | None:
    """The run's combination with the template fit, or None when it has none."""
    path = Path(run_path) / HYBRID_FILE
    if not path.exists():
        return None
    return Hybrid.from_dict(read_json_object(path, "combination with the template fit"))


def save_hybrid(run_path: Path | str, hybrid: Hybrid) -> Path:
    """Write the run's ``hybrid.json`` (atomically; NaN written as null)."""
    return atomic_write_json(Path(run_path) / HYBRID_FILE, jsonable(hybrid.to_dict()))


def calibrate_hybrid_on(
    run_dir: Path | str,
    catalog: Catalog,
    workers: int = 2,
    device: str = "cpu",
    source: str | None = None,
) -> Hybrid:
    """The run's combination with its calibration of new galaxies fitted on the held-out spec-z
    galaxies of ``catalog`` (``inference.calibrate.heldout_stage_from_table``), written to
    ``hybrid.json``; the out-of-fold calibration is unchanged. ConfigError for a run without a
    calibrated combination."""
    hybrid = load_hybrid(run_dir)
    if hybrid is None or hybrid.calibration is None:
        raise ConfigError(
            f"run {Path(run_dir).name} has no calibrated combination with the template fit: run "
            f"`deepz combine --run {run_dir}` first"
        )
    table = predict_hybrid(
        run_dir, catalog, workers=workers, hybrid=hybrid, calibrate=False, device=device
    )
    cal = heldout_stage_from_table(hybrid.calibration, table, source, hybrid.weights.breaks())
    hybrid = replace(hybrid, calibration=cal)
    save_hybrid(run_dir, hybrid)
    return hybrid


def hybrid_predictions_file(run_path: Path | str) -> Path | None:
    """The run's combined out-of-fold predictions (``hybrid_predictions.fits``: the training
    catalogue, one row per catalogue row, with ``zphot_net``, ``zphot_tf``...), None when the run
    has no combination."""
    path = Path(run_path) / HYBRID_PREDICTIONS
    return path if path.is_file() and (Path(run_path) / HYBRID_FILE).is_file() else None


COMBINATION_FIXED_SECONDS = 10.0  # the networks' raw predictions, exponents and calibration
COMBINATION_FIT_SHARE = 1.3  # the zero-points' fits at the spec-z on top of the template fit


def combination_seconds(n_galaxies: int, pz: PzConfig, template_set: str = "bcnz2") -> float:
    """About how many wall seconds ``fit_hybrid`` takes for a training catalogue of
    ``n_galaxies`` on the p(z) grid ``pz`` on a 2-core CPU (``templatefit.fit.fit_seconds`` and
    the steps around it). Measured on 3,000 galaxies (docs/benchmarks.md): PAUS-like (z < 2)
    58 s with bcnz2 and 30 s with kcorrect, LSST-like (z < 3) 108 s with bcnz2; this model
    gives 62, 27 and 83 s."""
    cfg = templatefit_config(check_template_set(template_set), pz)
    return COMBINATION_FIXED_SECONDS + COMBINATION_FIT_SHARE * fit_seconds(n_galaxies, cfg)


def check_template_set(name: str) -> str:
    """``name`` when it is a known template set, else a ConfigError listing them."""
    if name not in TEMPLATE_SETS:
        raise ConfigError(f"templates must be one of {sorted(TEMPLATE_SETS)}, got {name!r}")
    return name


def check_combinable(bands: tuple[str, ...], pz: PzConfig, template_set: str) -> None:
    """One-line ConfigError, before any training, when a run of ``bands`` on grid ``pz`` could
    not be combined with the template fit of ``template_set`` (a band without a filter curve, or
    one the set does not cover over the grid's redshifts): the message names the way out."""
    check_template_set(template_set)
    try:
        check_bands(bands, templatefit_config(template_set, pz))
    except ConfigError as exc:
        raise ConfigError(
            f"templates {template_set!r} cannot be combined with this catalogue on z "
            f"{pz.z_min:g}-{pz.z_max:g}: {exc}"
        ) from None


def templatefit_config(template_set: str, pz: PzConfig) -> TemplateFitConfig:
    """The template fit on the run's p(z) grid, fitting every redshift of it."""
    return TemplateFitConfig(template_set=template_set, z_min=pz.z_min, z_max=pz.z_max, pz=pz)


def fit_hybrid(
    run_dir: Path | str,
    template_set: str = "bcnz2",
    calibrate: bool = True,
    workers: int = 2,
    log: Log | None = None,
    stop: Callable[[], None] | None = None,
    catalog: Catalog | None = None,
) -> Hybrid:
    """Fit the run's combination with the template fit (module doc) and write ``hybrid.json`` and
    ``hybrid_predictions.fits`` into the run folder; returns it. ``stop`` is called between the
    template fit's chunks (``fit_catalog``): what it raises (a cancel) ends the fit before anything
    is written. ``catalog``: the run's training catalogue as training read it (its catalogue and
    exposures files), so that the combination fits the galaxies the networks trained on even if
    the files changed since; None: read again."""
    check_template_set(template_set)
    run = RunDir(Path(run_dir))
    say = log or run.log
    config = run.config()
    pz = run_pz_config(run)
    cat = read_catalog(config["catalog"], config.get("exposures")) if catalog is None else catalog
    own = UnitCheck(shifted=False)  # the training catalogue: no unit's shift from itself
    cat, features, products, oof = network_products(
        run.path, cat, pz=pz, calibrate=False, check=own
    )
    say(f"combination: template fit ({template_set}) of {features.n} galaxies")
    cfg = templatefit_config(template_set, pz)
    tf = _templatefit(cat, features, cfg, None, workers, stop=stop)
    zero_points = np.asarray([tf.meta["zero_points"][b] for b in cat.bands], dtype=np.float64)
    mag = galaxy_mags(features)
    rows = _exponent_rows(features, mag, products, tf["pz"], oof)
    weights, folds = _fit_exponents(products, tf["pz"], features, mag, rows, pz)
    hybrid = Hybrid(template_set, tuple(cat.bands), zero_points, weights, folds, None, {})
    if calibrate:
        cal = _calibration(run, hybrid, products, tf["pz"], features, mag, rows, oof, pz, say)
        hybrid = replace(hybrid, calibration=cal)
    out = combined_products(hybrid, products, tf["pz"], features, oof, pz)
    table = _table(features, out, products, tf, oof, cat)
    net = {**products, "pit": _network_pit(run, features, products, oof)}
    hybrid = replace(hybrid, summary=compare(features, rows, net, tf, out))
    write_table(table, run.file(HYBRID_PREDICTIONS), provenance(run.path, config.get("catalog")))
    save_hybrid(run.path, hybrid)
    o = hybrid.summary["overall"]
    say(
        "combination out of fold: sigma68 network {:.4f}, template fit {:.4f}, combined {:.4f}".format(
            o["network"]["sigma68"], o["templatefit"]["sigma68"], o["combined"]["sigma68"]
        )
    )
    return hybrid


def _exponent_rows(
    features: Features,
    mag: np.ndarray,
    net: dict[str, np.ndarray],
    tf_pz: np.ndarray,
    oof: np.ndarray,
) -> np.ndarray:
    """(n,) indices of the galaxies the exponents are fitted on: out of fold (``oof`` (N,)), with
    a spec-z, a magnitude ``mag`` (N,), the networks' zphot and the template fit's p(z) ``tf_pz``
    (N, G); ConfigError with fewer than MIN_GALAXIES."""
    use = oof & np.isfinite(features.zspec) & np.isfinite(mag) & np.isfinite(net["zphot"])
    use &= has_templatefit_pz(tf_pz)
    if use.sum() < MIN_GALAXIES:
        raise ConfigError(
            f"combination: {int(use.sum())} out-of-fold galaxies with a spec-z and a magnitude, "
            f"need >= {MIN_GALAXIES}"
        )
    return np.flatnonzero(use)


def _calibration(
    run: RunDir,
    hybrid: Hybrid,
    net: dict[str, np.ndarray],
    tf_pz: np.ndarray,
    features: Features,
    mag: np.ndarray,
    rows: np.ndarray,
    oof: np.ndarray,
    pz: PzConfig,
    say: Log,
) -> RunCalibration:
    """The combination's calibration, fitted on the raw pooled PITs of the galaxies ``rows``
    (``fit_combination_calibration``) with its pool scale (``_pool_scale``); logged."""
    a, b = hybrid.exponents(mag, features.ref_id, oof)
    raw = _pooled(net, tf_pz, rows, a, b, pz, features.zspec)
    cal = fit_combination_calibration(raw["pit"], mag[rows], features.ref_id[rows], hybrid.weights)
    s = cal.summary
    say(
        f"combination calibrated on {s['n']} galaxies: PIT KS {s['pit_ks_before']:.4f} -> "
        f"{s['pit_ks_after']:.4f} (cross-fitted; magnitude bins broken at iAB "
        f"{', '.join(f'{b:g}' for b in s['breaks']) or 'none'})"
    )
    pool = _pool_scale(run, features, net, tf_pz, hybrid.weights, cal, oof, say)
    return cal.with_pool(pool)


def fit_combination_calibration(
    pit: np.ndarray, mag: np.ndarray, ref_id: np.ndarray, weights: PoolingWeights
) -> RunCalibration:
    """The combination's out-of-fold calibration (``fit_run_calibration``, CALIBRATION_BINS) from
    the raw pooled PITs, magnitudes and ref_ids (N,) of out-of-fold galaxies with a spec-z, its
    magnitude bins broken where the exponents ``weights`` change (``PoolingWeights.breaks``), as
    the held-out stage's are: the pooled p(z) jump there, and a calibration interpolated across
    a jump misses both sides (docs/benchmarks.md, "The combination's out-of-fold calibration
    broken at its exponent edges"). The breaks are listed in its summary."""
    breaks = weights.breaks()
    cal = fit_run_calibration(pit, mag, ref_id, breaks=breaks, **CALIBRATION_BINS)
    return replace(cal, summary={**cal.summary, "breaks": [float(b) for b in breaks]})


def _pool_scale(
    run: RunDir,
    features: Features,
    net: dict[str, np.ndarray],
    tf_pz: np.ndarray,
    weights: PoolingWeights,
    cal: RunCalibration,
    oof: np.ndarray,
    say: Log,
) -> PoolScale | None:
    """The combination's pool scale (``hybrid.pool``), fitted on the unflagged galaxies of the
    training catalogue no network trained on, without their redshifts; None (logged) with one
    fold or too few of them: new galaxies then get the out-of-fold calibration unchanged."""
    train = load_run_config(run).train
    mag = galaxy_mags(features)
    new = ~oof & ~np.isfinite(features.zspec) & (features.flags == 0)
    new &= np.isfinite(mag) & np.isfinite(net["zphot"]) & has_templatefit_pz(tf_pz)
    rows = np.flatnonzero(new)
    if train.folds < 2 or len(rows) < POOL_MIN_PER_BIN:
        say(
            f"combination: no pool scale ({len(rows)} galaxies without a spec-z, need "
            f"{POOL_MIN_PER_BIN}): new galaxies get the out-of-fold calibration, which makes "
            "their combined p(z) too broad"
        )
        return None
    rows = pool_subset(rows)  # the fit's own subset, taken here: only its log p(z) are made
    sub = {k: net[k][rows] for k in ("weights", "means", "stds")}
    folds = (train.repetitions, train.folds)
    log_tf = templatefit_log_pz(tf_pz[rows])
    pool = fit_combination_pool_scale(
        sub, log_tf, weights, cal.full, folds, mag[rows], run_pz_config(run)
    )
    say(
        f"combination pool scale on {pool.n_fit} galaxies without a spec-z: "
        + ", ".join(
            f"iAB {m:.2f}: {v:.3f}" for m, v in zip(pool.mag_centres, pool.scale, strict=True)
        )
    )
    return pool


def _templatefit(
    cat: Catalog,
    features: Features,
    cfg: TemplateFitConfig,
    zero_points: np.ndarray | None,
    workers: int,
    pool: Executor | None = None,
    stop: Callable[[], None] | None = None,
    leave_out: list[str] | tuple[str, ...] = (),
) -> Table:
    """The template fit, p(z) on the grid (``pz``) included, of the featured galaxies of ``cat``;
    the bands the photometric screen found unusable (NaN, placeholders, 1e30, error <= 0, far
    outside the training colours), which the networks impute, are left out of its chi2 (NaN), so
    junk cannot make it confident; the bands ``leave_out`` (none of their values usable) are not
    fitted at all, as if ``cat`` lacked them. ``zero_points`` (B,) of ``cat.bands``, None:
    calibrated on the spec-z galaxies. No featured galaxy: an empty table. ``stop``: as in
    ``fit_catalog``."""
    if features.n == 0:
        empty = np.zeros(0)
        pz = np.zeros((0, len(cfg.pz.grid())), dtype=np.float32)
        return Table({"zphot": empty, "odds": empty, "chi2": empty, "pz": pz})
    sub = robust_coadds(cat.select(features.rows), cfg)  # coadds first: then no exposures to
    sub = replace(sub, flux=np.where(features.usable, sub.flux, np.nan))  # rebuild a masked band
    if zero_points is not None:
        zero_points = np.asarray(zero_points)[[b not in leave_out for b in sub.bands]]
    return fit_catalog(
        without_bands(sub, leave_out),
        cfg,
        zero_points=zero_points,
        grid=True,
        workers=workers,
        pool=pool,
        stop=stop,
    )


def _log_pz(
    net: dict[str, np.ndarray], tf_pz: np.ndarray, rows: np.ndarray, pz: PzConfig
) -> tuple[Tensor, Tensor]:
    """log p(z) (n, G) of the networks (mixture columns ``net``, (N, C) each) and of the template
    fit (its ``pz`` column (N, G)) of the galaxies ``rows`` (n,)."""
    w, mu, sd = (net[k][rows] for k in ("weights", "means", "stds"))
    return network_log_pz(w, mu, sd, pz), templatefit_log_pz(tf_pz[rows])


def _blocks(n: int) -> list[slice]:
    """Positions 0..n-1 in blocks of at most FIT_BLOCK (one empty block when n = 0): the (n, G)
    float64 log p(z) of a whole training catalogue would take ~12 kB per galaxy each."""
    return [slice(s, s + FIT_BLOCK) for s in range(0, n, FIT_BLOCK)] or [slice(0, 0)]


def _fit_exponents(
    net: dict[str, np.ndarray],
    tf_pz: np.ndarray,
    features: Features,
    mag: np.ndarray,
    rows: np.ndarray,
    pz: PzConfig,
) -> tuple[PoolingWeights, tuple[PoolingWeights, ...]]:
    """Exponents fitted on all ``rows`` and on each cross-fitting fold's complement."""
    candidates = default_candidates()
    loglik = np.concatenate(
        [
            chunked_loglik(*_log_pz(net, tf_pz, r, pz), features.zspec[r], pz, candidates)
            for r in (rows[p] for p in _blocks(len(rows)))
        ],
        axis=1,
    )
    edges = half_mag_edges(mag[rows])
    fold = calibration_fold(features.ref_id[rows], CROSS_FOLDS)
    folds = tuple(
        fit_pooling(loglik[:, fold != k], mag[rows][fold != k], candidates, edges)
        for k in range(CROSS_FOLDS)
    )
    return fit_pooling(loglik, mag[rows], candidates, edges), folds


def _pooled(
    net: dict[str, np.ndarray],
    tf_pz: np.ndarray,
    rows: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    pz: PzConfig,
    zspec: np.ndarray,
    transform: PitTransform | None = None,
) -> dict[str, np.ndarray]:
    """Pooled products (n,) / (n, C) of the galaxies ``rows`` (n,) of the networks' mixtures
    ``net`` (N, C) and the template fit's p(z) ``tf_pz`` (N, G) with exponents ``a``, ``b`` and
    spec-z ``zspec`` (N,), calibrated by ``transform`` of those n galaxies (None: raw), in blocks
    of FIT_BLOCK galaxies."""
    parts = []
    for p in _blocks(len(rows)):
        r = rows[p]
        tr = None if transform is None else transform.take(p)
        parts.append(pooled_products(*_log_pz(net, tf_pz, r, pz), a[r], b[r], pz, zspec[r], tr))
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def combined_products(
    hybrid: Hybrid,
    net: dict[str, np.ndarray],
    tf_pz: np.ndarray,
    features: Features,
    oof: np.ndarray,
    pz: PzConfig,
) -> dict[str, np.ndarray]:
    """Combined products (N,) / (N, C) of every featured galaxy: the networks' mixtures ``net``
    and the template fit's p(z) ``tf_pz`` (N, G) pooled with the stored exponents and calibrated
    by the stored calibration (when there is one). NaN where the networks or the template fit
    give no p(z) (a NaN row of ``tf_pz``): the exponents and calibration were fitted for the
    pair, and with the bands the networks use a galaxy they predict always has enough for the
    fit (``screen_template_fit``), so no network-only fallback is needed."""
    mag = galaxy_mags(features)
    a, b = hybrid.exponents(mag, features.ref_id, oof)
    rows = np.flatnonzero(features.predictable & has_templatefit_pz(tf_pz))
    transform = None
    if hybrid.calibration is not None:
        transform = hybrid.calibration.transform(mag, features.ref_id, oof)
        transform = transform.take(torch.as_tensor(rows))
    out = _pooled(net, tf_pz, rows, a, b, pz, features.zspec, transform)
    return _spread(out, rows, features.n)


def has_templatefit_pz(tf_pz: np.ndarray) -> np.ndarray:
    """(N,) bool: rows of the template fit's p(z) (N, G) that hold one (NO_PZ rows are NaN)."""
    return np.isfinite(np.asarray(tf_pz)).all(1)


def _spread(products: dict[str, np.ndarray], rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Products (n_rows,) / (n_rows, C) of positions ``rows`` laid into (n,) / (n, C) NaN arrays."""
    out = {}
    for name, v in products.items():
        full = np.full((n, *v.shape[1:]), np.nan, dtype=np.result_type(v.dtype, np.float32))
        full[rows] = v
        out[name] = full
    return out


def _table(
    features: Features,
    out: dict[str, np.ndarray],
    net: dict[str, np.ndarray],
    tf: Table,
    oof: np.ndarray,
    cat: Catalog,
) -> Table:
    """deepz's prediction columns of the combination, plus each estimator's zphot and ODDS and the
    catalogue's coordinates (ra/dec..., as the networks' predictions carry them)."""
    extra = {
        "out_of_fold": oof,
        "zphot_net": net["zphot"],
        "odds_net": net["odds"],
        "zphot_tf": np.asarray(tf["zphot"], dtype=np.float64),
        "odds_tf": np.asarray(tf["odds"], dtype=np.float64),
        "chi2_tf": np.asarray(tf["chi2"], dtype=np.float64),
    }
    if "flag" in tf.colnames:  # a galaxy the template fit gives no p(z) has none here either
        lost = np.asarray(tf["flag"]) & (PzFlag.NO_PZ | PzFlag.TOO_FEW_BANDS)
        features = replace(features, flags=features.flags | lost.astype(np.int32))
    table = predictions_table(features, out, extra, cat)
    if len(table) == cat.n_galaxies:
        for name, values in carried_columns(cat, np.arange(cat.n_galaxies), ()).items():
            if name not in table.colnames:
                table[name] = values
    table.meta["METHOD"] = "deepz+templatefit"
    return table


def _network_pit(
    run: RunDir, features: Features, net: dict[str, np.ndarray], oof: np.ndarray
) -> np.ndarray:
    """(N,) PIT of the networks as the run reports it: calibrated by the run's calibration when it
    has one (the raw PIT otherwise), so the summary compares like with like."""
    cal = load_calibration(run.path)
    if cal is None:
        return net["pit"]
    transform = cal.transform(galaxy_mags(features), features.ref_id, oof)
    pit = torch.as_tensor(np.nan_to_num(np.asarray(net["pit"], dtype=np.float64)))[:, None]
    return np.where(np.isfinite(net["pit"]), transform.forward(pit)[:, 0].numpy(), np.nan)


def compare(
    features: Features,
    rows: np.ndarray,
    net: dict[str, np.ndarray],
    tf: Table,
    out: dict[str, np.ndarray],
) -> dict[str, Any]:
    """sigma68, strict (|dz| > 0.02, E20 eq. 5) and catastrophic (|dz| > 0.15) outlier fractions
    and PIT KS of the network, the template fit and the combination over the out-of-fold spec-z
    galaxies ``rows``, overall and per half magnitude."""
    zs = features.zspec[rows]
    mag = galaxy_mags(features)[rows]
    estimators = {
        "network": (net["zphot"][rows], net["pit"][rows]),
        "templatefit": (np.asarray(tf["zphot"], np.float64)[rows], np.asarray(tf["pit"])[rows]),
        "combined": (out["zphot"][rows], out["pit"][rows]),
    }
    edges = half_mag_edges(mag)

    def scores(select: np.ndarray) -> dict[str, dict[str, float]]:
        res = {}
        for name, (zp, pit) in estimators.items():
            d = metrics.dz(zp[select], zs[select])
            res[name] = {
                "sigma68": metrics.sigma68(d) if len(d) else float("nan"),
                "outliers": metrics.outlier_fraction(d) if len(d) else float("nan"),
                "catastrophic": metrics.outlier_fraction(d, metrics.CATASTROPHIC_THRESHOLD)
                if len(d)
                else float("nan"),
                "pit_ks": metrics.pit_ks(np.clip(pit[select], 0, 1)).statistic
                if len(d) > 1
                else float("nan"),
            }
        return res

    per = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = (mag >= lo) & ((mag < hi) if hi < edges[-1] else (mag <= hi))
        per.append({"lo": float(lo), "hi": float(hi), "n": int(s.sum()), **scores(s)})
    return {
        "n": len(rows),
        "overall": scores(np.ones(len(rows), bool)),
        "per_magnitude": per,
        "note": "out-of-fold spec-z galaxies; each combined by exponents and a calibration "
        "fitted without it",
    }


def summary_outliers_at(summary: dict[str, Any], table: Table, threshold: float) -> dict[str, Any]:
    """``summary`` (``compare``'s) with its ``outliers`` of every estimator counted at
    |dz| > ``threshold`` instead of E20's strict 0.02, from the combined predictions ``table``
    (``hybrid_predictions.fits``: zphot_net, zphot_tf, zphot, zspec, mag, out_of_fold), in the
    summary's magnitude bins: a broad-band run's profile counts outliers at 0.15."""
    zs = np.asarray(table["zspec"], np.float64)
    rows = np.asarray(table["out_of_fold"], bool) & np.isfinite(zs)
    mag = np.asarray(table["mag"], np.float64)[rows]
    zs = zs[rows]
    columns = {"network": "zphot_net", "templatefit": "zphot_tf", "combined": "zphot"}
    d = {k: metrics.dz(np.asarray(table[c], np.float64)[rows], zs) for k, c in columns.items()}

    def count(scores: dict[str, Any], select: np.ndarray) -> dict[str, Any]:
        out = dict(scores)
        for name, dz in d.items():
            picked = dz[select]
            frac = metrics.outlier_fraction(picked, threshold) if len(picked) else float("nan")
            out[name] = {**out.get(name, {}), "outliers": frac}
        return out

    per = []
    bins = summary.get("per_magnitude", [])
    for i, b in enumerate(bins):
        last = i == len(bins) - 1
        s = (mag >= b["lo"]) & ((mag <= b["hi"]) if last else (mag < b["hi"]))
        per.append(count(b, s))
    overall = count(summary.get("overall", {}), np.ones(len(zs), bool))
    return {**summary, "overall": overall, "per_magnitude": per, "outlier_threshold": threshold}


def predict_hybrid(
    run_dir: Path | str,
    catalog: Catalog,
    out: Path | str | None = None,
    workers: int = 2,
    hybrid: Hybrid | None = None,
    calibrate: bool = True,
    device: str = "cpu",
    pool: Executor | None = None,
    stop: Callable[[], None] | None = None,
    overwrite: bool = False,
    check: UnitCheck | None = None,
    given: set[str] | None = None,
) -> Table:
    """The run's combined predictions of ``catalog`` (one row per catalogue row), written to
    ``out`` when given (an existing one replaced only with ``overwrite``, never in a run
    folder); ``calibrate``: apply the combination's calibration (when it has one);
    ``pool``: the template fit's worker processes (``templatefit.fit.worker_pool``), for callers
    that predict many chunks (else ``workers`` processes started for this call); ``stop``: called
    between the template fit's chunks (``fit_catalog``); ``check``: the unit check of
    ``catalog`` against the run's training magnitudes, on which the combination's exponents and
    calibration are binned (``predict.model_features``; None: judged here, a catalogue a unit's
    shift away refused; a chunk of a larger prediction carries the whole catalogue's verdict);
    ``given``: the notes given so far when ``catalog`` is a chunk of a prediction
    (``predict.network_products``). ConfigError when the run has no combination (``fit_hybrid``)."""
    run = RunDir(Path(run_dir))
    if out is not None:
        table_format(out)
        check_outputs({"out": out}, {"run folder": run.path}, overwrite)
    hybrid = hybrid or load_hybrid(run.path)
    if hybrid is None:
        raise ConfigError(
            f"run {run.path.name} has no combination with the template fit: run "
            f"`deepz combine --run {run.path}` first"
        )
    pz = run_pz_config(run)
    cat, features, net, oof = network_products(
        run.path, catalog, device, pz, False, check, given=given
    )
    if not calibrate:
        hybrid = replace(hybrid, calibration=None)
    cfg = templatefit_config(hybrid.template_set, pz)
    zero_points = hybrid.zero_points_of(cat.bands)
    # a run band the catalogue lacks or has no value of (imputed by the networks, with their
    # one warning) is not fitted: the template fit of the catalogue without it
    leave_out = empty_bands(cat)
    tf = _templatefit(cat, features, cfg, zero_points, workers, pool, stop, leave_out)
    out_products = combined_products(hybrid, net, tf["pz"], features, oof, pz)
    table = _table(features, out_products, net, tf, oof, cat)
    if out is not None:
        write_table(table, out)
    return table
