"""The compute device: a GPU when there is one (cuda > mps > cpu), or the one asked for."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

from deepz_core.errors import ConfigError

P = ParamSpec("P")
R = TypeVar("R")


def keeps_global_rng(func: Callable[P, R]) -> Callable[P, R]:
    """``func`` with torch's global random state (CPU, and every CUDA GPU once the caller has
    started CUDA) put back as it was afterwards: deepz seeds and draws from it to build and
    train its networks, and a caller's own seeded stream (a notebook's ``torch.manual_seed``)
    must not depend on whether deepz ran in between. CUDA is not started only to save a state
    the caller never used."""

    @functools.wraps(func)
    def kept(*args: P.args, **kwargs: P.kwargs) -> R:
        gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=gpus):
            return func(*args, **kwargs)

    return kept


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the system has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """cuda > mps > cpu for 'auto'; an explicit name is used as given if this machine has it."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from exc
    if device.type == "cuda" and not (
        torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    ):
        raise ConfigError(f"device {name!r} is not available on this machine (no such CUDA GPU)")
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"device {name!r} is not available on this machine (no MPS)")
    return device


def cpu_arithmetic() -> dict[str, str]:
    """The CPU kernels this process's arithmetic takes: torch's vector capability ("AVX2",
    "AVX512", ...) and OpenBLAS's kernel set for numpy ("Haswell", "SkylakeX", "Zen", ...;
    "unknown" where it cannot be read). Two machines that differ here differ in the last bits of
    float32 matrix products, and training amplifies those (Adam), so a shipped run's losses are
    reproduced bit for bit only on a machine of the builder's kind."""
    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info

        blas = next(
            (
                str(i.get("architecture"))
                for i in threadpool_info()
                if i.get("internal_api") == "openblas"
            ),
            "unknown",
        )
    except ImportError:
        pass
    return {"torch": str(torch.backends.cpu.get_cpu_capability()), "blas": blas}
