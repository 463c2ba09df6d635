"""NAM-style WaveNet: sizes against NAM's published numbers and hand counts, forward against hand
calculations and an independent implementation of NAM's zero-padded valid convolutions."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from models.config import from_dict
from models.errors import ConfigError
from models.nets.architectures import parameter_count
from models.nets.wavenet import (
    PRESETS,
    LayerArrayConfig,
    WaveNet,
    WaveNetConfig,
    build_wavenet,
    from_preset,
    macs_per_sample,
    slimmed_config,
)


def _seeded(config: WaveNetConfig, seed: int = 0) -> WaveNet:
    torch.manual_seed(seed)
    return build_wavenet(config).eval()


# Hand counts per array: rechannel in·c (no bias); per layer conv k·c·c + c, mixer c, 1×1 c·c + c;
# head rechannel c·head (+1 on the last array).
#   standard: 16 + 10·(768+16+16+272) + 128 = 10 864;  128 + 10·(192+8+8+72) + 9 = 2 937 → 13 801 (NAM)
#   lite:     12 +  7·(432+12+12+156) +  72 =  4 368;   72 + 13·(108+6+6+42)  + 7 = 2 185 →  6 553
#   feather:   8 +  7·(192+8+8+72)    +  32 =  2 000;   32 + 13·(48+4+4+20)   + 5 = 1 025 →  3 025
#   nano:      4 +  7·(48+4+4+20)     +   8 =    544;    8 + 13·(12+2+2+6)    + 3 =   297 →    841
@pytest.mark.parametrize("name, expected", [("standard", 13801), ("lite", 6553), ("feather", 3025),
                                            ("nano", 841), ("slimmable", 13801)])
def test_preset_parameter_counts(name, expected):
    assert parameter_count(build_wavenet(from_preset(name))) == expected


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_share_nams_receptive_field(name):
    # 1 + 2·(sum of all dilations) = 4093 for every NAM preset (slimmable NAM paper; docs/zoo-methods.md).
    assert build_wavenet(from_preset(name)).receptive_field == 4093


def test_knobs_widen_only_the_input_mixers():
    # Each of the 20 layers' mixers gains one column per knob: 10·16 + 10·8 = 240 per knob.
    assert parameter_count(build_wavenet(from_preset("standard", n_knobs=2))) == 13801 + 2 * 240


def test_macs_per_sample_by_hand():
    # standard: 16 + 10·(3·256 + 16 + 256) + 128 + 128 + 10·(3·64 + 8 + 64) + 8 = 13 320
    assert macs_per_sample(from_preset("standard")) == 13320
    # at 50 %: 8/4 channels: 8 + 10·(192 + 8 + 64) + 32 + 32 + 10·(48 + 4 + 16) + 4 = 3 396
    assert macs_per_sample(from_preset("standard"), width=0.5) == 3396


def test_macs_per_sample_matches_torch_flop_counter():
    """torch's own counter over the convolutions of one stateful block: 2 FLOPs per multiply-add."""
    for name, width in [("standard", 1.0), ("lite", 1.0), ("slimmable", 0.25)]:
        model = _seeded(from_preset(name))
        x = torch.randn(1, 64, 1)
        state = model.silence_state(1, width=width)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, state=state, width=width)
        assert counter.get_total_flops() == 2 * 64 * macs_per_sample(model.config, width)


def test_tiny_network_by_hand():
    """One array, c = 1, kernel 2, dilations (1, 2), computed with scalar formulas."""
    config = WaveNetConfig(arrays=(LayerArrayConfig(input_size=1, channels=1, head_size=1, dilations=(1, 2),
                                                    kernel_size=2, head_bias=True),), head_scale=0.5)
    model = WaveNet(config)
    values = {"rechannel": 0.5, "conv0": (0.3, -0.2), "b0": 0.1, "m0": 0.4, "a0": 0.7, "c0": -0.05,
              "conv1": (0.6, 0.25), "b1": -0.3, "m1": -0.5, "a1": 0.2, "c1": 0.15, "hw": 2.0, "hb": 0.05}
    array = model.arrays[0]
    with torch.no_grad():
        array.rechannel.weight.fill_(values["rechannel"])
        for j, layer in enumerate(array.layers):
            layer.conv.weight.copy_(torch.tensor(values[f"conv{j}"]).reshape(1, 1, 2))
            layer.conv.bias.fill_(values[f"b{j}"])
            layer.input_mixer.weight.fill_(values[f"m{j}"])
            layer.layer1x1.weight.fill_(values[f"a{j}"])
            layer.layer1x1.bias.fill_(values[f"c{j}"])
        array.head_rechannel.weight.fill_(values["hw"])
        array.head_rechannel.bias.fill_(values["hb"])
    x = [1.0, -2.0, 0.5, 3.0]
    v = values
    # Silence before the start: layer 0's input is 0; layer 1's input is the constant
    # a0·tanh(b0) + c0 (the layer-0 output for zero input).
    h0 = [0.0, 0.0] + [v["rechannel"] * s for s in x]  # two silent samples of history
    h1_silent = v["a0"] * math.tanh(v["b0"]) + v["c0"]
    h1 = [h1_silent, h1_silent]
    expected = []
    for t, s in enumerate(x):
        i = t + 2
        z0 = v["conv0"][0] * h0[i - 1] + v["conv0"][1] * h0[i] + v["b0"] + v["m0"] * s
        act0 = math.tanh(z0)
        h1.append(h0[i] + v["a0"] * act0 + v["c0"])
        z1 = v["conv1"][0] * h1[i - 2] + v["conv1"][1] * h1[i] + v["b1"] + v["m1"] * s
        act1 = math.tanh(z1)
        expected.append(0.5 * (v["hw"] * (act0 + act1) + v["hb"]))
    with torch.no_grad():
        y, _ = model(torch.tensor(x)[None, :, None])
    assert y[0, :, 0].tolist() == pytest.approx(expected, abs=1e-6)


def nam_reference(model: WaveNet, x: torch.Tensor, knobs: torch.Tensor | None = None) -> torch.Tensor:
    """NAM's own algorithm, written independently: pad R − 1 zeros, valid convolutions that shrink
    the signal, each layer's mixer and head term cut to the surviving length. x: (batch, time, 1)."""
    config = model.config
    pad = config.receptive_field - 1
    xp = F.pad(x.transpose(1, 2), (pad, 0))
    cond = xp if knobs is None else torch.cat([xp, knobs[:, :, None].expand(-1, -1, xp.shape[2])], dim=1)
    layer_in, head = xp, None
    out_length = x.shape[1]
    for array_cfg, array in zip(config.arrays, model.arrays, strict=True):
        z = F.conv1d(layer_in, array.rechannel.weight)
        for layer in array.layers:
            zc = F.conv1d(z, layer.conv.weight, layer.conv.bias, dilation=layer.conv.dilation[0])
            z1 = zc + F.conv1d(cond, layer.input_mixer.weight)[:, :, -zc.shape[2]:]
            c = array_cfg.channels
            post = torch.tanh(z1[:, :c]) * torch.sigmoid(z1[:, c:]) if array_cfg.gated else torch.tanh(z1)
            z = z[:, :, -post.shape[2]:] + layer.layer1x1(post)
            term = post[:, :, -out_length:]
            head = term if head is None else head[:, :, -out_length:] + term
        head = array.head_rechannel(head)
        layer_in = z
    return (config.head_scale * head).transpose(1, 2)


@pytest.mark.parametrize("gated, n_knobs", [(False, 0), (True, 0), (False, 2)])
def test_forward_equals_nams_zero_padded_valid_convolutions(gated, n_knobs):
    arrays = tuple(LayerArrayConfig(input_size=a.input_size, channels=a.channels, head_size=a.head_size,
                                    dilations=a.dilations, gated=gated, head_bias=a.head_bias)
                   for a in PRESETS["lite"])
    model = _seeded(WaveNetConfig(arrays=arrays, n_knobs=n_knobs))
    torch.manual_seed(1)
    x = 0.5 * torch.randn(2, 3000, 1)
    knobs = torch.rand(2, n_knobs) if n_knobs else None
    with torch.no_grad():
        ours, _ = model(x, knobs)
        reference = nam_reference(model, x, knobs)
    assert ours.shape == (2, 3000, 1)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)


def test_causal():
    model = _seeded(from_preset("nano"))
    x = torch.randn(1, 800, 1)
    changed = x.clone()
    changed[0, 500:] += 1.0
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(changed)
    assert torch.equal(a[0, :500], b[0, :500])
    assert not torch.allclose(a[0, 500:], b[0, 500:])


def test_knobs_are_required_and_change_the_output():
    model = _seeded(from_preset("nano", n_knobs=1))
    x = torch.randn(1, 300, 1)
    with pytest.raises(ConfigError, match="1 knob value"):
        model(x)
    with torch.no_grad():
        low, _ = model(x, torch.tensor([[0.0]]))
        high, _ = model(x, torch.tensor([[1.0]]))
    assert not torch.allclose(low, high)


def test_features_are_every_layers_output():
    model = _seeded(from_preset("nano"))
    with torch.no_grad():
        y, state, features = model(torch.randn(2, 100, 1), return_features=True)
    assert len(features) == len(state) == 20
    assert [tuple(f.shape) for f in features[:7]] == [(2, 100, 4)] * 7
    assert [tuple(f.shape) for f in features[7:]] == [(2, 100, 2)] * 13
    # The state of a layer holds (kernel − 1)·dilation past columns.
    assert [tuple(s.shape) for s in state[:7]] == [(2, 2 * d, 4) for d in (1, 2, 4, 8, 16, 32, 64)]


def test_slimmed_config_channels_round_half_up_and_chain():
    config = slimmed_config(from_preset("standard"), 0.25)
    assert [(a.input_size, a.channels, a.head_size) for a in config.arrays] == [(1, 4, 2), (4, 2, 1)]
    config = slimmed_config(from_preset("lite"), 0.3)  # 12·0.3 = 3.6 → 4, 6·0.3 = 1.8 → 2
    assert [a.channels for a in config.arrays] == [4, 2]
    config = slimmed_config(from_preset("nano"), 0.1)  # never below one channel
    assert [a.channels for a in config.arrays] == [1, 1]
    assert config.width == pytest.approx(0.1)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="preset"):
        from_preset("huge")
    with pytest.raises(ConfigError, match=r"arrays\[0\].head_size"):
        WaveNetConfig(arrays=(LayerArrayConfig(input_size=1, channels=4, head_size=3, dilations=(1,)),
                              LayerArrayConfig(input_size=4, channels=2, head_size=1, dilations=(1,))))
    with pytest.raises(ConfigError, match="width"):
        slimmed_config(from_preset("nano"), 1.5)
    with pytest.raises(ConfigError, match="unknown key 'chanels'"):
        from_dict(WaveNetConfig, {"arrays": [{"input_size": 1, "chanels": 4, "head_size": 1, "dilations": [1]}]})


def test_config_round_trips_through_a_mapping():
    data = {"arrays": [{"input_size": 1, "channels": 3, "head_size": 1, "dilations": [1, 2], "gated": True}],
            "head_scale": 0.1, "n_knobs": 1}
    config = from_dict(WaveNetConfig, data)
    assert config.arrays[0].dilations == (1, 2) and config.arrays[0].gated and config.condition_size == 2
    assert config.receptive_field == 1 + 2 * 3


def test_a_wavenet_built_under_inference_mode_runs_and_sees_weight_changes():
    import torch

    from models.nets.wavenet import WaveNet, from_preset

    x = torch.randn(1, 300, 1) * 0.2
    with torch.inference_mode():
        model = WaveNet(from_preset("nano"))
        before = model(x)[0].clone()
        model.arrays[1].head_rechannel.bias.add_(0.5)  # NAM's nano: the last head has a bias
        after = model(x)[0]
    # head_scale 0.02 times the added head bias shifts every output sample by 0.01
    assert torch.allclose(after - before, torch.full_like(before, 0.01), atol=1e-6)
