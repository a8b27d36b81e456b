"""Benchmark commands (registered with ``deepz_core.cli.common.command``); each prints one JSON object."""

from __future__ import annotations

import argparse
import json

from deepz_core.cli.common import command


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N")
    p.add_argument("--galaxies", type=int, default=8000, help="training galaxies per epoch")
    p.add_argument("--batch-size", type=int, default=100, help="training batch size (E20: 100)")
    p.add_argument(
        "--protocol",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time an epoch of the paper's 50-network protocol (default: on CUDA)",
    )


@command("bench", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    """Time paper-size networks: inference (1 and 10 members) and 10-member epochs batched vs sequential."""
    from deepz_core.bench.networks import run_bench

    print(
        json.dumps(run_bench(args.device, args.galaxies, args.batch_size, protocol=args.protocol))
    )
    return 0


def _bench_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-sps", type=int, default=20_000)
    p.add_argument("--n-mock", type=int, default=10_000)


@command("bench-sim", _bench_sim_args)
def _bench_sim(args: argparse.Namespace) -> int:
    """Time the SPS simulation (after set-up) and the demo-size PAUS mock."""
    from deepz_core.bench.networks import run_bench_sim

    print(json.dumps(run_bench_sim(args.n_sps, args.n_mock)))
    return 0


def _bench_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=100_000, help="galaxies (the issue's figure: 10000000)")
    p.add_argument(
        "--unique",
        type=int,
        default=0,
        help="distinct simulated galaxies, re-observed to fill n rows (0: min(n, 100000))",
    )
    p.add_argument("--chunk-sizes", default="25000,100000", help="partition sizes, comma-separated")
    p.add_argument(
        "--threads", default="1,2", help="torch threads of single-process runs ('': none)"
    )
    p.add_argument("--workers", default="1,2", help="--dask local:W sizes ('': none)")
    p.add_argument("--model-preset", default="smoke", help="network size: smoke, quick or paper")
    p.add_argument("--members", type=int, default=1, help="ensemble members of the trained network")
    p.add_argument("--run", help="an existing run folder instead of a briefly trained network")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", help="catalogue, run and output folder (default: the deepz cache)")


@command("bench-stream", _bench_stream_args)
def _bench_stream(args: argparse.Namespace) -> int:
    """Time survey-scale prediction end to end: single process vs Dask, per partition size."""
    from deepz_core.bench.streaming import StreamBench, parse_ints, run_stream_bench

    cfg = StreamBench(
        n=args.n,
        unique=args.unique,
        preset=args.model_preset,
        members=args.members,
        chunk_sizes=parse_ints(args.chunk_sizes, "--chunk-sizes"),
        threads=parse_ints(args.threads, "--threads"),
        workers=parse_ints(args.workers, "--workers"),
        run=args.run,
        seed=args.seed,
        work_dir=args.work_dir,
    )
    print(json.dumps(run_stream_bench(cfg)))
    return 0
