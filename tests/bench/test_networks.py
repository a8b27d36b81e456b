"""The network benchmark runs end to end on tiny networks and reports consistent figures."""

from __future__ import annotations

import pytest
import torch

from deepz_core.bench.networks import (
    PAPER_EPOCHS,
    inference_flop,
    paper_protocol,
    roofline,
    run_bench,
)
from deepz_core.nets.deepz import ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ModelConfig(
    n_inputs=6,
    n_latent=2,
    encoder_layers=2,
    decoder_layers=2,
    width=8,
    photoz_layers=2,
    photoz_first_width=0,
    n_components=2,
)


def test_bench_json_on_tiny_networks() -> None:
    out = run_bench("cpu", n_train=60, batch=20, base=TINY, n_infer=300)
    assert out["device"] == "cpu" and out["train_galaxies"] == 60 and out["train_batch"] == 20
    assert out["adam_fused"] is True  # the optimiser training uses (fused Adam on CPU)
    for key in (
        "infer_gal_per_s_single",
        "infer_gal_per_s_ensemble10",
        "epoch_s_batched10",
        "epoch_s_sequential10",
    ):
        assert out[key] > 0, key
    ratio = out["epoch_s_sequential10"] / out["epoch_s_batched10"]
    assert out["batched_speedup"] == pytest.approx(ratio)


def test_roofline_counts_the_inference_products() -> None:
    # encoder 6->8->8->2, photo-z (6+2)->8->8->6: multiply-adds counted by hand, x2 FLOP
    macs = 6 * 8 + 8 * 8 + 8 * 2 + 8 * 8 + 8 * 8 + 8 * 6
    assert inference_flop(TINY) == 2 * macs
    out = roofline(TINY, torch.device("cpu"), n_train=100)
    assert out["gemm_gflop_s"] > 0 and out["gemm_gflop_s_1core"] > 0
    assert out["infer_cap_gal_per_s"] == pytest.approx(out["gemm_gflop_s"] * 1e9 / (2 * macs))
    floor = 3 * 2 * macs * 100 * 10 / (out["gemm_gflop_s"] * 1e9)
    assert out["epoch_s_batched10_gemm_floor"] == pytest.approx(floor)


def test_paper_protocol_extrapolates_one_batched_epoch() -> None:
    out = paper_protocol(torch.device("cpu"), batch=20, base=TINY, n_train=60, members=3)
    assert (out["paper_members"], out["paper_train_galaxies"]) == (3, 60)
    assert out["paper_protocol_min"] == pytest.approx(PAPER_EPOCHS * out["epoch_s_paper50"] / 60)
    cpu = run_bench("cpu", n_train=40, batch=20, base=TINY, n_infer=100)
    assert "paper_protocol_min" not in cpu  # a GPU target: CPU runs time it only when asked
