""".nam export and import: NAM's weight order on hand-built networks, round trips that render identically,
clear refusals."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.errors import CheckpointError, ConfigError
from models.export import nam_loudness
from models.export.nam_format import (
    FORMAT_VERSION,
    NamLSTM,
    NamLSTMConfig,
    container_thresholds,
    export_nam,
    export_nam_container,
    load_nam,
    wavenet_nam_config_07,
    wavenet_weights,
)
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


@pytest.mark.parametrize("preset, width", [pytest.param("standard", None, marks=pytest.mark.slow),
                                           pytest.param("standard", 0.5, marks=pytest.mark.slow), ("nano", None),
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
    with pytest.raises(CheckpointError, match="expected 842 weights .* found 841"):
        load_nam(_write(tmp_path / "short.nam", {**good, "weights": good["weights"][:-1]}))
    with pytest.raises(CheckpointError, match="'ConvNet' is not supported"):
        load_nam(_write(tmp_path / "c.nam", {**good, "architecture": "ConvNet"}))
    with pytest.raises(CheckpointError, match="missing key 'weights'"):
        load_nam(_write(tmp_path / "w.nam", {k: v for k, v in good.items() if k != "weights"}))
    no_rate = {k: v for k, v in good.items() if k != "sample_rate"}
    assert load_nam(_write(tmp_path / "r.nam", no_rate))[1]["sample_rate"] == 48000.0


# --- format 0.7.0, NAM's loudness metadata and the SlimmableContainer ------------------------------------

DATA = Path(__file__).resolve().parents[1] / "data"
REFERENCE = DATA / "nam-reference" / "models"


def _nam013_network() -> WaveNet:
    """The network of tests/data/nam-0.13-export/README.md: a gated tanh array and a Hardtanh array."""
    torch.manual_seed(11)
    return WaveNet(WaveNetConfig(arrays=(
        LayerArrayConfig(input_size=1, channels=4, head_size=2, dilations=(1, 2), kernel_size=3, gated=True),
        LayerArrayConfig(input_size=4, channels=2, head_size=1, dilations=(4,), kernel_size=2,
                         activation="Hardtanh", head_bias=True),
    ), head_scale=0.02)).eval()


def test_a_070_wavenet_has_the_config_nam_013_writes_and_the_weights_of_054(tmp_path):
    model = _nam013_network()
    new = export_nam(model, tmp_path / "new.nam", 48000, nam_version="0.7.0")
    old = export_nam(model, tmp_path / "old.nam", 48000)
    written = json.loads((tmp_path / "new.nam").read_text())
    assert written["version"] == "0.7.0" and written["architecture"] == "WaveNet"
    assert written["config"] == json.loads((DATA / "nam-0.13-export" / "wavenet_config.json").read_text())
    assert len(written["weights"]) == 306  # as many as NAM 0.13 wrote for this network
    assert new["weights"] == old["weights"]  # NAM 0.13 keeps 0.5.x's weight order for this layout
    assert written["metadata"]["earshot"]["nam_format"] == "0.7.0"


def test_an_lstm_file_differs_between_versions_only_in_its_version(tmp_path):
    torch.manual_seed(0)
    model = NamLSTM(NamLSTMConfig(hidden_size=3, num_layers=2)).eval()
    old = export_nam(model, tmp_path / "a.nam", 48000)
    new = export_nam(model, tmp_path / "b.nam", 48000, nam_version="0.7.0")
    assert (old["version"], new["version"]) == ("0.5.4", "0.7.0")
    assert old["config"] == new["config"] == {"input_size": 1, "hidden_size": 3, "num_layers": 2}
    assert old["weights"] == new["weights"]
    with pytest.raises(ConfigError, match=r"nam_version: expected one of \['0.5.4', '0.7.0'\], found '0.6.0'"):
        export_nam(model, tmp_path / "c.nam", 48000, nam_version="0.6.0")
    assert not (tmp_path / "c.nam").exists()


def test_the_loudness_signal_is_nams():
    # sha256 of nam/models/_resources/loudness_input.wav in neural-amp-modeler 0.12.3 and 0.13.0; the
    # samples and RMS are what NAM's own reader (nam.data.wav_to_np) gives for it.
    wav = Path(nam_loudness.LOUDNESS_INPUT)
    assert hashlib.sha256(wav.read_bytes()).hexdigest() == \
        "84f3c44ddb228909d7ed7bbfeb4c12d0bb761cfd24c2b1925a96071df9392be5"
    x = nam_loudness.loudness_input()
    assert x.shape == (48000,) and x.dtype == np.float32
    np.testing.assert_allclose(x[:5], [0.05720448, 0.01484132, 0.08147311, 0.06109118, 0.14942849], atol=5e-9)
    assert float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) == pytest.approx(0.1784837687870774, abs=1e-9)


def test_gain_is_nams_measure_of_compression():
    # By hand from NAM's definition, with max = 11·r(1) and min = max/2: an output RMS growing linearly
    # with the input level sums to min → 0; silent at level 0 and r at the 10 others: (10r − 5.5r)/5.5r
    # = 9/11; as loud at every level (an output that does not depend on the input) → 1.
    linear = nam_loudness.GAIN_LEVELS * 0.3
    assert nam_loudness.gain_from_rms(linear) == pytest.approx(0.0, abs=1e-12)
    assert nam_loudness.gain_from_rms(np.r_[0.0, np.full(10, 0.3)]) == pytest.approx(9 / 11)
    assert nam_loudness.gain_from_rms(np.full(11, 0.3)) == pytest.approx(1.0)
    assert nam_loudness.gain_from_rms(np.r_[np.full(10, 0.6), 0.3]) == 1.0  # louder than "square": clipped
    assert nam_loudness.loudness_db(0.1) == pytest.approx(-20.0)
    assert math.isnan(nam_loudness.gain_from_rms(np.zeros(11)))


@pytest.mark.parametrize("name, loudness, gain", [
    # NAM 0.12.3's own measure (init_from_nam, then _metadata_loudness() and _metadata_gain()) of NAM's example
    # files, run on this machine. For wavenet.nam it equals the file's metadata (-20.020729064941406, gain
    # 0.19575619747898518); lstm.nam's metadata (-37.84) was measured at training time from another start state
    # than the one the file stores, so NAM itself measures the file's network at -38.07.
    ("wavenet", -20.020729064941406, 0.19575620410929595),
    ("lstm", -38.071746826171875, 0.03839747434927837),
])
def test_loudness_and_gain_equal_nams_on_its_example_files(name, loudness, gain):
    model, _ = load_nam(REFERENCE / f"{name}.nam")
    levels = nam_loudness.level_metadata(model.eval())
    assert levels["loudness"] == pytest.approx(loudness, abs=1e-5)
    assert levels["gain"] == pytest.approx(gain, abs=1e-6)


def test_exports_carry_the_loudness_of_the_network_they_hold(tmp_path):
    torch.manual_seed(0)
    model = NamLSTM(NamLSTMConfig(hidden_size=4, num_layers=1)).eval()
    with torch.no_grad():
        model.lstm.bias_ih_l0.add_(0.7)
    metadata = export_nam(model, tmp_path / "l.nam", 48000, metadata={"name": "x"})["metadata"]
    # The file starts from the settled state, not from the module's zero buffers: its loudness is that of
    # the network read back from the file.
    loaded, _ = load_nam(tmp_path / "l.nam")
    expected = nam_loudness.level_metadata(loaded.eval())
    assert metadata["loudness"] == pytest.approx(expected["loudness"], abs=1e-6)
    assert metadata["gain"] == pytest.approx(expected["gain"], abs=1e-7)
    assert metadata["name"] == "x" and set(metadata) >= {"date", "loudness", "gain", "earshot"}


def _engine_pick(submodels, v):
    """NeuralAmpModelerCore's ContainerModel::_get_index_for_slimmable_size: the first submodel with
    v < max_value, else the last (NAM/container.cpp)."""
    for i, submodel in enumerate(submodels):
        if v < submodel["max_value"]:
            return i
    return len(submodels) - 1


def test_container_thresholds_pick_the_smallest_width_at_or_above_the_slim_value():
    widths = [0.25, 0.5, 0.75, 1.0]
    submodels = [{"max_value": m} for m in container_thresholds(widths)]
    assert [s["max_value"] for s in submodels][-1] == 1.0
    for v, expected in [(0.0, 0.25), (0.1, 0.25), (0.25, 0.25), (0.2500001, 0.5), (0.5, 0.5), (0.74, 0.75),
                        (0.75, 0.75), (0.76, 1.0), (1.0, 1.0), (1.5, 1.0)]:
        assert widths[_engine_pick(submodels, v)] == expected, v
    halves = [{"max_value": m} for m in container_thresholds([0.5, 1.0])]
    assert [[0.5, 1.0][_engine_pick(halves, v)] for v in (0.0, 0.5, 0.51)] == [0.5, 0.5, 1.0]
    for bad in ([], [0.5, 0.25], [0.0, 1.0], [0.5, 1.5], [0.5, 0.5]):
        with pytest.raises(ConfigError, match="container widths"):
            container_thresholds(bad)


def test_a_slimmable_wavenet_container_holds_one_070_wavenet_per_width(tmp_path):
    torch.manual_seed(4)
    model = WaveNet(WaveNetConfig(arrays=(  # nano's channels, few layers: a quick loudness measure
        LayerArrayConfig(input_size=1, channels=4, head_size=2, dilations=(1, 2)),
        LayerArrayConfig(input_size=4, channels=2, head_size=1, dilations=(1,), head_bias=True)))).eval()
    document = export_nam_container(model, tmp_path / "c.nam", 48000, [0.5, 0.25, 1.0, 0.75],
                                    metadata={"name": "nano"})
    written = json.loads((tmp_path / "c.nam").read_text())
    assert written == json.loads(json.dumps(document))
    assert (written["version"], written["architecture"], written["weights"]) == ("0.7.0", "SlimmableContainer", [])
    assert written["sample_rate"] == 48000.0 and written["metadata"]["name"] == "nano"
    submodels = written["config"]["submodels"]
    assert [s["max_value"] for s in submodels] == [math.nextafter(w, 2.0) for w in (0.25, 0.5, 0.75)] + [1.0]
    # 4 and 2 channels; a width keeps round-half-up of each, at least one.
    assert [[a["channels"] for a in s["model"]["config"]["layers"]] for s in submodels] == [[1, 1], [2, 1], [3, 2], [4, 2]]
    for width, submodel in zip((0.25, 0.5, 0.75, 1.0), submodels, strict=True):
        cut = slim(model, width).eval()
        assert submodel["model"]["version"] == "0.7.0" and submodel["model"]["architecture"] == "WaveNet"
        assert submodel["model"]["weights"] == pytest.approx(wavenet_weights(cut), abs=0)
        assert submodel["model"]["config"] == wavenet_nam_config_07(cut.config)
        assert submodel["model"]["metadata"]["loudness"] == pytest.approx(
            nam_loudness.level_metadata(cut)["loudness"], abs=1e-9)
    # The plug-in starts with the widest: the container's level is the full network's.
    assert written["metadata"]["loudness"] == submodels[-1]["model"]["metadata"]["loudness"]
    assert written["metadata"]["earshot"]["widths"] == [0.25, 0.5, 0.75, 1.0]


def test_a_container_refuses_what_it_cannot_hold(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="widths of a slimmable WaveNet; found NamLSTM"):
        export_nam_container(NamLSTM(NamLSTMConfig()), tmp_path / "l.nam", 48000, [0.5, 1.0])
    with pytest.raises(ConfigError, match="0.25 and 0.3 cut WN-nano to the same channels"):
        export_nam_container(build_wavenet(from_preset("nano")), tmp_path / "n.nam", 48000, [0.25, 0.3, 1.0])
    assert not list(tmp_path.iterdir())
