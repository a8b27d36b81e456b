"""``train`` (and ``predict``) on the command line: what a catalogue's problems print, and once
(eleventh session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from deepz_core.cli.main import main
from tests.cli.messages import one_line_error
from tests.synthetic import synthetic_catalog

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--pretrain", "none", "--preset", "smoke", "--epochs", "1", "--folds", "2"]


def objectid_table(n: int, seed: int, repeat: bool = False) -> Table:
    """A catalogue identified by objectId (ids 1..n; with ``repeat`` the 6th repeats the 5th)."""
    t = synthetic_catalog(n, seed, exposures=False).to_table()
    t.rename_column("ref_id", "objectId")
    if repeat:
        t["objectId"][5] = t["objectId"][4]
    return t


@pytest.mark.parametrize("id_flag", [[], ["--id-column", "objectId"]])
def test_repeated_ids_name_the_users_column_in_train_and_predict(
    tmp_path, tiny_run, capsys, id_flag
) -> None:
    """Eleventh session: train said "column 'ref_id' has duplicates" of a file that has no
    ref_id (predict named objectId)."""
    path = tmp_path / "dup.fits"
    objectid_table(60, 0, repeat=True).write(path)
    args = ["--catalog", str(path), *id_flag]
    assert main(["train", *args, *FAST, "--out", str(tmp_path / "run")]) == 2
    assert one_line_error(capsys).endswith(f"{path}: column 'objectId' has duplicates: 5")
    assert main(["predict", "--run", str(tiny_run), *args, "--out", str(tmp_path / "p.parquet")])
    line = one_line_error(capsys)
    assert "column 'objectId' has duplicates: 5" in line and "ref_id" not in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "p.parquet").exists()


def magnitude_csv(path: Path, n: int = 120) -> Path:
    """A catalogue in AB magnitudes (objectId, mag_<band>, magerr_<band>) whose problems warn:
    5 non-detections (99) in NB455 without a limiting magnitude, 40 spec-z written as 0."""
    cat = synthetic_catalog(n, 0, exposures=False)
    t = Table({"objectId": cat.ref_id})
    for j, band in enumerate(cat.bands):
        mag = cat.fluxzp - 2.5 * np.log10(np.clip(cat.flux[:, j], 1e-3, None))
        err = 2.5 / np.log(10) * cat.flux_error[:, j] / np.abs(cat.flux[:, j])
        if band == "NB455":
            mag[:5], err[:5] = 99.0, 99.0
        t[f"mag_{band}"], t[f"magerr_{band}"] = mag, err
    zspec = cat.zspec.copy()
    zspec[:40] = 0.0
    t["zspec"] = zspec
    t.write(path)
    return path


NO_LIMIT = "non-detections (magnitude 99 or NaN) have no limiting magnitude in"
ZERO_Z = "spec-z labels are exactly 0"


@pytest.mark.parametrize("id_flag", [[], ["--id-column", "objectId"]])
def test_each_catalogue_warning_comes_once(tmp_path, caplog, capsys, id_flag) -> None:
    """Eleventh session: train read the catalogue twice (for the run's grid, then to train) and
    printed its warnings twice; now it reads it once (``training_run.configured_run``)."""
    path = magnitude_csv(tmp_path / "mags.csv")
    args = ["train", "--catalog", str(path), *id_flag, *FAST, "--out", str(tmp_path / "run")]
    with caplog.at_level("WARNING", logger="deepz"):
        assert main(args) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum(NO_LIMIT in m for m in messages) == 1, messages
    assert sum(ZERO_Z in m for m in messages) == 1, messages


def test_catalog_help_names_every_flag_that_keeps_the_catalogue_as_read() -> None:
    """Docs review: any input convention (not only --id-column, --mag-limits, --flux-unit) makes
    ``train`` keep the catalogue as read in OUT/catalog.fits; --catalog's help says so."""
    from deepz_core.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    train = sub.choices["train"]
    options = {s for a in train._actions for s in a.option_strings}
    help_text = next(a.help for a in train._actions if "--catalog" in a.option_strings)
    for flag in ("--id-column", "--mag-limits", "--limit-nsigma", "--flux-unit", "--rename"):
        assert flag in options and flag in help_text, flag
