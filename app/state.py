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

import streamlit as st

from deepz_core.catalog import uploads
from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import Features, build_features
from deepz_core.catalog.import_report import (
    CatalogSummary,
    Report,
    Source,
    prepare_catalog,
    summarize,
)
from deepz_core.catalog.io import read_catalog
from deepz_core.catalog.mapping import GalaxyMapping
from deepz_core.evaluation import galaxy
from deepz_core.evaluation import run_products as analysis
from deepz_core.jobs import queue
from deepz_core.nets.deepz import DeepzModel, load_model, load_model_json
from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir, check_run_id, list_runs, run_kind
from deepz_core.training.config import run_pz_config

# --- folders (under DEEPZ_HOME or the working directory) ----------------------------------------


def runs_dir() -> Path:
    return uploads.runs_dir()


def uploads_dir() -> Path:
    return uploads.uploads_dir()


def sims_dir() -> Path:
    return uploads.sims_dir()


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
    """'demo' or the key of an uploaded catalogue (default 'demo')."""
    return query_value("catalog") or uploads.DEMO


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
        run = RunDir(runs_dir() / check_run_id(run_id))
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
    """A catalogue read from disk, cached by (path, modification time)."""
    return read_catalog(Path(path))


def catalog(path: str) -> Catalog:
    return load_catalog(path, Path(path).stat().st_mtime)


@st.cache_resource(max_entries=8, show_spinner="Summarising catalogue...")
def _summary(path: str, mtime: float) -> CatalogSummary:
    return summarize(catalog(path))


def catalog_summary(path: str) -> CatalogSummary:
    """Counts, coverage and SNR of the catalogue at ``path`` (cached by path and mtime)."""
    return _summary(path, Path(path).stat().st_mtime)


@st.cache_resource(max_entries=6, show_spinner="Reading uploaded file...")
def raw_tables(path: str, role: str = "galaxies") -> tuple[dict, dict, dict | None]:
    """(columns, meta, exposure columns inside the file or None) of an uploaded file (named by its
    content hash, so the path is a safe key); ``role``: 'galaxies', 'exposures' or 'specz'."""
    return uploads.raw_columns(path, role)


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
) -> Report:
    """Validation report of uploaded files under column mappings (all keys are small values).

    ``exposures`` may equal ``galaxies``: the EXPOSURES table inside the galaxies file."""
    cols, meta, inner = raw_tables(galaxies)
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
    return prepare_catalog(gal, exp, spz, fluxzp, fix)


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


def selected_galaxy() -> int | None:
    """ref_id from query "galaxy", else this tab's last choice; None if unset or not an integer."""
    for value in (query_value("galaxy"), st.session_state.get("galaxy")):
        try:
            return int(value)
        except (TypeError, ValueError):
            continue
    return None


def select_galaxy(ref_id: int) -> None:
    st.session_state["galaxy"] = int(ref_id)
    set_query_value("galaxy", str(int(ref_id)))


def run_key(run_id: str) -> RunKey:
    path = runs_dir() / check_run_id(run_id)
    return str(path), (path / "predictions.fits").stat().st_mtime


def run_pz(key: RunKey) -> PzConfig:
    return run_pz_config(RunDir(Path(key[0])))


@st.cache_resource(max_entries=4, show_spinner="Reading predictions...")
def predictions(key: RunKey) -> analysis.Predictions:
    """The run's predictions as read-only arrays."""
    return analysis.read_predictions(Path(key[0]) / "predictions.fits")


@st.cache_resource(max_entries=2, show_spinner="Loading the model and the run's catalogue...")
def model_inputs(key: RunKey) -> tuple[DeepzModel, Catalog, Features]:
    """The run's ensemble and its catalogue's features (read-only)."""
    config = RunDir(Path(key[0])).config()
    meta = load_model_json(key[0]).get("metadata", {})
    cat = read_catalog(config["catalog"], config.get("exposures"))
    features = build_features(cat, meta.get("ref_band") or config.get("ref_band"))
    return load_model(key[0]), cat, features


@st.cache_data(max_entries=8, show_spinner="Computing statistics...")
def results_stats(key: RunKey) -> dict:
    return analysis.results_stats(predictions(key))


@st.cache_data(max_entries=8, show_spinner="Computing ODDS for this window...")
def window_odds(key: RunKey, window: float):
    return analysis.odds_for_window(predictions(key), window)


@st.cache_data(max_entries=16, show_spinner="Computing quality-cut curves...")
def cut_curves(key: RunKey, window: float, mag_max: float | None) -> dict:
    return analysis.cut_curves(predictions(key), window_odds(key, window), mag_max)


@st.cache_data(max_entries=32, show_spinner=False)
def cut_threshold(key: RunKey, window: float, completeness: float, mag_max: float | None) -> float:
    odds = window_odds(key, window)
    return analysis.threshold_for_completeness(predictions(key), odds, completeness, mag_max)


@st.cache_data(max_entries=32, show_spinner=False)
def cut_stats(key: RunKey, window: float, threshold: float, mag_max: float | None) -> dict:
    return analysis.cut_stats(predictions(key), window_odds(key, window), threshold, mag_max)


@st.cache_data(max_entries=32, show_spinner=False)
def galaxy_pz(key: RunKey, ref_id: int) -> dict | None:
    """p(z) products of galaxy ``ref_id`` from the stored mixture; None if not in the run."""
    pred = predictions(key)
    index = pred.index_of(ref_id)
    return None if index is None else galaxy.galaxy_pz(pred, index, run_pz(key))


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
    "the **Results** and **Quality cuts** pages. Train a network on the **Train** page."
)


def pick_analysis_run(key: str, kinds: tuple[str, ...] = ("deepz",)) -> str | None:
    """Run selectbox of the analysis pages (None, with an empty-state note, when none finished).
    The explorer and dropping pages need a network ('deepz'); quality cuts take template fits too."""
    finished = finished_runs(kinds)
    if not finished:
        others = set(finished_runs()) - set(finished)
        st.info(NO_NETWORK if others else NO_RUN)
        return None
    current = analysis_run(finished)
    help_ = "Finished runs under runs/ (DEEPZ_HOME or the working directory), newest first."
    run_id = st.selectbox("Run", finished, index=finished.index(current), key=key, help=help_)
    select_analysis_run(run_id)
    return run_id


def pick_galaxy(pred: analysis.Predictions, key: str) -> int:
    """ref_id number input kept in query "galaxy"; defaults to the first galaxy with a spec-z."""
    current = selected_galaxy()
    if current is None or pred.index_of(current) is None:
        if current is not None:
            st.warning(f"Galaxy {current} is not in this run: showing another one.")
        scored = pred.ref_id[pred.scored]
        current = int(scored[0] if scored.size else pred.ref_id[0])
    select_galaxy(current)
    st.session_state[key] = current
    lo, hi = int(pred.ref_id.min()), int(pred.ref_id.max())
    on_change = lambda: select_galaxy(st.session_state[key])  # noqa: E731
    st.number_input("Galaxy (ref_id)", lo, hi, step=1, key=key, on_change=on_change)
    return current
