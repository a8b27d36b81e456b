"""Fixed holdout split of a deepz catalogue for the peer benchmark (issue 23, sec. 4).

Only galaxies with a finite spec-z take part: a seeded permutation puts ``test_fraction`` of them
(rounded) in test.fits and the rest in train.fits; galaxies without a spec-z are left out of both
(deepz, FlexZBoost and the baseline all fine-tune on spec-z only). Both files keep the input's
header (FLUXZP, ...) and every column, and the EXPOSURES rows of their galaxies; rows keep the
input order within each file. split.json records the seed, the fraction, and the input row
indices (0-based) and ref_id of each side, so the same split can be rebuilt or checked.

Usage (any Python with numpy and astropy), from the repository root:

    python scripts/peers/split.py --catalog CAT.fits --out-dir bench-peers/real --seed 23
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from catalog_fits import FitsCatalog, atomic_write_text, read_catalog, subset, write_catalog
from numpy.typing import NDArray

DEFAULT_SEED = 23
DEFAULT_TEST_FRACTION = 0.2


def split_rows(zspec: NDArray, seed: int, test_fraction: float) -> tuple[NDArray, NDArray]:
    """Sorted row indices (train, test) of the galaxies with finite zspec (N,).

    ``test_fraction`` in (0, 1); the permutation is numpy's default_rng(seed).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rows = np.flatnonzero(np.isfinite(zspec))
    if rows.size < 2:
        raise ValueError(f"need >= 2 galaxies with a finite zspec, got {rows.size}")
    perm = np.random.default_rng(seed).permutation(rows)
    n_test = min(max(int(round(test_fraction * rows.size)), 1), rows.size - 1)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def write_split(
    cat: FitsCatalog, out_dir: Path, seed: int, test_fraction: float
) -> dict[str, object]:
    """Write train.fits, test.fits and split.json into ``out_dir``; returns the split record."""
    if "zspec" not in cat.galaxies.columns.names:
        raise ValueError("the catalogue has no zspec column: nothing to split on")
    train, test = split_rows(cat.column("zspec"), seed, test_fraction)
    ref_id = np.asarray(cat.galaxies.data["ref_id"], dtype=np.int64)
    if np.unique(ref_id).size != ref_id.size:
        raise ValueError("ref_id is not unique: the split could not be matched back")
    write_catalog(subset(cat, train), out_dir / "train.fits")
    write_catalog(subset(cat, test), out_dir / "test.fits")
    record = {
        "seed": seed,
        "test_fraction": test_fraction,
        "n_catalog": int(ref_id.size),
        "n_train": int(train.size),
        "n_test": int(test.size),
        "train_rows": train.tolist(),
        "test_rows": test.tolist(),
        "train_ref_id": ref_id[train].tolist(),
        "test_ref_id": ref_id[test].tolist(),
    }
    atomic_write_text(out_dir / "split.json", json.dumps(record) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    """CLI: --catalog FILE --out-dir DIR [--seed S] [--test-fraction F]."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", type=Path, required=True, help="deepz FITS catalogue")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION)
    args = p.parse_args(argv)
    record = write_split(read_catalog(args.catalog), args.out_dir, args.seed, args.test_fraction)
    print(f"{args.out_dir}: train {record['n_train']}, test {record['n_test']} (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
