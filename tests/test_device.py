"""The compute device and the CPU kernels arithmetic takes."""

from __future__ import annotations

import torch

from deepz_core.device import cpu_arithmetic


def test_cpu_arithmetic_names_the_kernels() -> None:
    """What the shipped weights record of their builder's CPU (torch's capability, OpenBLAS's
    kernel set for numpy)."""
    kinds = cpu_arithmetic()
    assert set(kinds) == {"torch", "blas"} and all(isinstance(v, str) and v for v in kinds.values())
    assert kinds["torch"] == str(torch.backends.cpu.get_cpu_capability())
