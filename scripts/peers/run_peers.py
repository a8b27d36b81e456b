"""Peer photo-z methods on a fixed split: RAIL FlexZBoost and a gradient-boosting baseline.

Run in the peers' own environment (scripts/peers/README.md: pz-rail-flexzboost, qp-prob,
scikit-learn), not deepz's. Both methods read the same train.fits / test.fits (deepz catalogues,
scripts/peers/split.py) and see the same photometry: asinh magnitudes with errors (photometry.py,
softening from the training set's median flux errors).

- ``flexzboost``: RAIL's FlexZBoostInformer / FlexZBoostEstimator stages (Izbicki & Lee 2017;
  Dalmasso et al. 2020), fed through a RAIL DataStore as tables of ``mag_<band>`` /
  ``mag_err_<band>`` columns and ``redshift``, with RAIL's default features (reference magnitude +
  neighbouring colours) and hyper-parameters (35 cosine basis functions, XGBoost max_depth 8,
  bump/sharpen grid search on 25% of the training set, then a refit on all of it). The p(z) is a
  qp ``interp`` ensemble on [zmin, zmax]; zphot is its mode on that grid, PIT its CDF at zspec.
  Nothing is written to disk by RAIL (``output_mode='return'``).
- ``gbm``: scikit-learn HistGradientBoostingRegressor (squared error, early stopping on a 10%
  validation split) on the same features, predicting z directly. No p(z): PIT KS is N/A.

Outputs in --out-dir, per method: ``<method>.predictions.fits`` (ref_id, zspec, zphot, and pit for
FlexZBoost; one row per test galaxy, in test.fits order) and ``<method>.metrics.json`` (pzmetrics
summary, settings, seconds). Usage, from the repository root:

    PEERS/bin/python scripts/peers/run_peers.py --train DIR/train.fits --test DIR/test.fits \
        --out-dir DIR/peers --methods flexzboost,gbm --seed 23
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pzmetrics
from catalog_fits import FitsCatalog, atomic_write_json, read_catalog, write_table
from numpy.typing import NDArray
from photometry import asinh_mag, colour_features, reference_band, softening

METHODS = ("flexzboost", "gbm")
PACKAGES = ("pz-rail-flexzboost", "pz-rail-base", "qp-prob", "flexcode", "xgboost", "scikit-learn")
GRID_STEP = 0.001  # FlexZBoost's output grid step: well below any sigma68 measured here


@dataclass(frozen=True)
class Photometry:
    """Asinh magnitudes and errors (N, B) of one catalogue, with its ref_id and zspec (N,)."""

    bands: list[str]
    mag: NDArray
    mag_err: NDArray
    ref_id: NDArray
    zspec: NDArray


def photometry(cat: FitsCatalog, b: NDArray, bands: list[str]) -> Photometry:
    """Asinh magnitudes of a catalogue with softening b (B,) for ``bands`` (its own, in order)."""
    if cat.bands != bands:
        raise ValueError(f"test bands {cat.bands} differ from training bands {bands}")
    flux, err = cat.fluxes()
    mag, mag_err = asinh_mag(flux, err, b, cat.fluxzp)
    zspec = (
        cat.column("zspec") if "zspec" in cat.galaxies.columns.names else np.full(len(mag), np.nan)
    )
    ref_id = np.asarray(cat.galaxies.data["ref_id"], dtype=np.int64)
    return Photometry(bands, mag, mag_err, ref_id, zspec)


def rail_table(ph: Photometry) -> dict[str, NDArray]:
    """RAIL's columnar layout: mag_<band>, mag_err_<band> (N,) and redshift (N,)."""
    table = {f"mag_{b}": ph.mag[:, k] for k, b in enumerate(ph.bands)}
    table |= {f"mag_err_{b}": ph.mag_err[:, k] for k, b in enumerate(ph.bands)}
    table["redshift"] = np.nan_to_num(ph.zspec, nan=-1.0)
    return table


def z_range(zspec_train: NDArray, zmax: float | None) -> tuple[float, float, int]:
    """(zmin, zmax, nzbins): 0 to ``zmax`` (default: 1.05 max training zspec rounded up to 0.1)
    on a GRID_STEP grid."""
    top = zmax if zmax is not None else math.ceil(1.05 * float(np.nanmax(zspec_train)) * 10) / 10
    return 0.0, top, int(round(top / GRID_STEP)) + 1


def rail_config(
    ph: Photometry, ref: str, zgrid: tuple[float, float, int], seed: int
) -> dict[str, Any]:
    """Shared FlexZBoost stage settings: bands, errors, reference band, grid, seed."""
    zmin, zmax, nzbins = zgrid
    names = [f"mag_{b}" for b in ph.bands]
    return {
        "bands": names,
        "err_bands": [f"mag_err_{b}" for b in ph.bands],
        "ref_band": f"mag_{ref}",
        "mag_limits": dict.fromkeys(names, 99.0),  # unused: asinh magnitudes have no sentinel
        "nondetect_val": 99.0,
        "redshift_col": "redshift",
        "zmin": zmin,
        "zmax": zmax,
        "nzbins": nzbins,
        "hdf5_groupname": "",
        "output_mode": "return",
        "seed": seed,
    }


def pit_values(ensemble: Any, zspec: NDArray) -> NDArray:
    """(N,) PIT: each galaxy's p(z) CDF (a qp Ensemble of N rows) at its zspec; NaN without one."""
    pit = np.full(zspec.shape, np.nan)
    has_z = np.flatnonzero(np.isfinite(zspec))
    pit[has_z] = np.asarray(ensemble[has_z].cdf(zspec[has_z, None])).reshape(-1)
    return pit


def run_flexzboost(
    train: Photometry, test: Photometry, ref: str, zgrid: tuple[float, float, int], seed: int
) -> dict[str, Any]:
    """Train and apply RAIL FlexZBoost; returns zphot (mode), pit (N_test,) and settings."""
    from rail.core.data import DataStore, TableHandle
    from rail.estimation.algos.flexzboost import FlexZBoostEstimator, FlexZBoostInformer

    store = DataStore()
    train_h = store.add_data("fzb_train", rail_table(train), TableHandle)
    test_h = store.add_data("fzb_test", rail_table(test), TableHandle)
    config = rail_config(train, ref, zgrid, seed)
    regression = {"max_depth": 8, "objective": "reg:squarederror", "n_jobs": 1}
    informer = FlexZBoostInformer.make_stage(
        name="fzb_inform", model="fzb_model.pkl", regression_params=regression, **config
    )
    model = informer.inform(train_h)
    est_config = {k: v for k, v in config.items() if k != "seed"}
    estimator = FlexZBoostEstimator.make_stage(
        name="fzb_estimate", model=model, calculated_point_estimates=["mode"], **est_config
    )
    ensemble = estimator.estimate(test_h).data
    zphot = np.asarray(ensemble.ancil["mode"], dtype=float).reshape(-1)
    pit = pit_values(ensemble, test.zspec)
    fitted = informer.model
    settings = {
        "bump_threshold": float(fitted.bump_threshold),
        "sharpen_alpha": float(fitted.sharpen_alpha),
        "regression_params": regression,
    }
    return {"zphot": zphot, "pit": pit, "settings": settings}


def run_gbm(train: Photometry, test: Photometry, ref: str, seed: int) -> dict[str, Any]:
    """Train and apply a HistGradientBoostingRegressor on asinh colours + reference magnitude."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    k = train.bands.index(ref)
    params = {
        "max_iter": 2000,
        "learning_rate": 0.05,
        "max_leaf_nodes": 31,
        "early_stopping": True,
        "validation_fraction": 0.1,
        "n_iter_no_change": 50,
        "random_state": seed,
    }
    has_z = np.isfinite(train.zspec)
    model = HistGradientBoostingRegressor(**params)
    model.fit(colour_features(train.mag[has_z], k), train.zspec[has_z])
    zphot = model.predict(colour_features(test.mag, k))
    return {"zphot": zphot, "pit": None, "settings": params | {"n_iter": int(model.n_iter_)}}


def write_outputs(
    out_dir: Path, method: str, test: Photometry, result: dict[str, Any], info: dict[str, Any]
) -> dict[str, Any]:
    """<method>.predictions.fits and <method>.metrics.json; returns the metrics record."""
    columns = {"ref_id": test.ref_id, "zspec": test.zspec, "zphot": result["zphot"]}
    if result["pit"] is not None:
        columns["pit"] = result["pit"]
    write_table(columns, out_dir / f"{method}.predictions.fits", {"METHOD": method})
    record = {
        "method": method,
        "metrics": pzmetrics.summary(result["zphot"], test.zspec, result["pit"]),
    }
    record |= {"settings": result["settings"]} | info
    atomic_write_json(out_dir / f"{method}.metrics.json", record)
    return record


def versions() -> dict[str, str | None]:
    """Installed versions of the peers' packages (None when absent)."""
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def prepare(
    train_path: Path, test_path: Path, ref_band: str | None
) -> tuple[Photometry, Photometry, dict[str, Any]]:
    """Both catalogues as asinh magnitudes (softening from the training errors) and the shared
    record: bands, reference band, softening, sizes, package versions."""
    train_cat, test_cat = read_catalog(train_path), read_catalog(test_path)
    bands = train_cat.bands
    b = softening(train_cat.fluxes()[1])
    train, test = photometry(train_cat, b, bands), photometry(test_cat, b, bands)
    info = {"bands": bands, "ref_band": reference_band(bands, ref_band), "softening_b": b.tolist()}
    info |= {"n_train": len(train.zspec), "n_test": len(test.zspec), "versions": versions()}
    return train, test, info


def run_method(
    method: str,
    train: Photometry,
    test: Photometry,
    info: dict[str, Any],
    seed: int,
    zmax: float | None,
) -> dict[str, Any]:
    """One method's result (zphot, pit, settings) with its wall-clock seconds."""
    start = time.perf_counter()
    if method == "flexzboost":
        zgrid = z_range(train.zspec, zmax)
        result = run_flexzboost(train, test, info["ref_band"], zgrid, seed)
        result["settings"]["zgrid"] = list(zgrid)
    else:
        result = run_gbm(train, test, info["ref_band"], seed)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def run(
    train_path: Path,
    test_path: Path,
    out_dir: Path,
    methods: list[str],
    seed: int,
    ref_band: str | None,
    zmax: float | None,
) -> list[dict[str, Any]]:
    """Run each method on the split, write its outputs; returns the metrics records."""
    train, test, info = prepare(train_path, test_path, ref_band)
    records = []
    for method in methods:
        result = run_method(method, train, test, info, seed, zmax)
        records.append(
            write_outputs(out_dir, method, test, result, info | {"seconds": result["seconds"]})
        )
        m = records[-1]["metrics"]
        print(
            f"{method}: sigma68 {m['sigma68']:.5f}, strict {m['outlier_strict']:.4f}, catastrophic {m['outlier_catastrophic']:.4f}, PIT KS {m['pit_ks']} ({result['seconds']} s)"
        )
    return records


def main(argv: list[str] | None = None) -> int:
    """CLI: --train --test --out-dir [--methods] [--seed] [--ref-band] [--zmax]."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {METHODS}")
    p.add_argument("--seed", type=int, default=23)
    p.add_argument("--ref-band", default=None, help="default: deepz's (subaru_i, else *_i)")
    p.add_argument("--zmax", type=float, default=None, help="FlexZBoost grid top (default: auto)")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"--methods: unknown {unknown}, choose from {METHODS}")
    run(args.train, args.test, args.out_dir, methods, args.seed, args.ref_band, args.zmax)
    return 0


if __name__ == "__main__":
    sys.exit(main())
