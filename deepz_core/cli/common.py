"""What every command module shares: the command registry and argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from deepz_core.errors import ConfigError
from deepz_core.sed.bands import BAND_SETS, band_set, get_band

if TYPE_CHECKING:
    from deepz_core.catalog.conventions import InputConventions

Command = Callable[[argparse.Namespace], int]


COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


INTERNAL: set[str] = set()  # commands the app and the job queue run, hidden from deepz --help


def command(
    name: str, add_arguments: Callable[[argparse.ArgumentParser], None], internal: bool = False
) -> Callable[[Command], Command]:
    """A decorator registering its function as the sub-command ``name`` with its argument
    definitions ``add_arguments``; ``internal``: run by the app and the job queue, not a user
    (runnable, but left out of ``deepz --help``: ``INTERNAL``)."""

    def register(func: Command) -> Command:
        COMMANDS[name] = (add_arguments, func)
        if internal:
            INTERNAL.add(name)
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


def add_overwrite(p: argparse.ArgumentParser, more: str = "") -> None:
    """The ``--overwrite`` flag of a command that writes a user-named ``--out``: without it an
    existing output is refused (``files.check_outputs``); inputs and run folders never are.
    ``more``: what else it means for this command, appended to the help."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (never an input of the command, nor a file in a run "
        f"folder){more}",
    )


def add_convention_args(p: argparse.ArgumentParser) -> None:
    """--id-column, --mag-limits, --limit-nsigma, --rename and --flux-unit: how a survey
    catalogue is read (``conventions_from_args``), the same in every command that reads one."""
    p.add_argument(
        "--id-column",
        help="the identifier column (default: ref_id, else objectId, object_id or id)",
    )
    p.add_argument(
        "--mag-limits",
        default="",
        help="limiting AB magnitudes of non-detections in magnitude catalogues (mag_<band> = 99), "
        "as BAND=MAG,...; a maglim_<band> column wins where finite",
    )
    p.add_argument(
        "--limit-nsigma",
        type=float,
        default=1.0,
        help="the limits are N-sigma fluxes (default 1; 5 for 5-sigma depths)",
    )
    p.add_argument(
        "--rename",
        default="",
        help="survey column names as deepz's, {b} standing for the band: PATTERN=NAME,... e.g. "
        "'{b}_cModelFlux=flux_lsst_{b},{b}_cModelFluxErr=flux_error_lsst_{b}' (LSST DP0) or "
        "'modelMag_{b}=mag_{b}_sdss,modelMagErr_{b}=magerr_{b}_sdss' (SDSS)",
    )
    p.add_argument(
        "--flux-unit",
        help="unit of the flux columns when the file declares none (CSV, Parquet without unit "
        "metadata): nJy (LSST), uJy (default), mJy, Jy, nanomaggy, maggy",
    )


def conventions_from_args(args: argparse.Namespace) -> InputConventions:
    """The InputConventions of --id-column, --mag-limits, --limit-nsigma, --rename and
    --flux-unit."""
    from deepz_core.catalog.conventions import InputConventions

    limits = {}
    for item in (t.strip() for t in args.mag_limits.split(",")):
        band, sep, value = item.partition("=")
        if item and (not sep or not band.strip()):
            raise ConfigError(f"--mag-limits: expected BAND=MAG, got {item!r}")
        if item:
            try:
                limits[band.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"--mag-limits: {item!r} has no number after '='") from None
    rename = {}
    for item in (t.strip() for t in args.rename.split(",")):
        pattern, sep, name = item.partition("=")
        if item and (not sep or not pattern.strip() or not name.strip()):
            raise ConfigError(f"--rename: expected PATTERN=NAME, got {item!r}")
        if item:
            rename[pattern.strip()] = name.strip()
    try:
        return InputConventions(
            id_column=args.id_column,
            mag_limits=limits,
            limit_nsigma=args.limit_nsigma,
            flux_unit=args.flux_unit,
            rename=rename,
        )
    except ConfigError as err:
        raise ConfigError(str(err).replace("flux_unit:", "--flux-unit:", 1)) from None
