"""Pretrained weights shared between runs: pretrain once on simulations, fine-tune many times (E20 Sec. 3).

Pretraining depends on the network, the simulation, the pretraining schedule, the seed and the device,
never on the fine-tuning choices (alpha, outliers, the fine-tuning schedule, the catalogue's labels).
Runs that agree on the former therefore reach bit-identical pretrained weights, and the experiments
(E20 Figs. 2, 6, B1) train many such runs. The checkpoint written at the end of pretraining (model,
optimiser and RNG states) is kept in ``cache_dir()/pretrained/<key>.safetensors`` under a key of all
of those inputs. A later run with the same key starts from it exactly as if it had resumed from its
own end-of-pretraining checkpoint, so its result is the same as without the cache.

Weights shipped with deepz (``deepz_core/training/weights/<key>.safetensors`` + ``.json``, built by
``deepz pretrain-weights``, docs/benchmarks.md "First result") are a second, read-only source under
the same keys: the demo's ``quick`` pretraining, so that a newcomer's first run skips the SPS
simulation and the pretraining. A shipped entry holds the model and RNG states at the end of
pretraining (the optimiser restarts for fine-tuning, so its state is left out).

The shipped weights also hold the demo run's fine-tuned networks (``deepz_core.training.finetuned``,
keyed by everything the end of fine-tuning depends on).

Set ``DEEPZ_PRETRAIN_CACHE=0`` to always pretrain (the test suite does; it also ignores the shipped
weights, fine-tuned ones included). ``DEEPZ_SHIPPED_WEIGHTS`` names another folder of shipped
weights (tests).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepz_core.files import atomic_write, atomic_write_json, cache_dir
from deepz_core.rundir import RunDir, load_checkpoint, save_checkpoint
from deepz_core.training.config import TrainConfig
from deepz_core.training.fingerprints import Fingerprint, Sums, agree

CACHE_VERSION = 1  # bump when pretraining's arithmetic changes for the same inputs
HELDOUT = ("val_nll", "val_nll_clipped")  # row fields of another run's held-out galaxies


def cache_enabled() -> bool:
    return os.environ.get("DEEPZ_PRETRAIN_CACHE", "1").strip().lower() not in ("0", "false", "no")


@dataclass(frozen=True)
class PretrainKey:
    """Everything the end-of-pretraining state depends on."""

    model: dict[str, Any]  # ModelConfig.to_dict(), n_inputs and members included
    train: TrainConfig
    bands: Sequence[str]
    ref_band: str
    simulation: str  # the cached simulation's file name (its parameters' hash) or a file digest
    device: str  # torch.device type: CPU and GPU arithmetic differ
    input_stats: Fingerprint = Fingerprint("")  # the model's input statistics (in the state)

    def sums(self) -> dict[str, Sums]:
        """The float sums of the input statistics, matched with a tolerance, not hashed
        (``training.fingerprints``)."""
        return {"input_stats": self.input_stats.sums}

    def digest(self) -> str:
        """The cache key: a hash of everything the pretrained state depends on (library versions
        too)."""
        t = self.train
        blob = {
            "version": CACHE_VERSION,
            "torch": torch.__version__,
            "device": self.device,
            "model": self.model,
            "schedule": t.pretrain_schedule,
            "batch_size": t.pretrain_batch_size,
            "min_batch": t.min_batch,
            "weight_decay": t.weight_decay,
            "seed": t.seed,
            "bands": list(self.bands),
            "ref_band": self.ref_band,
            "simulation": self.simulation,
            "input_stats": self.input_stats.digest,
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


SHIPPED = Path(__file__).resolve().parent / "weights"


def shipped_dir() -> Path:
    """The folder of the weights shipped with deepz (env ``DEEPZ_SHIPPED_WEIGHTS`` overrides)."""
    return Path(os.environ.get("DEEPZ_SHIPPED_WEIGHTS") or SHIPPED)


def _paths(key: str, folder: Path | None = None) -> tuple[Path, Path]:
    folder = cache_dir() / "pretrained" if folder is None else folder
    return folder / f"{key}.safetensors", folder / f"{key}.json"


def _sources(key: str) -> list[tuple[str, Path, Path]]:
    """Where entry ``key`` may be: the local cache, then the shipped weights."""
    return [("the cache", *_paths(key)), ("the shipped weights", *_paths(key, shipped_dir()))]


def store(run: RunDir, key: str, sums: Mapping[str, Sums]) -> None:
    """Copy ``run``'s end-of-pretraining checkpoint, pretraining metrics and key's float ``sums``
    (``PretrainKey.sums``) into the cache."""
    ckpt = load_checkpoint(run)
    assert ckpt is not None and ckpt[1]["phase"] == "pretrain", "store right after pretraining"
    tensors, meta = ckpt
    rows = [r for r in run.metrics() if r.get("phase") == "pretrain"]
    tensor_path, meta_path = _paths(key)
    atomic_write(tensor_path, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(
        meta_path,
        {
            "meta": {k: v for k, v in meta.items() if k != "tensors"},
            "metrics": rows,
            "saved_by": str(run.path),
            "sums": dict(sums),
        },
    )


def restore(run: RunDir, key: str, sums: Mapping[str, Sums]) -> bool:
    """Give ``run`` the cached (else shipped) end-of-pretraining checkpoint and metrics rows of
    entry ``key`` whose float sums agree with ``sums`` (``PretrainKey.sums``); False on a miss.

    The rows keep their losses but drop ``val_nll`` and ``val_nll_clipped``: those were measured on
    the storing run's held-out galaxies, which may not be this run's.
    """
    for where, tensor_path, meta_path in _sources(key):
        if not (tensor_path.exists() and meta_path.exists()):
            continue
        try:
            saved = json.loads(meta_path.read_text())
            if not agree(sums, saved.get("sums")):
                continue  # built from other input statistics (beyond a CPU's rounding)
            tensors = load_file(str(tensor_path))
        except (OSError, ValueError, KeyError, SafetensorError, AttributeError):
            continue  # a damaged entry costs a pretraining, never a run
        # rows first, checkpoint last: a kill in between leaves no checkpoint, so the next call
        # redoes this from a clean slate instead of resuming with half the rows
        run.truncate_metrics("pretrain", 0)
        for row in saved["metrics"]:
            run.append_metrics(
                {k: v for k, v in row.items() if k not in HELDOUT} | {"cached": True}
            )
        save_checkpoint(run, tensors, saved["meta"])
        run.log(f"pretraining reused from {where} ({key}, first trained by {saved['saved_by']})")
        return True
    return False


def has(key: str) -> bool:
    """Whether the cache or the shipped weights hold entry ``key``."""
    return any(t.exists() and m.exists() for _, t, m in _sources(key))


def ship(key: str, folder: Path | str) -> Path:
    """Copy cache entry ``key`` into ``folder`` as shipped weights: model and RNG states only (the
    optimiser restarts for fine-tuning), the metrics rows without held-out NLLs and timings (the
    same bytes on every rebuild); its tensor file."""
    tensor_path, meta_path = _paths(key)
    if not (tensor_path.exists() and meta_path.exists()):
        raise FileNotFoundError(f"no cached pretraining {key} to ship")
    tensors = {k: v for k, v in load_file(str(tensor_path)).items() if not k.startswith("opt.")}
    saved = json.loads(meta_path.read_text())
    rows = [
        {k: v for k, v in r.items() if k not in (*HELDOUT, "seconds")} for r in saved["metrics"]
    ]
    out, out_meta = _paths(key, Path(folder))
    atomic_write(out, lambda tmp: save_file(tensors, str(tmp)))
    shipped = {
        "meta": saved["meta"],
        "metrics": rows,
        "saved_by": "deepz pretrain-weights",
        "sums": saved.get("sums"),
    }
    atomic_write_json(out_meta, shipped)
    return out
