"""``train`` (and ``predict``) on the command line: what a catalogue's problems print, and once
(eleventh session)."""

from __future__ import annotations

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
