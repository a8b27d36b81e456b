"""deepz as an installed package: a wheel in a fresh virtual environment outside the checkout gives
the ``deepz`` command and the public API, and a Dask scheduler + worker started in other folders
(as a Slurm job would) run ``deepz predict --dask tcp://...`` (issue 24)."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

API_EXAMPLE = """
import deepz_core as dz
cat = dz.simulate_catalog("lsst-deep", 300, seed=2)
dz.write_catalog(cat, "cat.fits")
run = dz.train(cat, "run", preset="smoke", pretrain="none", device="cpu")
pz = run.predict("cat.fits")
report = dz.evaluate(pz)
again = dz.load_run("run")
print(dz.__file__)
print(run.state, len(pz), report["overall"]["n"] > 0, again.config.preset)
"""


def _env() -> dict[str, str]:
    """The environment without the checkout on PYTHONPATH and without deepz's caches sharing."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "DEEPZ_QUIET": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding only the deepz wheel (its dependencies come from the test's own
    environment through a .pth file, so nothing is downloaded); returns its bin folder."""
    tmp = tmp_path_factory.mktemp("install")
    src, wheels = tmp / "src", tmp / "wheels"  # a copy: building writes build/ into the source
    for package in ("deepz_core", "rail"):  # rail: the RAIL stages (a namespace package)
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    run = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*run, "-w", str(wheels), str(src)], check=True, env=_env(), cwd=tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = next((venv / "lib").glob("python3.*")) / "site-packages"
    (purelib / "deps.pth").write_text(site.getsitepackages()[0] + "\n")
    wheel = next(wheels.glob("deepz-*.whl"))
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    subprocess.run([*pip, "--quiet", "--no-deps", str(wheel)], check=True, env=_env(), cwd=tmp)
    return venv / "bin"


def test_the_deepz_command_and_the_api_work_outside_the_checkout(fresh, tmp_path) -> None:
    help_text = subprocess.run(
        [str(fresh / "deepz"), "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=True,
    ).stdout
    assert "usage: deepz" in help_text and "predict" in help_text
    out = subprocess.run(
        [str(fresh / "python"), "-c", API_EXAMPLE],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        check=True,
    ).stdout.splitlines()
    assert str(fresh.parent) in out[-2] and str(ROOT) not in out[-2]  # the installed copy
    assert out[-1] == "finished 300 True smoke"


def test_the_installed_package_ships_its_license_and_data(fresh) -> None:
    """Review, tenth session: the wheel declared GPL-3.0-or-later but shipped no license text."""
    site_packages = next((fresh.parent / "lib").glob("python3.*")) / "site-packages"
    info = next(site_packages.glob("deepz-*.dist-info"))
    assert "GNU GENERAL PUBLIC LICENSE" in (info / "licenses" / "LICENSE").read_text()
    assert "License-Expression: GPL-3.0-or-later" in (info / "METADATA").read_text()
    weights = site_packages / "deepz_core" / "training" / "weights"
    assert list(weights.glob("*.safetensors")) and list(weights.glob("*.json"))


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(args, cwd=cwd, env=_env(), stdout=fh, stderr=subprocess.STDOUT)


def _address(scheduler_file: Path, timeout: float = 60.0) -> str:
    end = time.time() + timeout
    while time.time() < end:
        if scheduler_file.exists() and scheduler_file.stat().st_size:
            return json.loads(scheduler_file.read_text())["address"]
        time.sleep(0.2)
    raise AssertionError("the Dask scheduler did not start")


def test_a_remote_dask_worker_predicts_with_the_installed_package(fresh, tmp_path) -> None:
    work = tmp_path / "user"
    work.mkdir()
    subprocess.run(
        [str(fresh / "python"), "-c", API_EXAMPLE],
        env=_env(),
        cwd=work,
        check=True,
        capture_output=True,
    )
    sched_dir, worker_dir = tmp_path / "scheduler", tmp_path / "worker"
    sched_dir.mkdir(), worker_dir.mkdir()
    sched_file = sched_dir / "scheduler.json"
    python = str(fresh / "python")
    scheduler = _start(
        [
            python,
            "-m",
            "distributed.cli.dask_scheduler",
            "--port",
            "0",
            "--scheduler-file",
            str(sched_file),
            "--no-dashboard",
        ],
        sched_dir,
        tmp_path / "scheduler.log",
    )
    worker = None
    try:
        address = _address(sched_file)
        worker = _start(
            [
                python,
                "-m",
                "distributed.cli.dask_worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--local-directory",
                str(worker_dir),
            ],
            worker_dir,
            tmp_path / "worker.log",
        )
        done = subprocess.run(
            [
                str(fresh / "deepz"),
                "predict",
                "--run",
                str(work / "run"),
                "--catalog",
                str(work / "cat.fits"),
                "--out",
                "pz",
                "--dask",
                address,
                "--chunk-size",
                "100",
            ],
            env=_env(),
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    table = pq.read_table(work / "pz")
    assert table.num_rows == 300 and (work / "pz" / "_SUCCESS").exists()
    assert np.isfinite(table["zphot"].to_numpy()).any()


RAIL_DISCOVERY = """
import rail.stages
from rail.core.stage import RailStage
rail.stages.import_and_attach_all(silent=True)
import rail.estimation.algos.deepz as stages
print(stages.__file__)
print(sorted(n for n in RailStage.pipeline_stages if n.startswith("Deepz")))
"""


def test_rail_finds_the_installed_stages(fresh, tmp_path) -> None:
    """The wheel ships the RAIL stages into RAIL's namespace package (issue 20)."""
    command = [str(fresh / "python"), "-c", RAIL_DISCOVERY]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    assert str(fresh.parent) in out[-2] and str(ROOT) not in out[-2]
    assert out[-1] == "['DeepzEstimator', 'DeepzInformer']"


def test_the_declared_numpy_floor_has_the_numpy_functions_deepz_calls() -> None:
    """Review, tenth session: pyproject allowed numpy 1.26, where np.trapezoid (dz.stacked_nz,
    tomographic_bins) does not exist."""
    import re
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(d for d in deps if d.startswith("numpy"))
    major = int(re.search(r">=(\d+)", floor).group(1))
    uses_numpy2 = any("np.trapezoid" in p.read_text() for p in (ROOT / "deepz_core").rglob("*.py"))
    assert major >= 2 or not uses_numpy2, floor
