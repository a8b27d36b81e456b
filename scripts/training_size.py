"""What limits the networks' bright-end precision (docs/benchmarks.md, per galaxy type)?

1. The number of training galaxies: fine-tunes the ``quick`` experiments plan's default
   configuration (SPS pretraining reused from the cache, alpha 0.8, 2 repetitions x 5 folds) on a
   PAUS-like mock 4x the demo's size.
2. The MDN's sigma floor (1e-3): the plan's no-pretraining configuration with a floor of 1e-4.
3. The network size: the same without pretraining, with the paper-size networks (E20 Fig. 1).
4. The fine-tuning schedule: the same without pretraining, with the paper's 700 epochs; and the
   plan's default configuration (SPS pretraining, reused from the cache) with them.

Prints the ensembles' out-of-fold sigma68 per iAB bin and per galaxy type next to the runs of the
experiments. Run from the repository root after ``experiments --preset quick --out experiments/quick``:

    DEEPZ_QUIET=1 python scripts/training_size.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import read_catalog
from deepz_core.experiments.plan import plan
from deepz_core.experiments.scoring import by_type, read_scored
from deepz_core.experiments.trained import train_run
from deepz_core.nets.deepz import ModelConfig
from deepz_core.pz import metrics
from deepz_core.sed.bands import band_set
from deepz_core.simulate import cached_simulation
from deepz_core.training.config import TrainConfig

MAG_EDGES = np.array([10.0, 19.0, 20.0, 21.0, 21.5, 22.0, 22.5])
# ModelConfig's defaults are E20's network; the quick preset overrides these five
PAPER_NETWORK = {
    name: getattr(ModelConfig(), name)
    for name in ("width", "encoder_layers", "decoder_layers", "photoz_layers", "photoz_first_width")
}
PAPER_SCHEDULE = TrainConfig().schedule


def report(label: str, predictions: Path, cat: Catalog) -> None:
    mag_of = dict(zip(cat.ref_id.tolist(), cat.mag.tolist(), strict=True))
    s = read_scored(predictions, mag_of)
    print(f"{label}: {s.n} galaxies, sigma68 {metrics.sigma68(metrics.dz(s.zp, s.zs)):.4f}")
    for row in s.per_magnitude(MAG_EDGES):
        print(
            f"  iAB {row['lo']:g}-{row['hi']:g}: N {row['n']}, sigma68 {row['sigma68']:.4f}, "
            f"strict outliers {100 * row['outlier_fraction']:.1f}%"
        )
    for kind, scores in by_type(cat, {label: s})[label].items():
        print(
            f"  {kind} (i < 20, 20-21, >= 21):",
            ", ".join(f"{r['sigma68']:.4f} (N {r['n']})" for r in scores["by_magnitude"]),
        )


def main() -> None:
    quick = plan("quick")
    bands = band_set("paus_cosmos")
    big = cached_simulation("paus-mock", 40_000, bands, 42)
    run = train_run(Path("experiments/size"), "n40000", big, quick, "auto", {"device": "cpu"})
    report("4x the demo (40,000 galaxies)", run.file("predictions.fits"), read_catalog(big))
    demo_path = cached_simulation("paus-mock", 10_000, bands, 42)
    demo = read_catalog(demo_path)
    report(
        "demo (10,000 galaxies)",
        Path("experiments/quick/runs/alpha0.80_keep/predictions.fits"),
        demo,
    )
    floor = train_run(
        Path("experiments/size"),
        "no_pretrain_floor1e-4",
        demo_path,
        quick,
        "none",
        {"device": "cpu"},
        {"sigma_floor": 1e-4},
    )
    report("demo, no pretraining, sigma floor 1e-4", floor.file("predictions.fits"), demo)
    report(
        "demo, no pretraining, sigma floor 1e-3",
        Path("experiments/quick/runs/no_pretrain/predictions.fits"),
        demo,
    )
    paper_net = train_run(
        Path("experiments/size"),
        "no_pretrain_paper_net",
        demo_path,
        quick,
        "none",
        {"device": "cpu"},
        PAPER_NETWORK,
    )
    report("demo, no pretraining, paper-size networks", paper_net.file("predictions.fits"), demo)
    long = train_run(
        Path("experiments/size"),
        "no_pretrain_paper_schedule",
        demo_path,
        quick,
        "none",
        {"device": "cpu", "schedule": PAPER_SCHEDULE},
    )
    report("demo, no pretraining, paper schedule", long.file("predictions.fits"), demo)
    pretrained = train_run(
        Path("experiments/size"),
        "paper_schedule",
        demo_path,
        quick,
        "auto",
        {"device": "cpu", "schedule": PAPER_SCHEDULE},
    )
    report("demo, SPS pretraining, paper schedule", pretrained.file("predictions.fits"), demo)


if __name__ == "__main__":
    main()
