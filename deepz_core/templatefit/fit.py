"""BCNZ2-like template-fitting photo-z (E20 Appendix A): the public API.

A galaxy's model is a non-negative combination of templates (``template_set``, chosen by
``TemplateFitConfig.template_set``: "bcnz2", 8 BC03 continua x 5 Calzetti E(B-V) values with IGM,
plus 2 emission-line templates with fixed ratios to [OII]; or "kcorrect", kcorrect's 5 NMF templates
with IGM, independent of the demo mock's SEDs), fitted at every redshift with a free narrow/broad
band scaling k per galaxy and global per-band zero-points l_b (E20 eq. A3); p(z) ~
exp(-chi2_min(z) / 2) (eq. A2). ``templates_fit`` holds the chi2(z) search, ``templates_nnls`` the
solvers, ``templates_pz`` the p(z) products.

Inputs are prepared by ``templates_calib``: coadds rebuilt without outlier exposures, and per-band
zero-points calibrated on the spec-z galaxies as in BCNZ2; configuration in ``templates_config``.

Outputs use deepz's prediction columns (``predict.POINT_COLUMNS``, zspec, pit, mag, and the mixture
columns weights/means/stds, see ``templates_pz``) so ``evaluate`` reads them unchanged, plus chi2
(at the mode), template (index of the template with the largest share of the model, see
``template_names``), ebv (of the best run; NaN for sets without a Calzetti grid) and k_nb. The
set's version and name are in the table's meta (TFSET, TFNAME) and the zero-points file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import default_ref_band
from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write_json
from deepz_core.inference.hats_out import find_coordinate_pair
from deepz_core.inference.predict import POINT_COLUMNS, table_format, write_table
from deepz_core.inference.provenance import ODDS_WINDOW_META
from deepz_core.progress import Bar, progress_bar
from deepz_core.sed.template_sets import (
    DEFAULT_SET,
    TEMPLATE_SET_VERSION,
    load_template_set,
    set_info,
)
from deepz_core.templatefit.calibration import (
    calibrate_zero_points,
    check_catalog,
    chunk_size,
    fit_device,
    fit_screen,
    robust_coadds,
    scaled_fluxes,
)
from deepz_core.templatefit.chi2 import TemplateModel, fit_chunk
from deepz_core.templatefit.config import SOLVERS, TemplateFitConfig
from deepz_core.templatefit.pz import chi2_pz_grid, compress_mixture, grid_products

__all__ = [
    "SOLVERS",
    "TemplateFitConfig",
    "calibrate_zero_points",
    "fit_catalog",
    "read_zero_points",
    "template_names",
    "worker_pool",
    "write_templatefit",
]


WORKER_START_SECONDS = 6.0  # starting the two worker processes (measured 5.8 s on 2 cores)


def fit_seconds(n_galaxies: int, cfg: TemplateFitConfig) -> float:
    """About how many wall seconds ``fit_catalog`` takes for ``n_galaxies`` with two worker
    processes on a 2-core CPU: the workers' start plus the set's ``fit_cost`` per galaxy and
    redshift of ``cfg.z_grid()`` (within ~25% of the measured 3,000-galaxy fits of PAUS- and
    LSST-like catalogues, docs/benchmarks.md; other CPUs differ)."""
    cost = set_info(cfg.template_set).fit_cost * len(cfg.z_grid())
    return WORKER_START_SECONDS + max(0, n_galaxies) * cost


def fit_rate(cfg: TemplateFitConfig) -> float:
    """About how many galaxies per second the template fit of ``cfg`` fits on a 2-core CPU once
    its workers run (``fit_seconds``)."""
    return 1.0 / (set_info(cfg.template_set).fit_cost * len(cfg.z_grid()))


def template_names(template_set: str = DEFAULT_SET) -> tuple[str, ...]:
    """Names of the templates of set ``template_set`` indexed by the ``template`` output column."""
    return load_template_set(template_set).names


def fit_catalog(
    cat: Catalog,
    cfg: TemplateFitConfig | None = None,
    device: str | torch.device = "cpu",
    zero_points: np.ndarray | None = None,
    calibrate: bool = True,
    grid: bool = False,
    workers: int = 1,
    pool: Executor | None = None,
    stop: Callable[[], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Table:
    """Template-fit photo-z of every galaxy in ``cat``: a deepz-style predictions Table.

    Zero-points: ``zero_points`` (B,) if given, else calibrated on the spec-z galaxies when
    ``calibrate`` (and there are >= 10 of them), else 1. ``grid``: add the p(z) column ``pz``
    (N, G) on ``cfg.pz.grid()``. On CPU, chunks are fitted by ``pool`` (see ``worker_pool``) or,
    with ``workers`` > 1, by a pool of that many single-threaded processes made for this call: the
    fit is many small batched operations, which scale better over processes than over threads.
    The zero-points used are in ``table.meta['zero_points']``. ``stop`` is called after each
    chunk (~256 galaxies, about a second on CPU); what it raises (a cancel) ends the fit, the
    chunks not yet started dropped. ``progress`` is called before it with the number of galaxies
    fitted so far."""
    cfg = cfg or TemplateFitConfig()
    check_catalog(cat, cfg)
    if not (isinstance(workers, int) and workers >= 1):
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    dev = fit_device(device)
    cat = robust_coadds(cat, cfg)
    screen = fit_screen(cat)
    if zero_points is None and calibrate and np.sum(np.isfinite(cat.zspec)) >= 10:
        zero_points = calibrate_zero_points(cat, cfg, dev)
    flux, error = scaled_fluxes(cat, zero_points)
    # building the model also fills the disk cache that worker processes read
    model = TemplateModel.build(tuple(cat.bands), cfg.z_grid(), dev, cfg.template_set)
    step = chunk_size(cfg, dev)
    keep = np.flatnonzero(screen.predictable)  # NO_PZ rows are not fitted: NaN products
    chunks = [
        (flux[r], error[r], cat.zspec[r])
        for r in (keep[s : s + step] for s in range(0, len(keep), step))
    ]
    with progress_bar(cat.n_galaxies, "template fit") as bar:
        done = _chunk_done(bar, stop, progress)
        if len(keep) < cat.n_galaxies:
            done(cat.n_galaxies - len(keep))  # rows without a p(z) count as handled
        parts = _fit_chunks(model, chunks, cfg, grid, workers, pool, done)
    products = _scatter(parts, keep, cat.n_galaxies, cfg, grid)
    return _table(cat, products, zero_points, cfg, screen.flags)


def _scatter(
    parts: list[dict[str, np.ndarray]],
    keep: np.ndarray,
    n: int,
    cfg: TemplateFitConfig,
    grid: bool,
) -> dict[str, np.ndarray]:
    """Products (n,) / (n, M) / (n, G) of all rows from the chunk products of the fitted rows
    ``keep`` (k,): NaN elsewhere (``template`` -1), never numbers for a galaxy without a p(z)."""
    m, g = cfg.mixture_components, len(cfg.pz.grid())
    shapes = {name: () for name in (*POINT_COLUMNS, "pit", "chi2", "template", "ebv", "k_nb")}
    shapes.update({"weights": (m,), "means": (m,), "stds": (m,)})
    if grid:
        shapes["pz"] = (g,)
    out = {}
    for name, shape in shapes.items():
        fill = -1 if name == "template" else np.nan
        out[name] = np.full((n, *shape), fill, dtype=np.int64 if name == "template" else float)
        if parts:
            out[name][keep] = np.concatenate([p[name] for p in parts])
    return out


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned, single-threaded processes for ``fit_catalog(pool=...)``
    (use as a context manager; each process keeps its template tables between calls)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # safe with torch (fork is not, with threads)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)


def _fit_chunks(
    model: TemplateModel,
    chunks: list,
    cfg: TemplateFitConfig,
    grid: bool,
    workers: int,
    pool: Executor | None,
    done: Callable[[int], None],
) -> list[dict[str, np.ndarray]]:
    """Products of each chunk (flux, error, zspec), in order: on CPU by ``pool`` or a pool of
    ``workers`` processes made here when there is more than one chunk, else in this process;
    ``done`` is called with each chunk's galaxies once it is fitted."""
    parallel = model.flux.device.type == "cpu" and len(chunks) > 1
    if parallel and pool is not None:
        return _fit_in_pool(pool, model, chunks, cfg, grid, done)
    if parallel and workers > 1:
        with worker_pool(min(workers, len(chunks))) as own:
            return _fit_in_pool(own, model, chunks, cfg, grid, done)
    parts = []
    for f, e, zs in chunks:
        parts.append(_fit_rows(model, f, e, zs, cfg, grid))
        done(len(f))
    return parts


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker_fit(
    bands: tuple[str, ...],
    z: np.ndarray,
    flux: np.ndarray,
    error: np.ndarray,
    zspec: np.ndarray,
    cfg: TemplateFitConfig,
    grid: bool,
) -> dict[str, np.ndarray]:
    # cached per process: a pool's workers rebuild the model once, from the disk cache
    model = TemplateModel.build(bands, z, torch.device("cpu"), cfg.template_set)
    return _fit_rows(model, flux, error, zspec, cfg, grid)


def _chunk_done(
    bar: Bar, stop: Callable[[], None] | None, progress: Callable[[int], None] | None
) -> Callable[[int], None]:
    """What follows a chunk of ``n`` galaxies: the progress bar advanced, ``progress`` told the
    galaxies fitted so far, then ``stop``."""
    fitted = 0

    def done(n: int) -> None:
        nonlocal fitted
        fitted += n
        bar.update(n)
        if progress is not None:
            progress(fitted)
        if stop is not None:
            stop()

    return done


def _fit_in_pool(
    pool: Executor,
    model: TemplateModel,
    chunks: list,
    cfg: TemplateFitConfig,
    grid: bool,
    done: Callable[[int], None],
) -> list[dict[str, np.ndarray]]:
    """Products of each chunk, in order, fitted by the processes of ``pool``; when ``done``
    (called per chunk finished) raises, the chunks not yet started are cancelled."""
    futures = {
        pool.submit(_worker_fit, model.bands, model.z, *c, cfg, grid): i
        for i, c in enumerate(chunks)
    }
    parts: list = [None] * len(chunks)
    try:
        for fut in as_completed(futures):
            parts[futures[fut]] = fut.result()
            done(len(chunks[futures[fut]][0]))
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return parts


def _fit_rows(
    model: TemplateModel,
    flux: np.ndarray,
    error: np.ndarray,
    zspec: np.ndarray,
    cfg: TemplateFitConfig,
    grid: bool,
) -> dict[str, np.ndarray]:
    """Products (N,) / (N, M) / (N, G) of one chunk."""
    dev = model.flux.device
    res = fit_chunk(
        model,
        torch.as_tensor(flux, dtype=torch.float32, device=dev),
        torch.as_tensor(error, dtype=torch.float32, device=dev),
        cfg,
    )
    p = chi2_pz_grid(res.chi2, model.z, cfg.pz)  # (C, G)
    out = grid_products(p, cfg.pz, torch.as_tensor(zspec, dtype=torch.float64, device=dev))
    out.update(compress_mixture(p, cfg.pz, cfg.mixture_components))
    step = (model.z[-1] - model.z[0]) / (len(model.z) - 1)
    k_mode = torch.round((out["zphot"] - model.z[0]) / step).long().clamp(0, len(model.z) - 1)
    rows = torch.arange(len(k_mode), device=dev)
    out["chi2"] = res.chi2[rows, k_mode]
    members = model.runs[res.best_run]  # (C, T)
    out["template"] = members[rows, res.coeffs.argmax(1)]
    ebv = torch.as_tensor(load_template_set(model.template_set).ebv, device=dev)
    out["ebv"] = ebv[members[:, 0]]
    out["k_nb"] = res.k
    if grid:
        out["pz"] = p.float()
    return {k: v.cpu().numpy() for k, v in out.items()}


def _table(
    cat: Catalog,
    products: dict[str, np.ndarray],
    zero_points: np.ndarray | None,
    cfg: TemplateFitConfig,
    flags: np.ndarray,
) -> Table:
    """deepz's prediction columns (``flag``: the ``PzFlag`` bits of ``fit_screen``) plus the
    fit's own; the fit's redshift range and the p(z) grid in the meta."""
    t = Table()
    t["ref_id"] = cat.ref_id
    for name in POINT_COLUMNS:
        t[name] = products[name]
    t["zspec"] = cat.zspec
    t["pit"] = products["pit"]
    # the catalogue's magnitude, else the reference band's, as deepz's predictions: a broad-band
    # catalogue without a 'mag' column still gets metrics per magnitude
    t["mag"] = cat.mag if cat.mag is not None else cat.magnitudes(default_ref_band(cat.bands))
    t["flag"] = np.asarray(flags, dtype=np.int32)
    pair = find_coordinate_pair(list(cat.extra))  # ra/dec, RA/DEC or DP0's coord_ra/coord_dec
    for name in pair or ():
        t[name] = cat.extra[name]
    t["chi2"] = products["chi2"].astype(np.float32)
    t["template"] = products["template"].astype(np.int16)
    t["ebv"] = products["ebv"].astype(np.float32)
    t["k_nb"] = products["k_nb"].astype(np.float32)
    for name in ("weights", "means", "stds") + (("pz",) if "pz" in products else ()):
        t[name] = products[name].astype(np.float32)
    zp = np.ones(len(cat.bands)) if zero_points is None else np.asarray(zero_points, dtype=float)
    info = set_info(cfg.template_set)
    t.meta.update(
        {
            "METHOD": "templatefit",
            "TFSET": info.version,
            "TFNAME": info.name,
            "ZPCAL": zero_points is not None,
            "TF_ZMIN": cfg.z_min,
            "TF_ZMAX": cfg.z_max,
            "PZ_ZMIN": cfg.pz.z_min,
            "PZ_ZMAX": cfg.pz.z_max,
            "PZ_DZ": cfg.pz.dz,
            ODDS_WINDOW_META: f"{cfg.pz.odds_window:g}",  # as deepz predictions carry it
        }
    )
    t.meta["zero_points"] = dict(zip(cat.bands, zp.tolist(), strict=True))
    return t


def zero_points_path(out: Path | str) -> Path:
    """The JSON file next to a predictions file that holds its zero-points."""
    out = Path(out)
    return out.with_name(out.name + ".zeropoints.json")


def write_templatefit(table: Table, path: Path | str) -> Path:
    """Write a ``fit_catalog`` table as FITS or Parquet (by extension, atomically) and its
    zero-points as ``<path>.zeropoints.json``."""
    table_format(path)
    out = table.copy(copy_data=False)
    zp = out.meta.pop("zero_points", None)
    write_table(out, path)
    if zp is not None:
        # "template_set" holds the version, as it did before there was a second set
        tset = {
            "template_set": out.meta.get("TFSET", TEMPLATE_SET_VERSION),
            "template_set_name": out.meta.get("TFNAME", DEFAULT_SET),
        }
        atomic_write_json(
            zero_points_path(path), {"bands": list(zp), "zero_points": list(zp.values()), **tset}
        )
    return Path(path)


def read_zero_points(path: Path | str, bands: tuple[str, ...]) -> np.ndarray:
    """(B,) zero-points for ``bands`` from a ``.zeropoints.json`` file (ConfigError if a band lacks one)."""
    try:
        data = json.loads(Path(path).read_text())
        table = dict(zip(data["bands"], data["zero_points"], strict=True))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--zero-points {path}: not a zero-points JSON file ({exc})") from exc
    missing = [b for b in bands if b not in table]
    if missing:
        raise ConfigError(f"--zero-points {path}: no zero-points for bands {missing}")
    return np.array([float(table[b]) for b in bands])


def explain_galaxy(
    cat: Catalog, cfg: TemplateFitConfig | None = None, zero_points: np.ndarray | None = None
) -> dict[str, np.ndarray | float | str]:
    """The fit of the first galaxy of ``cat`` laid open (eazy-py's viewer): chi2_min(z) on the fit
    grid where it was solved (``z_chi2``, ``chi2``), and at the best redshift ``z_best`` the best-fit
    model flux of every band (``model_flux`` (B,), in the catalogue's flux units: zero-points and
    the narrow-band scale k applied) and the name of the template with the largest coefficient."""
    cfg = cfg or TemplateFitConfig()
    check_catalog(cat, cfg)
    cat = robust_coadds(cat.select(np.arange(1)), cfg)
    flux, error = scaled_fluxes(cat, zero_points)
    cpu = torch.device("cpu")
    model = TemplateModel.build(tuple(cat.bands), cfg.z_grid(), cpu, cfg.template_set)
    res = fit_chunk(
        model,
        torch.as_tensor(flux, dtype=torch.float32),
        torch.as_tensor(error, dtype=torch.float32),
        cfg,
    )
    members = model.runs[res.best_run]  # (1, T)
    a = model.flux[res.best_z[:, None], :, members].transpose(1, 2).double()  # (1, B, T)
    m = torch.einsum("cbt,ct->cb", a, res.coeffs.double())[0].numpy()  # (B,)
    scale = np.where(model.narrow.numpy(), float(res.k[0]), 1.0)
    zp = np.ones(len(cat.bands)) if zero_points is None else np.asarray(zero_points, float)
    chi2 = res.chi2[0].numpy()
    solved = np.isfinite(chi2)
    best = int(members[0, int(res.coeffs[0].argmax())])
    return {
        "z_chi2": model.z[solved],
        "chi2": chi2[solved],
        "z_best": float(model.z[int(res.best_z[0])]),
        "model_flux": m * scale * zp,
        "template": model.names[best],
    }
