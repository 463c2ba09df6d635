"""The bench's own pieces: section selection, the quantized rows' weights, the matmul probe."""

import numpy as np
import pytest
import torch

from models.errors import ConfigError
from models.inference.bench import _quantized_copy, matmul_peak, run_bench
from models.nets.architectures import build_model
from models.nets.lstm import LSTMConfig
from models.nets.quantize import quantize_model
from models.nets.wavenet import WaveNetPresetConfig


def test_unknown_section_and_bad_options_are_refused():
    with pytest.raises(ConfigError, match="train, render, streaming.*found stream$"):
        run_bench(only=["stream"])
    with pytest.raises(ConfigError, match="--repeats >= 1"):
        run_bench(repeats=0)


@pytest.mark.parametrize("config", [LSTMConfig(layers=(8, 4)), WaveNetPresetConfig(preset="nano")])
def test_quantized_rows_run_the_dequantized_weights(config):
    torch.manual_seed(0)
    model = build_model(config).eval()
    copy = _quantized_copy(model, 4)
    expected = quantize_model(model, 4).state_dict()
    for name, tensor in copy.state_dict().items():
        assert torch.equal(tensor, expected[name])
    # 4 bits really changed the weights: per row at most 8 magnitudes (|q| = 0 … 7 times the row's scale).
    name = "lstms.0.weight_hh_l0" if config.arch == "lstm" else "arrays.0.layers.0.conv.weight"
    weight = copy.state_dict()[name]
    assert not torch.equal(weight, model.state_dict()[name])
    rows = weight.reshape(weight.shape[0], -1)
    assert max(len(np.unique(np.abs(r.numpy()))) for r in rows) <= 8


def test_matmul_peak_reports_a_plausible_rate():
    peak = matmul_peak(sizes=(64, 128), tries=2)
    # Any CPU of the last decade does between 0.1 and 1000 GMAC/s on one float32 thread.
    assert 1e8 < peak.macs_per_s < 1e12
    assert "64: torch" in peak.detail and "128: torch" in peak.detail


def test_paired_medians_alternate_and_count_runs():
    from models.inference.bench import paired_medians

    order = []
    a, b = paired_medians(lambda: order.append("a"), lambda: order.append("b"), repeats=4, second_repeats=2)
    # One untimed run each, then a, b alternating while b still has timed runs left, then a alone.
    assert order == ["a", "b", "a", "b", "a", "b", "a", "a"]
    assert a >= 0 and b >= 0
