"""Block streaming (NumPy and PyTorch engines) equals whole-file rendering, and a WaveNet block costs
work proportional to its length."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.errors import ConfigError
from models.inference.rendering import render_whole
from models.inference.streaming import measure_rtf, stream
from models.nets.architectures import build_model
from models.nets.lstm import LSTMConfig
from models.nets.slimmable import slim
from models.nets.wavenet import (
    LayerArrayConfig,
    WaveNet,
    WaveNetConfig,
    build_wavenet,
    from_preset,
    macs_per_sample,
)

BLOCKS = [64, 128, 256, 512, 37, 333, 1000]


@pytest.fixture(scope="module")
def audio():
    # Longer than the 4093-sample receptive field, so the carried history matters.
    rng = np.random.default_rng(3)
    t = np.arange(6000) / 48000
    return (0.4 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def wavenet():
    torch.manual_seed(0)
    return build_wavenet(from_preset("standard")).eval()


@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("block", BLOCKS)
def test_wavenet_stream_equals_whole_file(wavenet, audio, block, engine):
    np.testing.assert_allclose(stream(wavenet, audio, block, engine=engine), render_whole(wavenet, audio),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_gated_relu_wavenet_streams_like_the_whole_file(audio, engine):
    torch.manual_seed(4)
    arrays = (LayerArrayConfig(input_size=1, channels=6, head_size=3, dilations=(1, 4, 16, 64), gated=True),
              LayerArrayConfig(input_size=6, channels=3, head_size=1, dilations=(2, 8, 32), activation="ReLU",
                               head_bias=True))
    model = WaveNet(WaveNetConfig(arrays=arrays, n_knobs=1)).eval()
    np.testing.assert_allclose(stream(model, audio, 100, [0.7], engine=engine),
                               render_whole(model, audio, [0.7]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("engine", ["auto", "torch"])
@pytest.mark.parametrize("block", [64, 128, 512, 37])
def test_lstm_stream_equals_whole_file(audio, block, engine):
    torch.manual_seed(0)
    model = build_model(LSTMConfig(layers=(16, 8))).eval()
    np.testing.assert_allclose(stream(model, audio, block, engine=engine), render_whole(model, audio),
                               atol=1e-5, rtol=0)


def test_stream_with_knobs_and_at_a_width(audio):
    torch.manual_seed(0)
    model = build_wavenet(from_preset("feather", n_knobs=1)).eval()
    for engine in ("numpy", "torch"):
        np.testing.assert_allclose(stream(model, audio, 128, [0.3], engine=engine), render_whole(model, audio, [0.3]),
                                   atol=1e-5, rtol=0)
    for conditioning in ("film", "concat"):
        torch.manual_seed(0)
        lstm = build_model(LSTMConfig(layers=(16, 8), n_knobs=2, conditioning=conditioning)).eval()
        np.testing.assert_allclose(stream(lstm, audio, 256, [0.1, 0.9]), render_whole(lstm, audio, [0.1, 0.9]),
                                   atol=1e-5, rtol=0)


def test_slimmed_stream_equals_sliced_whole_file(wavenet, audio):
    with torch.no_grad():
        sliced = wavenet(torch.from_numpy(audio)[None, :, None], width=0.25)[0][0, :, 0].numpy()
    for engine in ("numpy", "torch"):
        np.testing.assert_allclose(stream(slim(wavenet, 0.25), audio, 64, engine=engine), sliced, atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("width", [1.0, 0.5])
def test_wavenet_block_work_is_proportional_to_block_length(wavenet, width):
    """torch's flop counter over a stateful block: exactly 2·T·MACs, no receptive field recomputed."""
    model = slim(wavenet, width)
    counts = {}
    for block in (64, 512):
        state = model.silence_state(1)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randn(1, block, 1), state=state)
        counts[block] = counter.get_total_flops()
    assert counts[512] == 8 * counts[64] == 2 * 512 * macs_per_sample(wavenet.config, width)


def test_stream_rejects_bad_input(wavenet, audio):
    with pytest.raises(ConfigError, match="block_samples"):
        stream(wavenet, audio, 0)
    with pytest.raises(ConfigError, match=r"shape \(time,\)"):
        stream(wavenet, np.zeros((100, 2), np.float32), 64)
    with pytest.raises(ConfigError, match="0 knob value"):
        stream(wavenet, audio, 64, [0.5])
    with pytest.raises(ConfigError, match="WaveNets only"):
        stream(build_model(LSTMConfig(layers=(8, 8))), audio, 64, engine="numpy")


def test_measure_rtf_restores_mode_and_threads():
    torch.manual_seed(0)
    model = build_wavenet(from_preset("nano")).train()
    threads = torch.get_num_threads()
    rtf = measure_rtf(model, 8000, 256, seconds=0.1, repeats=1, threads=1)
    assert np.isfinite(rtf) and rtf > 0
    assert model.training and torch.get_num_threads() == threads
    assert measure_rtf(model, 8000, 256, seconds=0.1, repeats=1, clock="cpu") > 0
    with pytest.raises(ConfigError, match="repeats"):
        measure_rtf(model, 8000, 256, repeats=0)
    with pytest.raises(ConfigError, match="'wall' or 'cpu'"):
        measure_rtf(model, 8000, 256, clock="gpu")


def test_numpy_streamer_with_changing_block_lengths(wavenet, audio):
    """Blocks that grow past the buffers (re-allocation keeps the history) and shrink again, and
    enough of them to rewind the rings several times, still give the whole-file output."""
    from models.inference.streaming import WaveNetStreamer

    streamer = WaveNetStreamer(wavenet)
    lengths = [7, 64, 600, 1, 333, 1200, 64, 64, 900, 512, 512, 1000]
    edges = np.cumsum([0] + lengths)
    assert edges[-1] <= audio.size
    out = np.concatenate([streamer.process(audio[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    np.testing.assert_allclose(out, render_whole(wavenet, audio[: edges[-1]]), atol=1e-5, rtol=0)


def test_a_network_read_from_a_newer_nam_file_streams_like_nams_engine():
    """A 0.7 SlimmableContainer's small WaveNet (NamWaveNet, no registered architecture) streams in
    NAM's plug-in block size and matches the render of NAM's C++ engine (tests/data/nam-reference)."""
    import soundfile as sf

    from models.export.nam_read import load_nam

    root = Path(__file__).parents[1] / "data" / "nam-reference"
    model, _ = load_nam(root / "models" / "A2.nam", slim=0.0)
    x, _ = sf.read(root / "input.wav", dtype="float32")
    expected, _ = sf.read(root / "renders" / "A2_slim0.0.wav", dtype="float32")
    n = 4800
    y = stream(model, x[:n], 64)
    assert np.abs(y - expected[:n]).max() < 1e-5


@pytest.mark.parametrize("net", ["S-16-8", "NAM-LSTM-2x8", "WN-standard"])
def test_the_compiled_engine_streams_like_the_whole_file(net, wavenet, audio):
    from models.nets.nam_lstm import NamLSTM, NamLSTMConfig

    torch.manual_seed(5)
    model = {"S-16-8": lambda: build_model(LSTMConfig(layers=(16, 8))),
             "NAM-LSTM-2x8": lambda: NamLSTM(NamLSTMConfig(hidden_size=8, num_layers=2)),
             "WN-standard": lambda: wavenet}[net]().eval()
    for block in (64, 333):
        np.testing.assert_allclose(stream(model, audio, block, engine="compiled"), render_whole(model, audio),
                                   atol=1e-5, rtol=0)


def test_the_compiled_engine_names_the_networks_it_runs():
    from models.export.nam_read import load_nam

    model, _ = load_nam(Path(__file__).parents[1] / "data" / "nam-reference" / "models" / "A2.nam")
    with pytest.raises(ConfigError, match=r"streaming engine 'compiled': expected one of LSTMStack, NamLSTM, "
                                          r"WaveNet, found NamWaveNet"):
        stream(model, np.zeros(64, np.float32), 64, engine="compiled")


@pytest.mark.parametrize("engine", ["numpy", "compiled"])
def test_a_head_bias_on_an_inner_array_streams(audio, engine):
    """NAM's configs may give any array a head bias; the NumPy streamer once failed on an inner one
    ("Can't call numpy() on Tensor that requires grad")."""
    arrays = (LayerArrayConfig(input_size=1, channels=4, head_size=3, dilations=(1, 2), head_bias=True),
              LayerArrayConfig(input_size=4, channels=3, head_size=1, dilations=(1, 4), head_bias=True))
    torch.manual_seed(2)
    model = build_wavenet(WaveNetConfig(arrays=arrays, head_scale=0.5)).eval()
    np.testing.assert_allclose(stream(model, audio, 64, engine=engine), render_whole(model, audio), atol=1e-5, rtol=0)
