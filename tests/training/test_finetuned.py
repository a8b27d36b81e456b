"""Fine-tuned networks shipped with deepz: a restored run is the run that would have trained."""

from __future__ import annotations

import dataclasses
import json
from functools import partial

import numpy as np
import pytest
import torch
from astropy.table import Table
from safetensors.torch import load_file

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.training import finetuned
from deepz_core.training.config import TrainConfig
from deepz_core.training.finetuned import FinetuneKey
from deepz_core.training.fingerprints import Fingerprint, sums_agree
from tests.synthetic import BANDS, TINY_MODEL, synthetic_catalog

TRAIN = dict(
    schedule=((2, 1e-3), (1, 1e-4)),
    batch_size=40,
    folds=2,
    device="cpu",
    seed=1,
    pretrain_schedule=((2, 1e-3),),
    pretrain_batch_size=50,
)
RESTORED = "fine-tuned networks restored from the shipped weights"

pytestmark = pytest.mark.usefixtures("one_thread")
_synthetic = partial(synthetic_catalog, missing_zspec=0.15)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("finetuned")
    write_catalog(_synthetic(260, 3), folder / "cat.fits")  # >= 200 spec-z: calibrated
    write_catalog(_synthetic(100, 5, exposures=False, noiseless=True), folder / "sim.fits")
    return str(folder / "cat.fits"), str(folder / "sim.fits")


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """Lookups on, an empty local cache and an empty folder of shipped weights."""
    monkeypatch.setenv("DEEPZ_PRETRAIN_CACHE", "1")
    monkeypatch.setenv("DEEPZ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DEEPZ_SHIPPED_WEIGHTS", str(tmp_path / "shipped"))
    return tmp_path / "shipped"


def _train(folder, inputs, catalog: str | None = None, calibrate: bool = True, **train):
    cat, sim = inputs
    config = run_config(
        catalog or cat,
        pretrain=sim,
        model=TINY_MODEL,
        train={**TRAIN, **train},
        calibrate=calibrate,
    )
    run = create_run(folder, config)
    execute_run(run)
    assert run.status()["state"] == "finished", run.status()
    return run


def _ship(run, folder) -> str:
    key = run.status()["finetune_key"]
    finetuned.ship(run, key, folder)
    return key


def _restored(run) -> bool:
    return RESTORED in run.file("log.txt").read_text()


def _same_weights(a, b) -> None:
    wa, wb = (
        load_file(str(a.file("model.safetensors"))),
        load_file(str(b.file("model.safetensors"))),
    )
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)


def _same_predictions(a, b) -> None:
    ta, tb = Table.read(a.file("predictions.fits")), Table.read(b.file("predictions.fits"))
    assert ta.colnames == tb.colnames
    for name in ta.colnames:
        np.testing.assert_array_equal(np.asarray(ta[name]), np.asarray(tb[name]), err_msg=name)


def _rows(run) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "cached")} for r in run.metrics()]


def test_a_restored_run_is_the_trained_run(tmp_path, inputs, shipped) -> None:
    trained = _train(tmp_path / "a", inputs)
    key = _ship(trained, shipped)
    tensors = load_file(str(shipped / f"{key}.safetensors"))
    assert not [k for k in tensors if k.startswith("opt.")]  # the optimiser is left out
    assert {"rng.torch", "rng.gen"} <= set(tensors)
    restored = _train(tmp_path / "b", inputs)
    assert _restored(restored) and not _restored(trained)
    assert restored.status()["finetune_key"] == key
    _same_weights(trained, restored)
    _same_predictions(trained, restored)
    calibration = [json.loads(r.file("calibration.json").read_text()) for r in (trained, restored)]
    assert calibration[0] == calibration[1]
    # the loss curves and held-out NLL the pages draw are the trained run's, marked cached
    assert _rows(restored) == _rows(trained)
    assert all(r["cached"] for r in restored.metrics())
    assert restored.status()["summary"]["heldout"] == trained.status()["summary"]["heldout"]
    assert restored.status()["summary"]["sigma68"] == trained.status()["summary"]["sigma68"]


def test_a_change_of_any_keyed_input_trains(tmp_path, inputs, shipped) -> None:
    first = _train(tmp_path / "a", inputs)
    key, sums = _ship(first, shipped), first.status()["key_sums"]["finetune"]
    other = tmp_path / "other.fits"
    cat = _synthetic(260, 3)
    cat.flux[7, 3] *= 1.01  # one broad-band flux of one galaxy
    write_catalog(cat, other)
    for name, changed in {
        "seed": dict(seed=2),
        "alpha": dict(alpha=0.5),
        "schedule": dict(schedule=((2, 1e-3), (2, 1e-4))),
        "outliers": dict(outlier_fraction=0.1),
        "catalogue": dict(catalog=str(other)),
    }.items():
        run = _train(tmp_path / name, inputs, **changed)
        assert not _restored(run), name
        status = run.status()  # a flux 1% off: the same digest, float sums that disagree
        assert (status["finetune_key"], status["key_sums"]["finetune"]) != (key, sums), name


def test_what_comes_after_fine_tuning_is_not_keyed(tmp_path, inputs, shipped) -> None:
    """The calibration (and predictions, and the p(z) grid) are done anew by the restored run."""
    _ship(_train(tmp_path / "a", inputs), shipped)
    assert _restored(_train(tmp_path / "b", inputs, calibrate=False))


def test_lookups_off_and_damaged_entries_train(tmp_path, inputs, shipped, monkeypatch) -> None:
    key = _ship(_train(tmp_path / "a", inputs), shipped)
    with monkeypatch.context() as mp:
        mp.setenv("DEEPZ_PRETRAIN_CACHE", "0")
        assert not _restored(_train(tmp_path / "off", inputs))
    (shipped / f"{key}.safetensors").write_bytes(b"not a safetensors file")
    run = _train(tmp_path / "damaged", inputs)
    assert not _restored(run)
    assert [r["phase"] for r in run.metrics()].count("finetune") == 3


def test_a_restore_cut_short_is_redone_cleanly(tmp_path, inputs, shipped, monkeypatch) -> None:
    """Killed after the shipped rows were appended but before the checkpoint: the next call restores
    again without doubling the rows."""
    trained = _train(tmp_path / "a", inputs)
    _ship(trained, shipped)
    cat, sim = inputs
    config = run_config(cat, pretrain=sim, model=TINY_MODEL, train=TRAIN)
    run = create_run(tmp_path / "b", config)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(finetuned, "save_checkpoint", killed)
        with pytest.raises(KeyboardInterrupt):
            execute_run(run)
    execute_run(run)
    assert run.status()["state"] == "finished" and _restored(run)
    assert _rows(run) == _rows(trained)


def test_the_key_covers_every_input_of_fine_tuning() -> None:
    cat, feat, st = Fingerprint("cat"), Fingerprint("feat"), Fingerprint("st")
    base = FinetuneKey(
        "pre", {"width": 8}, TrainConfig(), BANDS, "subaru_i", cat, feat, "spl", st, "cpu"
    )
    variants = [
        dataclasses.replace(base, pretrain="other"),
        dataclasses.replace(base, pretrain=None),
        dataclasses.replace(base, model={"width": 9}),
        dataclasses.replace(base, bands=BANDS[:-1]),
        dataclasses.replace(base, ref_band="subaru_z"),
        dataclasses.replace(base, catalog=Fingerprint("cat2")),
        dataclasses.replace(base, features=Fingerprint("feat2")),
        dataclasses.replace(base, splits="spl2"),
        dataclasses.replace(base, input_stats=Fingerprint("st2")),
        dataclasses.replace(base, device="cuda"),
    ]
    trains = [
        dict(seed=1),
        dict(alpha=0.5),
        dict(schedule=((5, 1e-3),)),
        dict(batch_size=50),
        dict(weight_decay=0.0),
        dict(outlier_fraction=0.1),
        dict(outlier_unit="measurement"),
        dict(outlier_amplitude=2.0),
        dict(randomize_coadds=False),
        dict(keep_one=False),
        dict(folds=4),
        dict(repetitions=2),
    ]
    variants += [dataclasses.replace(base, train=TrainConfig(**t)) for t in trains]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and base.digest() not in digests
    # the device as asked is not keyed: "auto" and "cpu" on a CPU are the same arithmetic
    same = dataclasses.replace(base, train=TrainConfig(device="cpu"))
    assert same.digest() == base.digest()


def _same_content(a: Catalog, b: Catalog) -> bool:
    fa, fb = finetuned.catalog_fingerprint(a), finetuned.catalog_fingerprint(b)
    return fa.digest == fb.digest and sums_agree(fa.sums, fb.sums)


def test_content_fingerprints_follow_content_not_a_cpus_rounding() -> None:
    """The demo catalogue simulated on an AVX2 machine differs from an AVX-512 one's in the last
    bits (OpenBLAS kernels): that is the same catalogue; a flux changed by 0.01 is not."""
    cat = _synthetic(50, 4)
    assert _same_content(cat, _synthetic(50, 4))
    rounded = _synthetic(50, 4)
    rng = np.random.default_rng(0)
    rounded.flux[:] *= 1 + 2e-9 * rng.standard_normal(rounded.flux.shape)  # another CPU's bits
    rounded.exposures.flux[:] *= 1 + 2e-9 * rng.standard_normal(rounded.exposures.flux.shape)
    assert _same_content(cat, rounded)
    for edit in ("flux", "exposures", "zspec", "nan"):
        other = _synthetic(50, 4)
        if edit == "flux":
            other.flux[3, 1] += 0.01
        elif edit == "exposures":
            other.exposures.flux[0] += 0.01
        elif edit == "zspec":
            other.zspec[np.flatnonzero(np.isfinite(other.zspec))[0]] += 1e-4
        else:
            other.flux[2, 2] = np.nan
        assert not _same_content(cat, other), edit


@pytest.mark.slow
def test_the_shipped_weights_fit_the_demo_run_of_this_code(tmp_path, monkeypatch) -> None:
    """The fine-tuned networks in deepz_core/training/weights are those of the Train page's default
    demo run (preset quick, pretraining auto, 1 x 5 networks, alpha 0.8, seed 0, on the CPU) with the
    code as it is: a change to the model, its inputs, the demo catalogue or the training settings
    makes them stale (rebuild with ``deepz pretrain-weights``) and fails here, before a newcomer
    waits minutes for a training the weights should have spared. Restoring and predicting only:
    ~30 s."""
    import deepz_core.simulate
    import deepz_core.training.loop
    from app import jobs
    from deepz_core.catalog.features import default_ref_band
    from deepz_core.catalog.io import read_catalog
    from deepz_core.simulate import demo_catalog_path

    demo = str(demo_catalog_path())  # the real cache: simulated once per machine
    monkeypatch.setenv("DEEPZ_CACHE_DIR", str(tmp_path / "fresh_cache"))
    monkeypatch.setenv("DEEPZ_PRETRAIN_CACHE", "1")
    monkeypatch.delenv("DEEPZ_SHIPPED_WEIGHTS", raising=False)

    def no_training(*args, **kwargs):
        raise AssertionError("stale shipped weights: the demo run would train")

    monkeypatch.setattr(deepz_core.simulate, "cached_simulation", no_training)
    monkeypatch.setattr(deepz_core.training.loop, "train_epoch", no_training)
    bands = list(read_catalog(demo).bands)
    page = {"alpha": 0.8, "repetitions": 1, "folds": 5, "device": "cpu", "seed": 0}
    run = jobs.queue_run(
        tmp_path / "runs",
        demo,
        "auto",
        "quick",
        {"use_autoencoder": True},
        page,
        start=False,
        ref_band=default_ref_band(bands),
    )
    execute_run(run)
    assert run.status()["state"] == "finished", run.status()
    assert _restored(run)
    finetune = [r for r in run.metrics() if r["phase"] == "finetune"]
    assert len(finetune) == 170 and "val_nll" in finetune[-1]


def test_the_features_fingerprint_ignores_the_flags_of_rows_left_out() -> None:
    """Thirteenth session: ``Features.row_flags`` (the screen's flags of every catalogue row, for
    predictions' flags) entered the features' fingerprint, so the shipped weights of the demo
    run no longer matched and a newcomer's demo run would have trained for minutes. Fields no
    network reads are left out (``finetuned.NOT_FINGERPRINTED``); the rest still counts."""
    from deepz_core.catalog.features import build_features

    features = build_features(synthetic_catalog(60, 3), "subaru_i")
    assert features.row_flags is not None
    same = dataclasses.replace(features, row_flags=None)
    assert finetuned.features_fingerprint(same) == finetuned.features_fingerprint(features)
    flags = features.flags.copy()
    flags[0] ^= 1
    other = dataclasses.replace(features, flags=flags)
    assert (
        finetuned.features_fingerprint(other).digest
        != finetuned.features_fingerprint(features).digest
    )
