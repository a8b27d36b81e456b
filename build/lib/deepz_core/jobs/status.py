"""Read-only run status for the pages: a run's state (a dead process counts as interrupted), its
progress through the training phases, and its loss curves."""

from __future__ import annotations

import os
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


def _phase_epochs(config: dict[str, Any]) -> list[tuple[str, int]]:
    train = config.get("train", {})
    phases = []
    if config.get("pretrain") != "none":
        phases.append(("pretrain", sum(int(e) for e, _ in train.get("pretrain_schedule", ()))))
    phases.append(("finetune", sum(int(e) for e, _ in train.get("schedule", ()))))
    return [(name, n) for name, n in phases if n > 0]


def run_progress(run: RunDir) -> tuple[float, str]:
    """(fraction of all epochs done, e.g. 'finetune epoch 12/50') of a run."""
    status = run.status()
    if status.get("state") == "finished":
        return 1.0, "finished"
    if status.get("phase") == "templatefit":  # galaxies fitted as epoch / epochs
        done, total = int(status.get("epoch") or 0), int(status.get("epochs") or 1)
        return min(done / max(total, 1), 1.0), f"template fit: {done:,}/{total:,} galaxies"
    phases = _phase_epochs(run.config())
    total = sum(n for _, n in phases) or 1
    phase, epoch = status.get("phase"), int(status.get("epoch") or 0)
    names = [name for name, _ in phases]
    if phase not in names:
        return 0.0, str(phase or "setup")
    before = sum(n for name, n in phases[: names.index(phase)])
    epochs = dict(phases)[phase]
    return min((before + epoch) / total, 1.0), f"{phase} epoch {epoch}/{epochs}"


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
