"""deepz from Python: train a run on a catalogue in memory or on disk, load it again later (from a
notebook, another process or a Dask worker) and predict any catalogue with it.

A :class:`Run` is a handle on a run folder (``config.json``, ``status.json``, the model as
safetensors + JSON, ``predictions.fits``...), the same folder the command line and the app write.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astropy.table import Table

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.conventions import conventions_of
from deepz_core.catalog.formats.hats_dir import is_hats
from deepz_core.catalog.io import read_catalog, write_catalog
from deepz_core.catalog.screen import UnitCheck
from deepz_core.catalog.validation import validate
from deepz_core.device import keeps_global_rng
from deepz_core.errors import ConfigError, TrainingWarning
from deepz_core.evaluation.profiles import SurveyProfile, run_profile, survey_profile
from deepz_core.files import LOCK_FILE, check_outputs
from deepz_core.rundir import RunDir

if TYPE_CHECKING:
    from deepz_core.catalog.conventions import InputConventions
    from deepz_core.pz.products import PzConfig

CatalogLike = Catalog | Table | Any | str | Path  # a Catalog, astropy Table, DataFrame or file


def as_catalog(
    catalog: CatalogLike,
    what: str = "catalog",
    conventions: Any = None,
    predicting: bool = False,
    with_exposures: bool = True,
) -> Catalog:
    """A Catalog from a Catalog, a file path, an astropy Table, a pandas DataFrame or a mapping;
    ``conventions`` (an InputConventions or a mapping of its fields) say how a survey catalogue
    spells its columns (identifier, magnitudes and their limits). ``predicting``: a trained run
    predicts the file (``read_catalog``'s: a band without any value is imputed, a spec-z code is
    unknown; else both are refused, as training must); ``with_exposures``: read its single
    exposures too (the template fit uses them; the networks predict from the coadds)."""
    if isinstance(catalog, Catalog):
        return catalog
    conv = conventions_of(conventions)
    if isinstance(catalog, str | Path):
        return read_catalog(
            catalog, conventions=conv, predicting=predicting, with_exposures=with_exposures
        )
    return Catalog.from_table(catalog, source=what, conventions=conv)


# warn_if_doubtful's stacklevel from inside train/resume: their caller, past keeps_global_rng
CALLER_OF_WRAPPED = 4


def unit_check(allow_magnitude_shift: bool, part: bool) -> UnitCheck:
    """The unit check of a catalogue ``Run.predict`` predicts: judged on it (``part`` False:
    refused a unit's shift away unless ``allow_magnitude_shift``), or, for one ``part`` of a
    larger catalogue, not judged on it alone (``screen.UnitCheck.shifted`` False)."""
    check = UnitCheck(allow_magnitude_shift)
    return check.judged(False) if part else check


@dataclass(frozen=True)
class Run:
    """A deepz run folder: its configuration, status, out-of-fold predictions, and ``predict``.

    >>> import deepz_core as dz
    >>> cat = dz.simulate_catalog("lsst-deep", 300, seed=3)
    >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
    >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
    >>> run = dz.load_run(tmp / "r")  # later, in another process
    >>> run.state, len(run.predictions()), run.config.preset
    ('finished', 300, 'smoke')
    >>> pz = run.predict(cat)  # one row per catalogue row, in order
    >>> bool((pz["ref_id"] == cat.ref_id).all())
    True
    """

    path: Path

    @property
    def folder(self) -> RunDir:
        return RunDir(self.path)

    @property
    def config(self) -> Any:
        """The run's RunConfig (a template-fit run's config.json as a dict)."""
        from deepz_core.jobs.training_run import load_run_config
        from deepz_core.rundir import run_kind

        raw = self.folder.config()
        return load_run_config(self.folder) if run_kind(raw) == "deepz" else raw

    @property
    def status(self) -> dict[str, Any]:
        return self.folder.status()

    @property
    def state(self) -> str:
        """queued, running, finished, failed or cancelled."""
        return str(self.status.get("state", "missing"))

    @property
    def card(self) -> dict[str, Any]:
        """Name, note, catalogue name and survey profile (``card.json``; editable any time)."""
        return self.folder.card()

    @property
    def profile(self) -> SurveyProfile:
        """The survey profile the run is judged by: the one in its card, else the default for its
        bands (narrow-band with >= 5 narrow bands, else broad-band)."""
        return run_profile(self.folder.card(), run_bands(self.folder))

    @property
    def summary(self) -> dict[str, Any]:
        """Headline out-of-fold metrics of a finished run (sigma68, outliers, held-out NLL...)."""
        return dict(self.status.get("summary", {}))

    def predictions(self) -> Table:
        """The training catalogue's out-of-fold predictions (``predictions.fits``), one row per
        catalogue row.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("lsst-deep", 200, seed=3)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> oof = run.predictions()  # each galaxy by the networks that did not train on it
        >>> len(oof) == len(cat), bool((oof["ref_id"] == cat.ref_id).all())
        (True, True)
        """
        path = self.folder.file("predictions.fits")
        if not path.exists():
            raise ConfigError(f"run {self.path} has no predictions yet (state {self.state})")
        return Table.read(path)

    @keeps_global_rng
    def predict(
        self,
        catalog: CatalogLike,
        device: str = "cpu",
        grid: bool = False,
        *,
        keep_columns: tuple[str, ...] | list[str] = (),
        conventions: Any = None,
        out: str | Path | None = None,
        out_format: str | None = None,
        calibrate: bool = True,
        network_only: bool = False,
        overwrite: bool = False,
        allow_magnitude_shift: bool = False,
        part: bool = False,
    ) -> Table:
        """p(z) products for ``catalog``: an astropy Table with one row per catalogue row in its
        order (rows without a p(z) have NaN products and say why in ``flag``); galaxies the run
        trained on get their out-of-fold p(z). ``grid`` adds ``pz`` on the run's redshift grid.

        The coordinates (ra/dec, RA/DEC, coord_ra/coord_dec, _healpix_29) and ``keep_columns``
        come along; ``conventions`` (an InputConventions or its fields as a mapping) read survey
        spellings (``objectId``, ``mag_<band>`` with limits). ``out`` also writes the table with
        its provenance: .parquet, .fits, .hdf5 (a qp file) or, with ``out_format="hats"``, a
        HATS folder; an existing ``out`` is replaced only with ``overwrite=True``, and never when
        it is the catalogue or lies in a run folder. ``dz.to_qp(table)`` turns the result into a qp ensemble. ``calibrate``:
        apply the run's PIT calibration (``pit_raw`` holds the PIT before it); False gives the
        networks' raw p(z), as does a run trained with ``calibrate=False``. A spec-z outside
        [0, 10) (a 'no redshift' code such as 99) or an infinite ``mag`` is read as unknown
        (NaN), with one warning; a cell that is no number (text in a CSV column of fluxes) is
        refused naming its column, row and value, as ``deepz predict`` refuses it before
        writing anything. The single exposures of a file are not read (the networks use the
        coadds).

        A run combined with the template fit (:meth:`combine`, ``train(templates=...)``)
        predicts with the combination (``zphot_net``, ``zphot_tf``: each estimator's mode; the
        template fit costs ~100 galaxies/s on 2 cores); ``network_only=True`` keeps the networks'
        fast path (and is needed for ``grid``, ``keep_columns`` and HATS output).

        A catalogue whose reference-band magnitudes lie a median more than 5 mag from the run's
        training population's (fluxes in another unit than declared: nJy read as uJy is 7.5 mag)
        is refused with a CatalogError naming the flux column, the shift and the fix, before
        anything is written; ``allow_magnitude_shift=True`` predicts a sample really that much
        fainter or brighter, its rows outside the training magnitudes flagged OUTSIDE_TRAINING.
        So is a catalogue without a reference flux in any row (no galaxy could get a p(z)).
        ``part=True``: ``catalog`` is one part of a larger catalogue, which need not be a sample
        of it (RAIL's estimator predicts its input chunk by chunk, and a catalogue sorted by
        magnitude has chunks of faint galaxies only): these two checks of the whole catalogue are
        not made on the part.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("paus-mock", 600, seed=5)  # 521 with a spec-z
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "c", preset="smoke", pretrain="none")
        >>> sorted(run.calibration_summary())[:3]
        ['coverage68_after', 'coverage68_before', 'n']
        >>> raw = run.predict(cat, calibrate=False)
        >>> "pit_raw" in run.predict(cat).colnames, "pit_raw" in raw.colnames
        (True, False)
        """
        from deepz_core.inference.provenance import arrays_sha256, provenance
        from deepz_core.inference.stream import (
            astropy_table,
            load_predictor,
            output_format,
            write_output,
        )

        self._require_model()
        fmt = None if out is None else output_format(out, out_format)  # fails before any work
        if out is not None:  # never over the catalogue, a run's file or (unless asked) a file
            source = catalog if isinstance(catalog, str | Path) else None
            check_outputs({"out": out}, {"catalog": source, "run folder": self.path}, overwrite)
        if not network_only and self.folder.file("hybrid.json").exists():
            if grid or keep_columns or fmt == "hats":
                raise ConfigError(
                    f"run {self.path} predicts with its combination with the template fit, "
                    "which has no grid, keep_columns or HATS output: pass network_only=True"
                )
            cat = as_catalog(catalog, conventions=conventions, predicting=True)
            check = unit_check(allow_magnitude_shift, part)
            return self._predict_combined(cat, device, out, fmt, calibrate, catalog, check)
        predictor = load_predictor(self.path, device)
        cat = as_catalog(catalog, conventions=conventions, predicting=True, with_exposures=False)
        source = str(catalog) if isinstance(catalog, str | Path) else "the catalogue"
        if fmt == "hats":  # before predicting: the catalogue's own columns, every galaxy on the sky
            from deepz_core.inference.hats_out import check_sky_coordinates

            check_sky_coordinates(cat, source)
        check = unit_check(allow_magnitude_shift, part)
        arrow = predictor(cat, grid, tuple(keep_columns), calibrate, None, check, source)
        if fmt is not None:
            path = catalog if isinstance(catalog, str | Path) else None
            digest = None if path else arrays_sha256([cat.ref_id, cat.flux, cat.flux_error])
            prov = provenance(self.path, path, digest)
            write_output(arrow, out, fmt, prov, predictor.z_range)
        return self._with_meta(astropy_table(arrow), predictor.pz)

    def _predict_combined(
        self,
        cat: Catalog,
        device: str,
        out: str | Path | None,
        fmt: str | None,
        calibrate: bool,
        source: CatalogLike,
        check: UnitCheck,
    ) -> Table:
        """``predict`` with the run's combination with the template fit (``check``: the unit
        check of ``cat``, ``hybrid.runs.predict_hybrid``)."""
        from deepz_core.hybrid.runs import predict_hybrid
        from deepz_core.inference.arrow_tables import arrow_table
        from deepz_core.inference.provenance import arrays_sha256, provenance
        from deepz_core.inference.stream import write_output
        from deepz_core.training.config import run_pz_config

        table = predict_hybrid(self.path, cat, calibrate=calibrate, device=device, check=check)
        pz = run_pz_config(self.folder)
        if fmt is not None:
            path = source if isinstance(source, str | Path) else None
            digest = None if path else arrays_sha256([cat.ref_id, cat.flux, cat.flux_error])
            prov = provenance(self.path, path, digest)
            write_output(arrow_table(table), out, fmt, prov, (pz.z_min, pz.z_max))
        return self._with_meta(table, pz)

    def _with_meta(self, table: Table, pz: PzConfig) -> Table:
        """``table`` with the meta its readers use: the p(z) grid (qp's placeholder range), the
        odds column's window (pages and reports take that column for it) and the run's
        profile."""
        from deepz_core.evaluation.report import PROFILE_META
        from deepz_core.inference.provenance import ODDS_WINDOW_META, grid_text
        from deepz_core.inference.qp_io import GRID_META

        table.meta[GRID_META] = grid_text(pz)
        table.meta[ODDS_WINDOW_META] = f"{pz.odds_window:g}"
        table.meta[PROFILE_META] = json.dumps(self.profile.to_dict())
        return table

    @keeps_global_rng
    def combine(self, templates: str = "bcnz2", calibrate: bool = True, workers: int = 2) -> Run:
        """Combine the run's networks with the template fit of set ``templates`` (bcnz2 or
        kcorrect; beyond E20): p_net^a p_tf^b with exponents per half magnitude fitted on the
        out-of-fold galaxies, then calibrated (``calibrate``); ``predict`` uses it from then on.
        :meth:`combination_summary` compares network, template fit and combination.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("paus-mock", 250, seed=5)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> run = run.combine(workers=1)  # ~5 s: the template fit of 250 galaxies
        >>> sorted(run.combination_summary()["overall"])
        ['combined', 'network', 'templatefit']
        >>> len(run.combined_predictions()), "zphot_tf" in run.predict(cat).colnames
        (250, True)
        """
        from deepz_core.hybrid.runs import check_template_set, fit_hybrid

        check_template_set(templates)
        self._require_model()
        with self.folder.locked():
            fit_hybrid(self.path, templates, calibrate=calibrate, workers=workers)
        return self

    @keeps_global_rng
    def calibrate_on(
        self,
        catalog: CatalogLike,
        device: str = "cpu",
        *,
        network_only: bool = False,
        conventions: Any = None,
        workers: int = 2,
    ) -> dict[str, Any]:
        """Fit the calibration of the galaxies the run did not train on to the spec-z of a
        held-out ``catalog`` (galaxies no network trained on, e.g. a spec-z sample kept out of
        training; beyond E20): a second stage on top of the out-of-fold calibration, stored in
        the run, which ``predict`` then applies to new galaxies (training galaxies keep their
        out-of-fold calibration). Calibrates what ``predict`` uses: the combination with the
        template fit when the run has one, unless ``network_only``. Returns the held-out
        galaxies' PIT KS and 68% coverage before and after the stage, overall and per half
        magnitude, each galaxy by a stage fitted without it.

        Worth it where the training catalogue has few spec-z: the out-of-fold calibration is
        only as precise per magnitude as the training galaxies are many (docs/benchmarks.md,
        "A held-out calibration stage"). :meth:`drop_heldout_calibration` undoes it.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("paus-mock", 300, seed=5)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> heldout = dz.simulate_catalog("paus-mock", 250, seed=6)  # 209 spec-z, none trained on
        >>> stage = run.calibrate_on(heldout)
        >>> stage["n"], sorted(stage)[-4:]
        (209, ['pit_ks_after', 'pit_ks_before', 'precise', 'precision68'])
        """
        from deepz_core.hybrid.runs import calibrate_hybrid_on
        from deepz_core.inference.calibrate import (
            heldout_stage_from_table,
            load_calibration,
            save_calibration,
        )

        self._require_model()
        cat = as_catalog(catalog, conventions=conventions)
        source = str(catalog) if isinstance(catalog, str | Path) else None
        with self.folder.locked():
            if not network_only and self.folder.file("hybrid.json").exists():
                hybrid = calibrate_hybrid_on(self.path, cat, workers, device, source)
                return dict(hybrid.calibration.summary["heldout"])
            cal = load_calibration(self.path)
            if cal is None:
                raise ConfigError(
                    f"run {self.path} has no calibration to build on (trained with "
                    "calibrate=False, or before calibration existed)"
                )
            table = self.predict(cat, device, calibrate=False, network_only=True)
            cal = heldout_stage_from_table(cal, table, source)
            save_calibration(self.folder, cal)
        return dict(cal.summary["heldout"])

    def drop_heldout_calibration(self, network_only: bool = False) -> bool:
        """Remove the stage :meth:`calibrate_on` added (of the combination when the run has one,
        unless ``network_only``): new galaxies get the out-of-fold calibration and its pool
        scale again. True when there was a stage to remove.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("paus-mock", 300, seed=5)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> run.drop_heldout_calibration()  # none added (Run.calibrate_on adds one)
        False
        """
        from dataclasses import replace

        from deepz_core.hybrid.runs import load_hybrid, save_hybrid
        from deepz_core.inference.calibrate import load_calibration, save_calibration

        with self.folder.locked():
            hybrid = None if network_only else load_hybrid(self.path)
            if hybrid is not None and hybrid.calibration is not None:
                had = hybrid.calibration.heldout is not None
                save_hybrid(
                    self.path, replace(hybrid, calibration=hybrid.calibration.without_heldout())
                )
                return had
            if hybrid is None and (cal := load_calibration(self.path)) is not None:
                save_calibration(self.folder, cal.without_heldout())
                return cal.heldout is not None
        return False

    def combination_summary(self, outlier: float | None = None) -> dict[str, Any]:
        """sigma68, outliers and PIT KS of the network, the template fit and their combination
        over the out-of-fold spec-z galaxies, overall and per half magnitude; empty for a run
        without a combination. ``outlier``: count outliers at |dz| > outlier (a survey
        profile's, e.g. 0.15 broad-band) instead of E20's strict 0.02; the summary's
        ``outlier_threshold`` says which.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("lsst-deep", 200, seed=3)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> run.combination_summary()  # no combination yet: see Run.combine for one
        {}
        """
        from deepz_core.hybrid.runs import hybrid_predictions_file, load_hybrid, summary_outliers_at
        from deepz_core.pz.metrics import OUTLIER_THRESHOLD

        hybrid = load_hybrid(self.path)
        if hybrid is None:
            return {}
        summary = {**hybrid.summary, "outlier_threshold": OUTLIER_THRESHOLD}
        path = hybrid_predictions_file(self.path)
        if outlier is None or outlier == OUTLIER_THRESHOLD or path is None:
            return summary
        return summary_outliers_at(summary, Table.read(path), float(outlier))

    def combined_predictions(self) -> Table:
        """The training catalogue's out-of-fold predictions by the run's combination with the
        template fit (``hybrid_predictions.fits``): one row per catalogue row, deepz's columns
        plus each estimator's mode and ODDS (``zphot_net``, ``odds_net``, ``zphot_tf``,
        ``odds_tf``, ``chi2_tf``). ConfigError for a run without a combination (:meth:`combine`).

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("lsst-deep", 200, seed=3)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> run.combined_predictions()  # see Run.combine for a run with one
        Traceback (most recent call last):
        ...
        deepz_core.errors.ConfigError: run ... has no combination with the template fit: ...
        """
        from deepz_core.hybrid.runs import hybrid_predictions_file

        path = hybrid_predictions_file(self.path)
        if path is None:
            raise ConfigError(
                f"run {self.path} has no combination with the template fit: run "
                f"`deepz combine --run {self.path}` (or Run.combine) first"
            )
        return Table.read(path)

    def calibration_summary(self) -> dict[str, Any]:
        """The PIT before and after the run's calibration (KS, share of spec-z inside the 68%
        interval, overall and per magnitude bin; each training galaxy calibrated without its
        own PIT); empty for a run without a calibration.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("paus-mock", 300, seed=5)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> summary = run.calibration_summary()
        >>> summary["n"] > 200, sorted(summary)[:3]
        (True, ['coverage68_after', 'coverage68_before', 'n'])
        """
        from deepz_core.inference.calibrate import load_calibration

        cal = load_calibration(self.path)
        return {} if cal is None else dict(cal.summary)

    def evaluate(
        self, profile: SurveyProfile | str | dict | None = None, mag_edges: Any = None
    ) -> dict[str, Any]:
        """The evaluation report of the out-of-fold predictions (see :func:`evaluate`), judged by
        ``profile`` (default: the run's).

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("lsst-deep", 200, seed=3)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> report = run.evaluate(profile="broad-band")
        >>> sorted(report), report["overall"]["n_no_pz"], report["profile"]["name"]
        (['overall', 'per_magnitude', 'profile'], 0, 'broad-band')
        """
        from deepz_core.evaluation.report import evaluate_table

        prof = self.profile if profile is None else survey_profile(profile)
        return evaluate_table(self.predictions(), None, prof, mag_edges)

    @keeps_global_rng
    def resume(self) -> Run:
        """Continue a killed or cancelled run from its last checkpoint.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("lsst-deep", 200, seed=3)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> run.resume().state  # a finished run has nothing left to train
        'finished'
        """
        from deepz_core.jobs.training_run import execute_run

        with self.folder.locked():  # a run another process trains is refused, naming it
            self.folder.file("cancel").unlink(missing_ok=True)
            execute_run(self.folder)
        return self.warn_if_doubtful(CALLER_OF_WRAPPED)

    def warn_if_doubtful(self, stacklevel: int = 2, reused: bool = False) -> Run:
        """Issue the run's ``training_warning`` as a ``TrainingWarning`` (Python's warnings:
        once per place in a notebook, filterable), attributed ``stacklevel`` frames up (2: the
        caller; ``train`` and ``resume`` name their own caller's line); ``reused``: the run was
        handed back as it was (``train(..., reuse=True)``), and the warning says it is the one
        stored when it trained, not a new one; self.

        >>> import deepz_core as dz
        >>> cat = dz.simulate_catalog("lsst-deep", 200, seed=3)
        >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
        >>> run = dz.train(cat, tmp / "r", preset="smoke", pretrain="none")
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:  # a smoke run is doubtful
        ...     _ = run.warn_if_doubtful()
        >>> [w.category.__name__ for w in caught]
        ['TrainingWarning']
        """
        from deepz_core.jobs.status import training_warning

        warning = training_warning(self.folder)
        if warning:
            where = f"reused run {self.path} (its warning when it trained)" if reused else ""
            text = f"{where or f'run {self.path}'}: {warning}"
            warnings.warn(text, TrainingWarning, stacklevel=stacklevel)
        return self

    def _require_model(self) -> None:
        if not self.folder.file("model.safetensors").exists():
            raise ConfigError(f"run {self.path} has no trained model (state {self.state})")


def run_bands(run: RunDir) -> tuple[str, ...]:
    """The bands of a run: its model's (``model.json``), else its catalogue's."""
    meta_path = run.file("model.json")
    if meta_path.exists():
        bands = json.loads(meta_path.read_text()).get("metadata", {}).get("bands")
        if bands:
            return tuple(bands)
    config = run.config()
    return tuple(read_catalog(config["catalog"]).bands) if config.get("catalog") else ()


def run_ref_band(run: RunDir) -> str | None:
    """The reference band a run's model was trained with (``model.json``), None when it records
    none (the bands' default then applies)."""
    meta_path = run.file("model.json")
    if not meta_path.exists():
        return None
    return json.loads(meta_path.read_text()).get("metadata", {}).get("ref_band")


def load_run(path: str | Path) -> Run:
    """The run in folder ``path`` (written by :func:`train`, ``deepz train`` or the app).

    >>> import deepz_core as dz
    >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
    >>> dz.load_run(tmp)
    Traceback (most recent call last):
    ...
    deepz_core.errors.ConfigError: ... is not a deepz run folder (no config.json)
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not a deepz run folder (no config.json)")
    return Run(path)


@keeps_global_rng
def train(
    catalog: CatalogLike,
    out: str | Path,
    preset: str = "quick",
    pretrain: str = "auto",
    *,
    ref_band: str | None = None,
    members: int | None = None,
    folds: int | None = None,
    device: str = "auto",
    seed: int = 0,
    model: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    name: str | None = None,
    note: str | None = None,
    profile: SurveyProfile | str | dict | None = None,
    calibrate: bool = True,
    templates: str | None = None,
    reuse: bool = False,
    conventions: Any = None,
) -> Run:
    """Train a deepz ensemble of ``members`` x ``folds`` networks on ``catalog`` into the run
    folder ``out`` and return the finished :class:`Run`.

    ``catalog``: a Catalog, an astropy Table, a pandas DataFrame (canonical columns) or a file; an
    in-memory catalogue is saved as ``out/catalog.fits`` so the run can be resumed and audited.
    ``conventions`` (an InputConventions or a mapping of its fields, as for :func:`read_catalog`
    and :meth:`Run.predict`) say how a survey catalogue spells its columns: its identifier
    (``id_column``), AB magnitudes and their limits (``mag_limits``), the flux unit
    (``flux_unit="nJy"``), renamed columns; a table or file read with conventions other than the
    default is saved converted as ``out/catalog.fits`` (as ``deepz train --id-column ...`` does).
    ``preset``: smoke (seconds), quick (minutes on a CPU) or paper (E20, for a GPU). ``pretrain``:
    "auto" (an SPS simulation through the catalogue's bands), "none" or a simulation file.
    ``model`` / ``options``: ModelConfig / TrainConfig fields that override the preset.
    ``name``, ``note``: what people call the run (its card); ``profile``: the survey profile it is
    judged by ('narrow-band', 'broad-band' or a custom profile's fields; default from the bands).
    ``calibrate``: fit the PIT calibration on the out-of-fold predictions and apply it (beyond
    E20; ``calibrate=False`` keeps the networks' p(z) as E20 had them). ``templates``: after
    training, combine the networks with the template fit of that set (``Run.combine``).

    Calling ``train`` again with the same ``out``: a finished run is refused (with
    ``reuse=True``, one with the same settings on the same catalogue is returned, taking the
    ``name``, ``note`` and ``profile`` given: re-running a notebook or a pipeline; the same
    galaxies for a catalogue in memory, a file not modified since the run started); a killed one
    with the same settings resumes; one that never trained starts over; other settings are
    refused, naming what differs. A folder of other files is refused untouched, and a folder
    another process is training raises an InUseError naming it (the folder is locked while
    training).

    >>> import deepz_core as dz
    >>> cat = dz.simulate_catalog("lsst-deep", 400, seed=1)
    >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
    >>> run = dz.train(cat, tmp / "run", preset="smoke", pretrain="none")
    >>> run.state
    'finished'
    >>> dz.train(cat, tmp / "run", preset="smoke", pretrain="none", reuse=True).path == run.path
    True
    """
    from deepz_core.jobs.training_run import (
        REUSED,
        configured_run,
        execute_run,
        open_run_folder,
        training_folder,
    )

    out = Path(out)
    train_options = {"device": device, "seed": seed, **(options or {})}
    for field, value in (("repetitions", members), ("folds", folds)):
        if value is not None:
            train_options[field] = value
    conv = conventions_of(conventions)
    conv = None if conv == conventions_of(None) else conv  # the default: the file as it is
    own = (Path(catalog),) if isinstance(catalog, str | Path) and conv is None else ()
    with _new_folder_removed_if_refused(out), training_folder(out, own):  # refuses a folder of
        # other files before writing anything
        path, written, notes = _catalog_path(catalog, out, conv)
        try:
            config, read = configured_run(  # read once: its warnings come once
                str(path),
                None,
                pretrain,
                preset,
                ref_band,
                model,
                train_options,
                calibrate=calibrate,
                templates=templates,
            )
        except BaseException:
            if written:  # a refused call leaves the folder as it found it
                path.unlink(missing_ok=True)
            raise
        run, opened = open_run_folder(out, config, reuse, reuse_option="reuse=True")
        card = {k: v for k, v in (("name", name), ("note", note)) if v is not None}
        if profile is not None:
            card["profile"] = survey_profile(profile).to_dict()
        if card:  # a reused run takes them too: they name and judge it, they do not train it
            run.update_card(**card)
        if opened.startswith(REUSED):  # its warning was given when it trained: named as such
            return Run(out).warn_if_doubtful(CALLER_OF_WRAPPED, reused=True)
        for line in notes:  # what validating the catalogue in memory left out
            run.log(line)
        execute_run(run, read)
    return Run(out).warn_if_doubtful(CALLER_OF_WRAPPED)


@contextmanager
def _new_folder_removed_if_refused(out: Path) -> Iterator[None]:
    """Within the block, a run folder ``out`` that did not exist before is removed again when the
    block fails before the run was created (a bad preset, option or device): a refused call
    leaves no folder of only a lock file behind."""
    created = not out.exists()
    try:
        yield
    except BaseException:
        if created and out.is_dir() and not (out / "config.json").exists():
            (out / LOCK_FILE).unlink(missing_ok=True)
            with suppress(OSError):  # not empty: something else wrote there, keep it
                out.rmdir()
        raise


def _catalog_path(
    catalog: CatalogLike, out: Path, conventions: InputConventions | None = None
) -> tuple[Path, bool, tuple[str, ...]]:
    """The catalogue's file: the path given, or ``out/catalog.fits`` written from memory (or from
    a file read with ``conventions`` other than the default: the run reads the converted
    catalogue, as the command line's ``train --id-column``...); whether it was written now; and
    the notes of what validating it left out (for the run's log: the copy has none to say)."""
    if isinstance(catalog, str | Path):
        if not (Path(catalog).is_file() or is_hats(Path(catalog))):
            raise ConfigError(f"catalog {str(catalog)!r}: no such file or HATS catalogue folder")
        if conventions is None:
            return Path(catalog), False, ()
    cat = validate(as_catalog(catalog, conventions=conventions), "catalog")
    path = out / "catalog.fits"
    if (out / "config.json").exists() and path.exists():
        if not _same_galaxies(cat, read_catalog(path)):
            raise ConfigError(f"{out} holds a run on another catalogue; choose another folder")
        return path, False, cat.notes
    # the run's own copy (a foreign folder is refused), validated above: what validation left
    # out (exposures without information) is said once, not again by each reading of the copy
    write_catalog(cat, path, overwrite=True)
    return path, True, cat.notes


def _same_galaxies(a: Catalog, b: Catalog) -> bool:
    """Same ids, bands, fluxes, errors and spec-z (NaN equal to NaN)."""
    import numpy as np

    if a.bands != b.bands or not np.array_equal(a.ref_id, b.ref_id):
        return False
    pairs = ((a.flux, b.flux), (a.flux_error, b.flux_error), (a.zspec, b.zspec))
    return all(np.array_equal(x, y, equal_nan=True) for x, y in pairs)
