"""Inference: ensemble p(z) for a catalogue, stored as mixture parameters plus point columns.

An ensemble p(z) is the mean of its members' mixtures, i.e. one mixture of E*M components; galaxies the
run trained on use only the members that never saw them (E20 Sec. 5.2). Mixture columns follow qp's
'mixmod' layout: ``weights``, ``means``, ``stds`` (N, E*M).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from deepz_core.catalog.catalog import ERROR_PREFIX, FLUX_PREFIX, Catalog, few
from deepz_core.catalog.features import (
    Features,
    build_features,
    remeasured,
    resolve_ref_band,
    same_photometry,
)
from deepz_core.catalog.screen import (
    MIN_USABLE_FRACTION,
    REFERENCE_MAGNITUDES,
    InputStats,
    PzFlag,
    TrainingMagnitudes,
    UnitCheck,
    judge_unit_shift,
)
from deepz_core.catalog.validation import (
    unknown_cells,
    unknown_note,
    unusable_values,
    without_unknown_cells,
)
from deepz_core.device import resolve_device
from deepz_core.errors import CatalogError, ConfigError, TrainingError
from deepz_core.files import atomic_write
from deepz_core.inference.calibrate import (
    CALIBRATION_FILE,
    MIN_GALAXIES,
    OUT_OF_FOLD_BINS,
    RunCalibration,
    fit_run_calibration,
    load_calibration,
    save_calibration,
)
from deepz_core.nets.deepz import DeepzModel, load_model, load_model_json
from deepz_core.pz.calibration import (
    POOL_MIN_PER_BIN,
    PitTransform,
    PoolScale,
    fit_pool_scale,
    pool_grid,
    pool_subset,
)
from deepz_core.pz.mixture import GaussianMixture, combine_members
from deepz_core.pz.products import PzConfig, calibrated_products, point_products
from deepz_core.rundir import RunDir
from deepz_core.training.config import run_pz_config
from deepz_core.training.splits import Splits, read_splits

LOG = logging.getLogger("deepz")

POINT_COLUMNS = ("zphot", "zmean", "zmedian", "z_lo68", "z_hi68", "odds")
PRODUCT_COLUMNS = frozenset(  # what a predictions table computes; never taken from a catalogue
    {*POINT_COLUMNS, "ref_id", "zspec", "mag", "flag", "pit", "pit_raw", "out_of_fold", "pz"}
    | {"weights", "means", "stds"}
    | {"zphot_net", "odds_net", "zphot_tf", "odds_tf", "chi2_tf"}  # the combination's (hybrid)
)


def mixture_from_arrays(
    weights: np.ndarray, means: np.ndarray, stds: np.ndarray
) -> GaussianMixture:
    """A batch (N,) mixture from stored (N, C) parameters; zero weights are allowed."""

    def tensor(a: np.ndarray) -> torch.Tensor:  # FITS columns: big-endian, strided views
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

    logits = torch.log(tensor(weights).clamp_min(0))
    return GaussianMixture.from_params(logits, tensor(means), tensor(stds))


def inference_chunk(members: int, device: torch.device) -> int:
    """Galaxies per forward pass: on CPU ~4,000 member-rows keep activations in cache (measured
    fastest here, docs/benchmarks.md); a GPU wants large batches."""
    rows = 200_000 if device.type == "cuda" else 4_000
    return max(256, rows // members)


@torch.no_grad()
def predict_features(
    model: DeepzModel,
    features: Features,
    member_mask: np.ndarray | None,
    pz: PzConfig,
    chunk: int | None = None,
    transform: PitTransform | None = None,
) -> dict[str, np.ndarray]:
    """Point products and mixture parameters for every galaxy in ``features`` (dict of (N,) / (N, C)).

    The network runs ``chunk`` galaxies at a time (inference_chunk); the p(z) products run on up to
    PRODUCT_PAIRS / C galaxies at once, so their blocks can be spread over threads (deepz_core.pz.products).
    With a ``transform`` (N,) (``inference.calibrate``) the products and the mixture columns are
    those of the calibrated p(z) and ``pit_raw`` holds the PIT before calibration."""
    model.eval()
    device = next(model.parameters()).device
    n_comp = model.members * model.config.n_components
    loc = model.input_stats()[0].numpy()
    x = features.network_input(loc, with_magnitude=model.config.magnitude_input)  # (N, F) imputed
    parts: list[dict[str, np.ndarray]] = [  # zero rows: the columns of an empty catalogue
        {
            **{k: np.zeros(0) for k in (*POINT_COLUMNS, "pit")},
            **({"pit_raw": np.zeros(0)} if transform is not None else {}),
            **{k: np.zeros((0, n_comp), np.float32) for k in ("weights", "means", "stds")},
        }
    ]
    chunk = chunk or inference_chunk(model.members, device)
    step = max(chunk, PRODUCT_PAIRS // n_comp // chunk * chunk)  # a multiple of chunk
    for s in range(0, features.n, step):
        e = min(s + step, features.n)
        mixes = [
            _ensemble_pz(model, x, member_mask, a, min(a + chunk, e), device)
            for a in range(s, e, chunk)
        ]
        logits, loc, scale = (torch.cat(t) for t in zip(*mixes, strict=True))  # (n, E*M) each
        mix = GaussianMixture.from_params(logits.double(), loc.double(), scale.double())
        zs = torch.as_tensor(features.zspec[s:e], dtype=torch.float64, device=device)
        if transform is not None:
            products, mix = calibrated_products(mix, pz, transform.take(slice(s, e)), zs)
            logits, loc, scale = mix.log_weights, mix.loc, mix.scale
        else:
            products = point_products(mix, pz, zs)
        out = {k: v.cpu().numpy() for k, v in products.items()}  # float64
        weights = torch.softmax(logits.double(), -1)  # as the products see them
        out.update(
            weights=weights.float().cpu().numpy(),
            means=loc.float().cpu().numpy(),
            stds=scale.float().cpu().numpy(),
        )
        parts.append(out)
    products = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return without_pz(products, ~features.predictable)


def without_pz(products: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """``products`` with every value of ``rows`` (N,) bool set to NaN: galaxies the screen gives
    no p(z) (``PzFlag.NO_PZ``) get NaN, never a number computed from imputed inputs."""
    if not rows.any():
        return products
    out = {k: v.astype(np.result_type(v.dtype, np.float32), copy=True) for k, v in products.items()}
    for v in out.values():
        v[rows] = np.nan
    return out


PRODUCT_PAIRS = 1 << 21  # galaxies x components per p(z) products call (~64 MB of float64 params)


def _ensemble_pz(
    model: DeepzModel,
    inputs: np.ndarray,
    member_mask: np.ndarray | None,
    start: int,
    stop: int,
    device: torch.device,
) -> tuple[torch.Tensor, ...]:
    """Ensemble p(z) of galaxies [start, stop) of ``inputs`` (N, B) as float32 (n, E*M) log
    weights, means, sigmas."""
    x = torch.as_tensor(inputs[start:stop], device=device)
    mask = (
        None if member_mask is None else torch.as_tensor(member_mask[:, start:stop], device=device)
    )
    mix = combine_members(model(x), mask)  # batch (n,), E*M components
    return mix.log_weights, mix.loc, mix.scale


def predictions_table(
    features: Features,
    products: dict[str, np.ndarray],
    extra: dict | None = None,
    catalog: Catalog | None = None,
) -> Table:
    """The predictions of ``features`` as a Table; with the ``catalog`` they came from, one row per
    catalogue row in its order (rows without features: NaN products, ``flag`` REF_UNUSABLE |
    NO_PZ). ``extra`` holds further (N,) columns of the featured galaxies."""
    t = Table()
    t["ref_id"] = features.ref_id
    for name in POINT_COLUMNS:
        t[name] = products[name]
    t["zspec"] = features.zspec
    if "pit" in products:
        t["pit"] = products["pit"]
    if "pit_raw" in products:
        t["pit_raw"] = products["pit_raw"]
    if features.mag is not None:
        t["mag"] = features.mag
    t["flag"] = features.flags.astype(np.int32)
    for name, values in (extra or {}).items():
        t[name] = values
    for name in ("weights", "means", "stds"):
        t[name] = products[name]
    if catalog is None or features.n == catalog.n_galaxies:
        return t
    return every_row(t, features.rows, catalog, features.row_flags)


def every_row(
    table: Table, rows: np.ndarray, catalog: Catalog, flags: np.ndarray | None = None
) -> Table:
    """``table`` of the catalogue rows ``rows`` spread over all its rows in order: the others get
    their ref_id, zspec and mag, the catalogue columns carried along (coordinates...), NaN
    products, their screen ``flags`` (every catalogue row's, e.g. REF_UNUSABLE | NO_PZ |
    BAND_MISSING | TOO_FEW_BANDS; REF_UNUSABLE | NO_PZ without them), and False/0 elsewhere."""
    n = catalog.n_galaxies
    carried = catalog.columns()
    out = Table()
    for name in table.colnames:
        if name not in PRODUCT_COLUMNS and name in carried and carried[name].shape[0] == n:
            out[name] = carried[name]
            continue
        col = np.asarray(table[name])
        fill = np.nan if col.dtype.kind == "f" else 0
        full = np.full((n, *col.shape[1:]), fill, dtype=col.dtype)
        full[rows] = col
        out[name] = full
    out["ref_id"] = catalog.ref_id
    out["zspec"] = catalog.zspec
    if "mag" in out.colnames and catalog.mag is not None:
        out["mag"] = catalog.mag  # else NaN: the reference flux gives no magnitude either
    missing = np.ones(n, dtype=bool)
    missing[rows] = False
    if flags is None:
        out["flag"][missing] = int(PzFlag.REF_UNUSABLE | PzFlag.NO_PZ)
    else:
        out["flag"][missing] = flags[missing] | int(PzFlag.REF_UNUSABLE | PzFlag.NO_PZ)
    return out


TABLE_FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def table_format(path: Path | str) -> str:
    """'fits' or 'parquet' from the file name; ConfigError for anything else (never FITS bytes
    in a file named .csv)."""
    name = Path(path).name.lower()
    for suffix, fmt in TABLE_FORMATS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    raise ConfigError(
        f"--out {str(path)!r}: predictions are written as {' or '.join(TABLE_FORMATS)}"
    )


def write_table(table: Table, path: Path | str, prov: dict[str, str] | None = None) -> Path:
    """Write FITS or Parquet by extension, atomically; ``prov`` (provenance.provenance) as FITS
    header cards or Parquet schema metadata."""
    from deepz_core.inference.provenance import fits_cards, parquet_metadata

    fmt = table_format(path)
    if prov is None:
        return atomic_write(path, lambda tmp: table.write(tmp, format=fmt, overwrite=True))
    table = table.copy(copy_data=False)
    if fmt == "fits":
        for key, value, _ in fits_cards(prov):
            table.meta[key] = value
        return atomic_write(path, lambda tmp: table.write(tmp, format=fmt, overwrite=True))
    import pyarrow.parquet as pq

    from deepz_core.inference.arrow_tables import arrow_table

    arrow = arrow_table(table).replace_schema_metadata(parquet_metadata(prov))
    return atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))


def summarise(table: Table, outlier: float | None = None) -> dict[str, Any]:
    """Headline metrics over galaxies with a spec-z (out-of-fold ones when flagged) and a p(z),
    outliers beyond ``outlier`` (the run's survey profile's; None: E20's strict 0.02);
    ``n_no_pz`` counts those without one (failures, never numbers)."""
    from deepz_core.pz.metrics import OUTLIER_THRESHOLD, no_pz_failures, point_metrics

    z = np.asarray(table["zspec"])
    zp = np.asarray(table["zphot"])
    failed = no_pz_failures(z, zp)
    use = np.isfinite(z) & np.isfinite(zp)
    if "out_of_fold" in table.colnames:
        use &= np.asarray(table["out_of_fold"])
    threshold = OUTLIER_THRESHOLD if outlier is None else outlier
    out = point_metrics(zp[use], z[use], threshold) if use.any() else {"n": 0}
    return {**out, "n_no_pz": int(failed.sum()), "n_rows": len(table)}


def write_run_predictions(
    run: RunDir,
    model: DeepzModel,
    cat: Catalog,
    features: Features,
    splits: Splits,
    pz: PzConfig,
    calibrate: bool = True,
    outlier: float | None = None,
) -> dict[str, Any]:
    """Out-of-fold predictions for the training catalogue: predictions.fits plus summary
    (``summarise``, outliers beyond ``outlier``: the run's survey profile's). With
    ``calibrate`` the PIT calibration is fitted on the out-of-fold galaxies with a spec-z
    (``calibration.json``) and the predictions are the calibrated ones, each training galaxy
    calibrated without its own PIT (``inference.calibrate``)."""
    mask = splits.predict_mask()
    products = predict_features(model, features, mask, pz)
    if features.predictable.any() and not np.isfinite(products["zphot"]).any():
        raise TrainingError("every p(z) of the trained networks is NaN: the run failed")
    from deepz_core.inference.provenance import provenance

    oof = splits.out_of_fold()
    if calibrate:
        cal = run_calibration(run, features, products, oof)
        if cal is not None:
            cal = cal.with_pool(pool_scale(run, features, products, splits, cal, pz))
            save_calibration(run, cal)
            transform = cal.transform(galaxy_mags(features), features.ref_id, oof)
            products = predict_features(model, features, mask, pz, transform=transform)
    table = predictions_table(features, products, {"out_of_fold": oof}, cat)
    prov = provenance(run.path, run.config().get("catalog"))
    write_table(table, run.file("predictions.fits"), prov)
    summary = summarise(table, outlier)
    run.log(f"out-of-fold metrics: {summary}")
    return summary


def galaxy_mags(features: Features) -> np.ndarray:
    """(N,) AB magnitudes of the featured galaxies (NaN where unknown): the calibration's bins."""
    if features.mag is None:
        return np.full(features.n, np.nan)
    return np.asarray(features.mag, dtype=np.float64)


def run_calibration(
    run: RunDir, features: Features, products: dict[str, np.ndarray], oof: np.ndarray
) -> RunCalibration | None:
    """Fit the run's calibration on the raw out-of-fold products; None (logged) when too few
    galaxies have a spec-z and a p(z)."""
    use = oof & np.isfinite(products["pit"]) & np.isfinite(galaxy_mags(features))
    if use.sum() < MIN_GALAXIES:
        run.log(
            f"calibration skipped: {int(use.sum())} out-of-fold galaxies with a spec-z "
            f"(need {MIN_GALAXIES})"
        )
        return None
    cal = fit_run_calibration(
        products["pit"][use], galaxy_mags(features)[use], features.ref_id[use], **OUT_OF_FOLD_BINS
    )
    s = cal.summary
    run.log(
        f"calibration fitted on {s['n']} galaxies: PIT KS {s['pit_ks_before']:.4f} -> "
        f"{s['pit_ks_after']:.4f}, 68% interval coverage {s['coverage68_before']:.3f} -> "
        f"{s['coverage68_after']:.3f} (cross-fitted)"
    )
    return cal


def pool_scale(
    run: RunDir,
    features: Features,
    products: dict[str, np.ndarray],
    splits: Splits,
    cal: RunCalibration,
    pz: PzConfig,
) -> PoolScale | None:
    """The pool scale of the calibration (``pz.calibration.fit_pool_scale``), fitted on up to
    POOL_MAX_GALAXIES unflagged galaxies no network trained on (without a spec-z; no redshift is
    used); None (logged) with one fold or too few such galaxies: new galaxies then get the
    out-of-fold calibration unchanged."""
    new = ~splits.train.any(axis=0) & (features.flags == 0) & np.isfinite(products["zphot"])
    new &= np.isfinite(galaxy_mags(features))
    rows = np.flatnonzero(new)
    if splits.folds < 2 or len(rows) < POOL_MIN_PER_BIN:
        run.log(
            f"calibration: no pool scale ({len(rows)} galaxies without a spec-z, need "
            f"{POOL_MIN_PER_BIN}; {splits.folds} folds): new galaxies get the out-of-fold "
            "calibration, which makes their pooled p(z) too broad"
        )
        return None
    rows = pool_subset(rows)
    grid = pool_grid(pz.z_min, pz.z_max)
    w, mu, sd = (products[k][rows].astype(np.float64) for k in ("weights", "means", "stds"))
    pool = fit_pool_scale(
        w, mu, sd, (splits.repetitions, splits.folds), galaxy_mags(features)[rows], cal.full, grid
    )
    run.log(
        f"calibration pool scale on {len(rows)} galaxies without a spec-z: "
        + ", ".join(
            f"iAB {m:.2f}: {v:.3f}" for m, v in zip(pool.mag_centres, pool.scale, strict=True)
        )
    )
    return pool


def predict_catalog(
    run_dir: Path | str,
    catalog: Catalog,
    out: Path | str,
    device: str = "cpu",
    pz: PzConfig | None = None,
    calibrate: bool = True,
    allow_magnitude_shift: bool = False,
) -> Table:
    """Predict a catalogue with a finished run; galaxies it trained on get out-of-fold p(z),
    calibrated when ``calibrate`` and the run has a calibration. A catalogue whose reference
    magnitudes lie a unit's shift from the training population's is refused before anything is
    written unless ``allow_magnitude_shift`` (``screen.judge_unit_shift``)."""
    table_format(out)  # a bad output name fails before any work
    check = UnitCheck(allow_magnitude_shift)
    catalog, features, products, oof = network_products(
        run_dir, catalog, device, pz, calibrate, check
    )
    table = predictions_table(features, products, {"out_of_fold": oof}, catalog)
    write_table(table, out)
    return table


def network_products(
    run_dir: Path | str,
    catalog: Catalog,
    device: str = "cpu",
    pz: PzConfig | None = None,
    calibrate: bool = True,
    check: UnitCheck | None = None,
    source: str = "the catalogue",
    given: set[str] | None = None,
) -> tuple[Catalog, Features, dict[str, np.ndarray], np.ndarray]:
    """The run's networks on ``catalog``: the catalogue with the run's bands (and its values out
    of range as unknown: ``unknown_as_nan``), its features, their products
    (``predict_features``; calibrated when ``calibrate`` and the run has a calibration) and the
    (N,) out-of-fold flags (training galaxies get the members that never saw them).
    ``check``: the unit check of the catalogue ``source`` against the run's training magnitudes
    (``model_features``; None: ``UnitCheck()``, a shifted catalogue refused). ``given``: the
    notes given so far when ``catalog`` is a chunk of a prediction (its bands without values are
    then named by the caller, ``stream.StreamNotes``); None: ``catalog`` is the whole
    prediction."""
    run = RunDir(Path(run_dir))
    meta = load_model_json(run.path).get("metadata", {})
    model = load_model(run.path, device=resolve_device(device))
    catalog = unknown_as_nan(catalog, given)
    if meta.get("bands") is not None:
        bands, ref_band = tuple(meta["bands"]), meta.get("ref_band")
        if given is None:
            for note in unmeasured_notes(unmeasured_bands(catalog, bands), bands, ref_band):
                LOG.warning(note)
        catalog = with_run_bands(catalog, bands, ref_band, given=given)
    training = training_magnitudes(run.path)
    features = model_features(
        model, catalog, meta.get("ref_band"), training=training, check=check, source=source
    )
    mask, oof = member_mask(run, features, model.members)
    pz = pz or run_pz_config(run)
    cal = load_calibration(run.path) if calibrate else None
    transform = None if cal is None else cal.transform(galaxy_mags(features), features.ref_id, oof)
    products = predict_features(model, features, mask, pz, transform=transform)
    return catalog, features, products, oof


def unknown_as_nan(catalog: Catalog, given: set[str] | None = None) -> Catalog:
    """``catalog`` with the values a prediction reads as unknown set to NaN
    (``validation.unknown_cells``: a spec-z outside [0, ZSPEC_MAX) such as a 'no redshift' code
    99, an infinite mag), named in one warning per column (``validation.unknown_note``) when
    ``given`` is None: ``catalog`` is the whole prediction. A chunk of a stream (``given``: its
    notes) says nothing: the stream's preflight named them for all its rows (``catalog.scan``)."""
    cells = unknown_cells(catalog)
    if given is None:
        for column, bad in cells.items():
            LOG.warning(unknown_note(column, np.flatnonzero(bad), getattr(catalog, column)[bad]))
    return without_unknown_cells(catalog, cells)


def model_features(
    model: DeepzModel,
    catalog: Catalog,
    ref_band: str | None,
    use_exposures: bool = True,
    training: TrainingMagnitudes | None = None,
    check: UnitCheck | None = None,
    source: str = "the catalogue",
) -> Features:
    """The catalogue's features screened against the population the model was trained on.

    With the run's ``training`` magnitudes (``training_magnitudes``), a catalogue ``source``
    whose reference magnitudes lie a unit's shift from them is refused, or with
    ``check.allow`` predicted with its rows outside them flagged OUTSIDE_TRAINING
    (``screen.judge_unit_shift``; ``check.shifted``: the verdict on the whole catalogue when
    ``catalog`` is a chunk of it; None: ``catalog`` is the whole prediction, refused as well
    when no row has a reference magnitude: ``check_reference_measured``)."""
    features = build_features(catalog, ref_band, use_exposures)
    column = f"{FLUX_PREFIX}{features.ref_band}"
    check = check or UnitCheck()
    if check.shifted is None:  # the whole prediction (a stream's preflight judged all its rows)
        check_reference_measured(features.ref_mag, features.n_rows, column, source)
    shifted = judge_unit_shift(features.ref_mag, training, check, column, catalog.fluxzp, source)
    loc, scale = model.input_stats()
    features = features.against_population(InputStats(loc.numpy(), scale.numpy()))
    return features.outside_magnitudes(training) if shifted and training else features


def training_magnitudes(run_path: Path | str) -> TrainingMagnitudes | None:
    """The reference magnitudes of the run's training population (``screen.TrainingMagnitudes``):
    stored in its ``model.json``; for a run made before they were, the magnitude input
    statistics of networks that read it, else the magnitude bins of its calibration, else None
    (logged once per process and run: its catalogues' flux units go unchecked). Read once per
    version of the run's files."""
    path = Path(run_path)
    stamps = tuple(
        mtime_ns(path / name) for name in ("model.json", "model.safetensors", CALIBRATION_FILE)
    )
    return _training_magnitudes(str(path.resolve()), stamps)


def mtime_ns(path: Path) -> int:
    """The file's modification time (0 when it does not exist)."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


@functools.lru_cache(maxsize=8)
def _training_magnitudes(path: str, stamps: tuple[int, ...]) -> TrainingMagnitudes | None:
    """``training_magnitudes`` of the run folder ``path`` whose files have the times ``stamps``."""
    doc = load_model_json(path)
    stored = doc["metadata"].get(REFERENCE_MAGNITUDES)
    if stored is not None:
        try:
            return TrainingMagnitudes.from_dict(stored)
        except ConfigError as exc:
            where = Path(path) / "model.json"
            raise ConfigError(f"{where}: damaged model description: metadata {exc}") from None
    found = _input_magnitudes(Path(path), doc) or _calibration_magnitudes(Path(path))
    if found is None:
        LOG.warning(
            "run %s stores no magnitudes of its training population (trained before deepz "
            "recorded them, without a magnitude input or a calibration): the flux unit of the "
            "catalogues it predicts is not checked against them",
            Path(path).name,
        )
    return found


def _input_magnitudes(path: Path, doc: dict[str, Any]) -> TrainingMagnitudes | None:
    """The training magnitudes from the magnitude input statistics (median, robust sigma) of a
    run whose networks read the reference magnitude; None for other runs."""
    from safetensors import SafetensorError, safe_open

    if not doc["config"].get("magnitude_input"):
        return None
    try:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            if "input_loc" not in f.keys():  # a safetensors handle: no "in"
                return None
            loc, scale = (float(f.get_tensor(k)[0, -1]) for k in ("input_loc", "input_scale"))
    except (OSError, SafetensorError):
        return None  # load_model names the damaged file
    if not (np.isfinite(loc) and np.isfinite(scale)):
        return None
    return TrainingMagnitudes(loc, scale, source="magnitude input statistics")


def _calibration_magnitudes(path: Path) -> TrainingMagnitudes | None:
    """The training magnitudes from the run's calibration: the median of its magnitude bins'
    centres and the range of its per-magnitude summary; None without a calibration."""
    cal = load_calibration(path)
    if cal is None:
        return None
    centres = np.asarray(cal.full.mag_centres, dtype=np.float64)
    bins = [b for b in cal.summary.get("per_magnitude", []) if b.get("n")]
    lo, hi = (bins[0]["lo"], bins[-1]["hi"]) if bins else (centres.min(), centres.max())
    return TrainingMagnitudes(
        float(np.median(centres)),
        lo=float(lo),
        hi=float(hi),
        n=int(cal.full.n_fit),
        source="calibration's magnitude bins",
    )


def match_bands(catalog: Catalog, bands: tuple[str, ...], source: str = "--catalog") -> Catalog:
    """The catalogue with exactly the run's bands in the run's order (extra bands dropped): the
    networks read inputs by position, so another column order would silently mix bands up.
    ``source`` names the catalogue in errors."""
    if tuple(catalog.bands) == bands:
        return catalog
    missing = [b for b in bands if b not in catalog.bands]
    if missing:
        raise ConfigError(
            f"{source} lacks bands {missing} the run was trained on (run bands: {list(bands)})"
        )
    cols = [catalog.bands.index(b) for b in bands]
    exp = catalog.exposures
    if exp is not None:
        exp = exp.select(np.isin(exp.band, bands))
    return dataclasses.replace(
        catalog,
        bands=bands,
        flux=catalog.flux[:, cols],
        flux_error=catalog.flux_error[:, cols],
        exposures=exp,
    )


def with_run_bands(
    catalog: Catalog,
    bands: tuple[str, ...],
    ref_band: str | None,
    source: str = "--catalog",
    given: set[str] | None = None,
) -> Catalog:
    """``match_bands`` for a prediction: a run band the catalogue lacks is added with NaN fluxes
    and errors, so that it is imputed for every galaxy and flagged BAND_MISSING as a band without
    values is, with one warning (once per prediction: ``given``, the notes given already, shared by
    the chunks of one stream; None: ``catalog`` is the whole prediction).
    ConfigError naming the bands when the reference band ``ref_band`` is among them, or so many
    are that no galaxy could get a p(z) (``MIN_USABLE_FRACTION`` of the other bands)."""
    absent = [b for b in bands if b not in catalog.bands]
    if not absent:
        return match_bands(catalog, bands, source)
    check_absent_bands(absent, bands, ref_band, source)
    if ABSENT_NOTE not in (given or ()):
        LOG.warning(band_note(absent, ("is", "are"), "not in this catalogue (no flux column)"))
        if given is not None:
            given.add(ABSENT_NOTE)
    nan = np.full((catalog.n_galaxies, len(absent)), np.nan)
    catalog = dataclasses.replace(
        catalog,
        bands=(*catalog.bands, *absent),
        flux=np.concatenate([catalog.flux, nan], axis=1),
        flux_error=np.concatenate([catalog.flux_error, nan], axis=1),
    )
    return match_bands(catalog, bands, source)


ABSENT_NOTE = "absent bands"  # the key of the absent bands' note in a prediction's notes given


def check_absent_bands(
    absent: list[str], bands: tuple[str, ...], ref_band: str | None, source: str
) -> None:
    """ConfigError when the run bands ``absent`` from a catalogue leave nothing to predict: the
    reference band, or more than half of the others (every galaxy TOO_FEW_BANDS)."""
    ref = resolve_ref_band(bands, ref_band)
    others = len(bands) - 1
    if ref not in absent and others - len(absent) >= MIN_USABLE_FRACTION * others:
        return
    why = (
        f"its reference band {ref!r} among them"
        if ref in absent
        else f"{len(absent)} of its {others} bands besides the reference band"
    )
    raise ConfigError(
        f"{source} lacks bands {few(absent, 4)} the run was trained on ({why}): no galaxy "
        f"could get a p(z); give the catalogue columns {FLUX_PREFIX}<band> and "
        f"{ERROR_PREFIX}<band> for the run's bands {few(list(bands), 4)} (other spellings: "
        "--rename), or predict with a run trained on the catalogue's bands"
    )


def check_reference_measured(mag: np.ndarray, n_rows: int, column: str, source: str) -> None:
    """CatalogError when none of the ``n_rows`` rows of a whole catalogue ``source`` has a
    finite reference magnitude (``mag`` (n,): those of its rows with a usable reference flux,
    ``Features.ref_mag``; its reference flux ``column`` NaN, <= 0 or a placeholder code, or its
    error unusable, in every row): no galaxy could get a p(z) (every row REF_UNUSABLE), so
    nothing is predicted, as for a catalogue without the reference band
    (``check_absent_bands``)."""
    if n_rows and not np.isfinite(np.asarray(mag, dtype=np.float64)).any():
        raise CatalogError(
            f"{source}: column '{column}', the run's reference band, has no positive value in "
            f"any of its {n_rows} rows: no galaxy could get a p(z) (the networks read every "
            "flux relative to it); give the reference fluxes (other spellings: --rename), or "
            "predict with a run trained on another reference band"
        )


def unmeasured_bands(catalog: Catalog, bands: tuple[str, ...]) -> list[str]:
    """The ``bands`` of ``catalog`` (those it has) without a usable value in any row: flux
    NaN/inf or a placeholder code, or error NaN/inf or <= 0 (``validation.unusable_values``)."""
    if catalog.n_galaxies == 0:
        return []
    missing, _ = unusable_values(catalog.flux, catalog.flux_error, catalog.fluxzp)
    empty = missing.all(axis=0)
    return [b for b in bands if b in catalog.bands and empty[catalog.bands.index(b)]]


def unmeasured_notes(
    empty: list[str], bands: tuple[str, ...], ref_band: str | None, where: str = "this catalogue"
) -> list[str]:
    """The warnings for run bands ``empty`` with no value in ``where``: the reference band's
    galaxies get no p(z); the other bands are imputed for every galaxy."""
    if not empty:
        return []
    ref = resolve_ref_band(bands, ref_band)
    others = [b for b in empty if b != ref]
    notes = [band_note(others, ("has", "have"), f"no values in {where}")] if others else []
    if ref in empty:
        notes.append(
            f"reference band {ref} has no values in {where}: no galaxy there gets a p(z) "
            "(flagged REF_UNUSABLE, NO_PZ)"
        )
    return notes


def band_note(bands: list[str], verb: tuple[str, str], what: str) -> str:
    """'band NB455 has <what>: imputed for every galaxy, flagged BAND_MISSING' (``verb``: for
    one band and for several, 'bands NB455, NB465 have ...')."""
    named = f"band {bands[0]} {verb[0]}" if len(bands) == 1 else f"bands {few(bands, 4)} {verb[1]}"
    return f"{named} {what}: imputed for every galaxy, flagged BAND_MISSING"


def member_mask(
    run: RunDir, features: Features, members: int, by_photometry: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(E, N) members usable per galaxy and (N,) out-of-fold flag, from the run's saved splits.

    A galaxy is a training galaxy when its ref_id is one and, ``by_photometry`` in a run that
    stored its own, its photometry is that galaxy's too (``same_photometry``). Otherwise the
    ref_id alone decides: the experiments perturb training galaxies' photometry on purpose and
    still want each predicted by the networks that never saw it.
    """
    ref_id = features.ref_id
    mask = np.ones((members, len(ref_id)), dtype=bool)
    oof = np.zeros(len(ref_id), dtype=bool)
    path = run.file("splits.npz")
    if not path.exists():
        return mask, oof
    predict_mask, out_of_fold, train_ids, order, stored, stored_error = _training_splits(
        str(path), path.stat().st_mtime_ns, members
    )
    pos = np.searchsorted(train_ids, ref_id, sorter=order)
    pos = order[np.clip(pos, 0, len(order) - 1)]
    seen = train_ids[pos] == ref_id
    if stored is not None and stored.shape[1] != features.ratio.shape[1]:
        raise ConfigError(
            f"{path}: damaged splits file ({stored.shape[1]} flux ratios per galaxy, the run's "
            f"model reads {features.ratio.shape[1]})"
        )
    if by_photometry and stored is not None and seen.any():
        same = same_photometry(
            features.ratio[seen],
            features.ratio_error[seen],
            stored[pos[seen]],
            stored_error[pos[seen]],
        )
        other = np.flatnonzero(seen)[~same]
        at = pos[other]
        _note_reused_ids(features, other, stored[at], stored_error[at], run.path.name)
        seen[seen] = same
    mask[:, seen] = predict_mask[:, pos[seen]]
    oof[seen] = out_of_fold[pos[seen]]
    return mask, oof


def _note_reused_ids(
    features: Features, rows: np.ndarray, stored: np.ndarray, stored_error: np.ndarray, name: str
) -> None:
    """Say that the galaxies ``rows`` of ``features``, with training galaxies' ref_ids but other
    photometry (theirs: ``stored``, ``stored_error``), are predicted as new galaxies: a warning
    when they look like those galaxies measured again (``remeasured``: they lose their
    out-of-fold p(z)), else a note, not shown by default (another catalogue numbered like the
    training one, e.g. a mock's 1..N: only the ids are shared)."""
    if not len(rows):
        return
    ratio, error = features.ratio[rows], features.ratio_error[rows]
    if remeasured(ratio, error, stored, stored_error):
        LOG.warning(
            "%d galaxies have the ref_id of a galaxy run %s trained on and photometry close to "
            "its but not the same (re-measured?): predicted as new galaxies (not out-of-fold)",
            len(rows),
            name,
        )
    else:
        LOG.info(
            "%d galaxies reuse ref_ids of galaxies run %s trained on, with other photometry "
            "(ids only): predicted as new galaxies",
            len(rows),
            name,
        )


@functools.lru_cache(maxsize=4)
def _training_splits(path: str, mtime_ns: int, members: int) -> tuple[np.ndarray | None, ...]:
    """(E, T) usable members, (T,) out-of-fold flags, training ref_ids, their sort order and the
    galaxies' flux ratios and errors (None for runs made before they were stored); read and
    checked once per process and file version (streamed predictions ask for every chunk)."""
    s = read_splits(Path(path), members)
    splits = Splits(train=s.train, labelled=s.labelled, repetitions=0, folds=0)
    order = np.argsort(s.ref_id)
    return splits.predict_mask(), splits.out_of_fold(), s.ref_id, order, s.ratio, s.ratio_error
