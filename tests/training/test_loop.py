"""Training: epoch loop, batched members vs alone, checkpoints, kill/resume and cancel (E20 Sec. 2.4, 5.2).

The reference run (module-scoped) pretrains on a small noiseless simulation file, then fine-tunes two
folds with randomised coadds and dropout, checkpointing every 2 epochs; interrupted runs must end
bit-identical to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table
from safetensors.torch import load_file

from deepz_core.catalog.io import write_catalog
from deepz_core.device import resolve_device
from deepz_core.errors import ConfigError
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.nets.deepz import DeepzModel, ModelConfig
from deepz_core.rundir import RunDir, load_checkpoint_meta
from deepz_core.training.batches import Batch
from deepz_core.training.loop import Phase, finetune_loss, heldout_nll, pretrain_loss, train_epoch
from tests.synthetic import synthetic_catalog

BANDS = ("NB455", "NB555", "NB655", "NB755", "subaru_r", "subaru_i")
TINY_MODEL = dict(
    n_latent=3,
    width=16,
    encoder_layers=2,
    decoder_layers=1,
    photoz_layers=2,
    photoz_first_width=0,
    n_components=3,
    undropped_last=1,
)
TRAIN = dict(
    schedule=((4, 1e-3), (2, 1e-4)),
    pretrain_schedule=((3, 1e-3),),
    batch_size=40,
    pretrain_batch_size=50,
    min_batch=10,
    folds=2,
    repetitions=1,
    checkpoint_every=2,
    alpha=0.7,
    device="cpu",
    seed=5,
)
PHASE_EPOCHS = {"pretrain": 3, "finetune": 6}


pytestmark = pytest.mark.usefixtures("one_thread")


_synthetic = partial(synthetic_catalog, bands=BANDS, missing_zspec=0.1)  # 4 narrow bands


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("training-inputs")
    cat, sim = root / "cat.fits", root / "sim.fits"
    write_catalog(_synthetic(160, 0), cat)
    write_catalog(_synthetic(300, 1, exposures=False, noiseless=True), sim)
    return {"catalog": str(cat), "pretrain": str(sim)}


def _new_run(path: Path, inputs: dict[str, str], **train) -> RunDir:
    return create_run(
        path,
        run_config(
            inputs["catalog"],
            pretrain=inputs["pretrain"],
            model=TINY_MODEL,
            train={**TRAIN, **train},
        ),
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, inputs) -> RunDir:
    """The uninterrupted run every interrupted one is compared with."""
    run = _new_run(tmp_path_factory.mktemp("runs") / "straight", inputs)
    execute_run(run)
    assert run.status()["state"] == "finished"
    return run


def _assert_same_result(run: RunDir, reference: RunDir) -> None:
    a = load_file(str(run.file("model.safetensors")))
    b = load_file(str(reference.file("model.safetensors")))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    pa, pb = (
        Table.read(run.file("predictions.fits")),
        Table.read(reference.file("predictions.fits")),
    )
    for name in ("zphot", "zmean", "zmedian", "odds", "pit", "weights", "means", "stds"):
        np.testing.assert_allclose(
            np.asarray(pa[name]), np.asarray(pb[name]), rtol=1e-6, atol=1e-7, err_msg=name
        )
    _assert_same_metrics(run, reference)


def _assert_same_metrics(run: RunDir, reference: RunDir) -> None:
    """One metrics line per epoch and phase, in order, with the uninterrupted run's values."""
    rows, ref = run.metrics(), reference.metrics()
    keys = [(r["phase"], r["epoch"]) for r in rows]
    expected = [(p, e) for p in ("pretrain", "finetune") for e in range(1, PHASE_EPOCHS[p] + 1)]
    assert keys == expected  # no duplicates, none missing
    for r, s in zip(rows, ref, strict=True):
        assert r["loss"] == pytest.approx(s["loss"], rel=1e-6) and r["lr"] == s["lr"]
        if "val_nll" in s:
            np.testing.assert_allclose(r["val_nll"], s["val_nll"], rtol=1e-6)


def test_reference_run_logs_both_phases_and_finishes(reference) -> None:
    status = reference.status()
    assert status["phase"] == "done" and set(status["summary"]) >= {"sigma68", "n"}
    rows = reference.metrics()
    assert [r["lr"] for r in rows] == [1e-3] * 3 + [1e-3] * 4 + [1e-4] * 2
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert all(len(r["val_nll"]) == 2 for r in rows if r["phase"] == "finetune")
    meta = load_checkpoint_meta(reference)
    assert (meta["phase"], meta["epoch"]) == ("finetune", 6)  # always at the end of a phase
    assert len(list(reference.path.glob("checkpoint-*.safetensors"))) == 1


def _kill_once(monkeypatch, phase: str, epoch: int) -> None:
    """Make RunDir.append_metrics raise (once) when it would log ``phase`` ``epoch``."""
    original = RunDir.append_metrics

    def append(self: RunDir, row: dict) -> None:
        if (row["phase"], row["epoch"]) == (phase, epoch):
            monkeypatch.setattr(RunDir, "append_metrics", original)
            raise RuntimeError("killed")
        original(self, row)

    monkeypatch.setattr(RunDir, "append_metrics", append)


@pytest.mark.parametrize(("phase", "epoch"), [("finetune", 4), ("pretrain", 3), ("finetune", 1)])
def test_resume_after_a_kill_reproduces_the_uninterrupted_run(
    tmp_path, monkeypatch, inputs, reference, phase, epoch
) -> None:
    run = _new_run(tmp_path / "killed", inputs)
    _kill_once(monkeypatch, phase, epoch)
    with pytest.raises(RuntimeError, match="killed"):
        execute_run(run)
    assert run.status()["state"] == "failed" and "killed" in run.status()["message"]
    assert not run.file("model.safetensors").exists()
    meta = load_checkpoint_meta(run)
    last = {
        ("finetune", 4): ("finetune", 2),
        ("pretrain", 3): ("pretrain", 2),
        ("finetune", 1): ("pretrain", 3),
    }[(phase, epoch)]
    assert (meta["phase"], meta["epoch"]) == last
    execute_run(run)  # resume
    assert run.status()["state"] == "finished"
    assert "resuming from" in run.file("log.txt").read_text()
    _assert_same_result(run, reference)


def test_kill_after_the_last_epoch_but_before_the_model_is_saved(
    tmp_path, monkeypatch, inputs, reference
) -> None:
    from deepz_core.jobs import training_run as pipeline

    run = _new_run(tmp_path / "late", inputs)

    def die(*args, **kwargs):
        raise RuntimeError("killed while saving")

    monkeypatch.setattr(pipeline, "save_model", die)
    with pytest.raises(RuntimeError, match="killed while saving"):
        execute_run(run)
    monkeypatch.undo()
    execute_run(run)  # nothing left to train: the last checkpoint is the final model
    assert run.status()["state"] == "finished"
    _assert_same_result(run, reference)


def test_cancel_file_stops_with_a_checkpoint_and_resume_finishes(
    tmp_path, monkeypatch, inputs, reference
) -> None:
    run = _new_run(tmp_path / "cancelled", inputs)
    original = RunDir.append_metrics

    def append(self: RunDir, row: dict) -> None:
        original(self, row)
        if (row["phase"], row["epoch"]) == ("finetune", 3):
            self.file("cancel").touch()  # the user presses cancel during epoch 3

    monkeypatch.setattr(RunDir, "append_metrics", append)
    execute_run(run)  # returns normally: cancelling is not a failure
    status = run.status()
    assert status["state"] == "cancelled" and "epoch 3" in status["message"]
    meta = load_checkpoint_meta(run)
    assert (meta["phase"], meta["epoch"]) == ("finetune", 3)  # checkpoint written on cancel
    assert [r["epoch"] for r in run.metrics() if r["phase"] == "finetune"] == [1, 2, 3]
    monkeypatch.setattr(RunDir, "append_metrics", original)
    run.file("cancel").unlink()
    execute_run(run)
    assert run.status()["state"] == "finished"
    _assert_same_result(run, reference)


_CHILD = """
import sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
from deepz_core.rundir import RunDir
from deepz_core.jobs.training_run import execute_run
original = RunDir.append_metrics
def slow(self, row):
    original(self, row)
    time.sleep(0.5)  # slow epochs down so the parent can kill mid-run; results are unaffected
RunDir.append_metrics = slow
execute_run(RunDir(__import__("pathlib").Path(sys.argv[1])))
"""


@pytest.mark.slow
def test_resume_after_sigkill_of_a_training_process(tmp_path, inputs, reference) -> None:
    run = _new_run(tmp_path / "sigkilled", inputs)
    env = {**os.environ, "DEEPZ_QUIET": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [str(run.path), str(torch.get_num_threads())]  # the reference run's thread count
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            meta = load_checkpoint_meta(run)
            if meta is not None and meta["phase"] == "finetune" and meta["epoch"] >= 2:
                break
            time.sleep(0.02)
        assert child.poll() is None, "training ended before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert run.status()["state"] == "running"  # a killed process cannot say goodbye
    assert not run.file("model.safetensors").exists()
    execute_run(run)
    assert run.status()["state"] == "finished"
    _assert_same_result(run, reference)


# ---------------------------------------------------------------- members batched vs alone

CFG = dict(
    n_inputs=5,
    n_latent=2,
    encoder_layers=2,
    decoder_layers=2,
    width=12,
    photoz_layers=2,
    photoz_first_width=10,
    n_components=3,
    ae_dropout=0.0,
    pz_dropout=0.0,
)


def _batches(e: int, n: int, steps: int, seed: int) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        x = 1.0 + 0.3 * torch.randn(e, n, 5, generator=g)  # (E, n, F): each member its own batch
        z = torch.rand(e, n, generator=g)
        err = 0.05 + 0.1 * torch.rand(e, n, 5, generator=g)
        out.append(Batch(x=x, z=z, x_err=err, target=x + 0.01))
    return out


def _member_batches(batches: list[Batch], i: int) -> list[Batch]:
    return [
        Batch(b.x[i : i + 1], b.z[i : i + 1], b.x_err[i : i + 1], b.target[i : i + 1])
        for b in batches
    ]


def _train_batched_and_alone(loss, optimizer, e: int = 3, epochs: int = 2, dtype=torch.float32):
    """(batched model, its per-epoch losses, single-member models, their per-epoch losses)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # models, their member copies and the batches in ``dtype``
    try:
        torch.manual_seed(11)
        model = DeepzModel(ModelConfig(**CFG, members=e))
        alone = [model.member(i) for i in range(e)]  # the same initial weights
        batches = _batches(e, 24, steps=6, seed=3)
        opt = optimizer(model.parameters())
        batched = [train_epoch(model, loss, batches, opt) for _ in range(epochs)]
        single = []
        for i, m in enumerate(alone):
            opt_i = optimizer(m.parameters())
            single.append(
                [train_epoch(m, loss, _member_batches(batches, i), opt_i) for _ in range(epochs)]
            )
    finally:
        torch.set_default_dtype(default)
    return model, np.array(batched), alone, np.array(single)


@pytest.mark.parametrize("loss", [finetune_loss, pretrain_loss], ids=["finetune", "pretrain"])
def test_members_trained_batched_reach_the_loss_of_members_trained_alone(loss) -> None:
    """Adam, as in training; it amplifies rounding noise in exactly-zero gradients (a linear bias
    before a BatchNorm), so the comparison is on the losses."""

    def adam(params):
        return torch.optim.Adam(params, lr=1e-2, weight_decay=1e-4)

    _, batched, _, single = _train_batched_and_alone(loss, adam)
    np.testing.assert_allclose(batched, single.mean(axis=0), rtol=1e-4)
    assert batched[1] < batched[0]  # it does learn


# float64: batched == alone is an identity up to rounding at 1e-16; float32: the batched (fused,
# E > 1) and single-member (torch kernels, E = 1) paths round differently, ~1e-6 per weight after
# one step, which 12 SGD steps with momentum grow to ~1e-4 relative (the robust input norm's batch
# quantiles of the rounded latent features pass the differences on)
TOLERANCES = {torch.float64: (1e-9, 1e-11), torch.float32: (3e-4, 1e-4)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("loss", [finetune_loss, pretrain_loss], ids=["finetune", "pretrain"])
def test_members_trained_batched_have_the_weights_of_members_trained_alone(loss, dtype) -> None:
    """Plain SGD: each member's update is exactly its own gradient step, so weights agree."""

    def sgd(params):
        return torch.optim.SGD(params, lr=0.05, momentum=0.5)

    rtol, atol = TOLERANCES[dtype]
    model, batched, alone, single = _train_batched_and_alone(loss, sgd, dtype=dtype)
    np.testing.assert_allclose(batched, single.mean(axis=0), rtol=max(rtol, 1e-6))
    for i, m in enumerate(alone):
        mine = {k: v[i : i + 1] for k, v in model.state_dict().items()}  # no dtype round trip
        for name, value in m.state_dict().items():
            assert value.dtype == dtype, name
            torch.testing.assert_close(mine[name], value, rtol=rtol, atol=atol, msg=name)


def test_train_epoch_returns_the_mean_loss_per_member_and_batch() -> None:
    model = DeepzModel(ModelConfig(**CFG, members=2))
    batches = _batches(2, 16, steps=3, seed=1)
    calls = []

    def loss(m: DeepzModel, b: Batch) -> torch.Tensor:
        value = finetune_loss(m, b)
        calls.append(float(value.detach()))
        return value

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out = train_epoch(model, loss, batches, opt)
    assert model.training and len(calls) == 3
    assert out == pytest.approx(np.mean(calls) / 2, rel=1e-6)
    assert train_epoch(model, loss, [], opt) == 0.0


def test_heldout_nll_averages_only_over_each_members_heldout_galaxies() -> None:
    model = DeepzModel(ModelConfig(**CFG, members=2)).eval()
    x, z = 1 + 0.2 * torch.randn(30, 5), torch.rand(30)
    held = torch.zeros(2, 30)
    held[0, :10], held[1, 10:25] = 1, 1
    out = heldout_nll(model, x, z, held, chunk=7)
    with torch.no_grad():
        nll = -model(x).log_prob(z)  # (E, N)
    torch.testing.assert_close(out, torch.stack([nll[0, :10].mean(), nll[1, 10:25].mean()]))


def test_phase_learning_rate_stages() -> None:
    phase = Phase("finetune", ((0, 1e-2), (3, 1e-3), (2, 1e-4)), None, finetune_loss, 10, 1)
    assert phase.epochs == 5
    assert [phase.lr(e) for e in range(5)] == [1e-3] * 3 + [1e-4] * 2


def test_resolve_device(monkeypatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:1", "mps"):
        with pytest.raises(ConfigError, match=repr(name)):
            resolve_device(name)
    with pytest.raises(ConfigError, match="'gpu'"):
        resolve_device("gpu")


def test_checkpoint_holds_model_optimiser_and_rng_states(reference) -> None:
    meta = json.loads(reference.file("checkpoint.json").read_text())
    tensors = load_file(str(reference.file(meta["tensors"])))
    assert {"rng.torch", "rng.gen"} <= set(tensors)
    assert any(k.startswith("model.") for k in tensors)
    assert any(k.startswith("opt.") and k.endswith(".exp_avg") for k in tensors)
    assert meta["numpy_rng"]["bit_generator"] == "PCG64"
    final = load_file(str(reference.file("model.safetensors")))
    for key, value in final.items():  # the last checkpoint is the final model
        assert torch.equal(tensors[f"model.{key}"], value)


# ---------------------------------------------------------------- honest failure (issue 23)


def test_a_non_finite_loss_stops_training_naming_the_batch() -> None:
    from deepz_core.errors import TrainingError

    model = DeepzModel(ModelConfig(**CFG, members=2))
    batches = _batches(2, 16, steps=3, seed=1)
    bad = Batch(x=batches[1].x.clone(), z=batches[1].z)
    bad.x[0, 3, 1] = float("nan")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(
        TrainingError, match=r"batch 2.*non-finite inputs in band column\(s\) \[1\]"
    ):
        train_epoch(model, finetune_loss, [batches[0], bad, batches[2]], opt)


def test_non_finite_weights_are_named() -> None:
    from deepz_core.errors import TrainingError
    from deepz_core.training.loop import check_weights

    model = DeepzModel(ModelConfig(**CFG, members=2))
    check_weights(model)
    with torch.no_grad():
        model.photoz.out.bias[1, 0] = float("inf")
    with pytest.raises(TrainingError, match="photoz.out.bias"):
        check_weights(model)


def test_held_out_watch_fails_on_nan_and_on_sustained_divergence_only() -> None:
    from deepz_core.errors import TrainingError
    from deepz_core.training.loop import HeldoutWatch

    watch = HeldoutWatch()
    for epoch, nll in enumerate([[-1.0, -1.0], [-1.2, -1.1], [30.0, -1.1], [-1.3, -1.2]]):
        watch.add(f"epoch {epoch}", nll)  # one bad evaluation is not yet a divergence
    with pytest.raises(TrainingError, match="member 0 diverged"):
        for epoch, nll in enumerate([[1e7, -1.2], [-1.0, -1.2], [1e7, -1.2]]):
            watch.add(f"later {epoch}", nll)  # swings between -1 and 1e7: 3 of the last 5
    with pytest.raises(TrainingError, match=r"member\(s\) \[1\] is NaN/inf"):
        HeldoutWatch().add("epoch 1", [-1.0, float("nan")])


def test_a_member_that_never_learned_fails_the_run() -> None:
    """Review, ninth session: a network stuck at the clip from its first epoch finished green."""
    from deepz_core.errors import TrainingError
    from deepz_core.training.loop import NEVER_LEARNED_NATS, HeldoutWatch

    watch = HeldoutWatch()
    for epoch in range(3):
        watch.add(f"epoch {epoch}", [-1.5, 20.0])  # member 1 at the clip throughout
    with pytest.raises(TrainingError, match=r"member\(s\) \[1\] never learned"):
        watch.check_learned("finetune epoch 3")
    learned = HeldoutWatch()
    learned.add("epoch 1", [20.0, NEVER_LEARNED_NATS + 5])
    learned.add("epoch 2", [-1.0, NEVER_LEARNED_NATS - 0.5])  # a broad p(z) is still learning
    learned.check_learned("finetune epoch 2")


def test_held_out_summary_names_the_best_epoch_and_warns_when_the_last_is_worse() -> None:
    from deepz_core.training.loop import heldout_summary

    rows = [
        {"phase": "finetune", "epoch": e, "val_nll": v}
        for e, v in ((1, [-1.0, -1.0]), (2, [-2.0, -1.5]), (3, [-1.2, -1.6]))
    ]
    out = heldout_summary(rows)
    assert out["best_epoch"] == [2, 3] and out["last_val_nll"] == [-1.2, -1.6]
    assert "member(s) [0]" in out["warning"]
    assert "warning" not in heldout_summary(rows[:2])


def test_one_confidently_wrong_held_out_galaxy_moves_only_the_plain_mean() -> None:
    """Found on the SDSS catalogue: one held-out galaxy far from its p(z) swung the mean held-out
    NLL by +25 nats and stopped a healthy run; the watched (clipped) NLL barely moves."""
    from deepz_core.training.loop import NLL_CLIP, heldout_scores

    torch.manual_seed(2)
    model = DeepzModel(ModelConfig(**CFG, members=1)).eval()
    x = 1.0 + 0.1 * torch.randn(400, CFG["n_inputs"])
    mix = model(x)
    z = mix.mean[0].detach().clone()  # every galaxy at its p(z)'s mean ...
    base = heldout_scores(model, x, z, torch.ones(1, 400))
    z[0] = z[0] + 1e4 * mix.stddev[0, 0].detach()  # ... but one, 10,000 sigma away
    moved = heldout_scores(model, x, z, torch.ones(1, 400))
    assert float(moved["val_nll"] - base["val_nll"]) > 20.0
    assert float(moved["val_nll_clipped"] - base["val_nll_clipped"]) <= NLL_CLIP / 400 + 1e-3


def test_a_cancel_inside_an_epoch_stops_before_the_next_batch_and_resumes_bit_for_bit(
    tmp_path, monkeypatch, inputs, reference
) -> None:
    """Issue 19: the cancel file is looked for inside the epoch (every CANCEL_POLL_S seconds), so
    a huge first epoch stops within seconds; the run resumes from its last checkpoint exactly."""
    from deepz_core.training import loop

    monkeypatch.setattr(loop, "CANCEL_POLL_S", 0.0)
    run = _new_run(tmp_path / "mid-epoch", inputs)
    real, calls, used = loop.train_epoch, [], []

    def epoch(model, loss_fn, batches, optimizer, between=None):
        calls.append(1)

        def cancel_after_the_first(items):
            for i, batch in enumerate(items):
                if len(calls) == PHASE_EPOCHS["pretrain"] + 4 and i == 1:
                    run.file("cancel").touch()  # the user presses cancel inside fine-tune epoch 4
                used.append(len(calls))
                yield batch

        return real(model, loss_fn, cancel_after_the_first(batches), optimizer, between)

    monkeypatch.setattr(loop, "train_epoch", epoch)
    execute_run(run)
    status = run.status()
    assert status["state"] == "cancelled", status
    assert "during finetune epoch 4" in status["message"]
    assert used.count(PHASE_EPOCHS["pretrain"] + 4) == 2  # the second batch was never trained on
    assert [r["epoch"] for r in run.metrics() if r["phase"] == "finetune"] == [1, 2, 3]
    meta = load_checkpoint_meta(run)
    assert (meta["phase"], meta["epoch"]) == ("finetune", 2)
    monkeypatch.setattr(loop, "train_epoch", real)
    run.file("cancel").unlink()
    execute_run(run)
    assert run.status()["state"] == "finished"
    _assert_same_result(run, reference)


@pytest.mark.parametrize(
    ("stop", "said"),
    [("sigterm", "received SIGTERM"), ("ctrl-c", "interrupted (Ctrl-C)")],
)
def test_a_stop_records_a_resumable_cancel(tmp_path, inputs, monkeypatch, stop, said) -> None:
    """SIGTERM (the CLI raises Terminated) and Ctrl-C (KeyboardInterrupt: a terminal's, a
    notebook's interrupt, which used to leave the run 'running' in a kernel that still lives)
    mark the run cancelled, resumable, and release its lock."""
    from deepz_core.errors import Terminated
    from deepz_core.files import folder_holder
    from deepz_core.training import loop

    run = _new_run(tmp_path / stop, inputs)
    error = Terminated("received signal 15") if stop == "sigterm" else KeyboardInterrupt()

    def stopped(*args, **kwargs):
        raise error

    monkeypatch.setattr(loop, "train_epoch", stopped)
    with pytest.raises(type(error)):
        execute_run(run)
    status = run.status()
    assert status["state"] == "cancelled" and said in status["message"]
    assert folder_holder(run.path) is None
