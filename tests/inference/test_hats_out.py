"""HATS catalogues in and out (issue 20, part 4): ``predict --out-format hats`` writes, through
lsdb, a catalogue that lsdb.open_catalog opens with the mixture columns intact and whose cone
search returns the right rows; a HATS folder (and one of its pixel files) can be predicted; the
map_partitions example of docs/ecosystem.md runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from deepz_core.catalog.io import read_catalog
from deepz_core.catalog.screen import PzFlag
from deepz_core.errors import ConfigError
from deepz_core.inference import stream
from deepz_core.inference.hats_out import write_hats

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hats_output(tiny_run, sky_catalog, tmp_path_factory) -> tuple[Path, Path]:
    """The sky catalogue predicted as a HATS folder and as Parquet."""
    root = tmp_path_factory.mktemp("hats")
    path = str(sky_catalog[1])
    assert stream.predict_file(str(tiny_run), path, str(root / "pz"), out_format="hats") == 200
    stream.predict_file(str(tiny_run), path, str(root / "pz.parquet"))
    return root / "pz", root / "pz.parquet"


@pytest.fixture(scope="module")
def galaxies_hats(sky_catalog, tmp_path_factory) -> Path:
    """The sky catalogue itself as a HATS catalogue (written by lsdb)."""
    cat, _ = sky_catalog
    folder = tmp_path_factory.mktemp("in") / "galaxies_hats"
    frame = cat.to_table().to_pandas()
    lsdb.from_dataframe(
        frame, catalog_name="galaxies", ra_column="ra", dec_column="dec", margin_threshold=None
    ).write_catalog(folder, as_collection=False, progress_bar=False)
    return folder


def test_lsdb_opens_the_output_with_the_mixtures_intact(hats_output) -> None:
    folder, parquet = hats_output
    got = lsdb.open_catalog(folder).compute().sort_values("ref_id")
    want = stream.astropy_table(pq.read_table(parquet))
    assert len(got) == 200 and got.index.name == "_healpix_29"
    np.testing.assert_array_equal(got["ref_id"].to_numpy(), want["ref_id"])
    for name in ("weights", "means", "stds"):
        assert "fixed_size_list" in str(got[name].dtype)
        values = np.stack(got[name].to_numpy())
        np.testing.assert_array_equal(values, want[name])
    properties = (folder / "hats.properties").read_text()
    assert "deepz_run_id=run" in properties and "deepz_model_sha256=" in properties


def test_cone_search_returns_the_rows_within_the_radius(hats_output, sky_catalog) -> None:
    cat, _ = sky_catalog
    centre, radius = SkyCoord(150.4 * u.deg, 2.1 * u.deg), 0.3 * u.deg
    found = lsdb.open_catalog(hats_output[0]).cone_search(
        ra=150.4, dec=2.1, radius_arcsec=radius.to_value(u.arcsec)
    )
    inside = SkyCoord(cat.extra["ra"] * u.deg, cat.extra["dec"] * u.deg).separation(centre) < radius
    assert 10 < inside.sum() < 190
    assert sorted(found.compute()["ref_id"].tolist()) == sorted(cat.ref_id[inside].tolist())


def test_hats_output_needs_coordinates_and_replaces_only_hats(tmp_path) -> None:
    no_sky = pa.table({"ref_id": [1, 2], "zphot": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="needs coordinates"):
        write_hats(no_sky, tmp_path / "a", {})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    sky = pa.table({"ref_id": [1, 2], "ra": [10.0, 11.0], "dec": [0.0, 1.0]})
    with pytest.raises(ConfigError, match="no HATS catalogue"):
        write_hats(sky, tmp_path / "b", {})
    assert write_hats(sky, tmp_path / "c", {"run_id": "x"}) == 2
    assert write_hats(sky, tmp_path / "c", {"run_id": "y"}) == 2  # a HATS output is replaced
    assert "deepz_run_id=y" in (tmp_path / "c" / "hats.properties").read_text()
    with pytest.raises(ConfigError, match="without a suffix"):
        stream.output_format(tmp_path / "d.parquet", "hats")


def test_a_hats_catalogue_and_one_pixel_file_are_predicted(
    tiny_run, galaxies_hats, sky_catalog, tmp_path
) -> None:
    cat, _ = sky_catalog
    whole = read_catalog(galaxies_hats)
    assert sorted(whole.ref_id.tolist()) == sorted(cat.ref_id.tolist())
    out = tmp_path / "pz.parquet"
    assert stream.predict_file(str(tiny_run), str(galaxies_hats), str(out), chunk_size=30) == 200
    pz = pq.read_table(out).to_pandas()
    assert "_healpix_29" in pz.columns and pz["_healpix_29"].is_unique
    pixel = next(galaxies_hats.glob("dataset/Norder=*/Dir=*/Npix=*.parquet"))
    part = read_catalog(pixel)
    stream.predict_file(str(tiny_run), str(pixel), str(tmp_path / "one.parquet"))
    one = pq.read_table(tmp_path / "one.parquet").to_pandas()
    np.testing.assert_array_equal(one["_healpix_29"], part.extra["_healpix_29"])


def test_a_hats_catalogue_is_predicted_into_a_dataset_that_resumes(
    tiny_run, galaxies_hats, tmp_path
) -> None:
    """Fourteenth session: a HATS catalogue predicted into a partitioned dataset (no --out
    suffix) failed with '...galaxies_hats: Is a directory' (the dataset's key read the folder as
    a file). It is predicted, and a re-run resumes its missing part."""
    out = tmp_path / "ds"
    assert stream.predict_dataset(str(tiny_run), str(galaxies_hats), str(out), 60) == 200
    first = pq.read_table(stream.dataset_files(out)).to_pandas()
    (out / stream.SUCCESS).unlink()
    (out / "part-00000.parquet").unlink()
    assert stream.predict_dataset(str(tiny_run), str(galaxies_hats), str(out), 60) == 200
    again = pq.read_table(stream.dataset_files(out)).to_pandas()
    np.testing.assert_array_equal(again["ref_id"], first["ref_id"])
    np.testing.assert_allclose(again["zphot"], first["zphot"])


def test_the_map_partitions_example_of_the_docs_runs(
    tiny_run, galaxies_hats, tmp_path, monkeypatch
) -> None:
    text = (ROOT / "docs" / "ecosystem.md").read_text()
    code = re.search(r"<!-- map_partitions example -->\n```python\n(.*?)```", text, re.S)[1]
    shutil.copytree(tiny_run, tmp_path / "runs" / "lsst")
    shutil.copytree(galaxies_hats, tmp_path / "galaxies_hats")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/ecosystem.md", "exec"), scope)  # noqa: S102 - the documented example
    pz = scope["pz"]
    assert len(pz) == 200 and pz.index.name == "_healpix_29"
    assert ((pz["flag"].to_numpy() & PzFlag.NO_PZ) > 0).sum() == 3  # no reference flux


def test_evaluate_reads_a_hats_output_like_its_parquet_twin(hats_output) -> None:
    """Review, ninth session: evaluating a finished HATS output said 'dataset incomplete (no
    _SUCCESS); run the same predict again', which cannot help."""
    import deepz_core as dz

    hats, parquet = hats_output
    by_hats, by_file = dz.evaluate(hats), dz.evaluate(parquet)
    assert by_hats["overall"] == pytest.approx(by_file["overall"], rel=1e-9, nan_ok=True)


def test_read_qp_reads_a_hats_output_like_its_parquet_twin(hats_output) -> None:
    """Review, tenth session: dz.read_qp of a HATS output said 'no qp metadata; not a deepz
    predictions file'."""
    import deepz_core as dz

    hats, parquet = hats_output
    by_hats, by_file = dz.read_qp(hats), dz.read_qp(parquet)
    order = np.argsort(by_hats.ancil["ref_id"])
    np.testing.assert_array_equal(by_hats.ancil["ref_id"][order], by_file.ancil["ref_id"])
    grid = np.linspace(0.0, 1.5, 31)
    np.testing.assert_allclose(by_hats.pdf(grid)[order], by_file.pdf(grid), rtol=1e-6)
    no_pz = (by_file.ancil["flag"] & PzFlag.NO_PZ) > 0
    np.testing.assert_array_equal(
        by_hats.ancil["zmode"][order][no_pz], by_file.ancil["zmode"][no_pz]
    )


def test_a_run_trains_on_a_hats_catalogue(galaxies_hats, tmp_path) -> None:
    """Review, tenth session: train refused a HATS folder ('no such file') that read_catalog and
    predict read; the API and the command line now train on it."""
    import deepz_core as dz
    from deepz_core.cli.main import main

    run = dz.train(galaxies_hats, tmp_path / "api", preset="smoke", pretrain="none")
    assert run.state == "finished" and len(run.predictions()) == 200
    assert dz.train(galaxies_hats, tmp_path / "api", preset="smoke", pretrain="none", reuse=True)
    args = ["--preset", "smoke", "--pretrain", "none", "--schedule", "1:1e-3"]
    assert (
        main(["train", "--catalog", str(galaxies_hats), "--out", str(tmp_path / "cli"), *args]) == 0
    )
    with pytest.raises(ConfigError, match="no such file or HATS catalogue folder"):
        dz.train(tmp_path / "nothing", tmp_path / "none", preset="smoke", pretrain="none")


def test_hats_output_without_coordinates_fails_before_predicting(
    tiny_run, tmp_path, monkeypatch
) -> None:
    """Review: `--out-format hats` found a catalogue without ra/dec only after predicting all of
    it, and listed the prediction columns. Now it fails first, listing the catalogue's."""
    import deepz_core as dz
    from deepz_core.catalog.io import write_catalog
    from tests.synthetic import synthetic_catalog

    path = write_catalog(synthetic_catalog(30, 4, exposures=False), tmp_path / "flat.parquet")

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted before the coordinates were checked")

    monkeypatch.setattr(stream.Predictor, "__call__", no_prediction)
    match = r"needs coordinates: .*its columns: ref_id, .*flux_"
    with pytest.raises(ConfigError, match=match):
        stream.predict_file(str(tiny_run), str(path), str(tmp_path / "h"), out_format="hats")
    with pytest.raises(ConfigError, match=match):
        dz.load_run(tiny_run).predict(str(path), out=tmp_path / "h2", out_format="hats")
    assert not (tmp_path / "h").exists() and not (tmp_path / "h2").exists()
