"""Command line: ``deepz <command> ...`` or ``python -m deepz_core <command> ...`` (see ``--help``
of each command).

Every command maps its arguments onto a config and calls the core; user errors print one line.
The command modules below register their commands when imported, here and only here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from deepz_core.cli import bench, experiments, jobs, simulate, templates, train  # noqa: F401
from deepz_core.cli.common import COMMANDS
from deepz_core.errors import DeepzError
from deepz_core.memory import tune_malloc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, func) in COMMANDS.items():
        p = sub.add_parser(name, help=(func.__doc__ or "").strip().split("\n")[0] or None)
        add_arguments(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()  # reuse freed MB-sized blocks instead of page-faulting new ones (memory.py)
    try:
        return args.func(args)
    except DeepzError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; try a smaller --batch-size or chunk size", file=sys.stderr)
        return 2
