"""k-bit weight quantization against hand calculations; packing reloads bit-exactly."""

import numpy as np
import pytest
import torch

from models.errors import ConfigError
from models.nets.architectures import build_model, parameter_count
from models.nets.lstm import LSTMConfig
from models.nets.quantize import (
    dequantize_tensor,
    fake_quantize,
    load_quantized,
    pack_integers,
    quantize_model,
    quantize_tensor,
    quantized_names,
    save_quantized,
    unpack_integers,
)


def test_per_row_symmetric_levels_by_hand():
    w = torch.tensor([[0.7, -0.35, 0.1], [0.0, 0.0, 0.0], [-2.0, 1.0, 0.5]])
    q, s = quantize_tensor(w, bits=3)  # levels −3 … 3
    # row 0: scale 0.7/3; 0.7 → 3, −0.35 → −1.5 → round half to even −2, 0.1 → 0.43 → 0
    # row 2: scale 2/3; −2 → −3, 1 → 1.5 → 2, 0.5 → 0.75 → 1
    np.testing.assert_allclose(s.numpy(), [0.7 / 3, 1.0, 2.0 / 3], rtol=1e-6)
    assert q.tolist() == [[3, -2, 0], [0, 0, 0], [-3, 2, 1]]
    np.testing.assert_allclose(dequantize_tensor(q, s).numpy(),
                               [[0.7, -0.7 * 2 / 3, 0.0], [0, 0, 0], [-2.0, 4 / 3, 2 / 3]], rtol=1e-6)


def test_two_bits_is_ternary():
    q, _ = quantize_tensor(torch.randn(16, 9), bits=2)
    assert set(q.unique().tolist()) <= {-1, 0, 1}


def test_error_shrinks_with_bits():
    torch.manual_seed(0)
    w = torch.randn(64, 32)
    errors = [float((dequantize_tensor(*quantize_tensor(w, b)) - w).abs().max()) for b in (2, 3, 4, 6, 8)]
    assert errors == sorted(errors, reverse=True)
    # the worst case error is half a step: peak / qmax / 2 per row
    q8, s8 = quantize_tensor(w, 8)
    assert errors[-1] <= float(s8.max()) / 2 + 1e-7


def test_quantized_names_and_packed_size_of_a_student():
    model = build_model(LSTMConfig(layers=(16, 8)))
    names = quantized_names(model)
    assert names == ["lstms.0.weight_ih_l0", "lstms.0.weight_hh_l0", "lstms.1.weight_ih_l0",
                     "lstms.1.weight_hh_l0", "dense.weight"]
    weights = quantize_model(model, 4)
    # weights: 64·1 + 64·16 + 32·16 + 32·8 + 8 = 1864; rows (scales): 64 + 64 + 32 + 32 + 1 = 193
    assert weights.quantized_params == 1864
    floats = parameter_count(model) - 1864  # biases
    assert weights.packed_bytes == (64 // 2 + 1024 // 2 + 512 // 2 + 256 // 2 + 8 // 2) + 4 * 193 + 4 * floats
    with pytest.raises(ConfigError, match="bits"):
        quantize_model(model, 1)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_packing_round_trips_bit_exactly(bits):
    torch.manual_seed(bits)
    q, _ = quantize_tensor(torch.randn(37, 5), bits)
    packed = pack_integers(q, bits)
    assert packed.numel() == -(-q.numel() * bits // 8)
    assert torch.equal(unpack_integers(packed, bits, tuple(q.shape)), q)


def test_saved_file_reloads_bit_exactly_and_is_small(tmp_path):
    torch.manual_seed(0)
    model = build_model(LSTMConfig(layers=(64, 8)))
    weights = quantize_model(model, 4)
    save_quantized(weights, tmp_path / "q.pt")
    again, _ = load_quantized(tmp_path / "q.pt")
    for name in weights.integers:
        assert torch.equal(again.integers[name], weights.integers[name])
        assert torch.equal(again.scales[name], weights.scales[name])
    # the file is near the packed size, far below fp32 (container overhead is a few kB)
    size = (tmp_path / "q.pt").stat().st_size
    assert size < weights.packed_bytes + 12_000 < 4 * parameter_count(model)
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(Exception, match="corrupt"):
        load_quantized(tmp_path / "bad.pt")


def test_fake_quantize_forward_equals_quantize_and_gradient_passes_straight_through():
    torch.manual_seed(0)
    w = torch.randn(8, 4, requires_grad=True)
    fq = fake_quantize(w, 4)
    torch.testing.assert_close(fq.detach(), dequantize_tensor(*quantize_tensor(w.detach(), 4)))
    (fq * torch.arange(32.0).reshape(8, 4)).sum().backward()
    # round() contributes an identity gradient; the detached scale contributes none
    torch.testing.assert_close(w.grad, torch.arange(32.0).reshape(8, 4))


def test_nam_lstm_is_quantized_as_the_lstm_stack_is(tmp_path):
    """NAM's LSTM (one nn.LSTM of two layers + a linear head): every gate row and the head row get
    their own scale, biases and the initial state stay fp32, and the file reloads bit-exactly."""
    from models.nets.nam_lstm import NamLSTMConfig

    torch.manual_seed(0)
    model = build_model(NamLSTMConfig(hidden_size=4, num_layers=2))
    assert quantized_names(model) == ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1",
                                      "lstm.weight_hh_l1", "head.weight"]
    weights = quantize_model(model, 4)
    # weights 16·1 + 16·4 + 16·4 + 16·4 + 4 = 212 (4 bits: 8 + 32 + 32 + 32 + 2 bytes); rows 16·4 + 1 = 65
    # scales; fp32: biases 4·16 + head 1, initial h and c 2·(2·4)
    assert weights.quantized_params == 212
    assert sorted(weights.floats) == ["head.bias", "initial_cell", "initial_hidden", "lstm.bias_hh_l0",
                                      "lstm.bias_hh_l1", "lstm.bias_ih_l0", "lstm.bias_ih_l1"]
    assert weights.packed_bytes == (8 + 32 + 32 + 32 + 2) + 4 * 65 + 4 * (65 + 16)
    w = model.lstm.weight_hh_l1.detach()
    for row in (0, 5, 15):  # each gate row's scale is its own peak / 7
        assert float(weights.scales["lstm.weight_hh_l1"][row]) == pytest.approx(float(w[row].abs().max()) / 7)
    save_quantized(weights, tmp_path / "q.pt")
    again, _ = load_quantized(tmp_path / "q.pt")
    dequantized = again.state_dict()
    for name, tensor in weights.state_dict().items():
        assert torch.equal(dequantized[name], tensor), name
    # the dequantized weights load into a NAM LSTM and stay within half a step of the originals
    copy = build_model(NamLSTMConfig(hidden_size=4, num_layers=2))
    copy.load_state_dict(dequantized)
    step = weights.scales["lstm.weight_hh_l1"][:, None]
    assert ((copy.lstm.weight_hh_l1 - model.lstm.weight_hh_l1).abs() <= step / 2 + 1e-7).all()
