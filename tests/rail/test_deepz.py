"""deepz's RAIL stages (rail/estimation/algos/deepz.py; issue 20, part 2): inform -> estimate ->
RAIL's own evaluation on a deepz mock written in RAIL's magnitude conventions, one p(z) per input
row (junk rows included), a JSON model handle (no pickle), chunked pandas input, discovery by
RAIL, and a ceci pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from rail.core.data import TableHandle
from rail.evaluation.single_evaluator import SingleEvaluator

import deepz_core as dz
from deepz_core.catalog.magnitudes import magnitude_columns
from deepz_core.catalog.screen import PzFlag
from deepz_core.pz import metrics
from rail.estimation.algos.deepz import (
    DeepzEstimator,
    DeepzInformer,
    DeepzModelHandle,
    stage_limits,
)

ROOT = Path(__file__).resolve().parents[2]
BANDS = "ugrizy"
JUNK = 3  # test rows whose reference band (i) is not observed: no p(z)


def rail_tables(n_train: int = 400, n_test: int = 200) -> tuple[dict, dict, dict]:
    """A deepz LSST mock as RAIL writes catalogues: mag_{b}_lsst, mag_err_{b}_lsst (99 and the
    1-sigma limit for non-detections), redshift (true), id; and RAIL's mag_limits (1-sigma)."""
    cat = dz.simulate_catalog("lsst-deep", n_train + n_test, seed=11)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = cat.fluxzp - 2.5 * np.log10(cat.flux)
        err = 2.5 / np.log(10) * cat.flux_error / cat.flux
    limit = cat.fluxzp - 2.5 * np.log10(cat.flux_error)  # (N, B) 1-sigma limits
    undetected = ~(cat.flux > cat.flux_error)
    mag[undetected], err[undetected] = 99.0, limit[undetected]
    columns = {"id": cat.ref_id + 5000, "redshift": cat.extra["ztrue"]}
    for j, b in enumerate(BANDS):
        columns[f"mag_{b}_lsst"] = mag[:, j].astype(np.float32)
        columns[f"mag_err_{b}_lsst"] = err[:, j].astype(np.float32)
    train = {k: v[:n_train] for k, v in columns.items()}
    test = {k: v[n_train:].copy() for k, v in columns.items()}
    test["mag_i_lsst"][:JUNK] = test["mag_err_i_lsst"][:JUNK] = -99.0
    limits = {f"mag_{b}_lsst": float(np.median(limit[:, j])) for j, b in enumerate(BANDS)}
    return train, test, limits


def write_hdf5(columns: dict, path: Path) -> Path:
    with h5py.File(path, "w") as f:
        for key, values in columns.items():
            f[f"photometry/{key}"] = values
    return path


@pytest.fixture(scope="module")
def rail_run(tmp_path_factory) -> dict:
    """inform (smoke preset) and estimate in chunks of 64, files in a temporary folder."""
    root = tmp_path_factory.mktemp("rail")
    train, test, limits = rail_tables()
    common = dict(id_col="id", mag_limits=limits, device="cpu")
    train_h = TableHandle("train", path=str(write_hdf5(train, root / "train.hdf5")))
    test_h = TableHandle("test", path=str(write_hdf5(test, root / "test.hdf5")))
    informer = DeepzInformer.make_stage(
        name="inform_deepz",
        model=str(root / "deepz.json"),
        preset="smoke",
        pretrain="none",
        **common,
    )
    model = informer.inform(train_h)
    estimator = DeepzEstimator.make_stage(
        name="estimate_deepz",
        model=model,
        chunk_size=64,
        output=str(root / "pz.hdf5"),
        calculated_point_estimates=["zmode", "zmedian"],
        **common,
    )
    ens = estimator.estimate(test_h).data
    return dict(
        root=root, test=test, train_h=train_h, test_h=test_h, limits=limits, model=model, ens=ens
    )


def test_one_pz_per_input_row_with_deepz_point_estimates(rail_run) -> None:
    ens, test = rail_run["ens"], rail_run["test"]
    assert ens.npdf == len(test["id"]) == 200
    np.testing.assert_array_equal(ens.ancil["id"], test["id"])
    np.testing.assert_array_equal(ens.ancil["redshift"], test["redshift"])
    no_pz = (ens.ancil["flag"] & PzFlag.NO_PZ) > 0
    assert no_pz[:JUNK].all() and not no_pz[JUNK:].any()
    assert {"zmode", "zmean", "zmedian", "z_lo68", "z_hi68", "odds"} <= set(ens.ancil)
    assert np.isfinite(ens.pdf(np.linspace(0, 3, 31))).all()
    run = dz.load_run(json.loads(Path(rail_run["model"].path).read_text())["run"])
    assert run.state == "finished" and run.config.preset == "smoke"


def test_rails_own_evaluation(rail_run) -> None:
    ens, test = rail_run["ens"], rail_run["test"]
    evaluator = SingleEvaluator.make_stage(
        name="evaluate_deepz",
        point_estimates=["zmode"],
        truth_point_estimates=["redshift"],
        metrics=["cdeloss", "pit", "point_bias", "point_stats_sigma_mad", "point_outlier_rate"],
        hdf5_groupname="photometry",
        force_exact=True,
        output=str(rail_run["root"] / "eval.hdf5"),
        summary=str(rail_run["root"] / "summary.hdf5"),
        single_distribution_summary=str(rail_run["root"] / "single.hdf5"),
    )
    result = evaluator.evaluate(ens, rail_run["test_h"])
    summary = {k: float(np.ravel(v)[0]) for k, v in result["summary"].data.items()}
    assert all(np.isfinite(v) for v in summary.values()), summary
    dz_rail = metrics.dz(ens.ancil["zmode"], test["redshift"])
    assert summary["point_bias_zmode_redshift"] == pytest.approx(metrics.bias(dz_rail), abs=1e-9)
    assert summary["cdeloss_redshift"] < 0  # better than no information
    pit = result["single_distribution_summary"].data["pit_redshift"]
    assert pit.npdf == 1


def test_the_model_handle_is_json_and_checked(rail_run, tmp_path) -> None:
    path = Path(rail_run["model"].path)
    model = json.loads(path.read_text())
    assert model["format"] == "deepz-rail-model" and len(model["model_sha256"]) == 64
    assert DeepzModelHandle("m", path=str(path)).read() == model
    (tmp_path / "bad.json").write_text(json.dumps({**model, "model_sha256": "0" * 64}))
    stage = DeepzEstimator.make_stage(name="estimate_bad", model=str(tmp_path / "bad.json"))
    with pytest.raises(dz.ConfigError, match="sha256 differs"):
        stage.open_model(**stage.config)
    (tmp_path / "pickle.json").write_text("[1, 2]")
    with pytest.raises(dz.ConfigError, match="not a deepz RAIL model"):
        DeepzModelHandle("p", path=str(tmp_path / "pickle.json")).read()


def test_a_model_moved_with_its_run_folder_still_opens(rail_run, tmp_path) -> None:
    """Review, tenth session: the model named its run by absolute path only, so a pipeline folder
    moved or copied elsewhere (another machine) failed with 'not a deepz run folder'."""
    import shutil

    path = Path(rail_run["model"].path)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(path, moved / path.name)
    shutil.copytree(path.with_name(path.stem + "_run"), moved / f"{path.stem}_run")
    model = DeepzModelHandle("moved", path=str(moved / path.name)).read()
    assert Path(model["run"]) == (moved / f"{path.stem}_run").resolve()
    stage = DeepzEstimator.make_stage(name="estimate_moved", model=str(moved / path.name))
    stage.open_model(**stage.config)
    assert stage.deepz_run.path == Path(model["run"])


def test_informing_again_with_the_same_inputs_reuses_the_run(rail_run) -> None:
    """Review, tenth session: re-running a pipeline's inform stage raised 'holds a finished run;
    choose another folder'; the same data and settings give back the finished run."""
    root = rail_run["root"]
    before = json.loads((root / "deepz.json").read_text())

    def informer(name: str, **extra: object) -> DeepzInformer:
        return DeepzInformer.make_stage(
            name=name,
            model=str(root / "deepz.json"),
            preset="smoke",
            pretrain="none",
            id_col="id",
            mag_limits=rail_run["limits"],
            device="cpu",
            **extra,
        )

    informer("inform_deepz_again").inform(rail_run["train_h"])
    assert json.loads((root / "deepz.json").read_text()) == before
    other = informer("inform_deepz_other", seed=7)
    with pytest.raises(dz.ConfigError, match="these settings differ: train.seed"):
        other.inform(rail_run["train_h"])


def test_a_ref_band_that_is_not_a_band_is_refused(rail_run, tmp_path) -> None:
    """Review, tenth session: ref_band='mag_q_lsst' (a typo) trained silently on the i band."""
    informer = DeepzInformer.make_stage(
        name="inform_typo",
        model=str(tmp_path / "typo.json"),
        preset="smoke",
        pretrain="none",
        ref_band="mag_q_lsst",
        id_col="id",
    )
    with pytest.raises(dz.ConfigError, match="ref_band 'mag_q_lsst' is not one of bands"):
        informer.inform(rail_run["train_h"])
    assert not (tmp_path / "typo_run").exists()
    negative = DeepzInformer.make_stage(
        name="inform_negative", model=str(tmp_path / "neg.json"), members=-1, id_col="id"
    )
    with pytest.raises(dz.ConfigError, match="members must be >= 0"):  # was 'repetitions: ...'
        negative.inform(rail_run["train_h"])


def test_mag_limits_keys_that_name_no_band_are_refused(tmp_path) -> None:
    """Review: mag_limits=dict(q=...) was dropped silently (only 'band ... unusable' later); the
    keys read as --mag-limits reads them, and a key that names no band is refused, listing them."""
    train, _, limits = rail_tables(60, 1)
    handle = TableHandle("t", path=str(write_hdf5(train, tmp_path / "train.hdf5")))
    informer = DeepzInformer.make_stage(
        name="inform_bad_limits",
        model=str(tmp_path / "bad.json"),
        preset="smoke",
        pretrain="none",
        id_col="id",
        mag_limits={**limits, "q": 26.1},
    )
    with pytest.raises(dz.ConfigError, match=r"mag_limits: 'q' names no band.*mag_u_lsst"):
        informer.inform(handle)
    assert not (tmp_path / "bad_run").exists()


def test_mag_limits_keys_read_as_the_cli_reads_them() -> None:
    columns = magnitude_columns([f"{p}_{b}_lsst" for b in BANDS for p in ("mag", "magerr")])
    bands = [f"mag_{b}_lsst" for b in "griz"]  # RAIL's default limits of u and y: passed over
    limits = {"mag_u_lsst": 27.0, "mag_y_lsst": 26.0, "g": 28.0, "R": 27.5}
    assert stage_limits(limits, bands, columns) == {"mag_g_lsst": 28.0, "mag_r_lsst": 27.5}


def test_pandas_chunks_in_memory(rail_run) -> None:
    frame = pd.DataFrame(rail_run["test"])
    stage = DeepzEstimator.make_stage(
        name="estimate_frame",
        model=rail_run["model"],
        hdf5_groupname="",
        chunk_size=70,
        output_mode="return",
        id_col="id",
        mag_limits=rail_run["limits"],
        device="cpu",
    )
    ens = stage.estimate(frame).data
    assert ens.npdf == 200
    np.testing.assert_allclose(ens.ancil["zmode"], rail_run["ens"].ancil["zmode"])


def test_rail_finds_the_stages() -> None:
    import rail.stages
    from rail.core.stage import RailStage

    rail.stages.import_and_attach_all(silent=True)
    assert {"DeepzInformer", "DeepzEstimator"} <= set(RailStage.pipeline_stages)


@pytest.mark.slow
def test_a_ceci_pipeline_runs_inform_estimate_evaluate(tmp_path) -> None:
    from rail.core.stage import RailPipeline

    train, test, limits = rail_tables(300, 100)
    inputs = {
        "input_train": str(write_hdf5(train, tmp_path / "train.hdf5")),
        "input_test": str(write_hdf5(test, tmp_path / "test.hdf5")),
    }
    common = dict(id_col="id", mag_limits=limits, device="cpu")

    class DeepzPipeline(RailPipeline):
        default_input_dict = dict(input_train="dummy.in", input_test="dummy.in")

        def __init__(self) -> None:
            RailPipeline.__init__(self)
            self.inform_deepz = DeepzInformer.build(
                aliases=dict(input="input_train"), preset="smoke", pretrain="none", **common
            )
            self.estimate_deepz = DeepzEstimator.build(
                aliases=dict(input="input_test"),
                connections=dict(model=self.inform_deepz.io.model),
                **common,
            )
            self.evaluate_deepz = SingleEvaluator.build(
                aliases=dict(truth="input_test"),
                connections=dict(input=self.estimate_deepz.io.output),
                point_estimates=["zmode"],
                truth_point_estimates=["redshift"],
                metrics=["cdeloss", "pit", "point_bias"],
                force_exact=True,
            )

    pipe = DeepzPipeline()
    settings = dict(output_dir=str(tmp_path / "out"), log_dir=str(tmp_path / "logs"), resume=False)
    pipe.initialize(inputs, settings, None)
    pipe.save(str(tmp_path / "pipe.yml"))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # ceci: python3
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "DEEPZ_QUIET": "1",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ceci"), str(tmp_path / "pipe.yml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import qp

    ens = qp.read(str(tmp_path / "out" / "output_estimate_deepz.hdf5"))
    assert ens.npdf == 100
    assert (tmp_path / "out" / "summary_evaluate_deepz.hdf5").is_file()
    model = json.loads((tmp_path / "out" / "model_inform_deepz.json").read_text())
    assert Path(model["run"]).parent == tmp_path / "out"


def test_a_chunk_is_not_judged_as_a_whole_catalogue(rail_run, tmp_path) -> None:
    """Fourteenth session: the checks of a whole catalogue (no reference flux in any row, a
    median 5 mag from the training magnitudes: refused) would judge each RAIL chunk alone, so a
    catalogue whose last chunk holds only galaxies without an i-band measurement (sorted by
    magnitude) failed there. A chunk is predicted: those rows get NaN p(z) flagged NO_PZ."""
    test = {k: v.copy() for k, v in rail_run["test"].items()}
    test["mag_i_lsst"][140:] = test["mag_err_i_lsst"][140:] = -99.0  # the last chunk of 70
    handle = TableHandle("sorted", path=str(write_hdf5(test, tmp_path / "sorted.hdf5")))
    stage = DeepzEstimator.make_stage(
        name="estimate_sorted",
        model=rail_run["model"],
        chunk_size=70,
        output=str(tmp_path / "pz.hdf5"),
        id_col="id",
        mag_limits=rail_run["limits"],
        device="cpu",
    )
    ens = stage.estimate(handle).data
    no_pz = (ens.ancil["flag"] & PzFlag.NO_PZ) > 0
    assert ens.npdf == 200 and no_pz[140:].all() and not no_pz[JUNK:140].any()
    np.testing.assert_allclose(ens.ancil["zmode"][:140], rail_run["ens"].ancil["zmode"][:140])
