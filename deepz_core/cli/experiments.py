"""``python -m deepz_core experiments --preset quick|paper --out DIR`` (registered into the CLI)."""

from __future__ import annotations

import argparse

from deepz_core.cli.common import command
from deepz_core.experiments.plan import PLANS


def _experiments_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        required=True,
        choices=sorted(PLANS),
        help="quick: CPU, about three hours on 2 cores, the report filling in as it goes; "
        "paper: E20 protocol (GPU); "
        "smoke: minutes, checks the pipeline only",
    )
    p.add_argument(
        "--out", required=True, help="output folder (re-running resumes and reuses runs)"
    )
    p.add_argument("--catalog", default=None, help="catalogue (default: the demo mock)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N")


@command("experiments", _experiments_args)
def _experiments(args: argparse.Namespace) -> int:
    """Reproduce the paper's experiments on the demo mock: report.md, results.json, figures/."""
    from deepz_core.experiments.runner import run_experiments
    from deepz_core.files import check_outputs

    check_outputs({"--out": args.out}, {}, resumable=True)  # never inside a run folder
    results = run_experiments(args.preset, args.out, args.catalog, args.device)
    met = sum(t["met"] for t in results["targets"])
    print(
        f"wrote {args.out}/report.md and results.json: {met}/{len(results['targets'])} targets met"
    )
    return 0
