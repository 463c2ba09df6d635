"""Slimming WaveNets and LSTM stacks: exact full width, slimmed == sliced, gradients, width sampling."""

import pytest
import torch
from scipy import stats

from models.errors import ConfigError
from models.nets.architectures import build_model, parameter_count
from models.nets.lstm import LSTMConfig, LSTMStack
from models.nets.slimmable import (
    allowed_widths,
    forward_at_width,
    sample_widths,
    slim,
    slimmable_loss,
)
from models.nets.wavenet import LayerArrayConfig, WaveNet, WaveNetConfig, build_wavenet, from_preset


def _wavenet(name="standard", n_knobs=0, seed=0) -> WaveNet:
    torch.manual_seed(seed)
    return build_wavenet(from_preset(name, n_knobs=n_knobs)).eval()


def _gated(seed=0) -> WaveNet:
    torch.manual_seed(seed)
    arrays = (LayerArrayConfig(input_size=1, channels=6, head_size=4, dilations=(1, 2, 4), gated=True),
              LayerArrayConfig(input_size=6, channels=4, head_size=1, dilations=(1, 2), gated=True, head_bias=True))
    return WaveNet(WaveNetConfig(arrays=arrays)).eval()


def _lstm(conditioning="film", n_knobs=2, layers=(32, 8), seed=0) -> LSTMStack:
    torch.manual_seed(seed)
    return build_model(LSTMConfig(layers=layers, conditioning=conditioning, n_knobs=n_knobs)).eval()


@pytest.fixture
def audio():
    torch.manual_seed(5)
    return 0.5 * torch.randn(2, 600, 1)


@pytest.mark.parametrize("make", [_wavenet, _gated, lambda: _wavenet("nano", n_knobs=1)])
def test_wavenet_full_width_equals_the_original_exactly(make, audio):
    model = make()
    knobs = torch.rand(2, model.config.n_knobs) if model.config.n_knobs else None
    with torch.no_grad():
        assert torch.equal(slim(model, 1.0)(audio, knobs)[0], model(audio, knobs)[0])
        assert torch.equal(model(audio, knobs, width=1.0)[0], model(audio, knobs)[0])


@pytest.mark.parametrize("conditioning, n_knobs", [("film", 2), ("concat", 2), ("film", 0)])
def test_lstm_full_width_equals_the_original_exactly(conditioning, n_knobs, audio):
    model = _lstm(conditioning, n_knobs)
    knobs = torch.rand(2, n_knobs) if n_knobs else None
    with torch.no_grad():
        assert torch.equal(slim(model, 1.0)(audio, knobs)[0], model(audio, knobs)[0])
        assert torch.equal(forward_at_width(model, audio, knobs, width=1.0)[0], model(audio, knobs)[0])


@pytest.mark.parametrize("make", [_wavenet, _gated, lambda: _lstm("film", 2), lambda: _lstm("concat", 2)])
@pytest.mark.parametrize("width", [0.75, 0.5, 0.25, 0.1])
def test_slimmed_network_equals_on_the_fly_slicing(make, width, audio):
    model = make()
    n_knobs = model.config.n_knobs
    knobs = torch.rand(2, n_knobs) if n_knobs else None
    small = slim(model, width)
    with torch.no_grad():
        expected = forward_at_width(model, audio, knobs, width=width)[0]
        assert torch.equal(small(audio, knobs)[0], expected)
        assert not torch.allclose(expected, model(audio, knobs)[0])


def test_slimmed_wavenet_keeps_the_first_channels():
    model = _wavenet()
    small = slim(model, 0.25)
    # 4/2 channels with the standard dilations, counted by hand:
    # 4 + 10·(48+4+4+16+4) + 4·2  = 772;  4·2 + 10·(12+2+2+4+2) + 2 + 1 = 231 → 1 003
    assert parameter_count(small) == 1003
    big, little = model.arrays[0], small.arrays[0]
    assert torch.equal(little.layers[3].conv.weight, big.layers[3].conv.weight[:4, :4])
    assert torch.equal(little.layers[3].input_mixer.weight, big.layers[3].input_mixer.weight[:4])
    assert torch.equal(little.head_rechannel.weight, big.head_rechannel.weight[:2, :4])
    assert torch.equal(small.arrays[1].rechannel.weight, model.arrays[1].rechannel.weight[:2, :4])
    assert torch.equal(small.arrays[1].head_rechannel.bias, model.arrays[1].head_rechannel.bias)


def test_gated_slimming_keeps_the_first_channels_of_each_half():
    model = _gated()
    small = slim(model, 0.5)  # 6 → 3 channels: rows 0-2 (tanh half) and 6-8 (sigmoid half)
    conv = model.arrays[0].layers[1].conv.weight
    expected = torch.cat([conv[0:3, :3], conv[6:9, :3]])
    assert torch.equal(small.arrays[0].layers[1].conv.weight, expected)


def test_slim_lstm_is_a_real_smaller_lstm_stack():
    model = _lstm("film", 2, layers=(64, 8))
    small = slim(model, 0.25)
    assert isinstance(small, LSTMStack) and small.config.layers == (16, 2)
    # S-16-2 with FiLM on 2 knobs: 4·16·(1+16+2) + 4·2·(16+2+2) + FiLM (2·2·16+32) + (2·2·2+4) + dense 3
    assert parameter_count(small) == 4 * 16 * 19 + 4 * 2 * 20 + (64 + 32) + (8 + 4) + 3
    gates = model.lstms[0].weight_hh_l0
    kept_rows = torch.cat([gates[g * 64:g * 64 + 16, :16] for g in range(4)])
    assert torch.equal(small.lstms[0].weight_hh_l0, kept_rows)
    assert torch.equal(small.lstms[1].weight_ih_l0, torch.cat(
        [model.lstms[1].weight_ih_l0[g * 8:g * 8 + 2, :16] for g in range(4)]))


def test_wavenet_gradients_reach_only_the_kept_slices(audio):
    model = _wavenet().train()
    y, _ = model(audio, width=0.5)
    y.square().mean().backward()
    conv = model.arrays[0].layers[2].conv.weight.grad
    assert conv[:8, :8].abs().sum() > 0
    assert conv[8:].abs().sum() == 0 and conv[:, 8:].abs().sum() == 0
    head = model.arrays[0].head_rechannel.weight.grad
    assert head[:4, :8].abs().sum() > 0 and head[4:].abs().sum() == 0 and head[:, 8:].abs().sum() == 0


def test_lstm_gradients_reach_only_the_kept_slices(audio):
    model = _lstm("film", 2).train()
    y, _ = forward_at_width(model, audio, torch.rand(2, 2), width=0.5)
    y.square().mean().backward()
    grad = model.lstms[0].weight_hh_l0.grad  # 32 units → 16 kept in each gate block
    for g in range(4):
        assert grad[g * 32:g * 32 + 16, :16].abs().sum() > 0
        assert grad[g * 32 + 16:(g + 1) * 32].abs().sum() == 0
    assert grad[:, 16:].abs().sum() == 0
    assert model.dense.weight.grad[:, 4:].abs().sum() == 0 and model.dense.weight.grad[:, :4].abs().sum() > 0
    film = model.films[0].weight.grad  # gamma rows 0-15 and beta rows 32-47 kept
    assert film[16:32].abs().sum() == 0 and film[48:].abs().sum() == 0 and film[:16].abs().sum() > 0


def test_allowed_widths_are_every_channel_count_of_the_widest_layer():
    assert allowed_widths(from_preset("standard")) == tuple(k / 16 for k in range(1, 17))
    assert allowed_widths(_lstm(layers=(8, 8))) == tuple(k / 8 for k in range(1, 9))


def test_uniform_rule_draws_every_width_equally_often():
    widths = [0.25, 0.5, 0.75, 1.0]
    generator = torch.Generator().manual_seed(0)
    draws = sample_widths(widths, "uniform", generator, count=4000)
    counts = [draws.count(w) for w in widths]
    assert sum(counts) == 4000
    assert stats.chisquare(counts).pvalue > 0.001
    assert len(sample_widths(widths, "uniform", generator)) == 1


def test_sandwich_rule_gives_largest_smallest_then_random_middle_widths():
    widths = [0.5, 0.25, 1.0, 0.75, 0.125]
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        drawn = sample_widths(widths, "sandwich", generator, count=5)
        assert drawn[:2] == [1.0, 0.125] and len(drawn) == 5
        assert set(drawn[2:]) <= {0.25, 0.5, 0.75}
    assert sample_widths([0.5, 1.0], "sandwich", generator)[:2] == [1.0, 0.5]


def test_width_sampling_errors():
    with pytest.raises(ConfigError, match="sandwich"):
        sample_widths([0.5, 1.0], "sandwich", count=1)
    with pytest.raises(ConfigError, match="uniform' or 'sandwich"):
        sample_widths([0.5, 1.0], "random")
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        sample_widths([0.0, 1.0])
    with pytest.raises(ConfigError, match="LSTMStack"):
        slim(torch.nn.Linear(2, 2), 0.5)


def _mse(a, b):
    return (a - b).square().mean()


def test_slimmable_loss_sums_widths_against_the_target(audio):
    model = _wavenet("nano").train()
    target = torch.tanh(2 * audio)
    total, values = slimmable_loss(model, audio, target, [1.0, 0.5], _mse)
    with torch.no_grad():
        full = _mse(model(audio)[0], target)
        half = _mse(model(audio, width=0.5)[0], target)
    assert values[1.0] == pytest.approx(float(full)) and values[0.5] == pytest.approx(float(half))
    assert float(total.detach()) == pytest.approx(float(full + half))


def test_inplace_distillation_targets_the_detached_full_width_output(audio):
    model = _wavenet("nano").train()
    target = torch.tanh(2 * audio)
    total, values = slimmable_loss(model, audio, target, [1.0, 0.5], _mse, inplace_distillation=True)
    total.backward()
    # (The last layer's residual 1×1 feeds nothing, in NAM too, so it has no gradient.)
    with_distillation = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    with torch.no_grad():
        assert values[0.5] == pytest.approx(float(_mse(model(audio, width=0.5)[0], model(audio)[0])))
    # Entries outside the 50 % slice get gradient from the full-width target loss only: the teacher is
    # detached, so the distillation term adds nothing there.
    model.zero_grad()
    _mse(model(audio)[0], target).backward()
    outside = model.arrays[0].layers[0].conv.weight
    index = next(i for i, p in enumerate(model.parameters()) if p is outside)
    assert torch.equal(with_distillation[index][2:], outside.grad[2:])
    assert not torch.equal(with_distillation[index][:2, :2], outside.grad[:2, :2])


def test_inplace_distillation_without_full_width_uses_a_no_grad_teacher(audio):
    model = _lstm("film", 0, layers=(16, 8)).train()
    total, values = slimmable_loss(model, audio, audio, [0.5], _mse, inplace_distillation=True)
    with torch.no_grad():
        expected = _mse(forward_at_width(model, audio, width=0.5)[0], model(audio)[0])
    assert float(total.detach()) == pytest.approx(float(expected)) and list(values) == [0.5]
    total.backward()
    assert model.lstms[0].weight_hh_l0.grad[8:16].abs().sum() == 0


@pytest.mark.slow
def test_sandwich_training_with_inplace_distillation_improves_every_width():
    """A few Adam steps of slimmable training lower the error of the full and the slimmest width."""
    torch.manual_seed(0)
    model = build_wavenet(from_preset("nano")).train()
    generator = torch.Generator().manual_seed(0)
    x = 0.5 * torch.randn(2, 256, 1, generator=generator)
    target = torch.tanh(3.0 * x)
    widths = allowed_widths(model)  # 1/4 … 4/4 of nano's 4/2 channels

    def errors():
        with torch.no_grad():
            return {w: float(_mse(model(x, width=w)[0], target)) for w in (widths[0], 1.0)}

    before = errors()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(30):
        drawn = sample_widths(widths, "sandwich", generator, count=3)
        loss, _ = slimmable_loss(model, x, target, drawn, _mse, inplace_distillation=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = errors()
    assert after[1.0] < 0.3 * before[1.0]
    assert after[widths[0]] < 0.8 * before[widths[0]]


def _nam_lstm(hidden_size=2, num_layers=2):
    """A NAM LSTM whose every weight, bias and initial-state entry is its own index (0, 1, 2, …), so
    what a cut keeps can be read off by hand."""
    from models.nets.nam_lstm import NamLSTMConfig

    model = build_model(NamLSTMConfig(hidden_size=hidden_size, num_layers=num_layers)).eval()
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            tensor.copy_(torch.arange(tensor.numel(), dtype=torch.float32).reshape(tensor.shape) / 100)
    return model


def test_slimmed_nam_lstm_keeps_the_first_unit_of_every_gate_block():
    model = _nam_lstm()  # 2 units, gate blocks i, f, g, o of 2 rows each: rows 0, 2, 4, 6 are kept
    small = slim(model, 0.5)
    assert small.config.hidden_size == 1 and small.config.num_layers == 2
    assert allowed_widths(model) == (0.5, 1.0)
    # layer 0: W_ih (8, 1) holds 0 … 7; W_hh (8, 2) holds 0 … 15 row-major, row r = [2r, 2r + 1]
    assert small.lstm.weight_ih_l0.flatten().tolist() == pytest.approx([0.00, 0.02, 0.04, 0.06])
    assert small.lstm.weight_hh_l0.flatten().tolist() == pytest.approx([0.00, 0.04, 0.08, 0.12])
    assert small.lstm.bias_ih_l0.tolist() == pytest.approx([0.00, 0.02, 0.04, 0.06])
    # layer 1 reads layer 0's kept unit only: column 0 of the kept rows
    assert small.lstm.weight_ih_l1.flatten().tolist() == pytest.approx([0.00, 0.04, 0.08, 0.12])
    assert small.lstm.bias_hh_l1.tolist() == pytest.approx([0.00, 0.02, 0.04, 0.06])
    # the head reads the kept unit; its bias stays; the initial state (2 layers × 2 units: 0 … 3)
    # keeps each layer's first unit
    assert small.head.weight.flatten().tolist() == pytest.approx([0.00])
    assert small.head.bias.tolist() == pytest.approx([0.00])
    assert small.initial_hidden.flatten().tolist() == pytest.approx([0.00, 0.02])
    assert small.initial_cell.flatten().tolist() == pytest.approx([0.00, 0.02])
    # 1 unit, 2 layers: 4·1·(1 + 1) + 8 + 4·1·(1 + 1) + 8 + head 2
    assert parameter_count(small) == 8 + 8 + 8 + 8 + 2


@pytest.mark.parametrize("width", [1.0, 0.75, 0.5, 0.25])
def test_slimmed_nam_lstm_equals_on_the_fly_slicing(width, audio):
    from models.nets.nam_lstm import NamLSTMConfig

    torch.manual_seed(4)
    model = build_model(NamLSTMConfig(hidden_size=8, num_layers=2)).eval()
    with torch.no_grad():
        model.initial_hidden.normal_()  # a stored initial state (as a .nam file has) is cut too
        expected = forward_at_width(model, audio, width=width)
        small = slim(model, width)
        assert torch.allclose(small(audio)[0], expected[0], atol=1e-6, rtol=0)
        if width == 1.0:
            assert torch.equal(small(audio)[0], model(audio)[0])
            assert torch.allclose(expected[0], model(audio)[0], atol=1e-6, rtol=0)
        else:
            assert not torch.allclose(expected[0], model(audio)[0])
        assert expected[1][0].shape == (2, 2, small.config.hidden_size)


def test_nam_lstm_gradients_reach_only_the_kept_slices(audio):
    from models.nets.nam_lstm import NamLSTMConfig

    torch.manual_seed(0)
    model = build_model(NamLSTMConfig(hidden_size=8, num_layers=2)).train()
    y, _ = forward_at_width(model, audio, width=0.5)
    y.square().mean().backward()
    for name in ("weight_hh_l0", "weight_ih_l1"):
        grad = getattr(model.lstm, name).grad  # 8 units → 4 kept in each gate block
        for g in range(4):
            assert grad[g * 8:g * 8 + 4, :4].abs().sum() > 0
            assert grad[g * 8 + 4:(g + 1) * 8].abs().sum() == 0
        assert grad[:, 4:].abs().sum() == 0
    assert model.head.weight.grad[:, 4:].abs().sum() == 0 and model.head.weight.grad[:, :4].abs().sum() > 0
