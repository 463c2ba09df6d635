""".nam export and import: NAM's weight order on hand-built networks, round trips that render identically,
clear refusals."""

import json

import numpy as np
import pytest
import torch

from models.errors import CheckpointError, ConfigError
from models.export.nam_format import FORMAT_VERSION, NamLSTM, NamLSTMConfig, export_nam, load_nam
from models.inference.rendering import render_whole
from models.nets.architectures import build_model
from models.nets.lstm import LSTMConfig
from models.nets.slimmable import slim
from models.nets.wavenet import LayerArrayConfig, WaveNet, WaveNetConfig, build_wavenet, from_preset


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(7)
    return (0.3 * rng.standard_normal(5000)).astype(np.float32)


def _tiny_wavenet() -> WaveNet:
    """Two arrays, every weight set so that NAM's order reads 1, 2, 3, …, 32."""
    config = WaveNetConfig(arrays=(
        LayerArrayConfig(input_size=1, channels=2, head_size=1, dilations=(1,), kernel_size=2),
        LayerArrayConfig(input_size=2, channels=1, head_size=1, dilations=(2,), kernel_size=2, head_bias=True),
    ), head_scale=0.02)
    model = WaveNet(config)
    a, b = model.arrays
    t = torch.tensor
    with torch.no_grad():
        a.rechannel.weight.copy_(t([[[1.0]], [[2.0]]]))
        a.layers[0].conv.weight.copy_(t([[[3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0], [9.0, 10.0]]]))  # (out, in, tap)
        a.layers[0].conv.bias.copy_(t([11.0, 12.0]))
        a.layers[0].input_mixer.weight.copy_(t([[[13.0]], [[14.0]]]))
        a.layers[0].layer1x1.weight.copy_(t([[[15.0], [16.0]], [[17.0], [18.0]]]))
        a.layers[0].layer1x1.bias.copy_(t([19.0, 20.0]))
        a.head_rechannel.weight.copy_(t([[[21.0], [22.0]]]))  # no head bias on the first array
        b.rechannel.weight.copy_(t([[[23.0], [24.0]]]))
        b.layers[0].conv.weight.copy_(t([[[25.0, 26.0]]]))
        b.layers[0].conv.bias.copy_(t([27.0]))
        b.layers[0].input_mixer.weight.copy_(t([[[28.0]]]))
        b.layers[0].layer1x1.weight.copy_(t([[[29.0]]]))
        b.layers[0].layer1x1.bias.copy_(t([30.0]))
        b.head_rechannel.weight.copy_(t([[[31.0]]]))
        b.head_rechannel.bias.copy_(t([32.0]))
    return model


def test_wavenet_weights_follow_nams_documented_order(tmp_path):
    document = export_nam(_tiny_wavenet(), tmp_path / "tiny.nam", 48000)
    assert document["weights"] == [float(i) for i in range(1, 33)] + [pytest.approx(0.02)]
    written = json.loads((tmp_path / "tiny.nam").read_text())
    assert written["version"] == FORMAT_VERSION == "0.5.4"
    assert written["architecture"] == "WaveNet" and written["sample_rate"] == 48000.0
    assert written["config"]["head"] is None and written["config"]["head_scale"] == 0.02
    assert written["config"]["layers"][1] == {
        "input_size": 2, "condition_size": 1, "head_size": 1, "channels": 1, "kernel_size": 2,
        "dilations": [2], "activation": "Tanh", "gated": False, "head_bias": True}
    assert set(written["metadata"]) >= {"date", "earshot"}
    assert not list(tmp_path.glob(".*.tmp"))


def _scalar_lstm_settled_state(w_ih, w_hh, b, steps):
    """One-unit LSTM on zeros from a zero state, gates i, f, g, o, written with scalar formulas."""
    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))
    h = c = 0.0
    for _ in range(steps):
        pre = [w_ih[k] * 0.0 + w_hh[k] * h + b[k] for k in range(4)]
        i, f, g, o = sigmoid(pre[0]), sigmoid(pre[1]), np.tanh(pre[2]), sigmoid(pre[3])
        c = f * c + i * g
        h = o * np.tanh(c)
    return h, c


def test_lstm_weights_follow_nams_documented_order(tmp_path):
    model = NamLSTM(NamLSTMConfig(hidden_size=1, num_layers=1))
    w_ih, w_hh = [0.5, -0.25, 0.75, 1.0], [0.1, 0.2, -0.3, 0.4]
    b_ih, b_hh = [0.3, 0.9, 0.2, -0.1], [0.05, 0.1, 0.3, 0.2]
    with torch.no_grad():
        model.lstm.weight_ih_l0.copy_(torch.tensor(w_ih)[:, None])
        model.lstm.weight_hh_l0.copy_(torch.tensor(w_hh)[:, None])
        model.lstm.bias_ih_l0.copy_(torch.tensor(b_ih))
        model.lstm.bias_hh_l0.copy_(torch.tensor(b_hh))
        model.head.weight.fill_(1.5)
        model.head.bias.fill_(-0.5)
    bias = [x + y for x, y in zip(b_ih, b_hh, strict=True)]
    h0, c0 = _scalar_lstm_settled_state(w_ih, w_hh, bias, steps=100)  # 1 s at 100 Hz
    weights = export_nam(model, tmp_path / "lstm.nam", sample_rate=100)["weights"]
    rows = [v for k in range(4) for v in (w_ih[k], w_hh[k])]  # [W_ih | W_hh] row by row
    expected = rows + bias + [h0, c0, 1.5, -0.5]
    assert weights == pytest.approx(expected, abs=1e-6)
    assert abs(h0) > 0.05  # the settled state is not the zero state


@pytest.mark.parametrize("preset, width", [("standard", None), ("standard", 0.5), ("nano", None),
                                           ("slimmable", 0.25)])
def test_wavenet_round_trip_renders_identically(tmp_path, audio, preset, width):
    torch.manual_seed(0)
    model = build_wavenet(from_preset(preset)).eval()
    export_nam(model, tmp_path / "m.nam", 44100, width=width, metadata={"name": "test amp"})
    loaded, info = load_nam(tmp_path / "m.nam")
    assert info["version"] == "0.5.4" and info["sample_rate"] == 44100.0
    assert info["metadata"]["name"] == "test amp"
    reference = model if width is None else slim(model, width)
    assert [a.channels for a in loaded.config.arrays] == [a.channels for a in reference.config.arrays]
    np.testing.assert_allclose(render_whole(loaded, audio), render_whole(reference, audio), atol=1e-6, rtol=0)


def test_gated_wavenet_round_trip(tmp_path, audio):
    torch.manual_seed(2)
    arrays = (LayerArrayConfig(input_size=1, channels=4, head_size=2, dilations=(1, 2, 4), gated=True),
              LayerArrayConfig(input_size=4, channels=2, head_size=1, dilations=(8, 16), head_bias=True,
                               activation="ReLU"))
    model = WaveNet(WaveNetConfig(arrays=arrays)).eval()
    export_nam(model, tmp_path / "g.nam", 48000)
    loaded, _ = load_nam(tmp_path / "g.nam")
    np.testing.assert_allclose(render_whole(loaded, audio), render_whole(model, audio), atol=1e-6, rtol=0)


def test_lstm_round_trip_starts_from_the_settled_state(tmp_path, audio):
    torch.manual_seed(0)
    model = NamLSTM(NamLSTMConfig(hidden_size=8, num_layers=2)).eval()
    with torch.no_grad():
        model.lstm.bias_ih_l0.add_(0.5)  # a clearly non-zero resting state
    export_nam(model, tmp_path / "l.nam", sample_rate=8000)
    loaded, info = load_nam(tmp_path / "l.nam")
    assert info["architecture"] == "LSTM"
    # The file's network equals the original after one second (8000 samples) of silence.
    warmed = render_whole(model, np.concatenate([np.zeros(8000, np.float32), audio]))[8000:]
    np.testing.assert_allclose(render_whole(loaded, audio), warmed, atol=1e-5, rtol=0)
    assert not np.allclose(render_whole(model, audio)[:50], warmed[:50], atol=1e-4)


def test_refuses_what_nam_cannot_express(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="no input skip"):
        export_nam(build_model(LSTMConfig(layers=(8, 8))), tmp_path / "s.nam", 48000)
    with pytest.raises(ConfigError, match="differ in size"):
        export_nam(build_model(LSTMConfig(layers=(32, 8))), tmp_path / "s.nam", 48000)
    with pytest.raises(ConfigError, match="knob"):
        export_nam(build_wavenet(from_preset("nano", n_knobs=1)), tmp_path / "k.nam", 48000)
    assert not list(tmp_path.iterdir())


def _write(path, document):
    path.write_text(json.dumps(document))
    return path


def test_load_errors_say_what_is_wrong(tmp_path):
    torch.manual_seed(0)
    good = export_nam(build_wavenet(from_preset("nano")), tmp_path / "n.nam", 48000)
    with pytest.raises(CheckpointError, match="not found"):
        load_nam(tmp_path / "missing.nam")
    (tmp_path / "bad.nam").write_text("{\n\"version\": ")
    with pytest.raises(CheckpointError, match="line 2: not valid JSON"):
        load_nam(tmp_path / "bad.nam")
    with pytest.raises(CheckpointError, match="0.7.x files come from NAM 0.13"):
        load_nam(_write(tmp_path / "new.nam", {**good, "version": "0.7.0"}))
    with pytest.raises(CheckpointError, match="expected 842 weights .* found 841"):
        load_nam(_write(tmp_path / "short.nam", {**good, "weights": good["weights"][:-1]}))
    with pytest.raises(CheckpointError, match="'ConvNet' is not supported"):
        load_nam(_write(tmp_path / "c.nam", {**good, "architecture": "ConvNet"}))
    with pytest.raises(CheckpointError, match="missing key 'weights'"):
        load_nam(_write(tmp_path / "w.nam", {k: v for k, v in good.items() if k != "weights"}))
    no_rate = {k: v for k, v in good.items() if k != "sample_rate"}
    assert load_nam(_write(tmp_path / "r.nam", no_rate))[1]["sample_rate"] == 48000.0
