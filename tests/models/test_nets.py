"""Network sizes and costs against hand counts, and basic properties of the LSTM stack."""

import pytest
import torch

from models.errors import ConfigError
from models.nets.architectures import build_model, fp32_bytes, macs_per_sample, parameter_count
from models.nets.lstm import LSTMConfig


def lstm_params(inputs: int, units: int) -> int:
    # PyTorch's LSTM: four gates, each with input and recurrent weights and two bias vectors.
    return 4 * units * (inputs + units) + 2 * 4 * units


@pytest.mark.parametrize("units, expected", [(8, 937), (16, 2057), (32, 5833), (64, 19529)])
def test_student_parameter_counts_match_the_paper(units, expected):
    model = build_model(LSTMConfig(layers=(units, 8)))
    assert parameter_count(model) == expected
    assert fp32_bytes(model) == 4 * expected


def test_teacher_parameter_count_by_hand():
    sizes = [8, 16, 32, 64, 32, 16, 8]
    inputs = [1] + sizes[:-1]
    expected = sum(lstm_params(i, u) for i, u in zip(inputs, sizes, strict=True)) + 8 + 1
    assert expected == 50089
    assert parameter_count(build_model(LSTMConfig(layers=tuple(sizes)))) == expected


def test_macs_per_sample_hand_counts():
    # S-8-8: 4·8·(1+8) + 4·8·(8+8) + dense 8 = 288 + 512 + 8
    assert macs_per_sample(LSTMConfig(layers=(8, 8))) == 808
    # teacher: Σ 4·u·(i+u) + 8, which the paper quotes as about 49 k
    assert macs_per_sample(LSTMConfig(layers=(8, 16, 32, 64, 32, 16, 8))) == (
        4 * 8 * 9 + 4 * 16 * 24 + 4 * 32 * 48 + 4 * 64 * 96 + 4 * 32 * 96 + 4 * 16 * 48 + 4 * 8 * 24 + 8
    ) == 48680
    # FiLM adds one multiply-add per unit per layer; concat widens the first layer's input.
    assert macs_per_sample(LSTMConfig(layers=(8, 8), n_knobs=1, conditioning="film")) == 808 + 16
    assert macs_per_sample(LSTMConfig(layers=(8, 8), n_knobs=2, conditioning="concat")) == 808 + 4 * 8 * 2


def test_film_and_concat_parameter_counts():
    film = build_model(LSTMConfig(layers=(16, 8), n_knobs=1, conditioning="film"))
    # one Linear(1 → 2·units) per LSTM layer
    assert parameter_count(film) == 2057 + (2 * 16 + 2 * 16) + (2 * 8 + 2 * 8)
    concat = build_model(LSTMConfig(layers=(16, 8), n_knobs=1, conditioning="concat"))
    assert parameter_count(concat) == 2057 + 4 * 16


def test_output_shape_residual_and_causality():
    torch.manual_seed(0)
    model = build_model(LSTMConfig(layers=(8, 8))).eval()
    x = torch.randn(2, 100, 1)
    y, state = model(x)
    assert y.shape == (2, 100, 1)
    assert len(state) == 2
    # Changing the future does not change the past.
    x2 = x.clone()
    x2[:, 60:] = torch.randn(2, 40, 1)
    y2, _ = model(x2)
    assert torch.equal(y[:, :60], y2[:, :60])
    assert not torch.equal(y[:, 60:], y2[:, 60:])
    # With a zeroed dense layer the network is exactly the identity (the input skip).
    with torch.no_grad():
        model.dense.weight.zero_()
        model.dense.bias.zero_()
    y3, _ = model(x)
    assert torch.equal(y3, x)


def test_knob_values_change_the_output_and_are_required():
    torch.manual_seed(0)
    for conditioning in ("film", "concat"):
        model = build_model(LSTMConfig(layers=(8, 8), n_knobs=1, conditioning=conditioning)).eval()
        x = torch.randn(1, 200, 1)
        low, _ = model(x, torch.tensor([[0.0]]))
        high, _ = model(x, torch.tensor([[1.0]]))
        assert not torch.allclose(low, high)
        with pytest.raises(ConfigError, match="knob"):
            model(x)


def test_features_are_each_layer_output():
    model = build_model(LSTMConfig(layers=(16, 8))).eval()
    y, _, feats = model(torch.randn(3, 50, 1), return_features=True)
    assert [f.shape for f in feats] == [(3, 50, 16), (3, 50, 8)]


def test_bad_layer_sizes_are_rejected():
    with pytest.raises(ConfigError, match="layers"):
        LSTMConfig(layers=())
    with pytest.raises(ConfigError, match="layers"):
        LSTMConfig(layers=(8, 0))
