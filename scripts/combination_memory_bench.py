"""Time and peak memory of fitting a run's combination with the template fit (``fit_hybrid``, what
``deepz combine`` and ``train --templates`` run) on its training catalogue, optionally with more galaxies of the same survey appended (docs/benchmarks.md,
"The combination's memory").

Copies the run folder (the original is not touched) and fits the combination there, printing the
seconds and the process's resident memory at each step of the training log and its peak at the end.
``--extra N`` appends N galaxies simulated with the run's mock kind and seed (the same survey: the
same zero-points) under new ref_ids, galaxies table only (the training catalogue's exposures are
then left out for all: the template fit uses the coadds), so that the combination fits a training
catalogue N galaxies larger with the same out-of-fold galaxies.

    OMP_WAIT_POLICY=PASSIVE DEEPZ_QUIET=1 python scripts/combination_memory_bench.py --run RUN [--extra 30000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

NEW_IDS = 10**12  # added to the appended galaxies' ref_ids


def rss_mb() -> int:
    """The process's resident memory now (MB, Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() >> 20


def peak_mb() -> int:
    """The process's peak resident memory so far (MB, Linux: ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def catalogue(run: Path, extra: int, kind: str, seed: int):
    """The run's training catalogue, with ``extra`` simulated galaxies appended (then without
    exposures)."""
    from astropy.table import vstack

    import deepz_core as dz
    from deepz_core.catalog.catalog import Catalog
    from deepz_core.catalog.io import read_catalog

    config = json.loads((run / "config.json").read_text())
    cat = read_catalog(config["catalog"], config.get("exposures"))
    if not extra:
        return cat
    more = dz.simulate_catalog(kind, extra, cat.bands, seed=seed).to_table()
    more["ref_id"] = more["ref_id"] + NEW_IDS
    table = vstack([cat.to_table(), more], metadata_conflicts="silent")
    return Catalog.from_table(table, source="benchmark catalogue")


def main() -> None:
    from deepz_core.hybrid.runs import fit_hybrid

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a finished run folder")
    p.add_argument("--templates", default="bcnz2", help="template set (default bcnz2)")
    p.add_argument("--extra", type=int, default=0, help="galaxies appended (default 0)")
    p.add_argument("--kind", default="paus-mock", help="mock kind of the appended galaxies")
    p.add_argument("--seed", type=int, default=42, help="seed (survey) of the appended galaxies")
    args = p.parse_args()
    cat = catalogue(args.run, args.extra, args.kind, args.seed)
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f} s, {rss_mb()} MB] {message[:100]}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(args.run, Path(tmp) / "run"))
        for name in ("hybrid.json", "hybrid_predictions.fits"):
            (copy / name).unlink(missing_ok=True)
        fit_hybrid(copy, args.templates, catalog=cat, log=log)
    print(
        f"{cat.n_galaxies} galaxies: {time.monotonic() - start:.0f} s, peak resident memory "
        f"{peak_mb()} MB (this process; the template fit's worker processes not counted)"
    )


if __name__ == "__main__":
    main()
