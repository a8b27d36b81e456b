"""Uploads: stored once by content hash, rejected files deleted, a quota with the least recently
used files no run reads evicted first (issue 19); their given names, the catalogue chosen last."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from deepz_core.catalog import uploads
from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog
from deepz_core.errors import CatalogError
from deepz_core.jobs.training_run import create_run, run_config
from tests.synthetic import synthetic_catalog


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def table_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("up") / "cat.parquet"
    return write_catalog(synthetic_catalog(30, 0, exposures=False), path).read_bytes()


def test_a_good_upload_is_stored_once(home: Path, table_bytes: bytes) -> None:
    first = uploads.save_upload(table_bytes, "mine.parquet")
    assert first.parent == uploads.uploads_dir() and first.read_bytes() == table_bytes
    assert uploads.save_upload(table_bytes, "again.parquet") == first
    assert len(list(uploads.uploads_dir().iterdir())) == 1


@pytest.mark.parametrize(
    ("data", "name", "says"),
    [
        (b"hello, not a table", "cat.fits", "not a FITS file"),
        (b"PAR1" + b"\x00" * 50, "cat.parquet", "truncated Parquet"),
        (b"a;b;c\n1;2;3\n", "cat.csv", "delimiter looks wrong"),
    ],
)
def test_a_rejected_upload_is_deleted(home: Path, data: bytes, name: str, says: str) -> None:
    with pytest.raises(CatalogError, match=says) as err:
        uploads.save_upload(data, name)
    assert name in str(err.value) and "was not kept" in str(err.value)
    assert list(uploads.uploads_dir().iterdir()) == []


def _fill(folder: Path, name: str, size: int, age: float) -> Path:
    path = folder / name
    path.write_bytes(b"x" * size)
    os.utime(path, (age, age))
    return path


def test_the_quota_evicts_the_least_recently_used_unused_files_first(
    home: Path, tmp_path: Path
) -> None:
    folder = uploads.uploads_dir()
    folder.mkdir(parents=True)
    oldest = _fill(folder, "a" * 64 + ".fits", 400, 1_000)
    used = _fill(folder, "catalog-" + "b" * 20 + ".fits", 400, 500)  # older, but a run reads it
    used.with_suffix(".json").write_text("{}")
    middle = _fill(folder, "c" * 64 + ".csv", 400, 2_000)
    newest = _fill(folder, "d" * 64 + ".csv", 400, 3_000)
    real = write_catalog(synthetic_catalog(20, 1, exposures=False), tmp_path / "real.fits")
    config = run_config(str(real), pretrain="none")
    run = create_run(uploads.runs_dir() / "r", config)
    run.file("config.json").write_text(
        run.file("config.json").read_text().replace(str(real), str(used))
    )
    removed = uploads.enforce_quota(keep=(newest,), quota=900)
    assert removed == [oldest.name, middle.name]
    assert used.exists() and newest.exists()
    with pytest.raises(CatalogError, match="quota"):
        uploads.enforce_quota(keep=(newest,), quota=500)  # what must stay is above the quota


def test_the_quota_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPZ_UPLOAD_QUOTA_GB", "1.5")
    assert uploads.upload_quota() == 1_500_000_000
    monkeypatch.setenv("DEEPZ_UPLOAD_QUOTA_GB", "-1")
    with pytest.raises(CatalogError, match="DEEPZ_UPLOAD_QUOTA_GB"):
        uploads.upload_quota()


def test_an_upload_beyond_the_quota_is_not_kept(
    home: Path, table_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPZ_UPLOAD_QUOTA_GB", str(len(table_bytes) / 2e9))
    with pytest.raises(CatalogError, match="quota"):
        uploads.save_upload(table_bytes, "big.parquet")
    assert list(uploads.uploads_dir().iterdir()) == []


def test_given_names_and_the_last_choice(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    key = "0123456789abcdef0123"
    cat = Catalog(
        ref_id=np.arange(3), bands=("g",), flux=np.ones((3, 1)), flux_error=np.ones((3, 1))
    )
    path = write_catalog(cat, uploads.canonical_path(key))
    uploads.write_note(key, {"name": "SDSS DR16 sample", "n": 3})
    assert uploads.catalog_display_name(path) == "SDSS DR16 sample"
    assert uploads.catalog_display_name(tmp_path / "x" / "mine.fits") == "mine.fits"
    assert uploads.last_catalog() is None
    uploads.remember_catalog(key)
    assert uploads.last_catalog() == key
    path.unlink()
    assert uploads.last_catalog() is None  # gone: not offered any more
    uploads.remember_catalog(uploads.DEMO)
    assert uploads.last_catalog() == uploads.DEMO
