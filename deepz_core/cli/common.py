"""What every command module shares: the command registry and argument types."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from deepz_core.errors import ConfigError
from deepz_core.sed.bands import BAND_SETS, band_set, get_band

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
