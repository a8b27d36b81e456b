"""Read-only run status for the pages: a run's state (a dead process counts as interrupted), its
progress through the training phases, and its loss curves."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from deepz_core.rundir import RunDir


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def run_state(run: RunDir) -> str:
    """The run's state, or 'interrupted' when it says 'running' but its process is gone."""
    status = run.status()
    state = status.get("state", "missing")
    if state == "running" and not pid_alive(status.get("pid")):
        return "interrupted"
    return state


def training_warning(run: RunDir) -> str | None:
    """The warning a finished run's summary carries (``summary.heldout.warning``: members that
    predict no better than the spec-z distribution, or ended well above their best epoch), or
    None. What the CLI prints on stderr, ``dz.train`` warns with and the Train page shows."""
    return run.status().get("summary", {}).get("heldout", {}).get("warning")


def _phase_epochs(config: dict[str, Any]) -> list[tuple[str, int]]:
    train = config.get("train", {})
    phases = []
    if config.get("pretrain") != "none":
        phases.append(("pretrain", sum(int(e) for e, _ in train.get("pretrain_schedule", ()))))
    phases.append(("finetune", sum(int(e) for e, _ in train.get("schedule", ()))))
    return [(name, n) for name, n in phases if n > 0]


def clock(seconds: float) -> str:
    """'42 s', '3 min 05 s' or '1 h 02 min'."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def elapsed_eta(started: float | None, fraction: float, now: float | None = None) -> str:
    """'1 min 05 s elapsed, about 1 min 40 s left' from a start time [s since the epoch] and the fraction
    done (a straight-line extrapolation); '' without a start time."""
    if not started:
        return ""
    elapsed = (time.time() if now is None else now) - started
    text = f"{clock(elapsed)} elapsed"
    if 0.02 <= fraction < 1:
        text += f", about {clock(elapsed * (1 - fraction) / fraction)} left"
    return text


def _setup_progress(status: dict[str, Any]) -> tuple[float, str]:
    """The set-up step a run reports (``training_run.status_listener``): its fraction and text."""
    step, done, total = status.get("step"), status.get("step_done"), status.get("step_total")
    if not step or not total:
        return 0.0, "setting up: reading the catalogue"
    fraction = min(int(done or 0) / int(total), 1.0)
    timing = elapsed_eta(status.get("step_started"), fraction)
    return fraction, f"setting up: {step} {int(done or 0):,}/{int(total):,}" + (
        f" — {timing}" if timing else ""
    )


def _phase_eta(metrics: list[dict[str, Any]], phase: str, epoch: int, epochs: int) -> str:
    """'40 s for 4 epochs, about 2 min 10 s left in this phase' from the epochs' seconds."""
    rows = [r for r in metrics if r.get("phase") == phase and not r.get("cached")]
    seconds = [float(r.get("seconds") or 0.0) for r in rows]
    if not seconds:
        return ""
    recent = seconds[-5:]
    left = (epochs - epoch) * sum(recent) / len(recent)
    text = f"{clock(sum(seconds))} for {len(seconds)} epochs"
    return text + (f", about {clock(left)} left in this phase" if epoch < epochs else "")


def run_progress(run: RunDir) -> tuple[float, str]:
    """(fraction done, e.g. 'finetune epoch 12/50 — 40 s for 12 epochs, about 2 min 10 s left in
    this phase') of a run; during set-up (simulating the pretraining set...) the step's own progress."""
    status = run.status()
    if status.get("state") == "finished":
        return 1.0, "finished"
    if status.get("phase") == "templatefit":  # galaxies fitted as epoch / epochs
        done, total = int(status.get("epoch") or 0), int(status.get("epochs") or 1)
        started = status.get("phase_started") or status.get("started")  # after the zero-points
        timing = elapsed_eta(started, done / max(total, 1))
        text = f"template fit: {done:,}/{total:,} galaxies" + (f" — {timing}" if timing else "")
        return min(done / max(total, 1), 1.0), text
    phases = _phase_epochs(run.config())
    total = sum(n for _, n in phases) or 1
    phase, epoch = status.get("phase"), int(status.get("epoch") or 0)
    names = [name for name, _ in phases]
    if phase not in names:
        return _setup_progress(status) if phase in (None, "setup") else (0.0, str(phase))
    before = sum(n for name, n in phases[: names.index(phase)])
    epochs = dict(phases)[phase]
    eta = _phase_eta(run.metrics(), phase, epoch, epochs)
    if not eta and status.get("phase_started") and epoch < epochs:  # its first epoch under way
        since = clock(max(time.time() - float(status["phase_started"]), 0.0))
        eta = f"epoch {epoch + 1} under way, {since} elapsed"
    text = f"{phase} epoch {epoch}/{epochs}" + (f" — {eta}" if eta else "")
    return min((before + epoch) / total, 1.0), text


def run_duration(run: RunDir) -> float | None:
    """Wall time [s] of a finished run's last execution (None for runs that did not record it)."""
    status = run.status()
    if status.get("state") != "finished" or not status.get("started"):
        return None
    return float(status.get("updated", 0.0)) - float(status["started"])


def expected_duration(runs: list[RunDir], preset: str) -> tuple[float, str] | None:
    """(seconds, basis) of the newest finished run with ``preset`` on this machine, the basis
    saying what it reused (shipped fine-tuned networks, a cached pretraining); None without such
    a run."""
    for run in runs:
        config = run.config()
        if config.get("preset") != preset or config.get("kind", "deepz") != "deepz":
            continue
        seconds = run_duration(run)
        if seconds is None:
            continue
        return seconds, f"the last {preset} run here ({run.run_id}, {_reuse(run, config)})"
    return None


def _reuse(run: RunDir, config: dict[str, Any]) -> str:
    """What a finished run reused: its fine-tuned networks (shipped), its pretraining, or nothing."""
    cached = {r.get("phase") for r in run.metrics() if r.get("cached")}
    if "finetune" in cached:
        return "fine-tuned networks restored from the shipped weights"
    if config.get("pretrain") == "none":
        return "no pretraining"
    return "pretraining reused from the cache" if cached else "pretraining included"


def training_curves(metrics: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per phase: epoch and training loss, and held-out NLL (mean, min, max over members) at
    the epochs where it was evaluated."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in metrics:
        curve = out.setdefault(
            row.get("phase", "?"),
            {k: [] for k in ("epoch", "loss", "val_epoch", "val_mean", "val_min", "val_max")},
        )
        curve["epoch"].append(row.get("epoch", 0))
        curve["loss"].append(row.get("loss", float("nan")))
        values = [v for v in row.get("val_nll") or [] if v == v]
        if values:
            curve["val_epoch"].append(row.get("epoch", 0))
            curve["val_mean"].append(sum(values) / len(values))
            curve["val_min"].append(min(values))
            curve["val_max"].append(max(values))
    return out
