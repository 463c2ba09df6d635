"""Offline chunked and streaming rendering agree with whole-file rendering."""

import numpy as np
import pytest
import torch

from models.inference.rendering import render, render_whole
from models.inference.streaming import stream
from models.nets.architectures import build_model
from models.nets.lstm import LSTMConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return build_model(LSTMConfig(layers=(16, 8))).eval()


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(0)
    n = 48000
    t = np.arange(n) / 48000
    return (0.4 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("chunk, warmup", [(1000, 500), (4096, 2048), (777, 2048)])
def test_chunked_equals_whole_file(model, audio, chunk, warmup):
    whole = render_whole(model, audio)
    chunked = render(model, audio, chunk_samples=chunk, warmup_samples=warmup)
    assert chunked.shape == whole.shape
    # The first chunk starts from the same zero state, so it is exact up to float noise.
    np.testing.assert_allclose(chunked[: warmup + chunk], whole[: warmup + chunk], atol=1e-6)
    assert np.abs(chunked - whole).max() <= 1e-4


def test_too_little_warmup_shows_and_the_state_check_repairs_it(model, audio):
    # A warm-up of 0 restarts each chunk from a zero state: unchecked, the seams differ from whole-file.
    whole = render_whole(model, audio)
    unchecked = render(model, audio, chunk_samples=1000, warmup_samples=0, state_tolerance=None)
    assert np.abs(unchecked - whole).max() > 1e-3
    # Checked, every chunk's state disagrees with its predecessor's and is run again from it.
    checked = render(model, audio, chunk_samples=1000, warmup_samples=0)
    np.testing.assert_allclose(checked, whole, atol=1e-5)


def test_max_batch_groups_do_not_change_the_result(model, audio):
    a = render(model, audio, chunk_samples=1000, warmup_samples=500, max_batch=1000)
    b = render(model, audio, chunk_samples=1000, warmup_samples=500, max_batch=7)
    # Different batch sizes take different BLAS paths, so only float noise may differ.
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("block", [64, 128, 333])
def test_streaming_equals_whole_file(model, audio, block):
    np.testing.assert_allclose(stream(model, audio[:20000], block, engine="torch"), render_whole(model, audio[:20000]),
                               atol=1e-5)


def test_conditioned_rendering_uses_the_knobs():
    torch.manual_seed(0)
    net = build_model(LSTMConfig(layers=(8, 8), n_knobs=1)).eval()
    x = np.random.default_rng(1).standard_normal(9000).astype(np.float32) * 0.3
    np.testing.assert_allclose(render(net, x, [0.7], 2000, 1000), render_whole(net, x, [0.7]), atol=1e-4)
    assert np.abs(render(net, x, [0.0]) - render(net, x, [1.0])).max() > 1e-3


@pytest.fixture(scope="module")
def trained():
    """An S-16-8 trained briefly on the overdrive (60 Adam steps, 1.5 s): trained recurrent weights,
    not a fresh network's, are what the chunked-rendering warm-up must cope with."""
    from models.dsp.devices import get_device
    from models.dsp.signals import program

    rate = 16000
    x = program(8.0, rate, seed=2)
    y = get_device("overdrive").process(x, rate)
    torch.manual_seed(0)
    net = build_model(LSTMConfig(layers=(16, 8)))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(60):
        starts = rng.integers(0, x.size - 768, 8)
        xb = torch.stack([xt[s : s + 768] for s in starts])[:, :, None]
        yb = torch.stack([yt[s : s + 768] for s in starts])[:, :, None]
        out, _ = net(xb)
        loss = (out[:, 256:] - yb[:, 256:]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5])  # it did learn
    return net.eval(), program(6.0, rate, seed=5)


@pytest.mark.parametrize("threads", [1, 2])
def test_trained_model_default_chunking_matches_whole_file(trained, threads):
    net, audio = trained
    whole = render_whole(net, audio)
    chunked = render(net, audio, threads=threads)
    assert np.abs(chunked - whole).max() <= 1e-4
    # The chunks really were cut short: a zero warm-up leaves audible seams on a trained network.
    unchecked = render(net, audio, chunk_samples=2000, warmup_samples=0, state_tolerance=None)
    assert np.abs(unchecked - whole).max() > 1e-3


def test_demo_study_s64_8_default_chunking_matches_whole_file():
    """The claim the bench prints, on the demo study's trained S-64-8 when it has been trained."""
    from pathlib import Path

    from models.dsp.signals import program
    from models.training.checkpoints import load_model

    runs = sorted(p for p in Path("results/zoo/demo/runs").glob("*_S-64-8_baseline_*") if (p / "checkpoint.pt").is_file())
    if not runs:
        pytest.skip("no trained demo S-64-8 (make demo trains one)")
    net, _ = load_model(runs[0])
    audio = program(3.0, 48000, seed=1)
    assert np.abs(render(net.eval(), audio, threads=1) - render_whole(net, audio)).max() <= 1e-4


def test_time_major_lstm_path_with_knobs_matches_the_module():
    """The chunk renderer's own LSTM loop (time-major, 512-step tiles) against ``LSTMStack.forward``
    for both conditioning modes and a chunk longer than one tile."""
    for conditioning in ("film", "concat"):
        torch.manual_seed(2)
        net = build_model(LSTMConfig(layers=(8, 4), n_knobs=2, conditioning=conditioning)).eval()
        x = np.random.default_rng(4).standard_normal(6000).astype(np.float32) * 0.3
        expected = render_whole(net, x, [0.2, 0.8])
        np.testing.assert_allclose(render(net, x, [0.2, 0.8], chunk_samples=1300, warmup_samples=3000),
                                   expected, atol=1e-5)


def _long_memory_nam_lstm() -> torch.nn.Module:
    """A NAM LSTM that remembers: a forget-gate bias of 8 keeps σ(f) ≈ 0.99966, so its cell state
    decays with a time constant of about 1 / (1 − 0.99966) ≈ 3 000 samples, far beyond a 512-sample
    warm-up (PyTorch's gate blocks are i, f, g, o: rows H … 2H are the forget gate)."""
    from models.nets.nam_lstm import NamLSTMConfig

    torch.manual_seed(3)
    net = build_model(NamLSTMConfig(hidden_size=8, num_layers=2)).eval()
    with torch.no_grad():
        for layer in range(2):
            getattr(net.lstm, f"bias_ih_l{layer}")[8:16] = 8.0
    return net


@pytest.mark.parametrize("threads", [1, 2])
def test_chunked_nam_lstm_with_a_long_memory_matches_whole_file(audio, threads):
    net = _long_memory_nam_lstm()
    whole = render_whole(net, audio)
    # Unchecked, every chunk's warm-up still remembers its start: the seams show.
    unchecked = render(net, audio, chunk_samples=2000, state_tolerance=None)
    assert np.abs(unchecked - whole).max() > 1e-4
    np.testing.assert_allclose(render(net, audio, threads=threads), whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(render(net, audio, chunk_samples=2000, warmup_samples=0), whole, rtol=0, atol=1e-6)


def test_chunked_nam_lstm_read_from_a_nam_file_starts_from_its_initial_state(audio, tmp_path):
    from models.export.nam_format import export_nam, load_nam

    export_nam(_long_memory_nam_lstm(), tmp_path / "long.nam", 48000)
    net, _ = load_nam(tmp_path / "long.nam")
    # The file holds the state reached after a second of silence, not zeros: whole-file rendering
    # starts from it, and so must chunk 0.
    assert net.initial_cell.abs().max() > 0.1
    # With a DC offset the remembering cell drifts away from the stored state, so chunks that
    # start from it (all of them, unchecked) leave seams.
    shifted = audio + 0.3
    whole = render_whole(net, shifted)
    assert np.abs(render(net, shifted, chunk_samples=2000, state_tolerance=None) - whole).max() > 1e-2
    np.testing.assert_allclose(render(net, shifted, chunk_samples=2000), whole, rtol=0, atol=1e-6)


def test_chunked_nam_reference_lstm_matches_whole_file():
    """NAM's own example LSTM (tests/data/nam-reference, MIT): a non-zero initial state in the file."""
    from pathlib import Path

    from models.dsp.signals import program
    from models.export.nam_read import load_nam

    net, _ = load_nam(Path(__file__).resolve().parents[1] / "data" / "nam-reference" / "models" / "lstm.nam")
    assert net.initial_hidden.abs().max() > 0.1
    audio = program(3.0, 48000, seed=4)
    np.testing.assert_allclose(render(net, audio, chunk_samples=2000), render_whole(net, audio), rtol=0, atol=1e-6)


def test_chunked_trained_nam_lstm_matches_whole_file():
    """A NAM LSTM trained briefly on the overdrive (60 Adam steps, under a second), as the fixture
    above trains an S-16-8."""
    from models.dsp.devices import get_device
    from models.dsp.signals import program
    from models.nets.nam_lstm import NamLSTMConfig

    rate = 16000
    x = program(8.0, rate, seed=2)
    y = get_device("overdrive").process(x, rate)
    torch.manual_seed(0)
    net = build_model(NamLSTMConfig(hidden_size=8))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(60):
        starts = rng.integers(0, x.size - 768, 8)
        out, _ = net(torch.stack([xt[s : s + 768] for s in starts])[:, :, None])
        loss = (out[:, 256:, 0] - torch.stack([yt[s + 256 : s + 768] for s in starts])).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5])  # it did learn
    net.eval()
    audio = program(6.0, rate, seed=5)
    whole = render_whole(net, audio)
    np.testing.assert_allclose(render(net, audio, threads=1), whole, rtol=0, atol=1e-6)
    # the chunks really were cut short: without a warm-up the seams show
    unchecked = render(net, audio, chunk_samples=2000, warmup_samples=0, state_tolerance=None)
    assert np.abs(unchecked - whole).max() > 1e-3
