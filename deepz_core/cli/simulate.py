"""Simulation commands: ``simulate`` (pretraining sets and mocks) and ``demo``."""

from __future__ import annotations

import argparse

from deepz_core.cli.common import add_overwrite, command, parse_bands, positive_int
from deepz_core.sed.bands import BAND_SETS


def _simulate_args(p: argparse.ArgumentParser) -> None:
    from deepz_core.simulate.cache import KINDS

    p.add_argument(
        "--kind",
        required=True,
        choices=KINDS,
        help="sps: E20 Table 1 SPS galaxies, noiseless, for pretraining; paus-mock: a "
        "PAUS-COSMOS-like catalogue with noise, spec-z and single exposures (also "
        "ztrue, log_mass, quiescent); templates: template-library galaxies "
        "(template-based pretraining); lsst-deep: an LSST-like deep ugrizy mock, "
        "iAB < 25, z < 3, coadds with 10-year depths, u non-detections, spec-z "
        "subsample (also ztrue, mag_true, log_mass, quiescent)",
    )
    p.add_argument("--n", type=positive_int, required=True, help="number of galaxies")
    p.add_argument(
        "--bands",
        default=None,
        help=f"band set ({', '.join(sorted(BAND_SETS))}) or comma-separated band "
        "names (default lsst for lsst-deep, else paus_cosmos: 40 narrow + 6 broad "
        "bands)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same catalogue)")
    p.add_argument(
        "--sed-family",
        default="sps",
        help="paus-mock only: where the galaxies' spectra come from: sps (default, the demo's: "
        "BC03 + Cloudy populations) or kcorrect (random non-negative combinations of kcorrect's 5 "
        "NMF templates, another SED family); same observation model and, for a seed, the same "
        "magnitudes, redshifts and spec-z selection",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output catalogue (.fits, .parquet, .csv, .h5); single exposures go "
        "to an 'exposures' HDU (FITS) or key (HDF5), or to a <stem>.exposures.* sidecar "
        "(Parquet, CSV)",
    )
    add_overwrite(p)


@command("simulate", _simulate_args)
def _simulate(args: argparse.Namespace) -> int:
    """Simulate an SPS or template pretraining set, or a PAUS-COSMOS-like or LSST-like deep mock."""
    from deepz_core.catalog.io import (
        SIDECAR_FORMATS,
        catalog_format,
        exposures_sidecar,
        write_catalog,
    )
    from deepz_core.files import check_outputs
    from deepz_core.simulate import simulate
    from deepz_core.simulate.cache import DEFAULT_BAND_SETS
    from deepz_core.simulate.families import check_family_for_kind

    family = check_family_for_kind(args.kind, args.sed_family, "--sed-family")
    fmt = catalog_format(args.out)  # a bad output name fails before the simulation runs
    side = exposures_sidecar(args.out) if fmt in SIDECAR_FORMATS else None
    outputs = {"--out": args.out, "--out (its exposures)": side}
    check_outputs(outputs, {}, args.overwrite)  # so does an existing file, a run folder
    bands = args.bands or DEFAULT_BAND_SETS.get(args.kind, "paus_cosmos")
    cat = simulate(args.kind, args.n, parse_bands(bands), args.seed, sed_family=family)
    write_catalog(cat, args.out, overwrite=True)  # checked above
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
