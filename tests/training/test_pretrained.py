"""Pretrained weights shared between runs: a cache hit changes nothing but the time spent."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
import torch
from safetensors.torch import load_file

from deepz_core.catalog.io import write_catalog
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.training import pretrained
from deepz_core.training.config import TrainConfig
from deepz_core.training.pretrained import PretrainKey
from tests.synthetic import BANDS, TINY_MODEL, synthetic_catalog

TRAIN = dict(
    schedule=((3, 1e-3),),
    batch_size=40,
    folds=2,
    device="cpu",
    seed=1,
    pretrain_schedule=((2, 1e-3),),
    pretrain_batch_size=50,
)

pytestmark = pytest.mark.usefixtures("one_thread")
_synthetic = partial(synthetic_catalog, missing_zspec=0.15)


@pytest.fixture
def cache_on(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPZ_PRETRAIN_CACHE", "1")
    monkeypatch.setenv("DEEPZ_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "pretrained"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("pretrained")
    write_catalog(_synthetic(120, 3), folder / "cat.fits")
    write_catalog(_synthetic(100, 5, exposures=False, noiseless=True), folder / "sim.fits")
    return str(folder / "cat.fits"), str(folder / "sim.fits")


def _train(tmp_path, name: str, inputs, **train):
    cat, sim = inputs
    run = create_run(
        tmp_path / name, run_config(cat, pretrain=sim, model=TINY_MODEL, train={**TRAIN, **train})
    )
    execute_run(run)
    assert run.status()["state"] == "finished"
    return run


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.file("model.safetensors")))


def test_a_cache_hit_gives_the_same_model_as_pretraining(tmp_path, inputs, cache_on) -> None:
    first = _train(tmp_path, "a", inputs, alpha=0.5)  # pretrains and stores
    assert len(list(cache_on.glob("*.safetensors"))) == 1
    reused = _train(tmp_path, "b", inputs, alpha=0.8)  # other fine-tuning: same pretraining
    assert "pretraining reused from the cache" in reused.file("log.txt").read_text()
    assert "pretraining reused" not in first.file("log.txt").read_text()
    rows = reused.metrics()
    assert [(r["phase"], r["epoch"], r.get("cached", False)) for r in rows[:2]] == [
        ("pretrain", 1, True),
        ("pretrain", 2, True),
    ]
    assert not any(k.startswith("val_") for r in rows[:2] for k in r)  # another run's hold-out
    assert [r["loss"] for r in rows[:2]] == [r["loss"] for r in first.metrics()[:2]]

    pretrained_anew = tmp_path / "nocache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPZ_PRETRAIN_CACHE", "0")
        alone = _train(pretrained_anew, "c", inputs, alpha=0.8)
    assert "pretraining reused" not in alone.file("log.txt").read_text()
    a, b = _weights(reused), _weights(alone)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_runs_that_pretrain_differently_do_not_share(tmp_path, inputs, cache_on) -> None:
    _train(tmp_path, "a", inputs)
    _train(tmp_path, "b", inputs, seed=2)
    _train(tmp_path, "c", inputs, pretrain_schedule=((3, 1e-3),))
    assert len(list(cache_on.glob("*.safetensors"))) == 3


def test_no_pretraining_and_a_disabled_cache_store_nothing(tmp_path, inputs, cache_on, monkeypatch):
    cat, _ = inputs
    run = create_run(
        tmp_path / "none", run_config(cat, pretrain="none", model=TINY_MODEL, train=TRAIN)
    )
    execute_run(run)
    monkeypatch.setenv("DEEPZ_PRETRAIN_CACHE", "0")
    _train(tmp_path, "off", inputs)
    assert not cache_on.exists() or not any(cache_on.iterdir())


def test_a_damaged_entry_costs_a_pretraining_not_the_run(tmp_path, inputs, cache_on) -> None:
    _train(tmp_path, "a", inputs)
    (entry,) = cache_on.glob("*.safetensors")
    entry.write_bytes(b"not a safetensors file")
    run = _train(tmp_path, "b", inputs)
    assert "pretraining reused" not in run.file("log.txt").read_text()
    assert [r["phase"] for r in run.metrics()].count("pretrain") == 2


def test_a_cancelled_pretraining_is_not_stored(tmp_path, inputs, cache_on) -> None:
    cat, sim = inputs
    run = create_run(tmp_path / "r", run_config(cat, pretrain=sim, model=TINY_MODEL, train=TRAIN))
    run.file("cancel").touch()  # honoured at the end of the first epoch
    execute_run(run)
    assert run.status()["state"] == "cancelled"
    assert not cache_on.exists() or not any(cache_on.iterdir())


def test_the_key_covers_every_input_of_pretraining() -> None:
    base = PretrainKey(
        {"width": 8, "members": 2}, TrainConfig(), BANDS, "subaru_i", "sim.fits", "cpu"
    )
    variants = [
        dataclasses.replace(base, model={"width": 9, "members": 2}),
        dataclasses.replace(base, model={"width": 8, "members": 3}),
        dataclasses.replace(base, train=TrainConfig(seed=1)),
        dataclasses.replace(base, train=TrainConfig(pretrain_schedule=((9, 1e-3),))),
        dataclasses.replace(base, train=TrainConfig(pretrain_batch_size=100)),
        dataclasses.replace(base, train=TrainConfig(weight_decay=0.0)),
        dataclasses.replace(base, bands=BANDS[:-1]),
        dataclasses.replace(base, ref_band="subaru_z"),
        dataclasses.replace(base, simulation="other.fits"),
        dataclasses.replace(base, device="cuda"),
    ]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and base.digest() not in digests
    # fine-tuning choices do not change pretraining
    same = dataclasses.replace(base, train=TrainConfig(alpha=0.5, schedule=((5, 1e-3),)))
    assert same.digest() == base.digest()


def test_a_restore_cut_short_is_redone_cleanly(tmp_path, inputs, cache_on, monkeypatch) -> None:
    """Killed after the cached rows were appended but before the checkpoint: the next call restores
    again without duplicating the rows."""
    first = _train(tmp_path, "a", inputs)
    cat, sim = inputs
    run = create_run(tmp_path / "b", run_config(cat, pretrain=sim, model=TINY_MODEL, train=TRAIN))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(pretrained, "save_checkpoint", killed)
        with pytest.raises(KeyboardInterrupt):
            execute_run(run)
    execute_run(run)
    assert run.status()["state"] == "finished"
    phases = [(r["phase"], r["epoch"]) for r in run.metrics()]
    assert phases == [(r["phase"], r["epoch"]) for r in first.metrics()]


def test_shipped_weights_are_a_second_source(tmp_path, inputs, cache_on, monkeypatch) -> None:
    """Weights shipped with deepz restore like a cache hit: same model as pretraining anew."""
    first = _train(tmp_path, "a", inputs, alpha=0.5)
    key = next(cache_on.glob("*.json")).stem
    shipped = pretrained.ship(key, tmp_path / "shipped")
    assert not [k for k in load_file(str(shipped)) if k.startswith("opt.")]  # optimiser left out
    for f in cache_on.iterdir():
        f.unlink()
    monkeypatch.setenv("DEEPZ_SHIPPED_WEIGHTS", str(tmp_path / "shipped"))
    assert pretrained.has(key)
    reused = _train(tmp_path, "b", inputs, alpha=0.5)
    assert "pretraining reused from the shipped weights" in reused.file("log.txt").read_text()
    a, b = _weights(first), _weights(reused)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert not list(cache_on.glob("*.safetensors"))  # a shipped hit is not copied to the cache


def test_pretrain_weights_command_and_a_run_that_never_simulates(
    tmp_path, cache_on, monkeypatch
) -> None:
    """``deepz pretrain-weights`` builds shipped weights, pretrained and fine-tuned; a later 'auto'
    run of the same catalogue starts from the pretraining without simulating the pretraining set,
    and one with the very settings of the build restores the fine-tuned networks."""
    import json

    from deepz_core.cli import main as cli
    from deepz_core.rundir import RunDir
    from deepz_core.sed.bands import band_set
    from deepz_core.simulate import simulate

    cat = write_catalog(simulate("paus-mock", 120, band_set("paus_cosmos"), 2), tmp_path / "c.fits")
    out = tmp_path / "weights"
    args = ["pretrain-weights", "--catalog", str(cat), "--preset", "smoke", "--out", str(out)]
    assert cli.main(args) == 0
    assert len(list(out.glob("*.safetensors"))) == 2 and len(list(out.glob("*.json"))) == 2
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert {d["saved_by"] for d in docs} == {"deepz pretrain-weights"}
    assert sorted(d.get("kind", "pretrain") for d in docs) == ["finetune", "pretrain"]
    monkeypatch.setenv("DEEPZ_CACHE_DIR", str(tmp_path / "fresh_cache"))  # nothing simulated yet
    monkeypatch.setenv("DEEPZ_SHIPPED_WEIGHTS", str(out))
    for name, train, said in (
        ("other_alpha", {"device": "cpu", "alpha": 0.5}, "pretraining reused from the shipped"),
        ("same", {"device": "cpu"}, "fine-tuned networks restored from the shipped"),
    ):
        run = RunDir(tmp_path / name)
        config = run_config(str(cat), pretrain="auto", preset_name="smoke", train=train)
        execute_run(create_run(run.path, config))
        assert run.status()["state"] == "finished", run.status()
        assert said in run.file("log.txt").read_text()
    assert not list((tmp_path / "fresh_cache").glob("sims/*.fits"))  # never simulated


def test_pretraining_only_ships_one_entry(tmp_path, cache_on) -> None:
    from deepz_core.cli import main as cli
    from deepz_core.sed.bands import band_set
    from deepz_core.simulate import simulate

    cat = write_catalog(simulate("paus-mock", 120, band_set("paus_cosmos"), 2), tmp_path / "c.fits")
    out = tmp_path / "weights"
    args = ["pretrain-weights", "--catalog", str(cat), "--preset", "smoke", "--out", str(out)]
    assert cli.main([*args, "--pretraining-only"]) == 0
    assert len(list(out.glob("*.safetensors"))) == 1


@pytest.mark.slow
def test_the_shipped_weights_fit_the_demo_run_of_this_code(tmp_path, monkeypatch) -> None:
    """The weights in deepz_core/training/weights are the pretraining of the Train page's default
    demo run with the code as it is: a change to the model, its inputs or the pretraining
    schedule makes them stale (rebuild with ``deepz pretrain-weights``) and fails here, before a
    newcomer waits minutes for a pretraining the weights should have spared. Its first
    fine-tuning epoch must also be the shipped fine-tuned run's (tests/training/test_finetuned.py
    checks the rest of that entry's key)."""
    import json

    import deepz_core.simulate
    from deepz_core.device import cpu_arithmetic
    from deepz_core.rundir import RunDir
    from deepz_core.simulate import demo_catalog_path

    demo = demo_catalog_path()  # the real cache: simulated once per machine
    monkeypatch.setenv("DEEPZ_CACHE_DIR", str(tmp_path / "fresh_cache"))
    monkeypatch.setenv("DEEPZ_PRETRAIN_CACHE", "1")
    monkeypatch.delenv("DEEPZ_SHIPPED_WEIGHTS", raising=False)

    def no_simulation(*args, **kwargs):
        raise AssertionError("stale shipped weights: the demo run would simulate and pretrain")

    monkeypatch.setattr(deepz_core.simulate, "cached_simulation", no_simulation)
    train = {"device": "cpu", "seed": 0, "schedule": ((1, 1e-3),)}  # fine-tuning: not in the key
    run = RunDir(tmp_path / "run")
    execute_run(create_run(run.path, run_config(str(demo), None, "auto", "quick", train=train)))
    assert run.status()["state"] == "finished", run.status()
    assert "pretraining reused from the shipped weights" in run.file("log.txt").read_text()
    # the first fine-tuning epoch from it is the shipped fine-tuned run's first, bit for bit on a
    # machine with the builder's CPU kernels: a change to fine-tuning's arithmetic (batches,
    # loss, optimiser, random draws) fails here
    key = run.status()["pretrain_key"]
    docs = [json.loads(p.read_text()) for p in pretrained.SHIPPED.glob("*.json")]
    (shipped,) = [d for d in docs if d.get("kind") == "finetune" and d["pretrain_key"] == key]
    first = next(r for r in shipped["metrics"] if r["phase"] == "finetune" and r["epoch"] == 1)
    (mine,) = [r for r in run.metrics() if r["phase"] == "finetune"]
    if shipped.get("arithmetic") == cpu_arithmetic():
        assert (mine["loss"], mine["val_nll"]) == (first["loss"], first["val_nll"])
    else:  # other kernels: float32 rounding that Adam amplifies (measured on an AVX2 machine
        # against the builder's: loss 1.2% off, a member's held-out NLL 0.07 nats off)
        assert mine["loss"] == pytest.approx(first["loss"], rel=0.05)
        assert mine["val_nll"] == pytest.approx(first["val_nll"], abs=0.2)
