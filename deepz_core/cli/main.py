"""Command line: ``deepz <command> ...`` or ``python -m deepz_core <command> ...`` (see ``--help``
of each command).

Every command maps its arguments onto a config and calls the core; user errors print one line.
The command modules below register their commands when imported, here and only here.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from deepz_core.cli import bench, experiments, jobs, simulate, templates, train  # noqa: F401
from deepz_core.cli.common import COMMANDS, INTERNAL
from deepz_core.errors import DeepzError, Terminated
from deepz_core.memory import tune_malloc

DESCRIPTION = (
    "deepz: deep-learning photometric redshifts (DEEPZ, Eriksen et al. 2020). "
    "`deepz <command> --help` describes each command; errors print one line and exit 2."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``deepz`` argument parser: ``--version`` and one sub-command per registered command
    (the ``INTERNAL`` ones runnable but not listed)."""
    from deepz_core.inference.provenance import deepz_version

    parser = argparse.ArgumentParser(prog="deepz", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"deepz {deepz_version()}")
    public = [name for name in COMMANDS if name not in INTERNAL]
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(public) + "}")
    for name, (add_arguments, func) in COMMANDS.items():
        doc = " ".join((func.__doc__ or "").split())
        listed = {} if name in INTERNAL else {"help": summary(doc) or None}  # no help: not listed
        p = sub.add_parser(name, description=doc or None, **listed)
        add_arguments(p)
        p.set_defaults(func=func)
    return parser


def summary(doc: str) -> str:
    """A command's line in ``deepz --help``: its docstring ``doc`` (one line) up to its first
    '. ' or ': ' outside parentheses (not its first source line, which stopped mid-list:
    'zmedian, z_lo68, z_hi68,'); the whole docstring is the command's own --help."""
    depth = 0
    for i, char in enumerate(doc):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char in ".:" and doc[i + 1 : i + 2] in ("", " "):
            return doc[:i]
    return doc.rstrip(".")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user error (bad input, a file the system refuses, a folder in use)
    prints one line and returns 2, SIGTERM stops it cleanly (143), Ctrl-C 130."""
    args = build_parser().parse_args(argv)
    tune_malloc()  # reuse freed MB-sized blocks instead of page-faulting new ones (memory.py)
    try:
        with sigterm_raises():
            return args.func(args)
    except DeepzError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a folder without write permission, a full disk, a file for a folder
        return _fail(os_error_text(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except MemoryError:
        return _fail("out of memory; try a smaller --batch-size or chunk size")


def _fail(message: str) -> int:
    """Print ``error: <first line of message>`` and return exit code 2."""
    line = (message.strip().splitlines() or [""])[0]
    print(f"error: {line}", file=sys.stderr)
    return 2


def os_error_text(exc: OSError) -> str:
    """``cannot write /x/out.fits: Permission denied`` from an OSError (files named, no class)."""
    files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    reason = exc.strerror or str(exc)
    return f"{' -> '.join(files)}: {reason}" if files else reason


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated in the main thread: a run records a clean
    status (cancelled, resumable) and its locks are released, instead of dying mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(f"received signal {signum} (pid {os.getpid()})")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
