"""Training: a generic epoch loop, and phases (pretrain -> fine-tune) with checkpoints and resume.

The estimator owns its loss (``DeepzModel.pretrain_loss`` / ``mdn_loss``); the loop only does
zero_grad, loss, backward, step. A phase runs its learning-rate stages (E20 Sec. 2.4), logs one metrics
line per epoch, checkpoints every few epochs, and stops cleanly when the run folder holds a ``cancel``
file. A killed run restarts from its last checkpoint and, with restored RNG states, reproduces the
uninterrupted result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deepz_core.errors import TrainingError
from deepz_core.nets.deepz import DeepzModel
from deepz_core.rundir import RunDir, rng_from_json, rng_state_to_json, save_checkpoint
from deepz_core.training.batches import Batch

LossFn = Callable[[DeepzModel, Batch], Tensor]
Validate = Callable[[DeepzModel], dict[str, Tensor]]  # model -> held-out scores, (E,) each


class Cancelled(Exception):
    """The user asked the run to stop (a ``cancel`` file in the run folder)."""


CANCEL_POLL_S = 1.0  # seconds between looks for the cancel file inside an epoch


def check_cancel(run: RunDir, where: str) -> None:
    """Raise Cancelled when the run folder holds a ``cancel`` file (``where``: what was going on)."""
    if run.file("cancel").exists():
        raise Cancelled(f"cancelled during {where}")


class CancelWatch:
    """Looks for the run's cancel file at most every ``CANCEL_POLL_S`` seconds, so that a cancel
    stops even the first epoch of a huge run within seconds at no cost per batch."""

    def __init__(self, run: RunDir, where: str) -> None:
        self.run, self.where = run, where
        self.last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last >= CANCEL_POLL_S:
            self.last = now
            check_cancel(self.run, self.where)


def make_optimizer(
    params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Adam:
    """Adam (E20 Sec. 2.4) with torch's fused kernel where the device has one (one pass over
    parameters, gradients and moments: 3-4x faster than the per-tensor loop on CPU,
    docs/benchmarks.md); the per-tensor loop elsewhere. Same update rule either way."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # a device without a fused Adam kernel
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def pretrain_loss(model: DeepzModel, b: Batch) -> Tensor:
    return model.pretrain_loss(b.x, b.z, b.x_err, b.target)


def finetune_loss(model: DeepzModel, b: Batch) -> Tensor:
    return model.mdn_loss(b.x, b.z, b.weight)


def train_epoch(
    model: DeepzModel,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    between: Callable[[], None] | None = None,
) -> float:
    """One pass over ``batches``; returns the mean loss per member and batch. A non-finite batch
    loss raises TrainingError before its step can poison the weights. ``between()`` runs before
    every batch (a ``CancelWatch`` raises Cancelled there)."""
    model.train()
    total, count = torch.zeros(()), 0
    for batch in batches:
        if between is not None:
            between()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the training loss became {float(loss.detach())} at batch {count + 1}; "
                f"{_batch_diagnosis(batch)}"
            )
        loss.backward()
        optimizer.step()
        total += loss.detach().cpu()
        count += 1
    return float(total) / max(count, 1) / model.members


def _batch_diagnosis(batch: Batch) -> str:
    """Where a non-finite loss comes from: the batch's inputs, or the network itself."""
    bad = ~torch.isfinite(batch.x)  # (E, n, B)
    if bad.any():
        bands = sorted({int(b) for b in bad.nonzero()[:, 2].tolist()})
        return f"non-finite inputs in band column(s) {bands} of this batch"
    return "the inputs are finite, so the network diverged: try a lower learning rate"


def check_weights(model: torch.nn.Module) -> None:
    """Raise TrainingError naming the first parameter or buffer with a NaN/inf value."""
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise TrainingError(f"the network weight {name!r} became NaN/inf")


@torch.no_grad()
def heldout_nll_means(
    model: DeepzModel,
    x: Tensor,
    z: Tensor,
    heldout: Tensor,
    clips: tuple[float | None, ...],
    chunk: int = 20000,
) -> list[Tensor]:
    """Per-member mean -log p(zspec) over the galaxies each member never trained on, (E,) for each
    entry of ``clips`` (None: the plain mean; a number: each galaxy's term capped at that many nats
    first), from one forward pass. x (N, B), z (N,), heldout (E, N) 0/1."""
    model.eval()
    totals = [torch.zeros(model.members, device=x.device) for _ in clips]
    for s in range(0, len(z), chunk):
        nll = -model(x[s : s + chunk]).log_prob(z[s : s + chunk])  # (E, n)
        held = heldout[:, s : s + chunk]
        for total, clip in zip(totals, clips, strict=True):
            capped = nll if clip is None else nll.clamp(max=clip)
            total += (capped * held).sum(dim=1)
    count = heldout.sum(dim=1).clamp_min(1)
    return [total / count for total in totals]


def heldout_nll(
    model: DeepzModel,
    x: Tensor,
    z: Tensor,
    heldout: Tensor,
    chunk: int = 20000,
    clip: float | None = None,
) -> Tensor:
    """Per-member mean -log p(zspec) over the galaxies each member never trained on, (E,); with
    ``clip``, each galaxy's term is capped at ``clip`` nats first."""
    return heldout_nll_means(model, x, z, heldout, (clip,), chunk)[0]


NLL_CLIP = 20.0  # nats: one hopeless galaxy weighs at most this in the watched held-out NLL


def heldout_scores(model: DeepzModel, x: Tensor, z: Tensor, heldout: Tensor) -> dict[str, Tensor]:
    """Per-member held-out NLL, (E,) each: ``val_nll`` the plain mean (E20's validation loss) and
    ``val_nll_clipped`` with each galaxy capped at NLL_CLIP nats (one forward pass for both). The
    mean of a real catalogue swings by tens of nats when one held-out galaxy is confidently wrong
    (dz 0.3 at sigma 0.001 costs 45,000 nats); the clipped mean moves only when many galaxies do, as
    in a diverging network."""
    plain, clipped = heldout_nll_means(model, x, z, heldout, (None, NLL_CLIP))
    return {"val_nll": plain, "val_nll_clipped": clipped}


DIVERGED_NATS = 5.0  # clipped held-out NLL this far above a member's best counts as diverged ...
DIVERGED_EVALS, DIVERGED_WINDOW = 3, 5  # ... in this many of the last evaluations
WORSE_NATS = 0.5  # a final held-out NLL this far above the best is worth a warning
# a member whose best clipped held-out NLL stays above this learned nothing: a flat p(z) over
# 0 < z < 3 scores log 3 = 1.1 nats, a network that never left its start sits near NLL_CLIP
NEVER_LEARNED_NATS = 10.0


@dataclass
class HeldoutWatch:
    """Watches the per-member held-out NLL as training goes (the clipped one where the validation
    gives it, see ``heldout_scores``): a non-finite value, or values more than ``DIVERGED_NATS``
    above the member's best in ``DIVERGED_EVALS`` of the last ``DIVERGED_WINDOW`` evaluations,
    raise TrainingError (issue 23: a fold holding one junk galaxy swung between -1 and 1e7)."""

    best: list[float] = field(default_factory=list)
    best_at: list[str] = field(default_factory=list)
    above: list[list[bool]] = field(default_factory=list)

    def add(self, where: str, nll: list[float]) -> None:
        """Record the held-out NLL (E,) of one evaluation at ``where``; TrainingError naming the
        members when one is non-finite or has diverged."""
        if not all(np.isfinite(nll)):
            members = [i for i, v in enumerate(nll) if not np.isfinite(v)]
            raise TrainingError(f"{where}: the held-out NLL of member(s) {members} is NaN/inf")
        if not self.best:
            self.best, self.best_at = list(nll), [where] * len(nll)
            self.above = [[] for _ in nll]
        for i, v in enumerate(nll):
            if v < self.best[i]:
                self.best[i], self.best_at[i] = v, where
            self.above[i] = [*self.above[i], v > self.best[i] + DIVERGED_NATS][-DIVERGED_WINDOW:]
            if sum(self.above[i]) >= DIVERGED_EVALS:
                raise TrainingError(
                    f"{where}: the held-out NLL of member {i} diverged "
                    f"({self.best[i]:.3g} at {self.best_at[i]}, {v:.3g} now); "
                    "check the catalogue for extreme galaxies or lower the "
                    "learning rate"
                )

    def check_learned(self, where: str) -> None:
        """TrainingError when a member's best held-out NLL is above NEVER_LEARNED_NATS: a run
        whose networks never learned must not finish green (review, ninth session: a schedule
        with a learning rate of 0.9 sat at the clip from its first epoch and ended 'finished'
        with sigma68 1.38; the divergence test compares with the member's own best only)."""
        stuck = [i for i, v in enumerate(self.best) if v > NEVER_LEARNED_NATS]
        if stuck:
            raise TrainingError(
                f"{where}: member(s) {stuck} never learned (best held-out NLL "
                f"{min(self.best[i] for i in stuck):.3g} nats, a flat p(z) scores ~1): "
                "lower the learning rate or check the catalogue's spec-z and fluxes"
            )


def heldout_summary(rows: list[dict]) -> dict[str, Any]:
    """Best epoch by held-out NLL per member (the clipped NLL where logged), its value and the last
    one, from metrics rows of the fine-tuning phase; ``warning`` when the last is WORSE_NATS or more
    above the best."""
    evals = [r for r in rows if r.get("phase") == "finetune" and "val_nll" in r]
    if not evals:
        return {}
    key = "val_nll_clipped" if all("val_nll_clipped" in r for r in evals) else "val_nll"
    nll = np.array([r[key] for r in evals])  # (T, E)
    best = nll.argmin(0)  # (E,)
    out: dict[str, Any] = {
        "best_epoch": [int(evals[t]["epoch"]) for t in best],
        "best_val_nll": [float(nll[t, i]) for i, t in enumerate(best)],
        "last_val_nll": [float(v) for v in nll[-1]],
    }
    worse = [i for i in range(nll.shape[1]) if nll[-1, i] > nll[best[i], i] + WORSE_NATS]
    if worse:
        out["warning"] = (
            f"member(s) {worse}: the last held-out NLL is more than {WORSE_NATS} "
            "above the best epoch's (over-fitting or instability)"
        )
    return out


@dataclass
class Phase:
    name: str  # "pretrain" or "finetune"
    schedule: tuple[tuple[int, float], ...]
    source: object  # has .epoch(rng, gen, batch_size, min_batch) -> Iterator[Batch]
    loss: LossFn
    batch_size: int
    min_batch: int

    @property
    def epochs(self) -> int:
        return sum(int(e) for e, _ in self.schedule)

    def lr(self, epoch: int) -> float:
        """Learning rate of the stage that contains ``epoch`` (0-based)."""
        edges = np.cumsum([e for e, _ in self.schedule])
        stage = int(np.searchsorted(edges, epoch, side="right"))
        return float(self.schedule[min(stage, len(self.schedule) - 1)][1])  # 0 epochs: any lr


def phase_generators(
    seed: int, phase: Phase, device: torch.device
) -> tuple[np.random.Generator, torch.Generator]:
    """The phase's seeded NumPy generator (batch order) and torch generator on ``device``
    (noise, randomised coadds, outliers): fixed by ``seed`` and whether it pretrains or fine-tunes."""
    offset = 0 if phase.name == "pretrain" else 1
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1000 + 17 + offset)
    return np.random.default_rng([seed, 11, offset]), gen


def set_epoch_lr(optimizer: torch.optim.Optimizer, phase: Phase, epoch: int) -> float:
    """Set the learning rate of the stage holding ``epoch`` (0-based) on every parameter group;
    returns it (E20 Sec. 2.4)."""
    lr = phase.lr(epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def epoch_row(phase: Phase, epoch: int, lr: float, loss: float, seconds: float) -> dict[str, Any]:
    """One epoch's metrics line (``epoch`` 0-based; ``seconds`` of wall time)."""
    return {
        "phase": phase.name,
        "epoch": epoch + 1,
        "epochs": phase.epochs,
        "lr": lr,
        "loss": loss,
        "seconds": seconds,
    }


def validation_due(epoch: int, eval_every: int, epochs: int) -> bool:
    """Whether ``epoch`` (0-based) of ``epochs`` ends with a held-out pass: every ``eval_every``
    epochs and after the last."""
    return (epoch + 1) % eval_every == 0 or epoch + 1 == epochs


class PhaseRunner:
    """Runs a phase of training in a run folder, with checkpoints, cancel and resume."""

    def __init__(
        self,
        run: RunDir,
        model: DeepzModel,
        weight_decay: float,
        seed: int,
        checkpoint_every: int,
        eval_every: int,
        validate: Validate | None = None,
    ) -> None:
        self.run, self.model = run, model
        self.weight_decay, self.seed = weight_decay, seed
        self.checkpoint_every, self.eval_every = checkpoint_every, eval_every
        self.validate = validate  # model -> {"val_nll": (E,), ...} (heldout_scores), or None
        self.device = next(model.parameters()).device
        self.heldout = HeldoutWatch()

    def fresh_state(
        self, phase: Phase
    ) -> tuple[torch.optim.Optimizer, np.random.Generator, torch.Generator]:
        """A new optimiser at the phase's first learning rate and the phase's seeded generators."""
        optimizer = make_optimizer(self.model.parameters(), phase.lr(0), self.weight_decay)
        rng, gen = phase_generators(self.seed, phase, self.device)
        return optimizer, rng, gen

    def execute(self, phase: Phase, resume: dict | None = None) -> None:
        """Run ``phase`` from its start, or from the checkpoint ``resume`` (tensors and meta):
        one metrics line and status per epoch, checkpoints every ``checkpoint_every`` epochs, at
        the end and on cancel. Raises Cancelled, or TrainingError naming the epoch."""
        optimizer, rng, gen = self.fresh_state(phase)
        start = 0
        if resume is not None:
            start, rng = self._restore(resume, optimizer, gen)
        if start < phase.epochs:  # the phase, not the set-up step before it, is under way now
            self.run.set_status(
                "running",
                phase=phase.name,
                epoch=start,
                epochs=phase.epochs,
                phase_started=time.time(),
            )
        for epoch in range(start, phase.epochs):
            row = self._train_epoch(phase, epoch, optimizer, rng, gen)
            self.run.append_metrics(row)
            self.run.set_status(
                "running", phase=phase.name, epoch=epoch + 1, epochs=phase.epochs, loss=row["loss"]
            )
            done = epoch + 1 == phase.epochs
            if done and self.heldout.best:
                self.heldout.check_learned(f"{phase.name} epoch {epoch + 1}")
            cancel = self.run.file("cancel").exists()
            if done or cancel or (epoch + 1) % self.checkpoint_every == 0:
                self._checkpoint(phase, epoch + 1, optimizer, rng, gen)
            if cancel and not done:
                raise Cancelled(f"cancelled at {phase.name} epoch {epoch + 1}")

    def _train_epoch(
        self,
        phase: Phase,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        gen: torch.Generator,
    ) -> dict[str, Any]:
        """Train one epoch (0-based) and validate when due; its metrics line."""
        t0 = time.perf_counter()
        lr = set_epoch_lr(optimizer, phase, epoch)
        batches = phase.source.epoch(rng, gen, phase.batch_size, phase.min_batch)
        where = f"{phase.name} epoch {epoch + 1}"
        watch = CancelWatch(self.run, f"{where} (resumes from the last checkpoint)")
        try:
            loss = train_epoch(self.model, phase.loss, batches, optimizer, watch)
            check_weights(self.model)
        except TrainingError as exc:
            raise TrainingError(f"{where}: {exc}") from None
        row = epoch_row(phase, epoch, lr, loss, time.perf_counter() - t0)
        if self.validate is not None and validation_due(epoch, self.eval_every, phase.epochs):
            scores = self.validate(self.model)
            row.update({k: [float(v) for v in vals] for k, vals in scores.items()})
            self.heldout.add(where, row.get("val_nll_clipped", row["val_nll"]))
        return row

    def _checkpoint(
        self,
        phase: Phase,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        gen: torch.Generator,
    ) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for i, state in optimizer.state_dict()["state"].items():
            tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in state.items()})
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.gen"] = gen.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {"phase": phase.name, "epoch": epoch, "numpy_rng": rng_state_to_json(rng)}
        save_checkpoint(self.run, tensors, meta)

    def _restore(
        self, resume: dict, optimizer: torch.optim.Optimizer, gen: torch.Generator
    ) -> tuple[int, np.random.Generator]:
        tensors, meta = resume["tensors"], resume["meta"]
        prefix = "model."
        self.model.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
        state = optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                state["state"].setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict(state)
        torch.set_rng_state(tensors["rng.torch"])
        gen.set_state(tensors["rng.gen"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        return int(meta["epoch"]), rng_from_json(meta["numpy_rng"])
