"""The numba WaveNet kernel streams what the PyTorch network renders in one go (render_whole) and
what NAM's C++ engine renders for a trained .nam file (tests/data/nam-reference)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import models.inference.streaming  # noqa: F401  (registers the architectures slim() looks up)
from models.errors import ConfigError
from models.inference.kernels.wavenet import WaveNetKernelStreamer
from models.inference.rendering import render_whole
from models.nets.slimmable import slim
from models.nets.wavenet import LayerArrayConfig, WaveNetConfig, build_wavenet, from_preset

BLOCKS = (1, 7, 64, 4096)


def _network(config: WaveNetConfig, seed: int, head_scale: float = 0.5):
    # The zoo's initialisation with a larger head scale, so outputs are O(0.1–1), not O(0.01).
    torch.manual_seed(seed)
    return build_wavenet(dataclasses.replace(config, head_scale=head_scale))


def _audio(n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.3).astype(np.float32)


def _streamed(streamer: WaveNetKernelStreamer, audio: np.ndarray, lengths) -> np.ndarray:
    edges = np.cumsum([0, *lengths])
    return np.concatenate([streamer.process(audio[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)])


def _check_all_blocks(model, audio: np.ndarray, knobs=None) -> None:
    expected = render_whole(model, audio, knobs)
    assert 0.05 < np.abs(expected).max() < 5.0  # the comparison is not between near-zero signals
    streamer = WaveNetKernelStreamer(model, knobs)
    for block in BLOCKS:
        streamer.reset()
        lengths = [block] * (audio.size // block) + ([audio.size % block] if audio.size % block else [])
        np.testing.assert_allclose(_streamed(streamer, audio, lengths), expected, atol=1e-5, rtol=0,
                                   err_msg=f"block {block}")
    # Random lengths, some longer than the rings' room (they grow mid-stream, keeping the history).
    rng = np.random.default_rng(7)
    lengths, total = [], 0
    while total < audio.size:
        n = int(min(rng.choice([1, 3, 50, 130, 700, 1500]), audio.size - total))
        lengths.append(n)
        total += n
    streamer.reset()
    np.testing.assert_allclose(_streamed(streamer, audio, lengths), expected, atol=1e-5, rtol=0,
                               err_msg=f"lengths {lengths}")


def test_the_standard_preset_streams_as_render_whole():
    _check_all_blocks(_network(from_preset("standard"), seed=0), _audio(6000))


def test_the_nano_preset_streams_as_render_whole():
    _check_all_blocks(_network(from_preset("nano"), seed=1), _audio(6000))


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25])
def test_a_slimmed_network_streams_as_render_whole(width):
    full = _network(from_preset("slimmable"), seed=2)
    _check_all_blocks(slim(full, width), _audio(5000))


@pytest.mark.parametrize(("activation", "gated", "head_bias"),
                         [("ReLU", True, False), ("Sigmoid", False, True), ("Hardtanh", True, True),
                          ("Tanh", True, False)])
def test_hand_built_layouts_stream_as_render_whole(activation, gated, head_bias):
    arrays = (
        LayerArrayConfig(input_size=1, channels=6, head_size=3, dilations=(1, 3, 9), kernel_size=2,
                         activation=activation, gated=gated, head_bias=head_bias),
        LayerArrayConfig(input_size=6, channels=3, head_size=1, dilations=(2, 5), kernel_size=4,
                         activation=activation, gated=gated, head_bias=head_bias),
    )
    _check_all_blocks(_network(WaveNetConfig(arrays=arrays), seed=3, head_scale=2.0), _audio(3000))


def test_a_knob_value_enters_through_the_input_mixer():
    model = _network(from_preset("nano", n_knobs=1), seed=4)
    audio = _audio(4000)
    _check_all_blocks(model, audio, knobs=[0.7])
    # The knob changes the output, so the test above would see it ignored.
    other = WaveNetKernelStreamer(model, [-0.4]).process(audio)
    assert np.abs(other - render_whole(model, audio, [0.7])).max() > 1e-3


def test_a_trained_nam_network_streams_as_nams_engine_renders():
    """NAM's standard WaveNet (A1, trained) matches the render of NAM's C++ engine in 64-sample blocks."""
    import soundfile as sf

    from models.export.nam_read import load_nam

    root = Path(__file__).parents[1] / "data" / "nam-reference"
    model, _ = load_nam(root / "models" / "wavenet_a1_standard.nam")
    x, _ = sf.read(root / "input.wav", dtype="float32")
    expected, _ = sf.read(root / "renders" / "wavenet_a1_standard.wav", dtype="float32")
    n = 4800
    y = _streamed(WaveNetKernelStreamer(model), x[:n], [64] * (n // 64))
    assert np.abs(y - expected[:n]).max() < 1e-5


def test_reset_goes_back_to_a_silent_past():
    model = _network(from_preset("nano"), seed=5)
    audio = _audio(1000)
    streamer = WaveNetKernelStreamer(model)
    streamer.process(_audio(700, seed=9))
    streamer.reset()
    np.testing.assert_allclose(streamer.process(audio), render_whole(model, audio), atol=1e-5, rtol=0)


def test_a_wrong_number_of_knob_values_is_refused():
    with pytest.raises(ConfigError, match="1 knob value"):
        WaveNetKernelStreamer(build_wavenet(from_preset("nano", n_knobs=1)))
