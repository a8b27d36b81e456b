"""Provenance in every output (issue 20, part 3): deepz version, run id, model checksum, catalogue
path and checksum, redshift grid and creation time, in FITS headers, Parquet schema metadata
(files and dataset parts), qp HDF5 attributes and the run's own predictions.fits."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import h5py
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

import deepz_core as dz
from deepz_core.inference import stream
from deepz_core.inference.provenance import (
    file_sha256,
    from_fits_header,
    from_parquet_metadata,
    provenance,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_provenance_fields(tiny_run, sky_catalog) -> None:
    _, path = sky_catalog
    prov = provenance(tiny_run, path)
    assert prov["deepz_version"] == dz.__version__ and prov["run_id"] == tiny_run.name
    assert prov["model_sha256"] == _sha(tiny_run / "model.safetensors")
    assert prov["catalog"] == str(path.resolve()) and prov["catalog_sha256"] == _sha(path)
    z_min, z_max, step = (float(v) for v in prov["z_grid"].split(":"))
    assert z_min == 0.0 and z_max > 1.0 and step == 0.001
    created = datetime.fromisoformat(prov["created"]).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 600


def test_every_output_carries_it(tiny_run, sky_catalog, tmp_path) -> None:
    _, path = sky_catalog
    outs = {e: tmp_path / f"p.{e}" for e in ("parquet", "fits", "hdf5")}
    for out in outs.values():
        stream.predict_file(str(tiny_run), str(path), str(out))
    stream.predict_dataset(str(tiny_run), str(path), str(tmp_path / "ds"), chunk_size=120)
    found = [
        from_parquet_metadata(pq.read_schema(outs["parquet"]).metadata),
        from_parquet_metadata(pq.read_schema(tmp_path / "ds" / "part-00001.parquet").metadata),
        from_fits_header(fits.getheader(outs["fits"], "PREDICTIONS")),
    ]
    with h5py.File(outs["hdf5"], "r") as f:
        attrs = {str(k): str(v) for k, v in f.attrs.items()}  # deepz_run_id, deepz_version...
    found.append(
        {k if k == "deepz_version" else k.removeprefix("deepz_"): v for k, v in attrs.items()}
    )
    for prov in found:
        assert prov["run_id"] == tiny_run.name and prov["catalog_sha256"] == _sha(path)
        assert prov["model_sha256"] == _sha(tiny_run / "model.safetensors")
        assert {"deepz_version", "catalog", "z_grid", "created"} <= set(prov)
    run_prov = from_fits_header(fits.getheader(tiny_run / "predictions.fits", 1))
    assert run_prov["run_id"] == tiny_run.name and run_prov["catalog"].endswith("train.fits")


def test_converted_downloads_keep_it_and_open_in_qp(tiny_run, sky_catalog, tmp_path) -> None:
    """What the app offers for download (``predictions_file_bytes``): the run's predictions.fits
    and a Parquet prediction as FITS, Parquet and qp files, each with the source's provenance
    and readable by qp (review, ninth session: the app's downloads had neither)."""
    import qp

    _, path = sky_catalog
    stream.predict_file(str(tiny_run), str(path), str(tmp_path / "p.parquet"))
    for src in (tiny_run / "predictions.fits", tmp_path / "p.parquet"):
        want = stream.file_provenance(src)
        assert want["run_id"] == tiny_run.name
        for fmt, ext in (("fits", "fits"), ("parquet", "parquet"), ("qp", "hdf5")):
            out = tmp_path / f"{src.stem}-{fmt}.{ext}"
            out.write_bytes(stream.predictions_file_bytes(src, fmt))
            if fmt == "qp":
                with h5py.File(out, "r") as f:
                    assert str(f.attrs["deepz_run_id"]) == tiny_run.name
            else:
                assert stream.file_provenance(out) == want
            ens = dz.read_qp(out) if fmt == "parquet" else qp.read(str(out))
            assert ens.npdf == stream.flag_counts(src)["rows"]


def test_api_outputs_carry_it(tiny_run, sky_catalog, tmp_path) -> None:
    cat, path = sky_catalog
    run = dz.load_run(tiny_run)
    run.predict(cat, out=tmp_path / "mem.parquet")
    prov = from_parquet_metadata(pq.read_schema(tmp_path / "mem.parquet").metadata)
    assert prov["catalog"] == "(in memory)" and len(prov["catalog_sha256"]) == 64
    run.predict(path, out=tmp_path / "file.fits")
    prov = from_fits_header(fits.getheader(tmp_path / "file.fits", 1))
    assert prov["catalog_sha256"] == _sha(path)


def test_a_folder_checksum_by_a_relative_name(tmp_path, monkeypatch) -> None:
    """Review, ninth session: the README's HATS command with a relative catalogue path ended in a
    ValueError traceback (files found under the relative name, named relative to the resolved
    one)."""
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "s" / "a.parquet").write_text("1")
    (tmp_path / "d" / "b.txt").write_text("2")
    monkeypatch.chdir(tmp_path)
    assert file_sha256("d") == file_sha256(tmp_path / "d")


def test_a_folder_checksum_covers_names_and_bytes(tmp_path) -> None:
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("1")
    (tmp_path / "d" / "s" / "b.txt").write_text("2")
    before = file_sha256(tmp_path / "d")
    (tmp_path / "d" / "s" / "b.txt").write_text("3")
    assert file_sha256(tmp_path / "d") != before
