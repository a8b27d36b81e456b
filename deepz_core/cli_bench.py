"""Benchmark commands (registered into ``deepz_core.cli``); each prints one JSON object."""

from __future__ import annotations

import argparse
import json

from deepz_core.cli import command


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N")
    p.add_argument("--galaxies", type=int, default=8000, help="training galaxies per epoch")
    p.add_argument("--batch-size", type=int, default=100, help="training batch size (E20: 100)")


@command("bench", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    """Time paper-size networks: inference (1 and 10 members) and 10-member epochs batched vs sequential."""
    from deepz_core.bench import run_bench

    print(json.dumps(run_bench(args.device, args.galaxies, args.batch_size)))
    return 0


def _bench_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-sps", type=int, default=20_000)
    p.add_argument("--n-mock", type=int, default=10_000)


@command("bench-sim", _bench_sim_args)
def _bench_sim(args: argparse.Namespace) -> int:
    """Time the SPS simulation (after set-up) and the demo-size PAUS mock."""
    from deepz_core.bench import run_bench_sim

    print(json.dumps(run_bench_sim(args.n_sps, args.n_mock)))
    return 0
