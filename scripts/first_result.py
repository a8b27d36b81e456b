"""A newcomer's first result, timed: what `make run` and one click on "Queue training run" do, from
an empty cache and an empty app folder, until the run has finished (docs/benchmarks.md, "First
result").

Run it from the root of a fresh clone whose environment is installed (`make` once, or any venv with
the requirements)::

    OMP_WAIT_POLICY=PASSIVE python scripts/first_result.py

It makes a temporary DEEPZ_HOME and DEEPZ_CACHE_DIR (nothing cached: no demo mock, no SSP grids, no
simulation, no pretraining), runs `python -m deepz_core demo --quiet` as `make run` does, starts the
app (`streamlit run app/main.py`) as `make run` does, queues the demo run the Train page queues by
default (preset quick, pretraining 'auto', 1 x 5 networks, alpha 0.8, seed 0, device auto) through
the page's own `app.jobs.queue_run`, waits for the background worker to finish it, and prints one
JSON object: seconds per stage, whether the pretraining and the fine-tuned networks came from the
shipped weights or were trained here, the run's sigma68, and the machine's load average.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PAGE_DEFAULTS = {"alpha": 0.8, "repetitions": 1, "folds": 5, "device": "auto", "seed": 0}


def _wait(run, timeout: float) -> None:
    from deepz_core.jobs.status import run_state

    deadline = time.time() + timeout
    while run_state(run) in ("queued", "running") and time.time() < deadline:
        time.sleep(1.0)


def _sources(log: str) -> tuple[str, str]:
    """Where the run's pretraining and fine-tuned networks came from, by its log."""
    if "fine-tuned networks restored from the shipped weights" in log:
        return "shipped weights (with the fine-tuned networks)", "shipped weights"
    if "pretraining reused from the shipped weights" in log:
        return "shipped weights", "trained here"
    return (
        "cache" if "pretraining reused from the cache" in log else "trained here"
    ), "trained here"


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="deepz-first-"))
    env = {
        **os.environ,
        "DEEPZ_HOME": str(tmp / "home"),
        "DEEPZ_CACHE_DIR": str(tmp / "cache"),
        "DEEPZ_QUIET": "1",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update({k: env[k] for k in ("DEEPZ_HOME", "DEEPZ_CACHE_DIR", "DEEPZ_QUIET")})
    sys.path.insert(0, str(ROOT))
    t0 = time.time()
    demo = subprocess.run(
        [sys.executable, "-m", "deepz_core", "demo", "--quiet"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    t_demo = time.time()
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/main.py",
            "--server.headless",
            "true",
            "--server.port",
            "8599",
            "--browser.gatherUsageStats",
            "false",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from app import jobs

        run = jobs.queue_run(
            tmp / "home" / "runs",
            demo,
            "auto",
            "quick",
            {"use_autoencoder": True},
            dict(TRAIN_PAGE_DEFAULTS),
        )
        _wait(run, 4 * 3600)
    finally:
        server.terminate()
    t_end = time.time()
    status = run.status()
    rows = run.metrics()
    finetune = sum(
        r.get("seconds", 0.0) for r in rows if r.get("phase") == "finetune" and not r.get("cached")
    )
    pretrain = sum(
        r.get("seconds", 0.0) for r in rows if r.get("phase") == "pretrain" and not r.get("cached")
    )
    pretraining_from, finetuning_from = _sources(run.file("log.txt").read_text())
    out = {
        "total_s": round(t_end - t0, 1),
        "demo_s": round(t_demo - t0, 1),
        "queue_to_finished_s": round(t_end - t_demo, 1),
        "pretraining_s": round(pretrain, 1),
        "finetuning_s": round(finetune, 1),
        "pretraining_from": pretraining_from,
        "finetuning_from": finetuning_from,
        "state": status.get("state"),
        "sigma68": status.get("summary", {}).get("sigma68"),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out))
    return 0 if status.get("state") == "finished" else 1


if __name__ == "__main__":
    raise SystemExit(main())
