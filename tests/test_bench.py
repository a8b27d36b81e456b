"""The network benchmark runs end to end on tiny networks and reports consistent figures."""

from __future__ import annotations

import pytest

from deepz_core.bench import run_bench
from deepz_core.model import ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ModelConfig(n_inputs=6, n_latent=2, encoder_layers=2, decoder_layers=2, width=8,
                   photoz_layers=2, photoz_first_width=0, n_components=2)  # fmt: skip


def test_bench_json_on_tiny_networks() -> None:
    out = run_bench("cpu", n_train=60, batch=20, base=TINY, n_infer=300)
    assert out["device"] == "cpu" and out["train_galaxies"] == 60 and out["train_batch"] == 20
    assert out["adam_fused"] is True  # the optimiser training uses (fused Adam on CPU)
    for key in ("infer_gal_per_s_single", "infer_gal_per_s_ensemble10", "epoch_s_batched10",
                "epoch_s_sequential10"):  # fmt: skip
        assert out[key] > 0, key
    ratio = out["epoch_s_sequential10"] / out["epoch_s_batched10"]
    assert out["batched_speedup"] == pytest.approx(ratio)
