"""The one module holding Streamlit caches, plus folder and query-parameter helpers.

Every cache is keyed by small values (paths, hashes, mapping JSON, modification times); files named by
content hash never change, so their path is a safe key. Big objects are returned from
``st.cache_resource`` and must be treated as read-only. The selected catalogue and run live in
``st.query_params`` ("catalog": 'demo' or a key; "run": a run id) so they survive a page reload,
and so does the browser's ownership token ("owner", ``owner_token``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import streamlit as st

from deepz_core.catalog import uploads
from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import Features
from deepz_core.catalog.import_report import (
    CatalogSummary,
    Problem,
    Report,
    Source,
    prepare_catalog,
    source_fluxzp,
    summarize,
)
from deepz_core.catalog.io import read_catalog
from deepz_core.catalog.mapping import GalaxyMapping
from deepz_core.errors import ConfigError, DeepzError
from deepz_core.evaluation import galaxy, survey
from deepz_core.evaluation import run_products as analysis
from deepz_core.evaluation.profiles import PROFILES, SurveyProfile, run_profile, survey_profile
from deepz_core.experiments import report_reader as reports  # noqa: F401 (pages use state.reports)
from deepz_core.hybrid.runs import HYBRID_FILE, hybrid_predictions_file, load_hybrid
from deepz_core.inference.calibrate import (
    CALIBRATION_FILE,
    MIN_GALAXIES,
    load_calibration,
    stage_precision_note,
)
from deepz_core.jobs import prediction as prediction_jobs
from deepz_core.jobs import queue
from deepz_core.jobs import status as job_status
from deepz_core.jobs.simulation import SimJob, list_simulations
from deepz_core.nets.deepz import DeepzModel, load_model, load_model_json
from deepz_core.pz import metrics
from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir, check_run_id, list_runs, run_kind
from deepz_core.sed.template_sets import DEFAULT_SET
from deepz_core.training.config import run_pz_config

# --- folders (under DEEPZ_HOME or the working directory) ----------------------------------------


def runs_dir() -> Path:
    return uploads.runs_dir()


def uploads_dir() -> Path:
    return uploads.uploads_dir()


def sims_dir() -> Path:
    return uploads.sims_dir()


def run_dir(run_id: str) -> RunDir:
    """The folder of run ``run_id`` under ``runs_dir()``; an id that is not one raises
    ConfigError (``rundir.check_run_id``)."""
    return RunDir(runs_dir() / check_run_id(run_id))


# --- query parameters ----------------------------------------------------------------------------


def query_value(key: str) -> str | None:
    """``st.query_params[key]`` or None."""
    value = st.query_params.get(key)
    return value or None


def set_query_value(key: str, value: str | None) -> None:
    """Set (or with None remove) a query parameter."""
    if value is None:
        st.query_params.pop(key, None)
    else:
        st.query_params[key] = value


def owner_token() -> str:
    """This browser's token: query "owner" (so it survives a reload), else this session's, else a
    new one; the runs it queues are its own (``deepz_core.jobs.queue``)."""
    token = query_value("owner") or st.session_state.get("owner_token")
    if not queue.valid_token(token):
        token = queue.new_owner_token()
    st.session_state["owner_token"] = token
    if query_value("owner") != token:
        set_query_value("owner", token)
    return token


def selected_catalog() -> str:
    """'demo' or the key of an uploaded catalogue: the address bar's, else this browser session's
    last choice (kept when moving between pages), else the one chosen last on this server, else
    'demo'."""
    choice = query_value("catalog") or st.session_state.get("catalog") or uploads.last_catalog()
    return choice or uploads.DEMO


def select_catalog(choice: str) -> None:
    """Make ``choice`` the catalogue every page uses (address bar, session, server)."""
    set_query_value("catalog", choice)
    st.session_state["catalog"] = choice
    uploads.remember_catalog(choice)


def catalog_path(choice: str | None = None) -> str | None:
    """Path of catalogue ``choice`` (default: the selected one); None if it does not exist."""
    choice = choice or selected_catalog()
    if choice == uploads.DEMO:
        return demo_catalog_path()
    path = uploads.resolve_catalog(choice)
    return None if path is None else str(path)


def selected_run() -> RunDir | None:
    """The run named by ``st.query_params["run"]`` if its folder exists."""
    run_id = query_value("run")
    if not run_id:
        return None
    try:
        run = run_dir(run_id)
    except Exception:  # a bad id in the address bar: no run selected
        return None
    return run if run.file("config.json").exists() else None


# --- caches --------------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Simulating the demo catalogue (first use only)...")
def demo_catalog_path() -> str:
    """Path of the cached demo mock, generated on first use."""
    from deepz_core.simulate import demo_catalog_path as make

    return str(make())


@st.cache_resource(max_entries=8, show_spinner="Reading catalogue...")
def load_catalog(path: str, mtime: float) -> Catalog:
    """A catalogue read from disk, cached by (path, modification time). A band without any value
    is kept: a catalogue uploaded to predict may have one, which the prediction imputes
    (``auto_import``); training reads its catalogue itself, and refuses such a band."""
    return read_catalog(Path(path), measured_bands=False)


def catalog(path: str) -> Catalog:
    return load_catalog(path, Path(path).stat().st_mtime)


@st.cache_resource(max_entries=8, show_spinner="Summarising catalogue...")
def _summary(path: str, mtime: float) -> CatalogSummary:
    return summarize(catalog(path))


@st.cache_resource(max_entries=8, show_spinner="Screening the spec-z galaxies...")
def _label_counts(path: str, mtime: float, ref_band: str) -> dict[str, int]:
    from deepz_core.jobs.training_run import label_counts as counts

    return counts(catalog(path), ref_band)


def label_counts(path: str, ref_band: str) -> dict[str, int]:
    """The spec-z galaxies a run with reference band ``ref_band`` trains on and scores, by the
    training's own rule (``deepz_core.jobs.training_run.label_counts``), cached by mtime."""
    return _label_counts(path, Path(path).stat().st_mtime, ref_band)


def catalog_summary(path: str) -> CatalogSummary:
    """Counts, coverage and SNR of the catalogue at ``path`` (cached by path and mtime)."""
    return _summary(path, Path(path).stat().st_mtime)


@st.cache_resource(max_entries=6, show_spinner="Reading uploaded file...")
def raw_tables(
    path: str, role: str = "galaxies", magnitudes: bool = False
) -> tuple[dict, dict, dict | None]:
    """(columns, meta, exposure columns inside the file or None) of an uploaded file (named by its
    content hash, so the path is a safe key); ``role``: 'galaxies', 'exposures' or 'specz';
    ``magnitudes``: AB magnitude columns converted to fluxes."""
    return uploads.raw_columns(path, role, magnitudes)


@st.cache_resource(max_entries=4, show_spinner="Checking the catalogue...")
def import_report(
    galaxies: str,
    mapping_json: str,
    exposures: str | None = None,
    exposure_mapping_json: str | None = None,
    specz: str | None = None,
    specz_mapping_json: str | None = None,
    fluxzp: float | None = None,
    fix: bool = False,
    magnitudes: bool = False,
    drop_flagged: bool = False,
    measured_bands: bool = True,
) -> Report:
    """Validation report of uploaded files under column mappings (all keys are small values).

    ``exposures`` may equal ``galaxies``: the EXPOSURES table inside the galaxies file;
    ``magnitudes``: the galaxies' AB magnitudes converted to fluxes first; ``drop_flagged``: drop
    the galaxies whose values the photometric screen would flag (kept otherwise);
    ``measured_bands``: refuse a band without any value (False: a catalogue to predict)."""
    cols, meta, inner = raw_tables(galaxies, "galaxies", magnitudes)
    gal = Source(cols, GalaxyMapping.from_json(mapping_json), Path(galaxies).name, meta)
    exp = None
    if exposures is not None:
        inside = exposures == galaxies
        exp_cols = inner if inside else raw_tables(exposures, "exposures")[0]
        name = f"{Path(galaxies).name} (exposures)" if inside else Path(exposures).name
        exp = Source(exp_cols or {}, json.loads(exposure_mapping_json or "{}"), name)
    spz = None
    if specz is not None:
        spz_cols = raw_tables(specz, "specz")[0]
        spz = Source(spz_cols, json.loads(specz_mapping_json or "{}"), Path(specz).name)
    return prepare_catalog(gal, exp, spz, fluxzp, fix, drop_flagged, measured_bands)


# --- analysis pages: results, galaxy explorer, exposure dropping, quality cuts -------------------
# Cached on RunKey = (run folder, predictions.fits mtime) plus small choices (window, cut, ref_id).

RunKey = tuple[str, float]


ALL_KINDS = ("deepz", "templatefit")


def finished_runs(kinds: tuple[str, ...] = ALL_KINDS) -> list[str]:
    """Ids of finished runs of these kinds ('deepz' networks, 'templatefit') that hold
    predictions, newest first."""
    return [
        r.run_id
        for r in list_runs(runs_dir())
        if r.status().get("state") == "finished"
        and r.file("predictions.fits").is_file()
        and run_kind(r.config()) in kinds
    ]


def analysis_run(finished: list[str]) -> str:
    """Query "run" if it is finished, else this tab's last choice, else the newest finished run."""
    for candidate in (query_value("run"), st.session_state.get("analysis_run")):
        if candidate in finished:
            return candidate
    return finished[0]


def select_analysis_run(run_id: str) -> None:
    st.session_state["analysis_run"] = run_id
    set_query_value("run", run_id)


INT64 = (-(2**63), 2**63 - 1)


def parse_id(value: object) -> int | None:
    """A galaxy id from text (or a number) as a Python int within int64; None if it is not one.
    Ids travel as text: a 19-digit survey id is beyond a JavaScript number's 53 bits."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if INT64[0] <= number <= INT64[1] else None


def selected_galaxy() -> int | None:
    """ref_id from query "galaxy", else this tab's last choice; None if unset or not an id."""
    for value in (query_value("galaxy"), st.session_state.get("galaxy")):
        number = parse_id(value)
        if number is not None:
            return number
    return None


def select_galaxy(ref_id: int) -> None:
    st.session_state["galaxy"] = str(int(ref_id))
    set_query_value("galaxy", str(int(ref_id)))


def run_key(run_id: str) -> RunKey:
    path = runs_dir() / check_run_id(run_id)
    return str(path), (path / "predictions.fits").stat().st_mtime


def combined_key(run_id: str) -> RunKey | None:
    """Cache key of the run's combined predictions with the template fit
    (``hybrid_predictions.fits``: the file itself, and its mtime); None for a run without."""
    path = hybrid_predictions_file(runs_dir() / check_run_id(run_id))
    return None if path is None else (str(path), path.stat().st_mtime)


def key_folder(key: RunKey) -> Path:
    """The run (or prediction job) folder behind a cache key: the key's folder, or the folder
    holding its predictions file (``combined_key``)."""
    path = Path(key[0])
    return path.parent if path.is_file() else path


def predictions_file(folder: str | Path) -> Path:
    """A run's ``predictions.fits``, or a prediction job's ``predictions.parquet``; a
    predictions file given itself (``combined_key``) is that file."""
    if Path(folder).is_file():
        return Path(folder)
    fits = Path(folder) / "predictions.fits"
    return fits if fits.exists() else Path(folder) / prediction_jobs.OUTPUT


def job_key(job_id: str) -> RunKey:
    """Cache key of a finished prediction job (Predict page): (folder, output mtime)."""
    path = uploads.predictions_dir() / check_run_id(job_id)
    return str(path), (path / prediction_jobs.OUTPUT).stat().st_mtime


def run_pz(key: RunKey) -> PzConfig:
    folder = key_folder(key)
    if (folder / prediction_jobs.JOB_FILE).exists():
        return PzConfig(**prediction_jobs.read_job(folder).get("pz", {}))
    return run_pz_config(RunDir(folder))


@st.cache_resource(max_entries=4, show_spinner="Reading predictions...")
def predictions(key: RunKey) -> analysis.Predictions:
    """The run's (or prediction job's) predictions as read-only arrays."""
    return analysis.read_predictions(predictions_file(key[0]))


@st.cache_resource(max_entries=2, show_spinner="Loading the model and the run's catalogue...")
def model_inputs(key: RunKey) -> tuple[DeepzModel, Catalog, Features]:
    """The run's ensemble and its catalogue's features (read-only), screened against the
    training population as its predictions were (``model_features``): a galaxy the screen gives
    no p(z) there gets none on any page, and far ratios are imputed as they were."""
    from deepz_core.inference.predict import model_features

    folder = key_folder(key)
    config = RunDir(folder).config()
    meta = load_model_json(folder).get("metadata", {})
    path, exposures = config["catalog"], config.get("exposures")
    if exposures is None and Path(path).is_file():  # as the other pages read it: cached
        cat = catalog(path)
    else:
        cat = read_catalog(path, exposures)
    model = load_model(folder)
    features = model_features(model, cat, meta.get("ref_band") or config.get("ref_band"))
    return model, cat, features


# --- survey profiles (deepz_core.evaluation.profiles): one per run, in its card ---------------


@st.cache_data(max_entries=64, show_spinner=False)
def _profile(folder: str, card_mtime: float) -> dict:
    from deepz_core.jobs.run import run_bands

    run = RunDir(Path(folder))
    try:
        bands = run_bands(run)
    except Exception:  # the run's catalogue is gone: its card, else the narrow-band default
        bands = ()
    return run_profile(run.card(), bands).to_dict()


def run_folder(key: RunKey) -> Path:
    """The run folder behind a cache key (a prediction job's run for a job folder)."""
    folder = key_folder(key)
    if (folder / prediction_jobs.JOB_FILE).exists():
        return Path(prediction_jobs.read_job(folder)["run"])
    return folder


def profile(key: RunKey) -> SurveyProfile:
    """The survey profile the run behind ``key`` is judged by (its card's, else from its bands)."""
    folder = run_folder(key)
    card = folder / "card.json"
    return SurveyProfile.from_dict(
        _profile(str(folder), card.stat().st_mtime if card.exists() else 0.0)
    )


def save_profile(key: RunKey, value: SurveyProfile) -> None:
    """Store ``value`` as the run's profile (its card): every page then judges it by it."""
    RunDir(run_folder(key)).update_card(profile=value.to_dict())


def profile_editor(key: RunKey, widget_key: str) -> SurveyProfile:
    """The run's profile with a popover to change it (narrow-band, broad-band or custom
    thresholds); the choice is saved in the run's card and used on every page."""
    current = profile(key)
    box = st.popover(f"Survey profile: {current.name}", help=current.label)
    names = list(PROFILES) + ["custom"]
    name = box.radio("Profile", names, index=names.index(current.name), key=f"{widget_key}_name")
    base = current if name == current.name else survey_profile(PROFILES.get(name, current))
    c1, c2 = box.columns(2)
    fields = {
        "outlier": c1.number_input(
            "outliers: |Δz|/(1+z) >",
            0.001,
            1.0,
            base.outlier,
            0.005,
            format="%.3f",
            key=f"{widget_key}_out_{name}",
            disabled=name != "custom",
        ),
        "odds_window": c2.number_input(
            "ODDS window (total width Δz)",
            0.001,
            1.0,
            base.odds_window,
            0.001,
            format="%.3f",
            key=f"{widget_key}_win_{name}",
            disabled=name != "custom",
        ),
    }
    target = c1.number_input(
        "σ68 target (0: none)",
        0.0,
        1.0,
        base.target or 0.0,
        0.0005,
        format="%.4f",
        key=f"{widget_key}_tgt_{name}",
        disabled=name != "custom",
    )
    chosen = (
        survey_profile(name)
        if name != "custom"
        else SurveyProfile(name="custom", **fields, target=target or None)
    )
    box.caption(chosen.label + f"; catastrophic outliers |Δz|/(1+z) > {chosen.catastrophic:g}.")
    if chosen != current and box.button("Use for this run", key=f"{widget_key}_save"):
        save_profile(key, chosen)
        st.rerun()
    return current


def profile_json(value: SurveyProfile) -> str:
    """A small, hashable cache key of a profile."""
    return json.dumps(value.to_dict(), sort_keys=True)


@st.cache_data(max_entries=8, show_spinner="Computing statistics...")
def results_stats(key: RunKey, profile_key: str, mag_edges: tuple | None = None) -> dict:
    """Results-page statistics judged by the profile ``profile_key`` (``profile_json``), with
    magnitude bins ``mag_edges`` (None: bins that follow the data)."""
    prof = SurveyProfile.from_dict(json.loads(profile_key))
    edges = None if mag_edges is None else np.asarray(mag_edges, float)
    odds = window_odds(key, prof.odds_window)
    return analysis.results_stats(predictions(key), prof, edges, odds)


def default_mag_edges(key: RunKey) -> np.ndarray | None:
    """0.5-mag bins that follow the scored galaxies' magnitudes (None without magnitudes)."""
    pred = predictions(key)
    if pred.mag is None:
        return None
    return metrics.data_mag_edges(pred.mag[pred.scored])


@st.cache_data(max_entries=8, show_spinner="Computing ODDS for this window...")
def window_odds(key: RunKey, window: float):
    return analysis.odds_for_window(predictions(key), window)


@st.cache_data(max_entries=16, show_spinner="Computing quality-cut curves...")
def cut_curves(key: RunKey, window: float, mag_max: float | None, outlier: float = 0.02) -> dict:
    pred = predictions(key)
    return analysis.cut_curves(pred, window_odds(key, window), mag_max, outlier=outlier)


@st.cache_data(max_entries=32, show_spinner=False)
def cut_threshold(key: RunKey, window: float, completeness: float, mag_max: float | None) -> float:
    odds = window_odds(key, window)
    return analysis.threshold_for_completeness(predictions(key), odds, completeness, mag_max)


@st.cache_data(max_entries=32, show_spinner=False)
def cut_stats(
    key: RunKey, window: float, threshold: float, mag_max: float | None, outlier: float = 0.02
) -> dict:
    odds = window_odds(key, window)
    return analysis.cut_stats(predictions(key), odds, threshold, mag_max, outlier)


def selection_count(key: RunKey, window: float, threshold: float, mag_max: float | None) -> int:
    """Galaxies (all, spec-z or not) passing ODDS >= threshold and the magnitude limit."""
    odds = window_odds(key, window)
    return int(analysis.selection_mask(predictions(key), odds, threshold, mag_max).sum())


def selection_bytes(
    key: RunKey, window: float, threshold: float, mag_max: float | None, fmt: str
) -> bytes:
    odds = window_odds(key, window)
    pred = predictions(key)
    return analysis.selection_bytes(pred, odds, threshold, window, mag_max, fmt)


def explorer_table(
    key: RunKey, window: float, mag_range, outliers: bool, odds_min: float, limit: int
) -> tuple[dict, int]:
    """The explorer's filtered table: ODDS for ``window``, outliers by the run's profile."""
    odds = window_odds(key, window)
    outlier = profile(key).outlier
    pred = predictions(key)
    return analysis.galaxy_table(pred, mag_range, outliers, odds_min, limit, outlier, odds)


@st.cache_data(max_entries=32, show_spinner=False)
def galaxy_pz(key: RunKey, ref_id: int, window: float | None = None) -> dict | None:
    """p(z) products of galaxy ``ref_id`` from the stored mixture, ODDS for ``window`` (default
    the run's); None if not in the run."""
    pred = predictions(key)
    index = pred.index_of(ref_id)
    if index is None:
        return None
    out = galaxy.galaxy_pz(pred, index, run_pz(key), window)
    if window is not None:
        out["odds"] = float(window_odds(key, window)[index])
    return out


@st.cache_data(max_entries=32, show_spinner="Running the ensemble on this galaxy...")
def galaxy_inputs(key: RunKey, ref_id: int) -> dict | None:
    """Members' p(z) and the SED of galaxy ``ref_id``; None if not in the run."""
    pred = predictions(key)
    index = pred.index_of(ref_id)
    if index is None:
        return None
    model, cat, features = model_inputs(key)
    return galaxy.galaxy_inputs(model, cat, features, pred, index, run_pz(key))


@st.cache_data(max_entries=16, show_spinner="Leaving out one exposure at a time...")
def dropping_detail(key: RunKey, ref_id: int) -> dict | None:
    model, _, features = model_inputs(key)
    if not (features.ref_id == ref_id).any():
        return None
    row = int(galaxy.feature_rows(features, [ref_id])[0])
    return galaxy.dropping_detail(model, features, row, run_pz(key))


@st.cache_data(max_entries=8, show_spinner="Leaving out exposures for the selection...")
def spread_study(key: RunKey, n: int, mag_lo: float | None, mag_hi: float | None) -> dict:
    pred = predictions(key)
    rows = galaxy.spread_selection(pred, n, mag_lo, mag_hi)
    model, _, features = model_inputs(key)
    return galaxy.spread_study(model, features, pred, rows, run_pz(key))


NO_RUN = "No finished run yet: train one on the **Train** page, then come back here."
NO_NETWORK = (
    "This page needs a finished DEEPZ network run; the finished template fits are on "
    "the **Results**, **Galaxy explorer** and **Quality cuts** pages. Train a network on the "
    "**Train** page."
)


# --- runs combined with the template fit (deepz_core.hybrid; beyond E20) -------------------------

COMBINE_MIN_GALAXIES = MIN_GALAXIES  # out-of-fold spec-z galaxies a combination is fitted on
STRICT_OUTLIER = metrics.OUTLIER_THRESHOLD  # the combination's summary counts E20's outliers
CATASTROPHIC_OUTLIER = metrics.CATASTROPHIC_THRESHOLD  # ... and the catastrophic ones
TEMPLATE_FIT_RATE = 100  # galaxies/s of the template fit on 2 CPU cores, typically (50-400)


def combination_cost(summary: CatalogSummary, template_set: str) -> tuple[float, float]:
    """(seconds the combination with ``template_set`` adds after training on the catalogue of
    ``summary``, galaxies/s of the combined predictions' template fit) on 2 CPU cores, on the
    p(z) grid training will choose for it (``hybrid.runs.combination_seconds``)."""
    from deepz_core.hybrid.runs import combination_seconds, templatefit_config
    from deepz_core.jobs.training_run import grid_covering
    from deepz_core.templatefit.fit import fit_rate

    pz = grid_covering(summary.zspec, summary.bands.bands)
    seconds = combination_seconds(summary.n_galaxies, pz, template_set)
    return seconds, fit_rate(templatefit_config(template_set, pz))


def combination_rate(run_id: str, template_set: str) -> float:
    """Galaxies/s of the template fit in a combined run's predictions on 2 CPU cores (its
    p(z) grid and template set, ``templatefit.fit.fit_rate``)."""
    from deepz_core.hybrid.runs import templatefit_config
    from deepz_core.templatefit.fit import fit_rate

    return fit_rate(templatefit_config(template_set, run_pz_config(run_dir(run_id))))


@st.cache_data(max_entries=32, show_spinner=False)
def _combination(folder: str, mtime: float, outlier: float | None = None) -> dict:
    import deepz_core

    hybrid = load_hybrid(folder)
    summary = deepz_core.load_run(folder).combination_summary(outlier)
    return {"templates": None if hybrid is None else hybrid.template_set, "summary": summary}


def combination(run: RunDir | str, outlier: float | None = None) -> dict | None:
    """{'templates': the set, 'summary': ``Run.combination_summary(outlier)``} of a run combined
    with the template fit (``hybrid.json``), None for a run without one; ``run``: a RunDir or run
    id; ``outlier``: the |dz| outliers are counted at (a profile's; default E20's 0.02)."""
    folder = run if isinstance(run, RunDir) else run_dir(run)
    path = folder.file(HYBRID_FILE)
    if not path.is_file():
        return None
    return _combination(str(folder.path), path.stat().st_mtime, outlier)


@st.cache_data(max_entries=32, show_spinner=False)
def _heldout_stages(folder: str, mtimes: tuple[float, float]) -> dict[str, dict]:
    out = {}
    cal = load_calibration(folder)
    if cal is not None and cal.heldout is not None:
        out["networks"] = _with_precision_note(cal.summary["heldout"])
    hybrid = load_hybrid(folder)
    if hybrid is not None and hybrid.calibration is not None and hybrid.calibration.heldout:
        out["combination"] = _with_precision_note(hybrid.calibration.summary["heldout"])
    return out


def _with_precision_note(stage: dict) -> dict:
    """A held-out stage's summary plus 'precision_note', the sentence on how precisely it sets new
    galaxies' coverage (``stage_precision_note``), where the summary has its precision."""
    out = dict(stage)
    if "precision68" in out:
        out["precision_note"] = stage_precision_note(out)
    return out


def heldout_stages(run_id: str) -> dict[str, dict]:
    """The held-out calibration stages of a run (``deepz calibrate``, ``Run.calibrate_on``):
    {'networks': summary, 'combination': summary}, each where one was fitted; the summary holds
    the held-out galaxies' PIT KS and 68% coverage before and after, per half magnitude."""
    folder = run_dir(run_id)
    files = (folder.file(CALIBRATION_FILE), folder.file(HYBRID_FILE))
    mtimes = tuple(f.stat().st_mtime if f.is_file() else 0.0 for f in files)
    return _heldout_stages(str(folder.path), mtimes)


def drop_heldout_stage(run_id: str) -> None:
    """Remove the run's held-out calibration stage (of its combination when it has one)."""
    import deepz_core

    deepz_core.load_run(run_dir(run_id).path).drop_heldout_calibration()


def planned_templates(run: RunDir) -> str | None:
    """The template set a network run is to be combined with after training (its config's
    ``templates``), None when none was asked for."""
    value = run.config().get("templates")
    return value if isinstance(value, str) else None


@st.cache_data(max_entries=32, show_spinner=False)
def estimator_modes(key: RunKey, ref_id: int) -> dict | None:
    """Each estimator's mode and ODDS of galaxy ``ref_id`` in combined predictions
    (``zphot_net``, ``odds_net``, ``zphot_tf``, ``odds_tf``, ``chi2_tf``), None if absent."""
    index = predictions(key).index_of(ref_id)
    if index is None:
        return None
    table = analysis.read_plain_table(predictions_file(key[0]))
    names = ("zphot_net", "odds_net", "zphot_tf", "odds_tf", "chi2_tf")
    return {n: float(table[n][index]) for n in names if n in table.colnames}


def run_kind_of(run_id: str) -> str:
    """'deepz' or 'templatefit'."""
    return run_kind(run_dir(run_id).config())


def run_title(run_id: str) -> str:
    """How a run is listed: its name (else id), the catalogue's given name, the preset."""
    run = run_dir(run_id)
    try:
        card, config = run.card(), run.config()
    except (OSError, ValueError):
        return run_id
    catalogue = card.get("catalog_name") or uploads.catalog_display_name(config.get("catalog", "?"))
    method = "template fit" if run_kind(config) == "templatefit" else config.get("preset", "?")
    try:
        combined = combination(run) if run_kind(config) == "deepz" else None
    except ConfigError:  # an unreadable hybrid.json: the Results page says what is wrong
        combined = None
    if combined is not None:
        method += f" + {combined['templates']} template fit"
    name = card.get("name")
    return (
        f"{name} — {catalogue}, {method} ({run_id})"
        if name
        else (f"{run_id} — {catalogue}, {method}")
    )


def run_catalog(run_id: str) -> str:
    """The path of the catalogue a run was trained (or fitted) on."""
    return str(run_dir(run_id).config().get("catalog", ""))


def pick_analysis_run(key: str, kinds: tuple[str, ...] = ("deepz",)) -> str | None:
    """Run selectbox of the analysis pages (None, with an empty-state note, when none finished).
    Dropping needs a network ('deepz'); the explorer and quality cuts take template fits too.
    A run asked for in the address bar that this page cannot show is named, never swapped
    silently for another."""
    finished = finished_runs(kinds)
    wanted = query_value("run")
    if wanted and wanted not in finished and wanted in finished_runs():
        st.warning(f"Run {wanted} is a {run_kind_of(wanted)} run, which this page cannot show.")
    if not finished:
        others = set(finished_runs()) - set(finished)
        st.info(NO_NETWORK if others else NO_RUN)
        return None
    current = analysis_run(finished)
    help_ = "Finished runs under runs/ (DEEPZ_HOME or the working directory), newest first."
    run_id = st.selectbox(
        "Run",
        finished,
        index=finished.index(current),
        key=key,
        help=help_,
        format_func=run_title,
    )
    select_analysis_run(run_id)
    return run_id


def _step_galaxy(ids: np.ndarray, row: int, key: str) -> None:
    """Select the galaxy at predictions row ``row`` (the stepper: by row, never by id + 1)."""
    ref_id = int(ids[row])
    select_galaxy(ref_id)
    st.session_state[key] = str(ref_id)


def _typed_galaxy(key: str) -> None:
    number = parse_id(st.session_state.get(key))
    if number is None:
        st.session_state["galaxy_typo"] = str(st.session_state.get(key))
    else:
        select_galaxy(number)


def pick_galaxy(pred: analysis.Predictions, key: str) -> int:
    """Galaxy chooser kept in query "galaxy": the ref_id as text (any int64, 19-digit survey ids
    included: no JavaScript number on the way) and previous/next buttons that step by row in the
    predictions (ids may have gaps); defaults to the first galaxy with a spec-z."""
    typo = st.session_state.pop("galaxy_typo", None)
    if typo is not None:
        st.warning(f"{typo!r} is not a galaxy id (an integer): showing the last galaxy instead.")
    current = selected_galaxy()
    index = None if current is None else pred.index_of(current)
    if index is None:
        # a galaxy chosen with another chooser (the explorer's, then the Predict page's on
        # another catalogue) is not news; one asked for in the link or with this chooser is
        if current is not None and st.session_state.get("galaxy_chooser") in (None, key):
            st.warning(f"Galaxy {current} is not in this run: showing another one.")
        scored = np.flatnonzero(pred.scored)
        index = int(scored[0]) if scored.size else 0
        current = int(pred.ref_id[index])
    select_galaxy(current)
    st.session_state["galaxy_chooser"] = key
    st.session_state[key] = str(current)
    ids = pred.ref_id
    c1, c2, c3, c4 = st.columns([1, 5, 1, 4], vertical_alignment="bottom")
    c1.button(
        "◀",
        key=f"{key}_prev",
        on_click=_step_galaxy,
        args=(ids, max(index - 1, 0), key),
        disabled=index == 0,
        help="The previous galaxy in the catalogue's order",
    )
    c2.text_input("Galaxy (ref_id)", key=key, on_change=_typed_galaxy, args=(key,))
    c3.button(
        "▶",
        key=f"{key}_next",
        on_click=_step_galaxy,
        args=(ids, min(index + 1, pred.n - 1), key),
        disabled=index >= pred.n - 1,
        help="The next galaxy in the catalogue's order",
    )
    c4.caption(f"row {index + 1:,} of {pred.n:,}")
    return current


# --- template-fit runs in the explorer, survey products, prediction jobs -------------------------


@st.cache_data(max_entries=16, show_spinner="Fitting the templates to this galaxy...")
def templatefit_galaxy(key: RunKey, ref_id: int) -> dict | None:
    """chi2(z), the best-fit model fluxes and template, and the SED of galaxy ``ref_id`` of a
    template-fit run; None if not in its catalogue."""
    from deepz_core.templatefit.config import TemplateFitConfig
    from deepz_core.templatefit.fit import explain_galaxy, read_zero_points, zero_points_path

    config = RunDir(Path(key[0])).config()
    cat = catalog(config["catalog"])
    rows = np.flatnonzero(cat.ref_id == int(ref_id))
    if not rows.size:
        return None
    cfg = TemplateFitConfig.from_dict(config.get("templatefit", {}))
    zp_file = zero_points_path(Path(key[0]) / "predictions.fits")
    zp = read_zero_points(zp_file, tuple(cat.bands)) if zp_file.exists() else None
    out = explain_galaxy(cat.select(rows[:1]), cfg, zp)
    out["sed"] = galaxy.sed(cat, int(rows[0]))
    return out


@st.cache_data(max_entries=8, show_spinner="Stacking p(z)...")
def stacked_nz(key: RunKey, window: float, threshold: float, mag_max: float | None):
    """n(z) of the galaxies passing the cut, as their stacked p(z) (``survey.stacked_nz``)."""
    pred = predictions(key)
    mask = analysis.selection_mask(pred, window_odds(key, window), threshold, mag_max)
    return survey.stacked_nz(pred, mask, run_pz(key).grid())


def equal_count_edges(key: RunKey, n_bins: int, z_min: float, z_max: float) -> np.ndarray:
    return survey.equal_count_edges(predictions(key).zphot, n_bins, z_min, z_max)


@st.cache_data(max_entries=8, show_spinner="Stacking p(z) per tomographic bin...")
def tomography(key: RunKey, edges: tuple, window: float, threshold: float, mag_max: float | None):
    """Tomographic bins by photo-z ``edges`` of the galaxies passing the cut
    (``survey.tomographic_bins``)."""
    pred = predictions(key)
    mask = analysis.selection_mask(pred, window_odds(key, window), threshold, mag_max)
    return survey.tomographic_bins(pred, np.asarray(edges), mask, run_pz(key).grid())


@st.cache_data(max_entries=4, show_spinner=False)
def sky(key: RunKey) -> tuple[np.ndarray, np.ndarray] | None:
    """(ra, dec) [deg] of the predicted galaxies when the catalogue had them, else None."""
    from deepz_core.inference.hats_out import find_coordinate_pair

    table = analysis.read_plain_table(predictions_file(key[0]))
    pair = find_coordinate_pair(list(table.colnames))  # ra/dec, RA/DEC, DP0's coord_ra/coord_dec
    if pair is None:
        return None
    return np.asarray(table[pair[0]], float), np.asarray(table[pair[1]], float)


def prediction_jobs_list() -> list[prediction_jobs.PredictionJob]:
    return prediction_jobs.list_prediction_jobs(uploads.predictions_dir())


# --- small wrappers, so that pages import app modules and deepz_core's public names only ---------


def experiments_dir() -> Path:
    """Where ``deepz experiments --out`` reports are looked for: $DEEPZ_HOME/experiments."""
    return uploads.home() / "experiments"


def mag_slider_range(mag: np.ndarray | None) -> tuple[float, float] | None:
    """(lo, hi) of a magnitude slider over ``mag`` that follows the data, junk magnitudes (a
    near-zero reference flux: m = 46) left beyond its ends (``metrics.data_mag_range``); None
    without a finite magnitude."""
    return None if mag is None else metrics.data_mag_range(mag)


def open_mag_range(
    picked: tuple[float, float], bounds: tuple[float, float]
) -> tuple[float, float] | None:
    """A magnitude range slider's (lo, hi) with an end left at the slider's end meaning no limit
    on that side (-inf / inf); None (no selection by magnitude) when both are at the ends."""
    lo = -np.inf if picked[0] <= bounds[0] else float(picked[0])
    hi = np.inf if picked[1] >= bounds[1] else float(picked[1])
    return None if np.isinf(lo) and np.isinf(hi) else (lo, hi)


def mag_edges(lo: float, hi: float, width: float) -> tuple:
    """Magnitude bin edges from ``lo`` to ``hi`` in steps of ``width`` (a hashable tuple)."""
    return tuple(metrics.data_mag_edges([], width, lo, hi).tolist())


def export_bytes(key: RunKey, fmt: str) -> bytes:
    """All predictions of ``key`` as FITS or Parquet bytes, written as ``deepz predict`` writes
    them: provenance kept, qp's HDUs (FITS) and schema metadata (Parquet) added."""
    from deepz_core.inference.stream import predictions_file_bytes

    return predictions_file_bytes(predictions_file(key[0]), fmt)


def qp_bytes(key: RunKey) -> bytes:
    """All predictions of ``key`` as a qp file (HDF5 bytes: a mixmod ensemble with deepz's point
    estimates, odds and flags as ancillary columns, the provenance in its attributes)."""
    return export_bytes(key, "qp")


def selection_name(source: str, window: float, threshold: float, mag_max: float | None) -> str:
    """File stem of a cut's selection, named after its run (or catalogue) and the cut."""
    return analysis.selection_name(source, window, threshold, mag_max)


def sigma68_at(curve: dict, completeness: float) -> float:
    return analysis.sigma68_at(curve, completeness)


# --- runs people can tell apart: cards (name, note, catalogue name, profile) ----------------------

PROFILE_CHOICES = list(PROFILES)


def default_profile(bands: tuple[str, ...]) -> SurveyProfile:
    """The profile proposed for a catalogue with ``bands`` (narrow-band with >= 5 narrow bands)."""
    from deepz_core.evaluation.profiles import profile_for_bands

    return profile_for_bands(bands)


def write_card(run: RunDir, card: dict) -> None:
    """Write a new run's card: name, note, the catalogue's given name and its profile (a standard
    profile's name, or a profile's fields)."""
    fields = dict(card)
    if isinstance(fields.get("profile"), str):
        fields["profile"] = survey_profile(fields["profile"]).to_dict()
    run.update_card(**fields)


def catalog_name(path: str) -> str:
    """The name a catalogue was given on the Data page ('demo' for the demo), else its file name."""
    return uploads.catalog_display_name(path)


def run_summary(run_id: str) -> tuple[dict, SurveyProfile | None]:
    """(headline metrics, profile) of a finished run judged by its profile, the Results page's
    numbers; ({}, None) when it has no predictions."""
    try:
        key = run_key(run_id)
    except OSError:
        return {}, None
    prof = profile(key)
    return headline(key, profile_json(prof)), prof


@st.cache_data(max_entries=64, show_spinner=False)
def headline(key: RunKey, profile_key: str) -> dict:
    """The run's point metrics judged by the profile ``profile_key`` (cheap: no figures)."""
    prof = SurveyProfile.from_dict(json.loads(profile_key))
    return analysis.headline(predictions(key), prof, window_odds(key, prof.odds_window))


DURATION_GUESS = {  # 2 CPU cores, no GPU: docs/benchmarks.md ("First result")
    "smoke": "under a minute",
    "quick": "about 8 minutes with a fresh pretraining, about 5 minutes when the pretrained "
    "weights are reused (shipped for the demo's bands, or cached by an earlier run); under a "
    "minute for the demo's default run (preset quick, 1 x 5 networks, alpha 0.8, seed 0, CPU), "
    "whose fine-tuned networks are shipped",
    "paper": "many hours on a CPU; about an hour on a GPU",
}


def expected_duration_text(preset: str) -> str:
    """'Expected duration: ...' for a preset on this machine: the last such run here, else the
    measured figure for 2 CPU cores."""
    from deepz_core.jobs.status import clock, expected_duration

    found = expected_duration(list_runs(runs_dir()), preset)
    if found is not None:
        seconds, basis = found
        return f"Expected duration: about {clock(seconds)}, as {basis}."
    return f"Expected duration on 2 CPU cores: {DURATION_GUESS.get(preset, 'unknown')}."


# --- the Data page: magnitudes and band names (deepz_core.catalog.mapping) -----------------------


def magnitude_bands(names: list[str]) -> tuple:
    """(band, magnitude column, error column) of the bands given as AB magnitudes that the import
    converts to fluxes (``deepz_core.catalog.magnitudes``)."""
    from deepz_core.catalog.magnitudes import magnitude_columns

    return tuple((m.band, m.mag, m.error) for m in magnitude_columns(names))


def flux_bands(names: list[str]) -> tuple:
    """(band, flux column, error column) of bands given as fluxes."""
    return guessed_mapping(names).bands


def has_filter_curve(band: str) -> bool:
    from deepz_core.sed.bands import has_band

    return has_band(band)


def band_suggestions(bands: list[str]) -> dict[str, tuple[str, ...]]:
    """Known names for bands without a filter curve, per survey (``mapping.suggest_band_names``)."""
    from deepz_core.catalog.mapping import suggest_band_names

    return suggest_band_names(bands)


def sps_prior(band_set_name: str):
    """The SPS prior proposed for a band set (``simulate.sps.sps_config_for``)."""
    from deepz_core.simulate.sps import sps_config_for

    return sps_config_for(band_set_name)


def narrow_band_count(bands) -> int:
    from deepz_core.evaluation.profiles import narrow_band_count as count

    return count(bands)


# --- the Predict page ------------------------------------------------------------------------------


def prediction_job(job_id: str | None) -> prediction_jobs.PredictionJob | None:
    """The prediction job ``job_id`` (None if unknown)."""
    return next((j for j in prediction_jobs_list() if j.job_id == job_id), None)


def absent_bands(run_id: str, catalog_path: str) -> tuple[list[str], str | None]:
    """The run's bands that catalogue ``catalog_path`` lacks, and why the run cannot predict it
    (None: it can; those bands are imputed for every galaxy and flagged BAND_MISSING, as by
    ``deepz predict``: ``inference.predict.check_absent_bands``). A band the catalogue has
    without any value counts as lacking here: without the reference band's values, or more than
    half of the others', no galaxy could get a p(z)."""
    from deepz_core.catalog.catalog import few
    from deepz_core.catalog.features import resolve_ref_band
    from deepz_core.errors import ConfigError
    from deepz_core.inference.predict import check_absent_bands, unmeasured_notes

    bands, ref_band, absent, empty = _band_gaps(run_id, catalog_path)
    if not absent and not empty:
        return absent, None
    if resolve_ref_band(bands, ref_band) in empty:  # deepz predict's warning says why
        return absent, unmeasured_notes(empty, bands, ref_band)[-1]
    counted = f" (bands without any value counted as lacking: {few(empty, 4)})" if empty else ""
    try:
        check_absent_bands(absent + empty, bands, ref_band, f"the catalogue{counted}")
    except ConfigError as err:
        return absent, str(err)
    return absent, None


def prediction_refusal(run_id: str, catalog_path: str) -> str | None:
    """Why ``deepz predict`` would refuse run ``run_id``'s prediction of catalogue
    ``catalog_path`` before writing anything (``inference.stream.preflight``: every row's ids,
    spec-z and coordinates, the flux unit against the run's training magnitudes, a reference
    band without values...), without the catalogue's stored path the page names otherwise; None
    when it would predict it. Cached by the run's model and the file's modification times."""
    folder = runs_dir() / run_id
    model = folder / "model.json"
    stamps = (Path(catalog_path).stat().st_mtime, model.stat().st_mtime if model.exists() else 0)
    return _prediction_refusal(str(folder), catalog_path, stamps)


@st.cache_data(max_entries=32, show_spinner="Checking the catalogue...")
def _prediction_refusal(run: str, catalog_path: str, stamps: tuple[float, float]) -> str | None:
    from deepz_core.errors import DeepzError
    from deepz_core.inference.stream import preflight

    try:
        preflight(run, catalog_path)
    except DeepzError as err:
        return str(err).removeprefix(f"{catalog_path}: ")
    return None


def unmeasured_band_notes(run_id: str, catalog_path: str) -> list[str]:
    """What ``deepz predict`` warns about run ``run_id``'s bands that catalogue ``catalog_path``
    has without any value ('band NB455 has no values in this catalogue: imputed for every galaxy,
    flagged BAND_MISSING'); [] when it has values of each (``inference.predict.unmeasured_notes``)."""
    from deepz_core.inference.predict import unmeasured_notes

    bands, ref_band, _, empty = _band_gaps(run_id, catalog_path)
    return unmeasured_notes(empty, bands, ref_band)


def bands_without_values(catalog_path: str) -> list[str]:
    """The bands of catalogue ``catalog_path`` without a usable value in any row (one uploaded to
    predict may have them; training refuses them: ``validation.check_measured_bands``)."""
    from deepz_core.inference.predict import unmeasured_bands

    cat = catalog(catalog_path)
    return unmeasured_bands(cat, cat.bands)


def _band_gaps(
    run_id: str, catalog_path: str
) -> tuple[tuple[str, ...], str | None, list[str], list[str]]:
    """Run ``run_id``'s bands and reference band, and those of its bands that catalogue
    ``catalog_path`` lacks and has without any value (``inference.predict.unmeasured_bands``)."""
    from deepz_core.inference.predict import unmeasured_bands
    from deepz_core.jobs.run import run_bands, run_ref_band

    run = run_dir(run_id)
    bands = tuple(run_bands(run))
    have = set(catalog_summary(catalog_path).bands.bands)
    absent = [b for b in bands if b not in have]
    return bands, run_ref_band(run), absent, unmeasured_bands(catalog(catalog_path), bands)


def auto_import(
    path: str, filename: str, run_bands: tuple[str, ...] = ()
) -> tuple[str | None, Report, dict[str, str]]:
    """Import an uploaded photometric catalogue to predict with the guessed column mapping (the
    Data page maps columns by hand), its bands named as ``run_bands`` where their filter letters
    say which (u_cModelFlux's band 'u_cModel' -> 'lsst_u', ``mapping.match_run_bands``): (its
    catalogue key, the report, {band: run band renamed}); key None while problems remain. A band
    without any value is no problem: the prediction imputes it (``unmeasured_band_notes``)."""
    from deepz_core.catalog.mapping import match_run_bands, renamed_bands

    cols = raw_tables(path)[0]
    mapping = guessed_mapping(list(cols))
    rename = match_run_bands([b for b, _, _ in mapping.bands], run_bands)
    mapping = renamed_bands(mapping, rename)
    report = import_report(path, mapping.to_json(), measured_bands=False)
    if not report.ok and report.problems and all(_read_as_unknown(p) for p in report.problems):
        report = import_report(path, mapping.to_json(), fix=True, measured_bands=False)
    if not report.ok:
        return None, report, rename
    recipe = {"inputs": [Path(path).name, mapping.to_json()], "predict": True}
    if report.fixed:  # another catalogue than the file read as it is
        recipe["unknown"] = [p.text() for p in report.fixed]
    key = uploads.recipe_key(recipe)
    if not uploads.canonical_path(key).exists():
        save_catalog(report.catalog, recipe, filename.split(".")[0])
    return key, report, rename


def _read_as_unknown(problem: Problem) -> bool:
    """Whether a problem of a catalogue to predict is one ``deepz predict`` reads as unknown
    without asking (a spec-z code such as 99, an infinite mag: ``validation.unknown_cells``),
    whose fix sets those values to NaN and nothing else."""
    masks = (problem.drop_galaxies, problem.drop_exposures, problem.from_magnitudes)
    return problem.unknown is not None and all(m is None for m in masks)


def run_band_names(run_id: str) -> tuple[str, ...]:
    """The bands run ``run_id`` was trained on, in order."""
    from deepz_core.jobs.run import run_bands

    return tuple(run_bands(run_dir(run_id)))


@st.cache_data(max_entries=16, show_spinner=False)
def prediction_sed(key: RunKey, ref_id: int) -> dict | None:
    """The SED of galaxy ``ref_id`` from a prediction job's catalogue (None if absent)."""
    cat = catalog(prediction_jobs.read_job(Path(key[0]))["catalog"])
    rows = np.flatnonzero(cat.ref_id == int(ref_id))
    return galaxy.sed(cat, int(rows[0])) if rows.size else None


def catalogue_options() -> dict[str, str]:
    """Choice key -> label: the demo and every imported catalogue, newest first."""
    options = {uploads.DEMO: "Demo: PAUS-COSMOS-like mock (10,000 galaxies)"}
    options.update({c.key: c.label for c in uploads.stored_catalogs()})
    return options


def save_upload(data: bytes, filename: str, role: str = "galaxies") -> str:
    """An uploaded file stored once under data/uploads by content hash; its path. A file that
    does not read as a table for ``role`` ('galaxies', 'exposures', 'specz') is deleted again
    (CatalogError naming ``filename``)."""
    return str(uploads.save_upload(data, filename, role))


def remembered(name: str, options: list[str], default: str) -> int:
    """The index in ``options`` of the last choice ``remember``ed as ``name`` (else of
    ``default``): a form keeps its choices after a run is queued and across pages."""
    last = st.session_state.get(f"{name}__last", default)
    return options.index(last) if last in options else options.index(default)


def remember(name: str, value: str) -> None:
    """Keep ``value`` as the last choice ``name`` (a non-widget key: it outlives the widget)."""
    st.session_state[f"{name}__last"] = value


def uploader_key(name: str) -> str:
    """The key of file uploader ``name``: ``name`` itself until ``reject_upload`` empties it,
    then ``name_<n>`` (a new key is Streamlit's way of resetting a widget)."""
    generation = int(st.session_state.get(f"{name}__generation", 0))
    return name if generation == 0 else f"{name}_{generation}"


def reject_upload(name: str, message: str) -> None:
    """Empty file uploader ``name`` (a rejected file must not stay in it, blocking the page),
    keep ``message`` for ``upload_rejection`` and rerun the page."""
    st.session_state[f"{name}__generation"] = (
        int(st.session_state.get(f"{name}__generation", 0)) + 1
    )
    st.session_state[f"{name}__rejected"] = message
    st.rerun()


def upload_rejection(name: str, file_present: bool) -> str | None:
    """The message of the last file uploader ``name`` rejected, while it is empty; forgotten
    once a new file is uploaded (``file_present``)."""
    if file_present:
        st.session_state.pop(f"{name}__rejected", None)
        return None
    return st.session_state.get(f"{name}__rejected")


def predictions_dir() -> Path:
    return uploads.predictions_dir()


def elapsed_eta(started: float | None, fraction: float) -> str:
    """'1 min 05 s elapsed, about 1 min 40 s left' (``deepz_core.jobs.status.elapsed_eta``)."""
    from deepz_core.jobs.status import elapsed_eta as text

    return text(started, fraction)


# --- the Overview, Train, Data and Simulate pages: thin wrappers over the subpackages -------------
# Types the pages name in their signatures (re-exported: pages import app modules and deepz_core's
# public names only): RunDir (a run folder), CatalogSummary (``catalog_summary``), Report
# (``import_report``), GalaxyMapping (a galaxy column mapping) and SimJob (``simulations``).

DEMO = uploads.DEMO  # the choice key of the demo catalogue


def runs() -> list[RunDir]:
    """Every readable run folder under ``runs_dir()``, newest first (``rundir.list_runs``)."""
    return list_runs(runs_dir())


def run_state(run: RunDir) -> str:
    """'queued', 'running', 'finished', 'failed', 'cancelled', or 'interrupted' when the run says
    'running' but its process is gone (``jobs.status.run_state``)."""
    return job_status.run_state(run)


def run_progress(run: RunDir) -> tuple[float, str]:
    """(fraction done, text such as 'finetune epoch 12/50 — ... left in this phase') of a run
    (``jobs.status.run_progress``)."""
    return job_status.run_progress(run)


def training_warning(run: RunDir) -> str | None:
    """The finished run's warning about its networks, or None (``jobs.status.training_warning``)."""
    return job_status.training_warning(run)


def training_curves(metrics: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per phase: epoch and training loss, and held-out NLL (mean, min, max over members) from a
    run's ``metrics()`` rows (``jobs.status.training_curves``)."""
    return job_status.training_curves(metrics)


def simulations() -> list[SimJob]:
    """Simulation jobs and catalogue files in ``sims_dir()``, newest first
    (``jobs.simulation.list_simulations``)."""
    return list_simulations(sims_dir())


def band_set_names() -> list[str]:
    """Names of the standard band sets (paus, cosmos, paus_cosmos, sdss, lsst, ...)."""
    from deepz_core.sed.bands import BAND_SETS

    return list(BAND_SETS)


def proposed_band_set(path: str | None, names: list[str]) -> str:
    """The band set among ``names`` that catalogue ``path`` is in (its bands exactly, e.g. lsst
    for a DP0 catalogue), else paus_cosmos when offered, else the first."""
    if path is not None:
        try:
            bands = tuple(catalog_summary(path).bands.bands)
        except DeepzError:
            bands = ()
        for name in names:
            if band_set(name) == bands:
                return name
    return "paus_cosmos" if "paus_cosmos" in names else names[0]


def band_set(name: str) -> tuple[str, ...]:
    """Ordered band names of the standard band set ``name`` (``sed.bands.band_set``)."""
    from deepz_core.sed.bands import band_set as bands_of

    return bands_of(name)


def sps_defaults() -> dict:
    """The SPS prior's default fields (E20 Table 1 ranges as tuples, noise model, chunk)."""
    from deepz_core.simulate.sps import SPSConfig

    return SPSConfig().to_dict()


def check_sps_config(fields: dict) -> None:
    """ConfigError naming the field when ``fields`` (overrides of ``sps_defaults``) do not make
    a valid SPS prior (``simulate.sps.SPSConfig``)."""
    from deepz_core.simulate.sps import SPSConfig

    SPSConfig.from_dict(fields)


def default_ref_band(bands: list[str]) -> str:
    """The reference band proposed for ``bands``: i-like when there is one, else the last
    (``catalog.features.default_ref_band``)."""
    from deepz_core.catalog.features import default_ref_band as proposed

    return proposed(bands)


def preset_names() -> list[str]:
    """The training presets: 'paper', 'quick', 'smoke' (``training.config.PRESETS``)."""
    from deepz_core.training.config import PRESETS

    return list(PRESETS)


def preset_train(name: str) -> dict:
    """The training overrides of preset ``name`` (repetitions, folds, schedule, ...)."""
    from deepz_core.training.config import preset

    return dict(preset(name).train)


DEFAULT_TEMPLATE_SET = DEFAULT_SET  # the template set a template fit uses unless told


def template_sets() -> dict[str, str]:
    """Template set name -> one-line description, for the template-fit form."""
    from deepz_core.sed.template_sets import SETS

    return {name: info.description for name, info in SETS.items()}


def guessed_mapping(names: list[str]) -> GalaxyMapping:
    """The galaxy columns guessed from a file's column names: ref_id, zspec, mag and the bands
    whose flux and error columns were both recognised (``mapping.guess_galaxy_mapping``)."""
    from deepz_core.catalog.mapping import guess_galaxy_mapping

    return guess_galaxy_mapping(names)


def guess_exposure_columns(names: list[str]) -> dict[str, str | None]:
    """ref_id, band, exp_num, flux, flux_error -> the guessed column of a single-exposure table
    (or None)."""
    from deepz_core.catalog.mapping import EXPOSURE_ALIASES, guess_columns

    return guess_columns(names, EXPOSURE_ALIASES)


def guess_specz_columns(names: list[str]) -> dict[str, str | None]:
    """ref_id, zspec -> the guessed column of a spec-z table (or None)."""
    from deepz_core.catalog.mapping import SPECZ_ALIASES, guess_columns

    return guess_columns(names, SPECZ_ALIASES)


def default_fluxzp(columns: dict, mapping: GalaxyMapping, name: str, meta: dict) -> float:
    """The AB zero-point of the mapped flux columns of a galaxies table from their units and its
    FLUXZP header; 23.9 (microJansky) when neither says. CatalogError (naming ``name``) for mixed
    or unknown units (``import_report.source_fluxzp``)."""
    return source_fluxzp(Source(columns, mapping, name, meta))


def fluxzp_origin(
    columns: dict, mapping: GalaxyMapping, name: str, meta: dict
) -> tuple[float, str]:
    """(zero-point, where it comes from: units, header, Rubin column names or an assumption) of
    a galaxies table's mapped flux columns (``import_report.fluxzp_origin``)."""
    from deepz_core.catalog.import_report import fluxzp_origin as origin

    return origin(Source(columns, mapping, name, meta))


def catalog_key(recipe: dict) -> str:
    """The key a catalogue imported by ``recipe`` (its inputs and choices) is stored under."""
    return uploads.recipe_key(recipe)


def stored_catalog_name(key: str) -> str | None:
    """The name catalogue ``key`` is stored under (None if it is not stored)."""
    path = uploads.resolve_catalog(key)
    return None if path is None else uploads.catalog_display_name(path)


def save_catalog(cat: Catalog, recipe: dict, name: str) -> str:
    """Write an imported catalogue as data/uploads/catalog-<key>.fits, ``key`` being the hash of
    ``recipe`` (its inputs and choices), with a note giving it ``name``; the key. Its import
    checked it: a band without any value is written only for a catalogue to predict."""
    from deepz_core import write_catalog

    key = uploads.recipe_key(recipe)
    path = uploads.canonical_path(key)
    write_catalog(cat, path, overwrite=True, measured_bands=False)  # same recipe, same galaxies
    uploads.write_note(key, {"name": name, "n": cat.n_galaxies, "bands": len(cat.bands)})
    return key
