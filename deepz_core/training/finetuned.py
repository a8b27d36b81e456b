"""Fine-tuned networks shipped with deepz: the end of the Train page's default demo run (issue 21).

Training is deterministic and resumes bit for bit (``deepz_core.training.loop``), so the state of the
networks at the end of fine-tuning is a function of the run's inputs: the pretraining (its key,
``deepz_core.training.pretrained.PretrainKey``), the network, the whole TrainConfig (fine-tuning
schedule, batches, alpha, coadds, outliers, ensemble, seed), the catalogue's content and the features
built from it, the R x K splits, the input statistics, the device type, the torch and numpy versions
and ``FINETUNE_VERSION``. ``FinetuneKey`` hashes all of them, but for the last bits of the
floating-point content (catalogue, features, input statistics), which depend on the CPU that
simulated the catalogue: those are matched by their sums within a tolerance
(``training.fingerprints``), stored in the entry's JSON. What happens after fine-tuning (the
p(z) grid, the PIT calibration, predictions, anything a RunConfig gains later) is not in the key:
the run does it anew.

A shipped entry (``deepz_core/training/weights/<key>.safetensors`` + ``.json``, built by
``deepz pretrain-weights``) holds the model and RNG states of the run's last fine-tuning
checkpoint (no optimiser state: nothing trains after it) and the run's metrics rows (loss curves and
held-out NLL: the key fixes the catalogue and the splits, so they are this run's). A run whose key
matches restores it and goes on exactly as a resume from its own last fine-tuning epoch would: it
writes model.safetensors, predictions and calibration as if it had trained. Any other catalogue,
setting or seed misses the key and trains. Only shipped weights are looked up (no local cache of
fine-tuned runs); ``DEEPZ_PRETRAIN_CACHE=0`` turns the lookup off, ``DEEPZ_SHIPPED_WEIGHTS`` names
another folder (``pretrained.shipped_dir``).

Bump ``FINETUNE_VERSION`` when fine-tuning's arithmetic changes for the same inputs (the batches,
the loss, the optimiser, the order of random draws); the slow tests in
tests/training/test_finetuned.py catch a stale entry for the demo run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import Features
from deepz_core.device import cpu_arithmetic
from deepz_core.files import atomic_write, atomic_write_json
from deepz_core.rundir import RunDir, load_checkpoint, save_checkpoint
from deepz_core.training.config import TrainConfig
from deepz_core.training.fingerprints import Fingerprint, Sums, agree, fingerprint
from deepz_core.training.pretrained import cache_enabled, shipped_dir
from deepz_core.training.splits import Splits

FINETUNE_VERSION = 1  # bump when fine-tuning's arithmetic changes for the same inputs
KIND = "finetune"  # the shipped JSON's "kind": a fine-tuned entry, not a pretraining one
SHIPPED_BY = "deepz pretrain-weights"
UNSHIPPED = ("cached", "seconds")  # row fields left out: the builder's timings are no one else's


def catalog_fingerprint(cat: Catalog) -> Fingerprint:
    """Fingerprint of a catalogue's content (``training.fingerprints``): its columns
    (``Catalog.columns``), bands, flux zero-point and single exposures; not its file name, file
    format or header."""
    named: dict[str, Any] = {f"col.{k}": v for k, v in cat.columns().items()}
    named["bands"] = np.array(cat.bands)
    named["fluxzp"] = np.float64(cat.fluxzp)
    exp = cat.exposures
    for name in ("ref_id", "band", "exp_num", "flux", "flux_error"):
        named[f"exp.{name}"] = None if exp is None else getattr(exp, name)
    return fingerprint(named)


# Features fields the fingerprint leaves out: the screen's flags of the catalogue rows left out of
# the features (derived from the catalogue, fingerprinted apart; no network reads them)
NOT_FINGERPRINTED = ("row_flags",)


def features_fingerprint(features: Features) -> Fingerprint:
    """Fingerprint of every field of the features the networks train on (screen flags included;
    not ``NOT_FINGERPRINTED``)."""
    named = {
        f.name: np.asarray(getattr(features, f.name))
        if getattr(features, f.name) is not None
        else None
        for f in dataclasses.fields(features)
        if f.name not in NOT_FINGERPRINTED
    }
    return fingerprint(named)


def splits_digest(splits: Splits) -> str:
    """Digest of the R x K splits: which member trains on which galaxy, (E, N), and the labels."""
    named = {
        "train": splits.train,
        "labelled": splits.labelled,
        "shape": np.array([splits.repetitions, splits.folds]),
    }
    return fingerprint(named).digest  # no floats: exact


@dataclass(frozen=True)
class FinetuneKey:
    """Everything the end-of-fine-tuning state of a run depends on."""

    pretrain: str | None  # PretrainKey.digest() of the run's pretraining; None without one
    model: dict[str, Any]  # ModelConfig.to_dict(), n_inputs and members included
    train: TrainConfig
    bands: Sequence[str]
    ref_band: str
    catalog: Fingerprint  # catalog_fingerprint of the catalogue (and its exposures)
    features: Fingerprint  # features_fingerprint of what the networks read
    splits: str  # splits_digest
    input_stats: Fingerprint  # fingerprint of the model's input statistics
    device: str  # torch.device type: CPU and GPU arithmetic differ

    def sums(self) -> dict[str, Sums]:
        """The float sums of the key's fingerprints, matched with a tolerance, not hashed."""
        return {
            "catalog": self.catalog.sums,
            "features": self.features.sums,
            "input_stats": self.input_stats.sums,
        }

    def digest(self) -> str:
        # the device as asked ("auto", "cpu") is not the device used: its type is keyed instead
        """The cache key: a hash of everything the fine-tuned state depends on (library versions
        too)."""
        train = {k: v for k, v in self.train.to_dict().items() if k != "device"}
        blob = {
            "kind": KIND,
            "version": FINETUNE_VERSION,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "device": self.device,
            "pretrain": self.pretrain,
            "model": self.model,
            "train": train,
            "bands": list(self.bands),
            "ref_band": self.ref_band,
            "catalog": self.catalog.digest,
            "features": self.features.digest,
            "splits": self.splits,
            "input_stats": self.input_stats.digest,
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


def _paths(key: str, folder: Path) -> tuple[Path, Path]:
    return folder / f"{key}.safetensors", folder / f"{key}.json"


def _read(
    key: str, sums: Mapping[str, Sums]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The shipped entry ``key`` (tensors, JSON), or None when absent, damaged, not fine-tuned or
    built from content whose float sums do not agree with ``sums`` (``FinetuneKey.sums``)."""
    tensor_path, meta_path = _paths(key, shipped_dir())
    if not (tensor_path.exists() and meta_path.exists()):
        return None
    try:
        saved = json.loads(meta_path.read_text())
        tensors = load_file(str(tensor_path))
        ok = saved["kind"] == KIND and saved["meta"]["phase"] == "finetune"
        ok = ok and agree(sums, saved.get("sums"))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None  # a damaged entry costs a training, never a run
    return (tensors, saved) if ok else None


def restore(run: RunDir, key: str, sums: Mapping[str, Sums]) -> bool:
    """Give ``run`` the shipped end-of-fine-tuning checkpoint and metrics rows (marked
    ``cached``) of entry ``key`` (``FinetuneKey.digest``, its content's float ``sums`` within
    tolerance); False on a miss (or with the lookup off). The run then resumes from its last
    fine-tuning epoch: nothing is left to train."""
    entry = _read(key, sums) if cache_enabled() else None
    if entry is None:
        return False
    tensors, saved = entry
    # rows first, checkpoint last: a kill in between leaves no checkpoint, so the next call
    # restores again from a clean slate instead of resuming with the rows doubled
    run.truncate_metrics("pretrain", 0)
    for row in saved["metrics"]:
        run.append_metrics({**row, "cached": True})
    save_checkpoint(run, tensors, saved["meta"])
    run.log(
        f"fine-tuned networks restored from the shipped weights (key {key}, built by "
        f"`{SHIPPED_BY}`): this catalogue, these settings and this seed are the shipped demo "
        f"run's, so training here would give these very networks; any other catalogue, "
        f"settings or seed trains here"
    )
    return True


def ship(run: RunDir, key: str, folder: Path | str) -> Path:
    """Write ``run``'s end-of-fine-tuning checkpoint into ``folder`` as shipped entry ``key``:
    model and RNG states (no optimiser), the checkpoint's meta, the run's metrics rows without
    timings (the same bytes on every rebuild) and its key's float sums (the run's status,
    ``key_sums``); the tensor file's path. The run must have finished fine-tuning."""
    ckpt = load_checkpoint(run)
    config = run.config()
    epochs = sum(int(e) for e, _ in config["train"]["schedule"])
    if ckpt is None or ckpt[1]["phase"] != "finetune" or ckpt[1]["epoch"] != epochs:
        raise FileNotFoundError(f"{run.path}: no end-of-fine-tuning checkpoint to ship")
    tensors = {k: v for k, v in ckpt[0].items() if not k.startswith("opt.")}
    meta = {k: v for k, v in ckpt[1].items() if k != "tensors"}
    rows = [{k: v for k, v in r.items() if k not in UNSHIPPED} for r in run.metrics()]
    out, out_meta = _paths(key, Path(folder))
    atomic_write(out, lambda tmp: save_file(tensors, str(tmp)))
    doc = {
        "kind": KIND,
        "meta": meta,
        "metrics": rows,
        "pretrain_key": run.status().get("pretrain_key"),
        "saved_by": SHIPPED_BY,
        "sums": run.status().get("key_sums", {}).get("finetune"),
        "arithmetic": cpu_arithmetic(),  # the builder's kernels: its losses are theirs
    }
    atomic_write_json(out_meta, doc)
    return out
