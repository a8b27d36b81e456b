"""Benchmarks (a script, not timed tests): ``python -m deepz_core bench`` and ``bench-sim``.

``bench`` times paper-size networks (E20 Fig. 1): inference for one network and for an ensemble of 10,
one training epoch over 8,000 galaxies for 10 members batched vs 10 members one after another, and
(``--protocol``, default on CUDA) one epoch of the paper's 50-network protocol.
``bench-sim`` times the SPS simulation (after its one-off set-up) and the demo mock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch

from deepz_core.device import resolve_device
from deepz_core.inference.predict import inference_chunk
from deepz_core.nets.deepz import DeepzModel, ModelConfig
from deepz_core.training.loop import make_optimizer

N_INPUTS = 46
# E20's protocol: 10 x 5 networks, each fine-tuned on 80% of ~8,500 spec-z galaxies for 700 epochs
PAPER_MEMBERS, PAPER_TRAIN_GALAXIES, PAPER_EPOCHS = 50, 6_800, 700


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_of(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def _config(members: int, base: ModelConfig | None) -> ModelConfig:
    """``base`` (default: paper-size networks, E20 Fig. 1, 46 inputs) with ``members`` members."""
    return dataclasses.replace(base or ModelConfig(n_inputs=N_INPUTS), members=members)


def inference_rate(
    members: int,
    n: int,
    batch: int,
    device: torch.device,
    repeats: int = 3,
    base: ModelConfig | None = None,
) -> float:
    """Galaxies per second through encoder + photo-z network + MDN head of an E-member ensemble."""
    config = _config(members, base)
    model = DeepzModel(config).to(device).eval()
    x = torch.rand(n, config.n_inputs, device=device) + 0.5

    @torch.no_grad()
    def run() -> None:
        for s in range(0, n, batch):
            dist = model(x[s : s + batch])
            dist.weights.sum()  # materialise the mixture parameters

    return n / _best_of(run, device, repeats)


def epoch_time(
    members: int, n: int, batch: int, device: torch.device, base: ModelConfig | None = None
) -> float:
    """Seconds for one fine-tuning epoch (MDN loss, Adam) of an E-member model over n galaxies each.

    One code path for every E: members = 1 is the sequential baseline (its own fastest kernels,
    deepz_core.nets.layers), members = 10 the batched ensemble."""
    torch.manual_seed(0)
    config = _config(members, base)
    model = DeepzModel(config).to(device).train()
    opt = make_optimizer(model.parameters(), lr=1e-3, weight_decay=1e-4)  # as training does
    x = torch.rand(members, n, config.n_inputs, device=device) + 0.5
    z = torch.rand(members, n, device=device) * 1.2

    def run() -> None:
        for s in range(0, n, batch):
            opt.zero_grad(set_to_none=True)
            model.mdn_loss(x[:, s : s + batch], z[:, s : s + batch]).backward()
            opt.step()

    return _best_of(run, device, repeats=1)


def inference_flop(config: ModelConfig) -> int:
    """Floating-point operations per galaxy and member for inference: 2 per multiply-add in the
    encoder and photo-z linear layers (the decoder is not evaluated)."""
    model = DeepzModel(dataclasses.replace(config, members=1))
    return 2 * sum(
        p[0].numel()
        for name, p in model.named_parameters()
        if p.dim() == 3 and not name.startswith("decoder.")
    )


def gemm_rate(device: torch.device, threads: int | None = None, n: int = 8192) -> float:
    """Measured float32 matrix-product rate in FLOP/s: (n, 256) x (256, 256), the shape of a
    paper-size hidden layer over a large batch. ``threads`` (CPU) overrides torch's thread count."""
    a = torch.randn(n, 256, device=device)
    b = torch.randn(256, 256, device=device)
    saved = torch.get_num_threads()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        seconds = _best_of(lambda: a @ b, device, repeats=10)
    finally:
        torch.set_num_threads(saved)
    return 2.0 * n * 256 * 256 / seconds


def roofline(config: ModelConfig, device: torch.device, n_train: int, members: int = 10) -> dict:
    """Bounds set by the matrix products alone (docs/benchmarks.md, "Networks"): the inference rate
    if every FLOP ran at the measured GEMM rate, per core and for the whole device, and the
    batched epoch's GEMM time (forward + both backward products of every fine-tuning layer)."""
    flop = inference_flop(config)
    rate = gemm_rate(device)
    out = {
        "infer_flop_per_galaxy": flop,
        "gemm_gflop_s": rate / 1e9,
        "infer_cap_gal_per_s": rate / flop,
        "epoch_s_batched10_gemm_floor": 3 * flop * n_train * members / rate,
    }
    if device.type == "cpu":
        core = gemm_rate(device, threads=1)
        out |= {"gemm_gflop_s_1core": core / 1e9, "infer_cap_gal_per_s_1core": core / flop}
    return out


def paper_protocol(
    device: torch.device,
    batch: int = 100,
    base: ModelConfig | None = None,
    n_train: int = PAPER_TRAIN_GALAXIES,
    members: int = PAPER_MEMBERS,
) -> dict:
    """One fine-tuning epoch of the E20 protocol's ensemble trained as one batched model (50 paper-size
    networks, 6,800 galaxies each), and the 700 epochs it implies in minutes (issue 3: < 30 on an
    H100). Per-epoch validation and checkpoints are not included (``paper`` does them every 10)."""
    epoch = epoch_time(members, n_train, batch, device, base)
    return {
        "paper_members": members,
        "paper_train_galaxies": n_train,
        "epoch_s_paper50": epoch,
        "paper_protocol_min": PAPER_EPOCHS * epoch / 60,
    }


def run_bench(
    device_name: str = "auto",
    n_train: int = 8000,
    batch: int = 100,
    base: ModelConfig | None = None,
    n_infer: int | None = None,
    protocol: bool | None = None,
) -> dict:
    """The benchmark JSON: device, inference rates, batched vs sequential 10-member epochs, and
    (``protocol``; default: on CUDA only, it is the GPU target) the paper protocol's training time.

    ``base`` and ``n_infer`` shrink the run for tests; the defaults are the documented benchmark."""
    device = resolve_device(device_name)
    n_infer = n_infer or (200_000 if device.type == "cuda" else 20_000)
    probe = torch.zeros(1, device=device, requires_grad=True)
    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "train_galaxies": n_train,
        "train_batch": batch,
        "adam_fused": bool(make_optimizer([probe], 1e-3, 0.0).defaults.get("fused")),
        "infer_gal_per_s_single": inference_rate(
            1, n_infer, inference_chunk(1, device), device, base=base
        ),
        "infer_gal_per_s_ensemble10": inference_rate(
            10, n_infer, inference_chunk(10, device), device, base=base
        ),
        "epoch_s_batched10": epoch_time(10, n_train, batch, device, base),
        "epoch_s_sequential10": sum(epoch_time(1, n_train, batch, device, base) for _ in range(10)),
    }
    result["batched_speedup"] = result["epoch_s_sequential10"] / result["epoch_s_batched10"]
    if protocol if protocol is not None else device.type == "cuda":
        result |= paper_protocol(device, batch, base)
    return result | roofline(base or ModelConfig(n_inputs=N_INPUTS), device, n_train)


def run_bench_sim(n_sps: int = 20_000, n_mock: int = 10_000, seed: int = 0) -> dict:
    """SPS galaxies/s after the one-off set-up, and the demo-size mock's wall time."""
    from deepz_core.catalog.catalog import dense_exposures
    from deepz_core.sed.bands import band_set
    from deepz_core.sed.ssp import load_library
    from deepz_core.simulate import simulate

    bands = band_set("paus_cosmos")
    t0 = time.perf_counter()
    load_library()
    simulate("sps", 500, bands, seed)  # warm-up: tables, filters, cosmology
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    simulate("sps", n_sps, bands, seed + 1)
    sps = time.perf_counter() - t0
    t0 = time.perf_counter()
    cat = simulate("paus-mock", n_mock, bands, seed + 2)
    mock = time.perf_counter() - t0
    t0 = time.perf_counter()
    dense_exposures(cat)
    dense = time.perf_counter() - t0
    return {
        "setup_s": setup,
        "sps_galaxies": n_sps,
        "sps_gal_per_s": n_sps / sps,
        "mock_galaxies": n_mock,
        "mock_s": mock,
        "mock_exposures": int(len(cat.exposures.flux)) if cat.exposures is not None else 0,
        "dense_exposures_s": dense,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
    }
