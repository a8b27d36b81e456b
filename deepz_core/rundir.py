"""Run folders on disk: ``runs/<run-id>/`` with everything a page or a resumed job needs.

config.json (what was asked), card.json (what people call it: name, note, the catalogue's given
name, the survey profile it is judged by; editable any time, never part of training), status.json (state, phase, epoch; written atomically), metrics.jsonl (one
JSON line per epoch), log.txt, checkpoint.safetensors + checkpoint.json (model, optimiser and RNG
states; never pickle), model.safetensors + model.json (final ensemble), splits.npz, predictions.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write, atomic_write_json

CARD_FIELDS = ("name", "note", "catalog_name", "profile")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
STATES = ("queued", "running", "finished", "failed", "cancelled")


def new_run_id(prefix: str = "run") -> str:
    """A safe, sortable, unique run id: ``<prefix>-YYYYmmdd-HHMMSS-<hex>``."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", prefix).lstrip("_-")[:30] or "run"  # starts alnum
    return f"{clean}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:  # fullmatch: '$' allows a trailing \n
        raise ConfigError(f"run id must be letters, digits, '.', '_' or '-', got {run_id!r}")
    return run_id


@dataclass(frozen=True)
class RunDir:
    """Accessors for one run folder."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def create(self, config: dict[str, Any]) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.file("config.json"), config)
        self.set_status("queued", phase="setup", epoch=0)
        return self

    def config(self) -> dict[str, Any]:
        return json.loads(self.file("config.json").read_text())

    def card(self) -> dict[str, Any]:
        """The run's card (``card.json``): name, note, catalog_name, profile; {} when none."""
        try:
            card = json.loads(self.file("card.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return card if isinstance(card, dict) else {}

    def update_card(self, **fields: Any) -> dict[str, Any]:
        """Set card fields (a None value removes the field); the card written, atomically."""
        unknown = sorted(set(fields) - set(CARD_FIELDS))
        if unknown:
            raise ConfigError(f"run card: unknown fields {unknown}; known: {list(CARD_FIELDS)}")
        card = {**self.card(), **fields}
        card = {k: v for k, v in card.items() if v is not None}
        atomic_write_json(self.file("card.json"), card)
        return card

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.file("status.json").read_text())
        except FileNotFoundError:
            return {"state": "missing"}

    def set_status(self, state: str, **fields: Any) -> None:
        assert state in STATES, state
        current = self.status() if self.file("status.json").exists() else {}
        current.update(fields, state=state, updated=time.time(), pid=os.getpid())
        atomic_write_json(self.file("status.json"), current)

    def log(self, message: str) -> None:
        with open(self.file("log.txt"), "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.file("metrics.jsonl"), "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete metrics line (a line being written when read is skipped)."""
        try:
            lines = self.file("metrics.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def truncate_metrics(self, phase: str, epoch: int) -> None:
        """Drop metric lines written after the checkpoint a resumed run restarts from."""
        keep = [r for r in self.metrics() if not _after(r, phase, epoch)]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        atomic_write(self.file("metrics.jsonl"), lambda tmp: tmp.write_text(text))


PHASE_ORDER = {"pretrain": 0, "finetune": 1}


def _after(row: dict[str, Any], phase: str, epoch: int) -> bool:
    key = (PHASE_ORDER.get(row.get("phase"), 9), row.get("epoch", 0))
    return key > (PHASE_ORDER[phase], epoch)


def save_checkpoint(run: RunDir, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write tensors (model, optimiser, RNG states) + JSON meta atomically: the pair is consistent
    because the JSON, written last, names the tensor file's unique name."""
    name = f"checkpoint-{meta['phase']}-{meta['epoch']:04d}.safetensors"
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(run.file(name), lambda tmp: save_file(flat, str(tmp)))
    previous = load_checkpoint_meta(run)
    atomic_write_json(run.file("checkpoint.json"), {**meta, "tensors": name})
    if previous and previous.get("tensors") != name:
        run.file(previous["tensors"]).unlink(missing_ok=True)


def load_checkpoint_meta(run: RunDir) -> dict[str, Any] | None:
    try:
        return json.loads(run.file("checkpoint.json").read_text())
    except FileNotFoundError:
        return None


def load_checkpoint(run: RunDir) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    meta = load_checkpoint_meta(run)
    if meta is None:
        return None
    return load_file(str(run.file(meta["tensors"]))), meta


def rng_state_to_json(rng: np.random.Generator) -> dict[str, Any]:
    state = rng.bit_generator.state
    return json.loads(json.dumps(state, default=int))


def rng_from_json(state: dict[str, Any]) -> np.random.Generator:
    bitgen = np.random.PCG64()
    bitgen.state = state
    return np.random.Generator(bitgen)


def run_kind(config: dict[str, Any]) -> str:
    """'deepz' (a network ensemble; configs without a kind) or 'templatefit'."""
    return str(config.get("kind", "deepz"))


def list_runs(root: Path) -> list[RunDir]:
    """Run folders under ``root``, newest first."""
    if not root.exists():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / "config.json").exists()]
    return sorted(runs, key=lambda r: r.file("config.json").stat().st_mtime, reverse=True)
