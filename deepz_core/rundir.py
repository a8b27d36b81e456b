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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from deepz_core.errors import ConfigError
from deepz_core.files import (
    LOCK_FILE,
    atomic_write,
    atomic_write_json,
    is_temporary,
    lock_folder,
    read_json_object,
    remove_temporaries,
)

CARD_FIELDS = ("name", "note", "catalog_name", "profile")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
STATES = ("queued", "running", "finished", "failed", "cancelled")


def new_run_id(prefix: str = "run") -> str:
    """A safe, sortable, unique run id: ``<prefix>-YYYYmmdd-HHMMSS-<hex>``."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", prefix).lstrip("_-")[:30] or "run"  # starts alnum
    return f"{clean}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    """``run_id`` when it is a safe folder name (letters, digits, '.', '_', '-'; no '..');
    ConfigError otherwise."""
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
        """Make the folder, write ``config.json`` and a queued status; returns self."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.file("config.json"), config)
        self.set_status("queued", phase="setup", epoch=0)
        return self

    def config(self) -> dict[str, Any]:
        """config.json as written; ConfigError naming the file when missing or damaged."""
        return read_json_object(self.file("config.json"), "run configuration")

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
        """status.json (``{"state": "missing"}`` without one); ConfigError naming the file when
        it is damaged."""
        if not self.file("status.json").exists():
            return {"state": "missing"}
        status = read_json_object(self.file("status.json"), "run status")
        if status.get("state") not in (*STATES, "missing"):
            raise ConfigError(
                f"{self.file('status.json')}: damaged run status: state {status.get('state')!r} "
                f"is not one of {STATES}"
            )
        return status

    def readable(self) -> bool:
        """True when config.json and status.json both read (a damaged run is skipped by lists)."""
        try:
            self.config()
            self.status()
        except ConfigError:
            return False
        return True

    @contextmanager
    def locked(self) -> Iterator[RunDir]:
        """Hold the run folder's exclusive lock (``deepz_core.files.lock_folder``): a second
        process training, resuming or fitting it gets an InUseError naming this one. Taking the
        lock removes what killed processes left (``remove_orphans``)."""
        with lock_folder(
            self.path, f"run folder {self.path}", cleanup=lambda _: self.remove_orphans()
        ):
            yield self

    def remove_orphans(self) -> list[str]:
        """Delete temporaries of killed writes and checkpoint tensors that checkpoint.json does not
        name (a kill between the two writes); call it only while holding the lock. Names removed."""
        removed = remove_temporaries(self.path)
        try:
            meta = load_checkpoint_meta(self)
        except ConfigError:
            return removed  # which tensors are current is unknown: the run reports the damage
        current = None if meta is None else meta.get("tensors")
        for path in self.path.glob("checkpoint-*.safetensors"):
            if path.name != current:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def foreign_entries(self, allowed: tuple[Path, ...] = ()) -> list[str]:
        """Names in the folder that make it someone else's: anything but the lock, temporaries
        and the ``allowed`` files, when it holds no config.json (empty when it is a run or does not
        exist)."""
        if not self.path.is_dir() or self.file("config.json").exists():
            return []
        keep = {os.path.realpath(p) for p in allowed}
        return sorted(
            p.name
            for p in self.path.iterdir()
            if p.name != LOCK_FILE and not is_temporary(p.name) and os.path.realpath(p) not in keep
        )

    def set_status(self, state: str, **fields: Any) -> None:
        """Set ``state`` (one of STATES) and ``fields`` in ``status.json``, with the time and this
        process's pid."""
        assert state in STATES, state
        current = self.status() if self.file("status.json").exists() else {}
        current.update(fields, state=state, updated=time.time(), pid=os.getpid())
        atomic_write_json(self.file("status.json"), current)

    def log(self, message: str) -> None:
        """Append a time-stamped line to ``log.txt``."""
        with open(self.file("log.txt"), "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl``."""
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
    """checkpoint.json, or None without one; ConfigError naming it when it is damaged."""
    if not run.file("checkpoint.json").exists():
        return None
    meta = read_json_object(run.file("checkpoint.json"), "checkpoint description")
    tensors, phase, epoch = meta.get("tensors"), meta.get("phase"), meta.get("epoch")
    ok = isinstance(tensors, str) and "/" not in tensors and tensors.endswith(".safetensors")
    if not (ok and phase in PHASE_ORDER and isinstance(epoch, int) and epoch >= 0):
        raise ConfigError(
            f"{run.file('checkpoint.json')}: damaged checkpoint description (tensors, phase, "
            f"epoch = {tensors!r}, {phase!r}, {epoch!r})"
        )
    return meta


def load_checkpoint(run: RunDir) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The checkpoint's tensors and meta, or None; ConfigError naming a damaged file."""
    meta = load_checkpoint_meta(run)
    if meta is None:
        return None
    path = run.file(meta["tensors"])
    try:
        return load_file(str(path)), meta
    except Exception as exc:  # safetensors raises its own types for a damaged file
        raise ConfigError(
            f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})"
        ) from exc


def rng_state_to_json(rng: np.random.Generator) -> dict[str, Any]:
    """A NumPy generator's bit-generator state as plain JSON values (for checkpoints)."""
    state = rng.bit_generator.state
    return json.loads(json.dumps(state, default=int))


def rng_from_json(state: dict[str, Any]) -> np.random.Generator:
    """A PCG64 generator restored from ``rng_state_to_json``'s state."""
    bitgen = np.random.PCG64()
    bitgen.state = state
    return np.random.Generator(bitgen)


def run_kind(config: dict[str, Any]) -> str:
    """'deepz' (a network ensemble; configs without a kind) or 'templatefit'."""
    return str(config.get("kind", "deepz"))


def list_runs(root: Path) -> list[RunDir]:
    """Run folders under ``root`` whose config.json and status.json read, newest first (a damaged
    run folder is left out: no list breaks on it)."""
    if not root.exists():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / "config.json").exists()]
    runs = [r for r in runs if r.readable()]
    return sorted(runs, key=lambda r: r.file("config.json").stat().st_mtime, reverse=True)
