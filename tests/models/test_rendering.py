"""Offline chunked and streaming rendering agree with whole-file rendering."""

import numpy as np
import pytest
import torch

from models.nets import NetConfig, build_model
from models.rendering import render, render_stream, render_whole


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return build_model(NetConfig(layers=(16, 8))).eval()


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


def test_too_little_warmup_shows(model, audio):
    # A warm-up of 0 restarts each chunk from a zero state: the seams must differ from whole-file.
    whole = render_whole(model, audio)
    chunked = render(model, audio, chunk_samples=1000, warmup_samples=0)
    assert np.abs(chunked - whole).max() > 1e-3


def test_max_batch_groups_do_not_change_the_result(model, audio):
    a = render(model, audio, chunk_samples=1000, warmup_samples=500, max_batch=1000)
    b = render(model, audio, chunk_samples=1000, warmup_samples=500, max_batch=7)
    # Different batch sizes take different BLAS paths, so only float noise may differ.
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("block", [64, 128, 333])
def test_streaming_equals_whole_file(model, audio, block):
    np.testing.assert_allclose(render_stream(model, audio[:20000], block), render_whole(model, audio[:20000]),
                               atol=1e-5)


def test_conditioned_rendering_uses_the_knobs():
    torch.manual_seed(0)
    net = build_model(NetConfig(layers=(8, 8), n_knobs=1)).eval()
    x = np.random.default_rng(1).standard_normal(9000).astype(np.float32) * 0.3
    np.testing.assert_allclose(render(net, x, [0.7], 2000, 1000), render_whole(net, x, [0.7]), atol=1e-4)
    assert np.abs(render(net, x, [0.0]) - render(net, x, [1.0])).max() > 1e-3
