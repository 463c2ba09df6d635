"""The training loop: learning, warm-up windows, plateau/early-stop rules, resume, NaN, corrupt files, KD."""

import json

import numpy as np
import pytest
import scipy.signal
import torch

from models.data.datasets import Segment
from models.data.windows import cut_windows
from models.errors import CheckpointError, ConfigError, TrainingError
from models.nets.architectures import build_model
from models.nets.lstm import LSTMConfig
from models.training import loop as training_module
from models.training import steps as steps_module
from models.training.checkpoints import LAST, load_model
from models.training.distill import DistillConfig, balanced_weights, teacher_targets
from models.training.loop import TrainingConfig, fit, validation_loss
from models.training.steps import Distillation, DistillationStep, PlainStep

WINDOW, WARMUP = 256, 64


def toy_effect(x: np.ndarray) -> np.ndarray:
    """A one-pole low-pass into a soft clipper: memory plus nonlinearity, nothing learned by heart."""
    return (0.6 * np.tanh(3.0 * scipy.signal.lfilter([0.3], [1.0, -0.7], x))).astype(np.float32)


def segment(n: int, seed: int, knobs=()) -> Segment:
    rng = np.random.default_rng(seed)
    x = (0.5 * rng.standard_normal(n) * np.repeat(rng.uniform(0.1, 1.0, n // 500 + 1), 500)[:n]).astype(np.float32)
    return Segment(input=x, target=toy_effect(x), knobs=knobs)


@pytest.fixture(scope="module")
def windows():
    train = cut_windows((segment(16 * (WINDOW) + WARMUP, 0),), WINDOW, WARMUP, "train")
    val = cut_windows((segment(4 * WINDOW + WARMUP, 1),), WINDOW, WARMUP, "validation")
    return train, val


def config(**kw) -> TrainingConfig:
    base = dict(batch_size=4, window_samples=WINDOW, warmup_samples=WARMUP, learning_rate=1e-2, max_epochs=3,
                threads=1)
    return TrainingConfig(**{**base, **kw})


def fresh(layers=(8, 8), seed=0):
    torch.manual_seed(seed)
    net = LSTMConfig(layers=layers)
    return build_model(net), net


def test_windows_carry_their_warmup():
    ramp = np.arange(1000, dtype=np.float32)
    w = cut_windows((Segment(ramp, -ramp),), window_samples=300, warmup_samples=100, where="x")
    # (1000 − 100) // 300 = 3 windows, each 400 long, starting at 0, 300, 600
    assert w.inputs.shape == (3, 400, 1)
    assert [float(w.inputs[k, 0, 0]) for k in range(3)] == [0.0, 300.0, 600.0]
    # the loss region of window k is ramp[100 + 300k : 400 + 300k]: contiguous, non-overlapping
    assert float(w.inputs[1, 100, 0]) == 400.0 == float(w.inputs[0, -1, 0]) + 1
    assert torch.equal(w.targets, -w.inputs)
    with pytest.raises(Exception, match="no window of 2000 samples"):
        cut_windows((Segment(ramp, ramp),), window_samples=2000, warmup_samples=100, where="tiny split")


def test_training_lowers_the_validation_loss(tmp_path, windows):
    train, val = windows
    model, net = fresh()
    from models.training.losses import WeightedLoss

    before = validation_loss(model, val, WeightedLoss({"mae": 1.0}), 64)
    state = fit(model, net, train, val, config(max_epochs=10, learning_rate=2e-2), tmp_path, seed=0)
    assert state.best_validation < 0.5 * before
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(10))
    best, payload = load_model(tmp_path)
    assert payload["validation_loss"] == pytest.approx(state.best_validation)
    assert validation_loss(best, val, WeightedLoss({"mae": 1.0}), 64) == pytest.approx(state.best_validation, rel=1e-5)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, windows, monkeypatch):
    train, val = windows
    model_a, net = fresh()
    fit(model_a, net, train, val, config(), tmp_path / "a", seed=7)

    original = training_module._epoch_order

    def interrupt_in_epoch_2(n, batch, seed, epoch, weights, max_batches):
        batches = original(n, batch, seed, epoch, weights, max_batches)
        if epoch == 1:
            def gen():
                yield batches[0]
                yield batches[1]
                raise KeyboardInterrupt  # Ctrl-C in the middle of the second epoch
            return gen()
        return batches

    monkeypatch.setattr(training_module, "_epoch_order", interrupt_in_epoch_2)
    model_b, _ = fresh()
    with pytest.raises(KeyboardInterrupt):
        fit(model_b, net, train, val, config(), tmp_path / "b", seed=7)
    # Ctrl-C left a usable checkpoint of the first epoch.
    usable, _ = load_model(tmp_path / "b")
    assert usable(torch.zeros(1, 10, 1))[0].shape == (1, 10, 1)
    last = torch.load(tmp_path / "b" / LAST, weights_only=True)
    assert json.loads(last["state"])["epoch"] == 1

    monkeypatch.setattr(training_module, "_epoch_order", original)
    model_c, _ = fresh(seed=123)  # resume must not depend on the fresh model's weights
    fit(model_c, net, train, val, config(), tmp_path / "b", seed=7, resume=True)
    for (name, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items(), strict=True):
        assert torch.equal(a, c), name
    log_b = [json.loads(line)["epoch"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert log_b == [0, 1, 2]


def test_plateau_halving_and_early_stop(tmp_path, windows, monkeypatch):
    train, val = windows
    losses = iter([1.0, 0.9, 0.95, 0.96, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9])
    monkeypatch.setattr(steps_module, "validation_loss", lambda *a, **k: next(losses))
    model, net = fresh()
    cfg = config(max_epochs=20, max_batches_per_epoch=1, lr_halve_patience_epochs=2, early_stop_patience_epochs=5,
                 learning_rate=0.008)
    state = fit(model, net, train, val, cfg, tmp_path, seed=0)
    # epochs 0,1 improve; 2,3 stale → halve after epoch 3; 4 improves; 5,6 stale → halve;
    # 7,8 stale → halve; epoch 9 is the 5th stale epoch in a row → stop.
    assert [r["learning_rate"] for r in state.history] == [
        0.008, 0.008, 0.008, 0.004, 0.004, 0.004, 0.002, 0.002, 0.001, 0.001]
    assert state.epoch == 10 and state.best_epoch == 4


def test_nan_loss_stops_with_a_clear_message(tmp_path, windows):
    train, val = windows
    poisoned = training_module.Windows(train.inputs, train.targets.clone(), train.knobs, train.warmup_samples)
    poisoned.targets[:, WARMUP + 5] = float("nan")
    model, net = fresh()
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, batch 1"):
        fit(model, net, poisoned, val, config(), tmp_path, seed=0)


def test_corrupt_checkpoints_give_clear_errors(tmp_path, windows):
    train, val = windows
    model, net = fresh()
    fit(model, net, train, val, config(max_epochs=1), tmp_path, seed=0)
    (tmp_path / LAST).write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"last\.pt: corrupt or unreadable checkpoint"):
        fit(model, net, train, val, config(max_epochs=2), tmp_path, seed=0, resume=True)
    (tmp_path / "checkpoint.pt").write_bytes((tmp_path / "checkpoint.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nowhere")


def test_unknown_loss_term_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown term 'huber'"):
        TrainingConfig(loss={"huber": 1.0})


def test_kd_teacher_cache_matches_a_live_pass_and_trains(tmp_path, windows):
    train, val = windows
    teacher, teacher_net = fresh(layers=(16, 8), seed=3)
    fit(teacher, teacher_net, train, val, config(max_epochs=1), tmp_path / "teacher", seed=0)
    teacher.eval()
    kd = DistillConfig()
    cached = teacher_targets(teacher, kd, train, batch_size=5)
    live = teacher_targets(teacher, DistillConfig(cache_limit_mb=0.0), train)
    assert live.features is None
    index = torch.tensor([3, 0, 7])
    f_cached, o_cached = cached.get(index)
    f_live, o_live = live.get(index)
    assert f_cached.shape == (3, WINDOW, 8)
    torch.testing.assert_close(f_cached, f_live, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(o_cached, o_live, atol=1e-6, rtol=1e-5)
    # Same windows, same warm-up: the cache is the teacher's output on exactly the student's inputs.
    y, _ = teacher(train.inputs[index])
    torch.testing.assert_close(o_cached, y[:, WARMUP:].detach(), atol=1e-6, rtol=1e-5)

    student, net = fresh(layers=(8, 8))
    state = fit(student, net, train, val, config(max_epochs=2), tmp_path / "student", seed=0,
                step=DistillationStep(Distillation(DistillConfig(response_alpha=0.5), cached), net))
    assert np.isfinite(state.best_validation)
    # A projection head is needed when the aligned layers differ in size.
    with pytest.raises(ConfigError, match="set projection: true"):
        fit(student, net, train, val, config(max_epochs=1), tmp_path / "bad", seed=0,
            step=DistillationStep(Distillation(DistillConfig(teacher_layer=0), cached), net))
    first_layer = DistillConfig(teacher_layer=0, feature_loss="cosine")
    proj = fit(*fresh(layers=(8, 8)), train, val, config(max_epochs=1), tmp_path / "proj", seed=0,
               step=DistillationStep(Distillation(first_layer, teacher_targets(teacher, first_layer, train)),
                                     LSTMConfig(layers=(8, 8))))
    assert np.isfinite(proj.best_validation)


def test_balanced_weights_equalise_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.05, size=(30, 2))
    b = rng.normal(5.0, 0.05, size=(10, 2))
    weights, labels = balanced_weights(np.vstack([a, b]), clusters=2, seed=0)
    assert len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1 and labels[0] != labels[30]
    # each window weighs 1/(its cluster size), normalised: both clusters carry half the mass
    np.testing.assert_allclose(weights[:30], 1 / 60)
    np.testing.assert_allclose(weights[30:], 1 / 20)


def test_ptq_8_bit_is_close_to_fp32_and_2_bit_is_worse(tmp_path, windows):
    from models.nets.quantize import quantize_model
    from models.training.losses import WeightedLoss

    train, val = windows
    model, net = fresh()
    fit(model, net, train, val, config(max_epochs=10, learning_rate=2e-2), tmp_path, seed=0)
    best, _ = load_model(tmp_path)
    esr = WeightedLoss({"esr": 1.0})
    fp32 = validation_loss(best, val, esr, 64)
    errors = {}
    for bits in (8, 4, 2):
        q = build_model(net)
        q.load_state_dict(quantize_model(best, bits).state_dict())
        errors[bits] = validation_loss(q, val, esr, 64)
    # Stated tolerance: 8-bit weights change the test ESR by less than 2 % of its fp32 value.
    assert abs(errors[8] - fp32) < 0.02 * fp32
    assert errors[2] > 1.2 * fp32 and errors[2] > errors[8]


def test_qat_trains_through_the_quantizer(tmp_path, windows):
    from models.nets.quantize import fake_quantized_parameters, quantize_model

    train, val = windows
    model, net = fresh()
    transform = lambda m: fake_quantized_parameters(m, 3)  # noqa: E731
    state = fit(model, net, train, val, config(max_epochs=6, learning_rate=2e-2), tmp_path, seed=0,
                step=PlainStep(transform))
    # The validation loss it tracked is that of the 3-bit network built from its shadow weights.
    best, _ = load_model(tmp_path)
    quantized = build_model(net)
    quantized.load_state_dict(quantize_model(best, 3).state_dict())
    from models.training.losses import WeightedLoss

    assert validation_loss(quantized, val, WeightedLoss({"mae": 1.0}), 64) == pytest.approx(state.best_validation, rel=1e-4)
    assert state.history[-1]["validation_loss"] < state.history[0]["validation_loss"]
