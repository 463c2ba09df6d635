"""k-bit weight quantization: symmetric, per output channel, biases kept in fp32.

Weights of ``nn.LSTM`` (per gate row, every layer of a multi-layer module such as a NAM LSTM's),
``nn.Linear`` (per output row) and ``nn.Conv1d`` (per output channel) become integers in
[−(2^(k−1) − 1), 2^(k−1) − 1] times one fp32 scale per row; biases and buffers (a NAM LSTM's
initial state) stay fp32.
Hand-written rather than ``torch.ao``: torch's quantization stack offers int8 only, is deprecated
for these modules, and makes small LSTMs slower (docs/zoo-methods.md); what k-bit weights honestly buy here is
size, so the integers are bit-packed on disk and the model renders with exactly the dequantized
weights.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.outputs import write_file_atomic
from models.errors import CheckpointError, ConfigError, OutputError

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)


def check_bits(bits: int) -> int:
    if bits not in SUPPORTED_BITS:
        raise ConfigError(f"bits: expected one of {list(SUPPORTED_BITS)}, found {bits!r}")
    return bits


def quantized_names(model: nn.Module) -> list[str]:
    """Parameter names that are quantized: every weight matrix of LSTM, Linear and Conv1d layers."""
    names = []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, nn.LSTM):
            names += [f"{prefix}{n}" for n, _ in module.named_parameters(recurse=False) if n.startswith("weight_")]
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            names.append(f"{prefix}weight")
    return names


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def quantize_tensor(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row quantization of ``weight`` (rows = dim 0).

    Returns (integers as int8 of the same shape, scales (rows,) fp32) with
    ``weight ≈ integers · scales[:, None, …]``. An all-zero row gets scale 1 (its integers are 0).
    """
    rows = weight.detach().reshape(weight.shape[0], -1)
    peak = rows.abs().amax(dim=1)
    scales = torch.where(peak > 0, peak / qmax(bits), torch.ones_like(peak)).to(torch.float32)
    q = torch.clamp(torch.round(rows / scales[:, None]), -qmax(bits), qmax(bits))
    return q.to(torch.int8).reshape(weight.shape), scales


def dequantize_tensor(integers: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    shape = (-1,) + (1,) * (integers.dim() - 1)
    return integers.to(torch.float32) * scales.reshape(shape)


class _RoundSTE(torch.autograd.Function):
    """Rounding whose gradient is the identity (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):  # noqa: D401
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize with a straight-through gradient to the fp32 shadow weight.

    The scale follows the shadow weight (detached), so training moves weights between levels.
    """
    rows = weight.reshape(weight.shape[0], -1)
    peak = rows.detach().abs().amax(dim=1)
    scales = torch.where(peak > 0, peak / qmax(bits), torch.ones_like(peak))
    q = torch.clamp(_RoundSTE.apply(rows / scales[:, None]), -qmax(bits), qmax(bits))
    return (q * scales[:, None]).reshape(weight.shape)


def fake_quantized_parameters(model: nn.Module, bits: int) -> dict[str, torch.Tensor]:
    """Replacement weights for ``torch.func.functional_call``: quantized weights, fp32 rest."""
    params = dict(model.named_parameters())
    return {name: fake_quantize(params[name], bits) for name in quantized_names(model)}


@dataclass(frozen=True)
class QuantizedWeights:
    """A model's quantized weights: integers and scales per quantized tensor, the rest in fp32."""

    bits: int
    integers: dict[str, torch.Tensor]
    scales: dict[str, torch.Tensor]
    floats: dict[str, torch.Tensor]

    @property
    def quantized_params(self) -> int:
        return sum(t.numel() for t in self.integers.values())

    @property
    def packed_bytes(self) -> int:
        """params × bits / 8 (rounded up per tensor) + fp32 scales + fp32 biases and other floats."""
        weights = sum(math.ceil(t.numel() * self.bits / 8) for t in self.integers.values())
        scales = 4 * sum(s.numel() for s in self.scales.values())
        floats = 4 * sum(t.numel() for t in self.floats.values())
        return weights + scales + floats

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Dequantized weights: exactly what the quantized model renders with."""
        out = {name: dequantize_tensor(q, self.scales[name]) for name, q in self.integers.items()}
        out.update(self.floats)
        return out


def quantize_model(model: nn.Module, bits: int) -> QuantizedWeights:
    check_bits(bits)
    names = set(quantized_names(model))
    integers, scales, floats = {}, {}, {}
    for name, tensor in model.state_dict().items():
        if name in names:
            integers[name], scales[name] = quantize_tensor(tensor, bits)
        else:
            floats[name] = tensor.detach().clone().to(torch.float32)
    return QuantizedWeights(bits, integers, scales, floats)


def pack_integers(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Bit-pack integers in [−qmax, qmax] as offset-binary ``bits``-bit fields into bytes (uint8)."""
    offset = (q.reshape(-1).to(torch.int16) + qmax(bits)).numpy().astype(np.uint8)
    fields = np.unpackbits(offset[:, None], axis=1)[:, 8 - bits:]  # the low `bits` bits, MSB first
    return torch.from_numpy(np.packbits(fields.reshape(-1)))


def unpack_integers(packed: torch.Tensor, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    count = int(np.prod(shape))
    fields = np.unpackbits(packed.numpy())[: count * bits].reshape(count, bits)
    padded = np.zeros((count, 8), dtype=np.uint8)
    padded[:, 8 - bits:] = fields
    values = np.packbits(padded, axis=1)[:, 0].astype(np.int16) - qmax(bits)
    return torch.from_numpy(values.astype(np.int8)).reshape(shape)


def save_quantized(weights: QuantizedWeights, path: Path, extra: dict | None = None) -> None:
    """Write bit-packed integers, scales and fp32 tensors, atomically (:mod:`common.outputs`)."""
    payload = {
        "format": "earshot-quantized-1",
        "bits": weights.bits,
        "packed": {name: pack_integers(q, weights.bits) for name, q in weights.integers.items()},
        "shapes": {name: list(q.shape) for name, q in weights.integers.items()},
        "scales": weights.scales,
        "floats": weights.floats,
        **(extra or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_file_atomic(path, buffer.getvalue(), OutputError)


def load_quantized(path: Path) -> tuple[QuantizedWeights, dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: quantized weights not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        bits = int(payload["bits"])
        integers = {name: unpack_integers(packed, bits, tuple(payload["shapes"][name]))
                    for name, packed in payload["packed"].items()}
        weights = QuantizedWeights(bits, integers, dict(payload["scales"]), dict(payload["floats"]))
    except Exception as exc:  # noqa: BLE001 - any failure to read is a corrupt file for the user
        raise CheckpointError(f"{path}: corrupt or unreadable quantized weights ({type(exc).__name__}: {exc})") from None
    return weights, payload
