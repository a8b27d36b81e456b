"""deepz's p(z) as qp ensembles (issue 20, part 1): qp.read opens deepz's .hdf5 and FITS outputs,
read_qp its Parquet files and datasets, the ancillary columns are deepz's exact point estimates,
rows without a p(z) stay rows (a placeholder and the NO_PZ flag), and qp's PIT and CDE loss agree
with deepz's own."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import qp
import torch
from astropy.table import Table
from qp.metrics import CDELossMetric
from qp.metrics.pit import PIT

import deepz_core as dz
from deepz_core.catalog.screen import PzFlag
from deepz_core.errors import ConfigError
from deepz_core.inference import stream
from deepz_core.inference.predict import mixture_from_arrays
from deepz_core.inference.qp_io import ANCIL, read_qp, to_qp
from deepz_core.pz import metrics
from deepz_core.pz.products import PzConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def outputs(tiny_run, sky_catalog, tmp_path_factory) -> dict:
    """The sky catalogue predicted into every single-file format."""
    _, path = sky_catalog
    root = tmp_path_factory.mktemp("qp")
    files = {ext: root / f"pz.{ext}" for ext in ("parquet", "fits", "hdf5")}
    for out in files.values():
        assert stream.predict_file(str(tiny_run), str(path), str(out), chunk_size=64) == 200
    return files


def test_qp_reads_the_hdf5_and_fits_outputs(outputs) -> None:
    table = stream.astropy_table(pq.read_table(outputs["parquet"]))
    no_pz = (np.asarray(table["flag"]) & PzFlag.NO_PZ) > 0
    assert no_pz[:3].all() and not no_pz[3:].any()
    for ext in ("hdf5", "fits"):
        ens = qp.read(str(outputs[ext]))
        assert ens.npdf == 200 and set(ANCIL) <= set(ens.ancil)
        ok = ~no_pz
        np.testing.assert_array_equal(ens.ancil["ref_id"], table["ref_id"])
        for qp_name, column in (("zmode", "zphot"), ("zmedian", "zmedian"), ("zmean", "zmean")):
            np.testing.assert_array_equal(ens.ancil[qp_name][ok], np.asarray(table[column])[ok])
        np.testing.assert_allclose(
            ens.objdata["weights"][ok], table["weights"][ok], rtol=1e-6
        )  # renormalised
        assert (ens.ancil["flag"][no_pz] & PzFlag.NO_PZ).all()


def test_rows_without_a_pz_get_the_placeholder(outputs, tiny_run) -> None:
    pz = PzConfig(**dz.load_run(tiny_run).folder.config()["pz"])
    centre, width = 0.5 * (pz.z_min + pz.z_max), pz.z_max - pz.z_min
    ens = qp.read(str(outputs["hdf5"]))
    np.testing.assert_allclose(ens.objdata["means"][:3], centre)
    np.testing.assert_allclose(ens.objdata["stds"][:3], width, rtol=1e-6)
    np.testing.assert_array_equal(ens.objdata["weights"][:3, 0], 1.0)
    assert (
        ens.ancil["zmode"][:3].tolist() == [centre] * 3
        and ens.ancil["odds"][:3].tolist() == [0.0] * 3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NaN anywhere: qp's median works
        median = ens.median().ravel()
    np.testing.assert_allclose(median[3:], ens.ancil["zmedian"][3:], atol=2e-3)


def test_read_qp_rebuilds_the_same_ensemble_from_parquet_and_datasets(
    outputs, tiny_run, sky_catalog, tmp_path
) -> None:
    reference = qp.read(str(outputs["hdf5"]))
    grid = np.linspace(0, 1.5, 61)
    folder = tmp_path / "ds"
    stream.predict_dataset(str(tiny_run), str(sky_catalog[1]), str(folder), chunk_size=70)
    for source in (outputs["parquet"], folder, outputs["fits"]):
        ens = read_qp(source)
        np.testing.assert_allclose(ens.pdf(grid), reference.pdf(grid), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ens.ancil["flag"], reference.ancil["flag"])
    meta = pq.read_schema(outputs["parquet"]).metadata
    assert meta[b"qp_pdf_name"] == b"mixmod" and b"qp_data_columns" in meta
    with pytest.raises(ConfigError, match="no qp metadata"):
        Table({"ref_id": [1]}).write(tmp_path / "plain.parquet")
        read_qp(tmp_path / "plain.parquet")


def test_read_qp_refuses_an_incomplete_dataset(tiny_run, sky_catalog, tmp_path) -> None:
    """Review, tenth session: a dataset folder without _SUCCESS (a killed predict) was read as
    if complete, its missing rows silently absent from the ensemble."""
    from deepz_core.errors import CatalogError

    folder = tmp_path / "ds"
    stream.predict_dataset(str(tiny_run), str(sky_catalog[1]), str(folder), chunk_size=70)
    (folder / stream.SUCCESS).unlink()
    with pytest.raises(CatalogError, match="no _SUCCESS"):
        read_qp(folder)
    with pytest.raises(CatalogError, match="not a complete predictions dataset"):
        read_qp(tmp_path)


def test_read_qp_reads_a_runs_own_predictions_and_refuses_others_in_one_line(
    outputs, tiny_run, tmp_path
) -> None:
    """Review, tenth session: read_qp of a run's predictions.fits (no qp HDUs) failed inside qp
    with KeyError 'meta'; a catalogue, a non-qp HDF5 file or a missing path gave tracebacks."""
    from deepz_core.errors import CatalogError

    own = read_qp(tiny_run / "predictions.fits")
    table = Table.read(tiny_run / "predictions.fits")
    assert own.npdf == len(table)
    np.testing.assert_array_equal(own.ancil["ref_id"], table["ref_id"])
    grid = np.linspace(0, 1.5, 31)
    np.testing.assert_allclose(
        read_qp(outputs["fits"]).pdf(grid), qp.read(str(outputs["fits"])).pdf(grid), rtol=1e-6
    )
    with pytest.raises(ConfigError, match="not a predictions table"):
        read_qp(tiny_run.parent / "train.fits")
    with pytest.raises(CatalogError, match="not a qp file"):
        import h5py

        with h5py.File(tmp_path / "other.hdf5", "w") as f:
            f["x"] = [1, 2]
        read_qp(tmp_path / "other.hdf5")
    with pytest.raises(CatalogError, match="no such predictions file"):
        read_qp(tmp_path / "missing.parquet")


def test_pit_and_cde_loss_of_the_qp_ensemble_agree_with_deepz(outputs) -> None:
    table = stream.astropy_table(pq.read_table(outputs["parquet"]))
    use = np.isfinite(np.asarray(table["zspec"])) & np.isfinite(np.asarray(table["zphot"]))
    sub = table[use]
    ens = to_qp(sub)
    z = np.asarray(sub["zspec"], dtype=np.float64)
    pit = PIT(ens, z).pit_samps
    np.testing.assert_allclose(pit, np.asarray(sub["pit"]), atol=1e-6)
    grid = PzConfig(z_min=0.0, z_max=2.0, dz=0.001).grid()
    mix = mixture_from_arrays(*(np.asarray(sub[k]) for k in ("weights", "means", "stds")))
    pdf = mix.pdf_grid(torch.as_tensor(grid)).numpy()
    theirs = CDELossMetric(eval_grid=grid).evaluate(ens, z)
    assert metrics.cde_loss(pdf, grid, z) == pytest.approx(theirs, rel=1e-4)
    # qp takes p(zs) at the grid point nearest zs, deepz interpolates: at grid points, equal
    snapped = grid[np.abs(grid[None, :] - z[:, None]).argmin(axis=1)]
    assert metrics.cde_loss(pdf, grid, snapped) == pytest.approx(theirs, rel=1e-7)


def test_to_qp_refuses_a_table_without_mixtures() -> None:
    with pytest.raises(ConfigError, match="not a predictions table"):
        to_qp(Table({"ref_id": [1], "zphot": [0.3]}))


def test_qp_hdf5_holds_no_pickles_and_names_an_hdf5_file(outputs, tiny_run, tmp_path) -> None:
    kinds = []
    with h5py.File(outputs["hdf5"], "r") as f:
        f.visititems(lambda name, obj: kinds.append(getattr(obj, "dtype", None)))
    assert all(k is None or k.kind in "fiuS" for k in kinds)  # numbers and bytes only
    with pytest.raises(
        ConfigError, match=r"predictions are written as .parquet, .fits, .hdf5 \(a qp file\)"
    ):
        stream.output_format(tmp_path / "pz.h5")
