"""Train: queue DEEPZ training runs (one at a time, in a background worker) and follow them live."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app import jobs, plots_data, state
from deepz_core import DeepzError

ACTIVE = ("queued", "running")
SETTINGS_ERRORS = ("ConfigError", "CatalogError")  # run.status()["message"] = "Type: text"
STATE_ICON = {
    "queued": ":material/hourglass_empty:",
    "running": ":material/directions_run:",
    "finished": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
    "interrupted": ":material/warning:",
}


def pretrain_options() -> dict[str, str]:
    options = {
        "auto": "auto: simulate an SPS set through the catalogue's bands (cached)",
        "none": "none: no pretraining (fine-tune from scratch)",
    }
    for job in state.simulations():
        if job.state in ("finished", "file") and job.path.exists():
            options[str(job.path)] = f"simulation {job.name} ({job.spec.get('n', '?')} galaxies)"
    return options


def json_overrides(label: str, key: str, help_text: str) -> dict:
    text = st.text_area(label, "{}", key=key, help=help_text, height=68)
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise DeepzError(f"{label}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DeepzError(f'{label}: expected a JSON object like {{"width": 64}}, got {text!r}')
    return value


METHODS = {"deepz": "DEEPZ networks", "templatefit": "Template fit (BCNZ2-like baseline)"}


def new_run_form() -> None:
    """The choices of a new run; 'Queue' writes the run folder and wakes the worker."""
    cats = state.catalogue_options()
    current = state.selected_catalog()
    catalog = st.selectbox(
        "Catalogue",
        list(cats),
        format_func=cats.get,
        index=list(cats).index(current) if current in cats else 0,
    )
    if catalog != current:
        state.select_catalog(catalog)  # remembered for the other pages and tabs
    method = st.radio(
        "Method",
        list(METHODS),
        format_func=METHODS.get,
        horizontal=True,
        help="Template fitting is the classical baseline (E20 App. A): no training; "
        "compare it with DEEPZ runs on the Results and Quality cuts pages.",
    )
    path = state.catalog_path(catalog)
    if path is None:
        raise DeepzError(f"catalogue {catalog!r} is not available; choose it on the Data page")
    empty = state.bands_without_values(path)
    if empty:  # uploaded to predict: a run would refuse it
        st.warning(
            f"This catalogue has no values of band {', '.join(empty[:8])}: there is nothing to "
            "train or fit on there. Remove the band or fill it in; the **Predict** page predicts "
            "it as it is (the band imputed)."
        )
        return
    if method == "templatefit":
        templatefit_form(path, cats.get(catalog, catalog))
        return
    summary = state.catalog_summary(path)
    if summary.n_zspec == 0:
        st.warning(
            "This catalogue has no spec-z, so there is nothing to train on. Train on a "
            "catalogue with spec-z, then predict this one with the trained run on the "
            "**Predict** page."
        )
        return
    choices = network_choices(summary, str(path))
    card = card_inputs(summary.bands.bands, cats.get(catalog, catalog))
    if st.button("Queue training run", type="primary", disabled=choices["blocked"]):
        jobs.check_device(choices["device"])
        run = jobs.queue_run(
            state.runs_dir(),
            path,
            choices["pretrain"],
            choices["preset"],
            choices["model"],
            choices["train"],
            ref_band=choices["ref_band"],
            owner=state.owner_token(),
            templates=choices["templates"],
        )
        queued(run, card)


COMBINE_HELP = (
    "After training, fit the template fit (BCNZ2-like, E20 App. A) with this template set to "
    "the catalogue and combine it with the networks: p(z) ∝ p_net^a · p_tf^b, the exponents "
    "chosen per half magnitude on the out-of-fold spec-z galaxies (beyond E20). The Results "
    "page then compares network, template fit and combination, and predictions use the "
    "combination by default: about {rate} galaxies/s on 2 CPU cores (50-400, by template set "
    "and redshift range) instead of the networks' "
    "thousands (the Predict page keeps a 'network only (fast)' option)."
)


def combine_choice(summary: state.CatalogSummary, folds: int) -> tuple[str | None, bool]:
    """'Combine with the template fit': None (the networks alone) or a template set, and
    whether the combination is impossible here (too few spec-z galaxies, one fold)."""
    sets = state.template_sets()
    names = ["none", *sets]
    choice = st.selectbox(
        "Combine with the template fit",
        names,
        index=0,
        key="combine_templates",
        format_func=lambda s: "none: the networks alone" if s == "none" else f"{s}: {sets[s]}",
        help=COMBINE_HELP.format(rate=state.TEMPLATE_FIT_RATE),
    )
    if choice == "none":
        return None, False
    seconds, rate = state.combination_cost(summary, choice)
    st.caption(
        f"Adds the template fit of {summary.n_galaxies:,} galaxies after training (about "
        f"{max(1, round(seconds / 60))} min on 2 CPU cores); predictions with this run then "
        f"cost about {rate:,.0f} galaxies/s."
    )
    impossible = summary.n_zspec < state.COMBINE_MIN_GALAXIES or folds < 2
    if impossible:
        st.warning(
            f"The combination is fitted on out-of-fold spec-z galaxies: it needs at least "
            f"{state.COMBINE_MIN_GALAXIES} of them and 2 folds (this catalogue has "
            f"{summary.n_zspec:,} spec-z; folds K = {folds}). Choose 'none' or more folds."
        )
    return choice, impossible


def train_count_text(path: str, ref_band: str) -> str:
    """'1,517 spec-z galaxies to train on (of 1,710: 176 with photometry the screen flags...)',
    counted by the training's own rule."""
    c = state.label_counts(path, ref_band)
    text = f"{c['labelled']:,} spec-z galaxies to train on"
    left = [
        f"{c['flagged']:,} with photometry the screen flags" if c["flagged"] else "",
        f"{c['unusable_label']:,} with a spec-z < 0 or > 5" if c["unusable_label"] else "",
        f"{c['no_reference']:,} without a usable {ref_band} flux" if c["no_reference"] else "",
    ]
    left = [t for t in left if t]
    if left:
        text += f" (of {c['zspec']:,} with a spec-z; left out of training and the score: "
        text += ", ".join(left) + ")"
    return text


def network_choices(summary: state.CatalogSummary, path: str) -> dict:
    """Widgets for a DEEPZ run on a catalogue: pretraining, preset, reference band, coadds,
    ensemble, device, overrides. Returns the queue_run arguments."""
    pre = pretrain_options()
    pretrain = st.selectbox(
        "Pretraining set",
        list(pre),
        index=state.remembered("train_pretrain", list(pre), "auto"),
        format_func=pre.get,
    )
    state.remember("train_pretrain", pretrain)
    no_curve = summary.bands.without_curve
    blocked = pretrain == "auto" and bool(no_curve)
    if blocked:
        st.warning(
            f"'auto' simulates galaxies through the filter curves, and there is none for "
            f"{', '.join(no_curve)}: choose 'none' or a simulation in these bands."
        )
    presets = state.preset_names()
    name = st.radio(
        "Preset",
        presets,
        index=state.remembered("train_preset", presets, "quick"),
        horizontal=True,
        help="smoke: tiny networks, a few epochs (seconds; to try things); quick: small networks, short schedule (minutes on CPU); paper: E20 "
        "protocol (hours on a GPU)",
    )
    state.remember("train_preset", name)
    p = state.preset_train(name)
    st.caption(state.expected_duration_text(name))
    bands = list(summary.bands.bands)
    ref_band = st.selectbox(
        "Reference band",
        bands,
        index=bands.index(state.default_ref_band(bands)),
        key="ref_band",
        help="Every flux is divided by this band's flux (E20 Sec. 2.2); "
        "galaxies with flux <= 0 in it are left out. Choose a deep, red "
        "band: i in E20.",
    )
    exposures = summary.n_exposures > 0
    alpha = st.slider(
        "alpha: probability of keeping each single exposure (E20 Sec. 5.1)",
        0.05,
        1.0,
        0.8,
        0.05,
        disabled=not exposures,
        help="Each epoch rebuilds every coadd from a random subset of its exposures"
        if exposures
        else "This catalogue has no single exposures: the networks train on its coadds.",
    )
    c = st.columns(3)
    reps = c[0].number_input(
        "Repetitions R",
        1,
        jobs.QUEUE_LIMITS.repetitions,
        p.get("repetitions", 1),
        key=f"reps_{name}",
        help="Random K-fold partitions of the spec-z galaxies (E20 Sec. "
        "5.2: 10); each adds K networks to the ensemble",
    )
    folds = c[1].number_input(
        "Folds K",
        1,
        jobs.QUEUE_LIMITS.folds,
        p.get("folds", 5),
        key=f"folds_{name}",
        help="Each network trains on K-1 folds; a spec-z galaxy's p(z) "
        "comes from the R networks that never saw it (E20: 5)",
    )
    seed = c[2].number_input("Seed", 0, 2**31 - 1, 0)
    if folds == 1:
        st.warning(
            "With one fold every network sees every spec-z galaxy: no out-of-fold "
            "p(z), so Results and Quality cuts have nothing to score."
        )
    c = st.columns(2)
    device = c[0].selectbox("Device", ["auto", "cpu", "cuda"], key="device")
    with c[1]:
        st.write("")
        autoencoder = st.checkbox(
            "Autoencoder", value=True, help="off: E20 ablation, the photo-z network alone"
        )
    with st.expander("Advanced: configuration overrides (JSON)"):
        model_over = json_overrides(
            "Model overrides", "model_json", 'e.g. {"width": 64, "photoz_layers": 2}'
        )
        train_over = json_overrides(
            "Training overrides",
            "train_json",
            'e.g. {"schedule": [[20, 0.001]], "batch_size": 100}',
        )
    templates, impossible = combine_choice(summary, int(folds))
    st.caption(
        f"Ensemble of {int(reps) * int(folds)} networks; {train_count_text(path, ref_band)}. "
        f"Device here: {jobs.device_label()}."
    )
    train = {
        "alpha": alpha,
        "repetitions": int(reps),
        "folds": int(folds),
        "device": device,
        "seed": int(seed),
        **train_over,
    }
    return {
        "pretrain": pretrain,
        "preset": name,
        "ref_band": ref_band,
        "device": device,
        "blocked": blocked or impossible,
        "model": {"use_autoencoder": autoencoder, **model_over},
        "train": train,
        "templates": templates,
    }


def card_inputs(bands: tuple[str, ...], catalog_label: str, key: str = "net") -> dict:
    """Name, note and survey profile of a new run (its card; all can be changed later)."""
    default = state.default_profile(bands)
    c1, c2 = st.columns(2)
    name = c1.text_input(
        "Run name (optional)", key=f"run_name_{key}", placeholder="e.g. quick, no outliers"
    )
    names = state.PROFILE_CHOICES
    prof = c2.selectbox(
        "Survey profile",
        names,
        index=names.index(default.name),
        key=f"run_profile_{key}",
        help="The thresholds the run is judged by on every page (narrow-band: E20's strict "
        "outliers > 0.02, ODDS window 0.003, PAUS target; broad-band: outliers > 0.15, ODDS "
        "window 0.1). Proposed from the bands; a custom profile is set on the Results page.",
    )
    note = st.text_input("Note (optional)", key=f"run_note_{key}")
    label = catalog_label.split(" (")[0]
    return {
        "name": name.strip() or None,
        "note": note.strip() or None,
        "catalog_name": label,
        "profile": prof,
    }


def queued(run: state.RunDir, card: dict) -> None:
    """After 'Queue': the run's card written, the run shown on the right (not the one before)."""
    state.write_card(run, card)
    state.set_query_value("run", run.run_id)
    st.session_state["show_run"] = run.run_id
    st.success(f"Queued {card['name'] or run.run_id}.")


def templatefit_form(path: str, name: str = "") -> None:
    """A template-fit run of the catalogue at ``path`` (called ``name``): the template set, the
    device and whether to calibrate zero-points."""
    sets = state.template_sets()
    names = list(sets)
    template_set = st.selectbox(
        "Template set",
        names,
        index=names.index(state.DEFAULT_TEMPLATE_SET),
        key="tfit_templates",
        help="bcnz2 knows the demo mock's SED "
        "family; kcorrect is independent of it, like real templates "
        "and real galaxies",
    )
    c = st.columns(2)
    device = c[0].selectbox("Device", ["auto", "cpu", "cuda"], key="tfit_device")
    with c[1]:
        st.write("")
        calibrate = st.checkbox(
            "Calibrate zero-points on the spec-z galaxies",
            value=True,
            help="BCNZ2: per-band median of observed/model flux at the spec-z, iterated",
        )
    st.caption(
        f"{sets[template_set]}; p(z) from chi2 on deepz's grid. Device here: {jobs.device_label()}."
    )
    card = card_inputs(state.catalog_summary(path).bands.bands, name, "tfit")
    if st.button("Queue template fit", type="primary"):
        jobs.check_device(device)
        run = jobs.queue_templatefit(
            state.runs_dir(),
            path,
            device,
            calibrate,
            template_set=template_set,
            owner=state.owner_token(),
        )
        queued(run, card)


def run_header(run: state.RunDir, now: str) -> None:
    config, card = run.config(), run.card()
    title = card.get("name") or run.run_id
    st.markdown(f"### {STATE_ICON.get(now, '')} {title} — {now}")
    catalogue = card.get("catalog_name") or state.catalog_name(config.get("catalog", "?"))
    if card.get("note"):
        st.caption(f"Note: {card['note']}")
    if config.get("kind") == "templatefit":
        tset = config.get("templatefit", {}).get("template_set", state.DEFAULT_TEMPLATE_SET)
        st.caption(
            f"{run.run_id}: template fit of {catalogue} ({tset} templates), device "
            f"{config['device']}, zero-points "
            f"{'calibrated' if config.get('calibrate') else 'not calibrated'}"
        )
        return
    st.caption(
        f"{run.run_id}: catalogue {catalogue}, pretraining "
        f"`{Path(config['pretrain']).name}`, preset {config['preset']}, "
        f"{config['train']['repetitions'] * config['train']['folds']} networks, "
        f"device {config['train']['device']}{combined_text(run)}"
    )


def combined_text(run: state.RunDir) -> str:
    """', combined with the bcnz2 template fit' (or 'to be combined ... after training'), or ''."""
    try:
        combined = state.combination(run)
    except DeepzError as exc:
        return f", combination unreadable ({exc})"
    if combined is not None:
        return f", combined with the {combined['templates']} template fit"
    planned = state.planned_templates(run)
    return f", to be combined with the {planned} template fit after training" if planned else ""


def summary_text(key: str, value: float | int | None) -> str:
    if value is None or value != value:  # missing or NaN
        return "—"
    if key in ("n", "n_no_pz"):
        return f"{value:,}"
    return f"{100 * value:.1f}%" if key.endswith("fraction") else f"{value:.4f}"


def not_scored_text(summary: dict) -> str:
    """' 176 spec-z galaxies with flagged photometry are not scored ...': why the scored count
    is less than the spec-z galaxies with a p(z), and what the spec-z galaxies without a p(z)
    are ('' when there are neither)."""
    failed = int(summary.get("n_no_pz") or 0)
    no_pz = (
        f" The {failed:,} spec-z galaxies without a p(z) have photometry the screen refuses (flag "
        "NO_PZ: no usable reference-band flux, or too few usable bands): counted, not scored."
        if failed
        else ""
    )
    n = int(summary.get("n_not_scored") or 0)
    if not n:
        return no_pz
    return no_pz + (
        f" {n:,} spec-z galaxies with flagged photometry (or an unusable spec-z) are not scored: "
        "the screen left them out of training, so no network's p(z) of them is out of fold "
        "(their p(z) is in the predictions; the run's screen.json lists them)."
    )


def show_summary(run: state.RunDir) -> None:
    """Headline out-of-fold metrics of a finished run (E20 Sec. 3.3), judged by its survey
    profile, the same numbers as the Results page."""
    summary, prof = state.run_summary(run.run_id)
    labels = {"sigma68": "σ68", "outlier_fraction": prof.outlier_short}
    if prof.shows_catastrophic:
        labels["catastrophic_fraction"] = f"catastrophic (> {prof.catastrophic:g})"
    labels |= {"n": "galaxies scored", "n_no_pz": "spec-z without a p(z)", "bias": "bias"}
    labels |= {"nmad": "NMAD"}
    cols = st.columns(3)
    for i, (key, label) in enumerate(labels.items()):
        cols[i % 3].metric(label, summary_text(key, summary.get(key)))
    scored = (
        "A template fit, in sample when it calibrated its zero-points on these spec-z galaxies "
        "(slightly optimistic)"
        if state.run_kind_of(run.run_id) == "templatefit"
        else "Out-of-fold"
    )
    st.caption(
        f"{scored}, on the galaxies with spec-z; dz = (zphot - zspec)/(1 + zspec): "
        f"sigma68 and NMAD of dz, bias = median dz; {prof.label}.{not_scored_text(summary)}"
    )
    warning = state.training_warning(run)
    if warning:
        st.warning(f"Training: {warning}.", icon=":material/warning:")
    combined = state.combination(run)
    if combined is not None:
        o = combined["summary"].get("overall", {})
        s = {k: o.get(k, {}).get("sigma68", float("nan")) for k in ("network", "templatefit")}
        st.caption(
            f"Combined with the {combined['templates']} template fit: out-of-fold σ68 network "
            f"{s['network']:.4f}, template fit {s['templatefit']:.4f}, combined "
            f"{o.get('combined', {}).get('sigma68', float('nan')):.4f} (Results page: per "
            "magnitude). The metrics above are the networks'."
        )


def results_link(run: state.RunDir) -> None:
    """A link to the Results page for this run, when that page exists."""
    page = Path(__file__).resolve().parent / "results.py"
    if page.exists():
        try:
            st.page_link(
                str(page),
                label="Open the results of this run",
                icon=":material/monitoring:",
                query_params={"run": run.run_id},
            )
        except Exception:  # the page is not registered (e.g. this page run on its own)
            pass


def run_actions(run: state.RunDir, now: str) -> None:
    status = run.status()
    runs = state.runs_dir()
    if now == "queued":
        ahead = [r.run_id for r in jobs.queued_runs(runs)]
        place = ahead.index(run.run_id) + 1 if run.run_id in ahead else 1
        pid = jobs.worker_pid(runs)
        if pid is None:
            pid = jobs.ensure_worker(runs)
        st.info(f"Waiting in the queue (position {place}); worker pid {pid}.")
    elif now == "running":
        fraction, text = state.run_progress(run)
        if text == "setup":
            text = "setting up: reading the catalogue, simulating the pretraining set if needed"
        loss = status.get("loss")
        st.progress(fraction, text=text if loss is None else f"{text} — training loss {loss:.4g}")
    elif now == "finished":
        show_summary(run)
        results_link(run)
    elif now == "interrupted":
        st.warning(
            "The process training this run stopped (server or machine restart?). "
            "Resume continues from the last checkpoint."
        )
    elif now in ("failed", "cancelled"):
        (st.error if now == "failed" else st.info)(status.get("message") or now)
    # a bad setting or input fails again on resume: the run's choices must change
    settings = now == "failed" and str(status.get("message", "")).startswith(SETTINGS_ERRORS)
    if settings:
        st.caption(
            "This run failed on its settings or its catalogue: queue a new run with "
            "other choices (resuming it would fail the same way)."
        )
    token = state.owner_token()
    mine = jobs.is_owner(run, token)
    confirmed = mine or ownership_note(run, now)
    c1, c2, _ = st.columns([1, 1, 4])
    if now in ACTIVE and c1.button("Cancel", key=f"cancel_{run.run_id}", disabled=not confirmed):
        jobs.cancel_run(run, token, confirmed)
        st.rerun()
    if (
        now in ("cancelled", "failed", "interrupted")
        and not settings
        and c2.button("Resume", key=f"resume_{run.run_id}", disabled=not confirmed)
    ):
        jobs.resume_run(run, runs, owner=token, confirmed=confirmed)
        st.rerun()


def ownership_note(run: state.RunDir, now: str) -> bool:
    """Say that another browser (or the command line) queued ``run``: read-only here; True once
    the user ticks the box to act on it anyway (docs/app.md, "Who owns a run")."""
    if now not in (*ACTIVE, "cancelled", "failed", "interrupted"):
        return False
    st.caption(
        "This run was queued from another browser or the command line: it is read-only here."
    )
    return st.checkbox("I want to cancel or resume someone else's run", key=f"others_{run.run_id}")


def run_view(run: state.RunDir) -> None:
    """Status, progress, loss curves and log of one run (re-drawn every 2 s while active)."""
    now = state.run_state(run)
    last = st.session_state.setdefault("run_states", {})
    if last.get(run.run_id, now) != now and now not in ACTIVE:
        last[run.run_id] = now
        st.rerun()  # the run just ended: refresh the whole page (runs table, buttons)
    last[run.run_id] = now
    run_header(run, now)
    run_actions(run, now)
    curves = state.training_curves(run.metrics())
    if curves:
        st.plotly_chart(plots_data.training_curves(curves), key=f"curves_{run.run_id}")
    elif now in ACTIVE:
        st.caption("Loss curves appear after the first epoch.")
    with st.expander("Log"):
        log = run.file("log.txt")
        st.code(log.read_text(errors="replace")[-4000:] if log.exists() else "(no log yet)")


def doubtful(run: state.RunDir) -> bool:
    """Whether a finished run carries a training warning (its card says which)."""
    try:
        return state.training_warning(run) is not None
    except DeepzError:  # a damaged status.json: the state column says so elsewhere
        return False


def runs_table(runs: list[state.RunDir]) -> pd.DataFrame:
    """One row per run: name, state, when, preset (or template fit), the catalogue's given name,
    pretraining, and the headline metrics by each run's survey profile."""
    rows = []
    for run in runs:
        config, card = run.config(), run.card()
        now = state.run_state(run)
        summary, prof = state.run_summary(run.run_id) if now == "finished" else ({}, None)
        template = config.get("kind") == "templatefit"
        rows.append(
            {
                "run": run.run_id,
                "name": card.get("name", ""),
                "state": f"{now} (warning)" if now == "finished" and doubtful(run) else now,
                "created": time.strftime(
                    "%Y-%m-%d %H:%M", time.localtime(run.file("config.json").stat().st_mtime)
                ),
                "preset": "template fit" if template else config.get("preset"),
                "catalogue": card.get("catalog_name")
                or state.catalog_name(config.get("catalog", "?")),
                "pretraining": "—" if template else Path(config.get("pretrain", "—")).name,
                "combined with": "—" if template else combined_label(run),
                "σ68": summary_text("sigma68", summary.get("sigma68")) if summary else None,
                "outliers": f"{summary_text('outlier_fraction', summary.get('outlier_fraction'))}"
                f" (> {prof.outlier:g})"
                if summary
                else None,
                "galaxies scored": summary_text("n", summary.get("n")) if summary else None,
            }
        )
    return pd.DataFrame(rows)


def combined_label(run: state.RunDir) -> str:
    """The runs table's 'combined with': the template set, 'bcnz2 (after training)' while a run
    waits for its combination, '—' for the networks alone."""
    try:
        combined = state.combination(run)
    except DeepzError:
        return "unreadable"
    if combined is not None:
        return f"{combined['templates']} template fit"
    planned = state.planned_templates(run)
    return f"{planned} (after training)" if planned else "—"


def _show(key: str) -> None:
    state.set_query_value("run", st.session_state[key])


def runs_section() -> None:
    runs = state.runs()
    if not runs:
        st.info("No run yet: queue one with the form on the left.")
        return
    st.dataframe(runs_table(runs), hide_index=True)
    ids = [r.run_id for r in runs]
    chosen = state.selected_run()
    if chosen is not None and chosen.run_id in ids:
        st.session_state["show_run"] = chosen.run_id  # the address bar (or a run just queued)
    elif st.session_state.get("show_run") not in ids:
        st.session_state["show_run"] = ids[0]
    pick = st.selectbox(
        "Show run",
        ids,
        key="show_run",
        format_func=state.run_title,
        on_change=_show,
        args=("show_run",),
    )
    if pick != state.query_value("run"):
        state.set_query_value("run", pick)
    run = state.run_dir(pick)
    active = state.run_state(run) in ACTIVE
    st.fragment(run_every=2 if active else None)(safe_run_view)(run)


def safe_run_view(run: state.RunDir) -> None:
    try:
        run_view(run)
    except Exception as exc:  # a fragment rerun is outside the page's try
        st.error(f"The run cannot be shown: {type(exc).__name__}: {exc}")


st.title("Train")
st.caption(
    "One training job runs at a time; queued runs wait their turn in a background worker "
    "that survives page reloads and server restarts. Pick up a run any time from the list."
)
left, right = st.columns([2, 3], gap="large")
with left:
    st.subheader("New run")
    try:
        new_run_form()
    except DeepzError as exc:
        st.error(f"Cannot queue the run: {exc}")
    except Exception as exc:
        st.error(f"Cannot queue the run: unexpected {type(exc).__name__}: {exc}")
with right:
    st.subheader("Runs")
    try:
        runs_section()
    except Exception as exc:
        st.error(f"The runs cannot be shown: {type(exc).__name__}: {exc}")
