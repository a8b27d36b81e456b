"""Data: choose the catalogue to work on, import one (map columns, check, save), and summarise it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from app import plots_data, state
from deepz_core import DeepzError

TYPES = ["fits", "fit", "gz", "fz", "parquet", "pq", "csv", "h5", "hdf5", "hdf"]
NONE = "(none)"


def friendly(text: str) -> str:
    """``text`` with stored upload paths replaced by the names the files were uploaded with."""
    for path, name in st.session_state.get("upload_names", {}).items():
        text = text.replace(path, name).replace(Path(path).name, name)
    return text


def show_error(action: str, exc: Exception) -> None:
    """A clear message instead of a traceback."""
    if isinstance(exc, DeepzError):
        st.error(friendly(f"{action}: {exc}"))
    else:
        st.error(friendly(f"{action}: unexpected {type(exc).__name__}: {exc}"))


def choose_catalogue() -> None:
    """The catalogue the other pages use (remembered in the address bar)."""
    labels = state.catalogue_options()
    options = list(labels)
    current = state.selected_catalog()
    if current not in options:
        st.warning(
            f"Catalogue {current!r} from the address bar is not on this server; "
            "showing the demo instead."
        )
        current = state.DEMO
    left, right = st.columns([3, 1])
    choice = left.selectbox(
        "Catalogue used by the Train page",
        options,
        index=options.index(current),
        format_func=labels.get,
    )
    if right.button("Use the demo catalogue", disabled=choice == state.DEMO):
        choice = state.DEMO
    if choice != state.query_value("catalog"):
        state.select_catalog(choice)


def saved_upload(label: str, key: str, help_text: str, role: str = "galaxies") -> Path | None:
    """A file uploader whose file is written once to data/uploads/<sha256>.<ext> (deleted again
    when it does not read as a table for ``role``); its path."""
    file = st.file_uploader(label, type=TYPES, key=state.uploader_key(key), help=help_text)
    rejected = state.upload_rejection(key, file is not None)
    if rejected:
        st.error(rejected)
    if file is None:
        return None
    cache = st.session_state.setdefault("upload_paths", {})
    if file.file_id not in cache:
        try:
            cache[file.file_id] = state.save_upload(file.getvalue(), file.name, role)
        except Exception as exc:  # not kept: the uploader is emptied, the message stays
            what = str(exc) if isinstance(exc, DeepzError) else f"{type(exc).__name__}: {exc}"
            state.reject_upload(key, f"Upload rejected: {what}")
        st.session_state.setdefault("upload_names", {})[cache[file.file_id]] = file.name
    return Path(cache[file.file_id])


def pick(label: str, names: list[str], guess: str | None, key: str, optional: bool) -> str | None:
    options = ([NONE] if optional else []) + names
    index = options.index(guess) if guess in options else 0
    value = st.selectbox(label, options, index=index, key=key)
    return None if value == NONE else value


def galaxy_mapping(path: Path, names: list[str]) -> state.GalaxyMapping:
    """Selectboxes for ID / spec-z / magnitude and an editable band table, pre-filled by guessing."""
    guess = state.guessed_mapping(names)
    k = path.name
    st.markdown("**Galaxy columns** (guessed from the column names; correct them if needed)")
    c1, c2, c3 = st.columns(3)
    with c1:
        ref_id = pick("Galaxy ID -> ref_id", names, guess.ref_id, f"ref_{k}", optional=True)
    with c2:
        zspec = pick("Spectroscopic redshift -> zspec", names, guess.zspec, f"zs_{k}", True)
    with c3:
        mag = pick("Magnitude [AB] -> mag", names, guess.mag, f"mag_{k}", True)
    table = pd.DataFrame(guess.bands, columns=["band", "flux column", "error column"])
    st.caption(
        f"{len(guess.bands)} bands recognised. Edit a cell to correct it; add or delete "
        "rows to add or remove bands. Band names with a filter curve (e.g. NB455, "
        "subaru_i) allow SPS pretraining."
    )
    edited = st.data_editor(
        table,
        num_rows="dynamic",
        key=f"bands_{k}",
        column_config={
            "band": st.column_config.TextColumn("band", required=True),
            "flux column": st.column_config.SelectboxColumn("flux column", options=names),
            "error column": st.column_config.SelectboxColumn("error column", options=names),
        },
    )
    rows = edited.fillna("").astype(str).itertuples(index=False)
    bands = tuple((b.strip(), f, e) for b, f, e in rows if b.strip() or f or e)
    return state.GalaxyMapping(ref_id, zspec, mag, rename_bands(bands, k))


def rename_bands(bands: tuple, key: str) -> tuple:
    """Offer known names for bands without a filter curve (FLUX_G -> sdss_g?), so that 'auto'
    pretraining can simulate them; the bands with the chosen names."""
    unknown = [b for b, _, _ in bands if b and not state.has_filter_curve(b)]
    options = state.band_suggestions(unknown)
    if not options:
        return bands
    keep = "keep the names (no filter curves: no 'auto' pretraining)"
    labels = {
        s: f"{s}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
        for s, names in options.items()
    }
    choice = st.selectbox(
        f"{len(unknown)} band names have no filter curve; they look like the filters of",
        [*options, keep],
        format_func=lambda s: labels.get(s, s),
        key=f"rename_{key}",
        help="Known names let deepz simulate galaxies through the filters ('auto' "
        "pretraining, template fits). Choose the survey the photometry comes from.",
    )
    if choice == keep:
        return bands
    rename = dict(zip(unknown, options[choice], strict=True))
    return tuple((rename.get(b, b), f, e) for b, f, e in bands)


def small_mapping(
    title: str, names: list[str], guess: dict[str, str | None], key: str
) -> dict[str, str | None]:
    """One selectbox per target column (ref_id, band, ...), pre-set to the guessed ``guess``."""
    st.markdown(f"**{title}**")
    cols = st.columns(len(guess))
    out = {}
    for col, target in zip(cols, guess, strict=True):
        with col:
            out[target] = pick(f"-> {target}", names, guess[target], f"{key}_{target}", True)
    return out


def show_report(report: state.Report, flagged: bool = True) -> None:
    """Every problem with its possible fix (or, once fixed, what was done), warnings, notes and
    (``flagged``) the values the photometric screen will flag."""
    for note in report.notes:
        st.info(friendly(note))
    for warning in report.warnings:
        st.warning(friendly(warning))
    if report.problems:
        lines = "\n".join(
            f"- {p.text()}" + (f" — fix: {p.fix}" if p.fix else "") for p in report.problems
        )
        st.error(friendly(f"{len(report.problems)} problem(s) found:\n\n{lines}"))
    if report.fixed:
        lines = "\n".join(f"- {p.text()} — fixed: {p.fix}" for p in report.fixed)
        st.info(friendly(f"{len(report.fixed)} problem(s) fixed:\n\n{lines}"))
    if flagged and report.flagged:
        lines = "\n".join(f"- {p.text()}" for p in report.flagged)
        st.warning(
            friendly(
                f"{report.n_flagged:,} galaxies have values the photometric screen flags; they "
                "are kept, as `deepz train` and `deepz predict` keep them: each gets a `flag`, "
                "the band is imputed (or the galaxy gets no p(z)) and training leaves it out "
                f"of the loss.\n\n{lines}"
            )
        )
    if report.dropped_text():
        st.warning(report.dropped_text())


def import_section() -> None:
    st.subheader("Import a catalogue")
    st.caption(
        "FITS, Parquet, CSV or HDF5. Fluxes in any unit fixed by an AB zero-point "
        "(23.9 = microJansky). Files are stored once under data/uploads by content hash."
    )
    c1, c2, c3 = st.columns(3)
    with c1:
        gal = saved_upload(
            "Galaxies (required)",
            "up_galaxies",
            "One row per galaxy: id, flux and flux error per band, optional spec-z",
        )
    with c2:
        exp = saved_upload(
            "Single exposures (optional)",
            "up_exposures",
            "One row per exposure: id, band, exposure number, flux, error",
            "exposures",
        )
    with c3:
        spz = saved_upload(
            "Spectroscopic redshifts (optional)",
            "up_specz",
            "id and spec-z, joined to the galaxies on ref_id",
            "specz",
        )
    if gal is None:
        st.info("Upload a galaxies file to import your own catalogue, or keep the demo.")
        return
    try:
        mapping_section(gal, exp, spz)
    except Exception as exc:
        show_error("This file cannot be imported", exc)


def magnitude_offer(names: list[str]) -> dict:
    """When the galaxies are given in AB magnitudes (mag_g, magerr_g...; 99 = non-detection):
    offer the conversion to fluxes; the keyword arguments that ask for it ({} for none)."""
    mags = state.magnitude_bands(names)
    if not mags or state.flux_bands(names):
        return {}
    listed = ", ".join(m for _, m, _ in mags[:6]) + (" ..." if len(mags) > 6 else "")
    convert = st.checkbox(
        f"Convert the {len(mags)} magnitude bands ({listed}) to fluxes",
        value=True,
        key="convert_magnitudes",
        help="AB magnitudes m ± dm become fluxes f = 10^(-0.4 (m - FLUXZP)) ± 0.4 ln10 f dm; "
        "99 (or NaN) is a non-detection: flux 0 with the limiting magnitude's flux as its error "
        "when a limit is known, else the band is unusable for that galaxy.",
    )
    return {"magnitudes": True} if convert else {}


def mapping_section(gal: Path, exp: Path | None, spz: Path | None) -> None:
    cols, meta, inner = state.raw_tables(str(gal))
    st.success(f"Read {len(next(iter(cols.values())))} rows and {len(cols)} columns.")
    convert = magnitude_offer(list(cols))
    if convert:
        cols, meta, inner = state.raw_tables(str(gal), "galaxies", **convert)
    mapping = galaxy_mapping(gal, list(cols))
    file_zp, origin = state.fluxzp_origin(cols, mapping, friendly(gal.name), meta)
    zp = st.number_input(
        "AB zero-point of the fluxes (FLUXZP)",
        value=file_zp,
        help="mag = FLUXZP - 2.5 log10(flux); 23.9 for microJansky, 31.4 for nanojansky; from "
        "the columns' units (TUNIT) when they have one",
    )
    if convert:
        st.caption(f"The AB magnitudes become fluxes at zero-point {file_zp:g}.")
    elif origin.startswith("assumed"):
        st.warning(f"Zero-point {file_zp:g} {origin}.")
    else:
        st.caption(f"Zero-point {file_zp:g} {origin}.")
    exp_path, exp_json = None, None
    if exp is not None or inner is not None:
        exp_path = exp or gal
        exp_cols = inner if exp is None else state.raw_tables(str(exp), "exposures")[0]
        title = "Single-exposure columns" + (
            " (table inside the galaxies file)" if exp is None else ""
        )
        guess = state.guess_exposure_columns(list(exp_cols))
        exp_json = json.dumps(small_mapping(title, list(exp_cols), guess, "exp"))
    spz_json = None
    if spz is not None:
        spz_cols = state.raw_tables(str(spz), "specz")[0]
        guess = state.guess_specz_columns(list(spz_cols))
        spz_json = json.dumps(small_mapping("Spec-z columns", list(spz_cols), guess, "spz"))
    args = (
        str(gal),
        mapping.to_json(),
        exp_path and str(exp_path),
        exp_json,
        spz and str(spz),
        spz_json,
        float(zp),
    )
    drop = bool(st.session_state.get("drop_flagged", False))  # the checkboxes below
    report = state.import_report(*args, False, drop_flagged=drop, **convert)
    fixing = report.fixable and bool(st.session_state.get("fix", False))
    shown = state.import_report(*args, True, drop_flagged=drop, **convert) if fixing else report
    st.markdown("**Validation report**")
    show_report(shown)  # once fixed: what was done, never the problems as if still there
    if report.flagged:
        st.checkbox(
            f"Drop the {report.n_flagged:,} flagged galaxies instead of keeping them",
            key="drop_flagged",
        )
    if report.fixable:
        st.checkbox("Apply the fixes listed above", key="fix")
    report = shown
    if report.ok:
        save_section(report, gal, (*args, bool(convert)), drop)


def save_section(report: state.Report, gal: Path, args: tuple, drop_flagged: bool) -> None:
    """'Save and use this catalogue' under a name; a catalogue already stored (the same files
    and choices) under another name is never renamed silently: the user chooses."""
    cat = report.catalog
    kept = f" ({report.n_flagged:,} flagged, kept)" if report.flagged and not drop_flagged else ""
    st.success(
        f"All checks passed: {cat.n_galaxies:,} galaxies{kept} in {len(cat.bands)} bands, "
        f"{int(cat.has_zspec.sum()):,} with spec-z."
    )
    original = friendly(gal.name)
    name = st.text_input("Name", value=original.split(".")[0], key="cat_name")
    inputs = [Path(a).name if i in (0, 2, 4) and a else a for i, a in enumerate(args)]
    inputs = inputs if inputs[-1] else inputs[:-1]  # unchanged keys without conversion
    recipe = {"inputs": inputs, "fixed": report.dropped_galaxies}
    if drop_flagged:
        recipe["dropped_flagged"] = True
    stored = state.stored_catalog_name(state.catalog_key(recipe))
    if stored is not None and stored != name:
        st.warning(f"This catalogue (the same files and choices) is already stored as {stored!r}.")
        left, right = st.columns(2)
        if left.button(f"Use {stored!r}", type="primary"):
            use(state.catalog_key(recipe), f"Using {stored!r}; it is now the selected catalogue.")
        if right.button(f"Rename {stored!r} to {name!r}"):
            save(cat, recipe, name)
        return
    if st.button("Save and use this catalogue", type="primary"):
        save(cat, recipe, name)


def save(cat: state.Catalog, recipe: dict, name: str) -> None:
    """Store ``cat`` under ``name`` and select it."""
    key = state.save_catalog(cat, recipe, name)
    use(key, f"Saved {name!r}; it is now the selected catalogue.")


def use(key: str, message: str) -> None:
    """Select catalogue ``key``, say ``message`` after the rerun."""
    state.select_catalog(key)
    st.session_state["flash"] = message
    st.rerun()


def summary_section() -> None:
    choice = state.selected_catalog()
    path = state.catalog_path(choice)
    if path is None:
        st.info("The selected catalogue no longer exists; choose another one above.")
        return
    s = state.catalog_summary(path)
    st.subheader(f"Selected catalogue: {state.catalog_name(path)}")
    st.caption(f"`{path}`" + (" — noiseless simulation" if s.noiseless else ""))
    c = st.columns(4)
    c[0].metric("Galaxies", f"{s.n_galaxies:,}")
    c[1].metric("Bands", len(s.bands.bands))
    c[2].metric(
        "With spec-z",
        f"{s.n_zspec:,}",
        f"{100 * s.zspec_fraction:.0f}% of galaxies",
        delta_color="off",
        delta_arrow="off",
    )
    c[3].metric("Single exposures", f"{s.n_exposures:,}")
    missing = s.bands.without_curve
    if missing:
        st.warning(
            f"No filter curve for {', '.join(missing)}: 'auto' SPS pretraining is not "
            "possible; train with pretraining 'none' or a matching simulation."
        )
    if s.n_zspec == 0:
        st.info("No spec-z: this catalogue can be predicted by a trained run, not trained on.")
    elif s.n_zspec < 2000:
        st.info(
            f"Only {s.n_zspec:,} galaxies with spec-z: precision falls as the training sample "
            "shrinks (E20 Fig. 3; E20 fine-tunes on ~8,500). Pretraining on simulations "
            "helps most here."
        )
    left, right = st.columns(2)
    mags = plots_data.histogram(
        s.mag, s.mag_label, "Magnitudes", value_range=state.mag_slider_range(s.mag)
    )
    left.plotly_chart(mags)
    if s.n_zspec:
        right.plotly_chart(
            plots_data.histogram(s.zspec, "spectroscopic redshift z", "Spec-z distribution")
        )
    st.plotly_chart(plots_data.snr_per_band(s.bands.bands, s.bands.snr, s.bands.has_curve))
    with st.expander("Bands"):
        st.dataframe(
            pd.DataFrame(
                {
                    "band": s.bands.bands,
                    "filter curve": s.bands.has_curve,
                    "effective wavelength [Å]": s.bands.wavelength.round(0),
                    "median SNR": s.bands.snr[:, 1].round(2),
                    "median exposures per galaxy": s.bands.exposures,
                }
            ),
            hide_index=True,
        )


st.title("Data")
if "flash" in st.session_state:
    st.success(st.session_state.pop("flash"))
try:
    choose_catalogue()
except Exception as exc:
    show_error("The catalogues cannot be listed", exc)
with st.container(border=True):
    import_section()
try:
    summary_section()
except Exception as exc:
    show_error("The selected catalogue cannot be shown", exc)
