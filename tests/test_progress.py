"""Progress bars (deepz_core/progress.py): quiet in a notebook kernel without ipywidgets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for an IPython kernel (what tqdm.auto looks for), then deepz imported and a bar drawn
# with every warning shown on stderr.
KERNEL = """
import sys, types, warnings
warnings.simplefilter("always")
ZMQInteractiveShell = type("ZMQInteractiveShell", (), {"config": {"IPKernelApp": {}}})
sys.modules["IPython"] = types.SimpleNamespace(get_ipython=ZMQInteractiveShell)
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
sys.modules["ipywidgets"] = None  # not installed
import deepz_core
from deepz_core.progress import progress_bar
with progress_bar(3, "steps") as bar:
    bar.update(3)
print("ok")
"""


def test_no_iprogress_warning_in_a_kernel_without_ipywidgets() -> None:
    """Review, tenth session: ``import deepz_core`` in Jupyter printed tqdm's 'IProgress not
    found. Please update jupyter and ipywidgets' warning in the first cell."""
    done = subprocess.run(
        [sys.executable, "-c", KERNEL], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    assert "IProgress" not in done.stderr
