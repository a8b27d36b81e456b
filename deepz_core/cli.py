"""Command line: ``python -m deepz_core <command> ...`` (see ``--help`` of each command).

Every command maps its arguments onto a config and calls the core; user errors print one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from deepz_core.bands import BAND_SETS, band_set, get_band
from deepz_core.errors import ConfigError, DeepzError
from deepz_core.memory import tune_malloc

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register ``func`` as the sub-command ``name`` with its argument definitions."""

    def register(func: Command) -> Command:
        COMMANDS[name] = (add_arguments, func)
        return func

    return register


def parse_bands(text: str) -> tuple[str, ...]:
    """A band-set name (e.g. ``paus_cosmos``) or a comma-separated list of band names."""
    if text in BAND_SETS:
        return band_set(text)
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    if not names:
        raise ConfigError(
            f"--bands must name a band set {sorted(BAND_SETS)} or bands, got {text!r}"
        )
    for name in names:
        get_band(name)  # raises a ConfigError naming the unknown band
    return names


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the flag is named in argparse's message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _simulate_args(p: argparse.ArgumentParser) -> None:
    from deepz_core.simulate.cache import KINDS

    p.add_argument("--kind", required=True, choices=KINDS,
                   help="sps: E20 Table 1 SPS galaxies, noiseless, for pretraining; paus-mock: a "
                   "PAUS-COSMOS-like catalogue with noise, spec-z and single exposures (also "
                   "ztrue, log_mass, quiescent); templates: template-library galaxies "
                   "(template-based pretraining); lsst-deep: an LSST-like deep ugrizy mock, "
                   "iAB < 25, z < 3, coadds with 10-year depths, u non-detections, spec-z "
                   "subsample (also ztrue, mag_true, log_mass, quiescent)")  # fmt: skip
    p.add_argument("--n", type=positive_int, required=True, help="number of galaxies")
    p.add_argument("--bands", default=None,
                   help=f"band set ({', '.join(sorted(BAND_SETS))}) or comma-separated band "
                   "names (default lsst for lsst-deep, else paus_cosmos: 40 narrow + 6 broad "
                   "bands)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same catalogue)")
    p.add_argument("--out", required=True,
                   help="output catalogue (.fits, .parquet, .csv, .h5); single exposures go "
                   "to an 'exposures' HDU (FITS) or key (HDF5), or to a <stem>.exposures.* sidecar "
                   "(Parquet, CSV)")  # fmt: skip


@command("simulate", _simulate_args)
def _simulate(args: argparse.Namespace) -> int:
    """Simulate an SPS or template pretraining set, or a PAUS-COSMOS-like or LSST-like deep mock."""
    from deepz_core.catalog_io import catalog_format, write_catalog
    from deepz_core.simulate import simulate
    from deepz_core.simulate.cache import DEFAULT_BAND_SETS

    catalog_format(args.out)  # a bad output name fails before the simulation runs
    bands = args.bands or DEFAULT_BAND_SETS.get(args.kind, "paus_cosmos")
    cat = simulate(args.kind, args.n, parse_bands(bands), args.seed)
    write_catalog(cat, args.out)
    print(f"wrote {cat.n_galaxies} galaxies x {len(cat.bands)} bands to {args.out}")
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print only the path")


@command("demo", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    """Make sure the cached demo catalogue exists and print its path."""
    from deepz_core.simulate import demo_catalog_path

    path = demo_catalog_path()
    print(path if args.quiet else f"demo catalogue ready: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deepz_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, func) in COMMANDS.items():
        p = sub.add_parser(name, help=(func.__doc__ or "").strip().split("\n")[0] or None)
        add_arguments(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _load_commands()
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


def _load_commands() -> None:
    """Import the modules that register further commands (training, inference, benchmarks)."""
    import importlib

    for module in ("deepz_core.cli_train", "deepz_core.cli_bench", "deepz_core.worker",
                   "deepz_core.experiments.cli", "deepz_core.cli_templates"):  # fmt: skip
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
