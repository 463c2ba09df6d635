"""Writes the crafted .nam files of this folder (random weights, fixed seeds).

Run from the repository root: ``.venv/bin/python tests/data/nam-reference/crafted/make_crafted.py``.
The weight counts come from the layouts below; NAM's engine checks them when it renders the files.
"""

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def film(active=True, shift=True, groups=1):
    return {"active": active, "shift": shift, "groups": groups}


OFF = film(False)


def conv(cin, cout, k=1, bias=True, groups=1):
    return cout * (cin // groups) * k + (cout if bias else 0)


def features():
    """0.7.0 WaveNet: per-layer kernels/activations, blended/gated/none, grouped layer1x1, FiLMs,
    layer-array heads with kernel 3 and dilation 2, an inactive layer1x1, a post-stack head."""
    a0 = {
        "input_size": 1, "condition_size": 1, "channels": 4, "bottleneck": 2,
        "head": {"out_channels": 3, "kernel_size": 3, "bias": True, "head_dilation": 2},
        "kernel_sizes": [3, 2, 4], "dilations": [1, 3, 2],
        "activation": ["Fasttanh", {"type": "LeakyReLU", "negative_slope": 0.2}, "Hardtanh"],
        "gating_mode": ["blended", "none", "gated"],
        "secondary_activation": ["Sigmoid", None, {"type": "PReLU", "negative_slopes": [0.1, 0.3]}],
        "layer1x1": {"active": True, "groups": 2}, "head1x1": {"active": False, "out_channels": 1, "groups": 1},
        "groups_input": 1, "groups_input_mixin": 1,
        "conv_pre_film": OFF, "conv_post_film": OFF, "input_mixin_pre_film": OFF, "input_mixin_post_film": OFF,
        "activation_pre_film": film(), "activation_post_film": OFF,
        "layer1x1_post_film": film(shift=False), "head1x1_post_film": OFF, "slimmable": None,
    }
    a1 = {
        "input_size": 4, "condition_size": 1, "channels": 3, "bottleneck": 3,
        "head": {"out_channels": 2, "kernel_size": 1, "bias": False},
        "kernel_sizes": [2, 2], "dilations": [1, 5], "activation": ["Tanh", "ReLU"],
        "gating_mode": "none", "layer1x1": {"active": False, "groups": 1},
        "conv_pre_film": film(),
    }
    n = conv(1, 4, bias=False)
    for k, mode in zip(a0["kernel_sizes"], a0["gating_mode"], strict=True):
        z = 2 * 2 if mode != "none" else 2
        n += conv(4, z, k) + conv(1, z, bias=False) + conv(2, 4, groups=2)
        n += conv(1, 2 * z)  # activation_pre_film with shift
        n += conv(1, 4)  # layer1x1_post_film without shift
    n += conv(2, 3, 3)
    n += conv(4, 3, bias=False)
    for _ in a1["dilations"]:
        n += conv(3, 3, 2) + conv(1, 3, bias=False) + conv(1, 2 * 3)
    n += conv(3, 2, bias=False)
    n += conv(2, 3, 2) + conv(3, 1, 3)  # post-stack head
    rng = np.random.default_rng(11)
    weights = (0.5 * rng.standard_normal(n)).tolist() + [0.5]  # NAM's head scale: the last weight
    config = {"layers": [a0, a1], "head": {"channels": 3, "out_channels": 1, "kernel_sizes": [2, 3],
                                           "activation": "SiLU"}, "head_scale": 0.3}
    return {"version": "0.7.0", "metadata": {"loudness": -18.0}, "architecture": "WaveNet", "config": config,
            "weights": weights, "sample_rate": 48000}


def slimmable_gated():
    """0.7.0 WaveNet whose first array slims (allowed 2, 3, 4 channels): gated, bottleneck 4,
    FiLM before the convolution and after the activation, head1x1; a fixed second array."""
    a0 = {
        "input_size": 1, "condition_size": 1, "channels": 4, "bottleneck": 4, "head_size": 3, "head_bias": False,
        "kernel_size": 3, "dilations": [1, 2, 4], "activation": "Tanh", "gating_mode": "gated",
        "secondary_activation": "Sigmoid", "head1x1": {"active": True, "out_channels": 3, "groups": 1},
        "conv_pre_film": film(), "activation_post_film": film(),
        "slimmable": {"method": "slice_channels_uniform", "kwargs": {"allowed_channels": [2, 3, 4]}},
    }
    a1 = {"input_size": 4, "condition_size": 1, "channels": 3, "head_size": 1, "head_bias": True, "kernel_size": 2,
          "dilations": [8, 16], "activation": "ReLU", "gated": False}
    n = conv(1, 4, bias=False)
    for _ in a0["dilations"]:
        n += conv(4, 8, 3) + conv(1, 8, bias=False) + conv(4, 4) + conv(4, 3)
        n += conv(1, 2 * 4) + conv(1, 2 * 4)
    n += conv(3, 3, bias=False)
    n += conv(4, 3, bias=False)
    for _ in a1["dilations"]:
        n += conv(3, 3, 2) + conv(1, 3, bias=False) + conv(3, 3)
    n += conv(3, 1)
    rng = np.random.default_rng(12)
    weights = (0.4 * rng.standard_normal(n)).tolist() + [0.2]
    return {"version": "0.7.0", "metadata": {}, "architecture": "WaveNet",
            "config": {"layers": [a0, a1], "head": None, "head_scale": 0.2}, "weights": weights,
            "sample_rate": 48000}


if __name__ == "__main__":
    for name, document in (("features", features()), ("slimmable_gated", slimmable_gated())):
        (HERE / f"{name}.nam").write_text(json.dumps(document))
