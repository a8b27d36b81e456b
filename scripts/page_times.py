"""CPU time of each app page's script run, cold and warm (docs/benchmarks.md, "App page times").

Pages run headless (streamlit's AppTest) on the app home ``--home`` (DEEPZ_HOME), each twice:
the first run pays the page's imports and fills its caches (cold), the second reruns it on warm
caches (a user coming back to it). CPU seconds of the whole process (``time.process_time``: all
threads; not wall time on a busy machine).

- default: each page in a fresh process. "main" is app/main.py (the Overview) from nothing: the
  app's first load, imports included; any other page runs after ``import app.state`` (what
  main.py imported already), so its cold run is what that page alone costs on a first visit.
- ``--session``: one process, the pages in the order given ("main" first), as one user clicking
  through the menu: caches a page filled (the demo catalogue's) serve the next pages.

``--profile DIR`` writes each run's script-thread profile to DIR/<page>.<cold|warm>.prof.

    PYTHONPATH=$PWD python scripts/page_times.py --home /tmp/speedhome [--session] [--pages ...]
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
PAGES = (
    "main",
    "home",
    "data",
    "simulate",
    "train",
    "results",
    "explorer",
    "dropping",
    "cuts",
    "predict",
)


def timed(pages: list[str], profile: str | None) -> dict:
    """Run each of ``pages`` twice, in order, in this process; CPU seconds of each run."""
    import cProfile

    from streamlit.testing.v1 import AppTest
    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    label = [""]
    if profile:
        original = LocalScriptRunner._run_script_thread

        def profiled(self) -> None:
            prof = cProfile.Profile()
            prof.runcall(original, self)
            prof.dump_stats(Path(profile) / f"{label[0]}.prof")

        LocalScriptRunner._run_script_thread = profiled
    if pages[0] != "main":  # main.py imports it before any page runs
        import app.state  # noqa: F401
    out = {}
    for page in pages:
        path = ROOT / ("app/main.py" if page == "main" else f"pages/{page}.py")
        at = AppTest.from_file(str(path), default_timeout=600)
        out[page] = {}
        for run in ("cold", "warm"):
            label[0] = f"{page}.{run}"
            start = time.process_time()
            at.run()
            out[page][run] = round(time.process_time() - start, 2)
        errors = [str(e.value)[:120] for e in (*at.exception, *at.error)]
        out[page]["errors"] = errors
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="DEEPZ_HOME with finished runs")
    parser.add_argument("--pages", nargs="*", default=list(PAGES))
    parser.add_argument("--session", action="store_true", help="all pages in one process")
    parser.add_argument("--profile", help="folder for cProfile dumps")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(timed(args.child, args.profile)))
        return
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DEEPZ_HOME=str(Path(args.home).resolve()), PYTHONPATH=str(ROOT))
    groups = [args.pages] if args.session else [[page] for page in args.pages]
    print(f"{'page':10} {'cold CPU s':>10} {'warm CPU s':>10}")
    for group in groups:
        cmd = [sys.executable, __file__, "--home", args.home, "--child", *group]
        cmd += ["--profile", args.profile] if args.profile else []
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        for page, r in json.loads(done.stdout.strip().splitlines()[-1]).items():
            note = f"  errors: {r['errors']}" if r["errors"] else ""
            print(f"{page:10} {r['cold']:>10.2f} {r['warm']:>10.2f}{note}", flush=True)


if __name__ == "__main__":
    main()
