"""CPU time of each app page's script run, cold and warm (docs/benchmarks.md, "App page times").

Each page runs headless (streamlit's AppTest) in a fresh process on the app home ``--home``
(DEEPZ_HOME). "main" is app/main.py (the Overview) from nothing: the app's first load, imports
included. Any other page runs after ``import app.state`` (what main.py imported already): its
first run is a user switching to it (its own imports, its caches filled: cold), the second a
user coming back to it (warm caches). CPU seconds of the
whole process (``time.process_time``: all threads, not wall time on a busy machine). With
``--profile DIR`` each run's script thread is profiled into DIR/<page>.<cold|warm>.prof.

    PYTHONPATH=$PWD python scripts/page_times.py --home /tmp/speedhome [--pages results explorer]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("main", "home", "data", "simulate", "train", "results", "explorer", "dropping", "cuts",
         "predict")  # fmt: skip


def one(page: str, profile: str | None) -> dict:
    """Run ``page`` twice in this process; CPU seconds of each run."""
    import cProfile

    from streamlit.testing.v1 import AppTest
    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    label = {"cold": None}
    if profile:
        original = LocalScriptRunner._run_script_thread

        def profiled(self) -> None:
            prof = cProfile.Profile()
            prof.runcall(original, self)
            prof.dump_stats(Path(profile) / f"{page}.{label['cold']}.prof")

        LocalScriptRunner._run_script_thread = profiled
    if page != "main":
        import app.state  # noqa: F401 (imported by main.py before any page runs)
    path = ROOT / ("app/main.py" if page == "main" else f"pages/{page}.py")
    at = AppTest.from_file(str(path), default_timeout=600)
    out = {}
    for run in ("cold", "warm"):
        label["cold"] = run
        start = time.process_time()
        at.run()
        out[run] = round(time.process_time() - start, 2)
    out["errors"] = [str(e.value)[:200] for e in at.exception] + [e.value for e in at.error]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="DEEPZ_HOME with finished runs")
    parser.add_argument("--pages", nargs="*", default=list(PAGES))
    parser.add_argument("--profile", help="folder for cProfile dumps")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.profile)))
        return
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DEEPZ_HOME=str(Path(args.home).resolve()), PYTHONPATH=str(ROOT))
    print(f"{'page':10} {'cold CPU s':>10} {'warm CPU s':>10}")
    for page in args.pages:
        cmd = [sys.executable, __file__, "--home", args.home, "--one", page]
        cmd += ["--profile", args.profile] if args.profile else []
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        note = f"  errors: {result['errors']}" if result["errors"] else ""
        print(f"{page:10} {result['cold']:>10.2f} {result['warm']:>10.2f}{note}", flush=True)


if __name__ == "__main__":
    main()
