"""--device: resolution (auto/cpu/cuda), the CLI's refusal without a GPU, CPU results unchanged, CPU checkpoints."""

import json

import numpy as np
import pytest
import torch
import yaml

from models.cli import main
from models.errors import ConfigError
from models.inference.rendering import render, render_whole
from models.studies.study import expand, load_study, run_study
from models.training.checkpoints import CHECKPOINT, LAST
from models.training.compute import cpu_tensors, resolve_device
from models.training.loop import fit
from tests.models.test_training import config, fresh, segment, windows  # noqa: F401  (windows: a fixture)

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("available, expected", [(True, "cuda"), (False, "cpu")])
def test_auto_uses_cuda_exactly_when_torch_sees_it(monkeypatch, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_is_refused_without_a_gpu_and_unknown_names_always(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as exc:
        resolve_device("cuda")
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("--device cuda: expected a CUDA GPU") and "found none" in message
    with pytest.raises(ConfigError, match=r"^--device: expected one of auto, cpu, cuda, found 'gpu'$"):
        resolve_device("gpu")


@pytest.mark.parametrize("verb", ["study", "train", "render"])
def test_cli_refuses_cuda_without_a_gpu_in_one_line(tmp_path, capsys, monkeypatch, verb):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "out")}))
    argv = {"study": ["study", str(study)], "train": ["train", str(tmp_path / "run.yaml")],
            "render": ["render", str(tmp_path / "run"), str(tmp_path / "in.wav"), str(tmp_path / "out.wav")]}[verb]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device cuda: expected a CUDA GPU"), err
    assert not (tmp_path / "out").exists()  # refused before the study folder is touched


def _fit(pair, tmp_path, name, **kw):
    model, net = fresh()
    train, val = pair
    state = fit(model, net, train, val, config(max_epochs=2), tmp_path / name, seed=3, **kw)
    return model, state


@pytest.mark.slow
def test_device_cpu_trains_bit_identically_to_the_default(windows, tmp_path):  # noqa: F811
    default, default_state = _fit(windows, tmp_path, "default")
    cpu, cpu_state = _fit(windows, tmp_path, "cpu", device="cpu")
    assert [r["train_loss"] for r in cpu_state.history] == [r["train_loss"] for r in default_state.history]
    for (name, a), (_, b) in zip(default.state_dict().items(), cpu.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert (tmp_path / "cpu" / CHECKPOINT).read_bytes() == (tmp_path / "default" / CHECKPOINT).read_bytes()


@pytest.mark.slow
def test_checkpoints_hold_cpu_tensors_only(windows, tmp_path):  # noqa: F811
    device = "cuda" if torch.cuda.is_available() else "cpu"
    _fit(windows, tmp_path, "run", device=device)
    for name in (CHECKPOINT, LAST):
        # No map_location: a checkpoint written on a GPU must load on a machine without one as it is.
        payload = torch.load(tmp_path / "run" / name, weights_only=True)
        tensors = list(_tensors(payload))
        assert tensors and all(t.device.type == "cpu" for t in tensors), name
    assert len(list(_tensors(torch.load(tmp_path / "run" / LAST, weights_only=True)["optimizer"]))) > 0


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def test_cpu_tensors_keeps_the_structure_and_does_not_copy_cpu_tensors():
    a, b = torch.ones(2), torch.zeros(3)
    moved = cpu_tensors({"model": {"w": a}, "groups": [{"lr": 0.1, "params": [0, 1]}], "pair": (b, "x"), "n": 4})
    assert moved["model"]["w"] is a and moved["pair"][0] is b
    assert moved["groups"] == [{"lr": 0.1, "params": [0, 1]}] and moved["pair"][1] == "x" and moved["n"] == 4


TINY = {
    "name": "tiny-device",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": 16000, "duration_s": 3.0}],
    "teachers": [{"name": "small", "layers": [8, 8]}],
    "students": [],
    "recipes": [{"recipe": "baseline"}],
    "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 1, "max_batches_per_epoch": 2},
}


@pytest.mark.slow
def test_a_run_records_its_device_outside_its_config_and_id(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "out")}))
    study = load_study(path)
    frame = run_study(study, tmp_path / "out", device="auto")  # auto without a GPU: the CPU
    assert "device" not in frame.columns
    ids = [run.run_id for run in expand(study)]
    assert list(frame["run_id"]) == ids and len(ids) >= 1
    for run_id in ids:
        run_dir = tmp_path / "out" / "runs" / run_id
        assert json.loads((run_dir / "metrics.json").read_text())["device"] == "cpu"
        resolved = json.loads((run_dir / "config.json").read_text())
        # ("device" inside "dataset" is the built-in audio device the data comes from, not this option)
        assert "device" not in resolved and "device" not in resolved["training"]
        assert "device" not in resolved["effective_training"]


@GPU
def test_training_on_cuda_matches_the_cpu_within_float_tolerance(windows, tmp_path):  # noqa: F811
    cpu, cpu_state = _fit(windows, tmp_path, "cpu")
    gpu, gpu_state = _fit(windows, tmp_path, "gpu", device="cuda")
    np.testing.assert_allclose([r["validation_loss"] for r in gpu_state.history],
                               [r["validation_loss"] for r in cpu_state.history], rtol=1e-3)
    for (name, a), (_, b) in zip(cpu.state_dict().items(), gpu.state_dict().items(), strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4, msg=name)


@GPU
def test_rendering_on_cuda_matches_the_cpu_and_leaves_the_model_where_it_was():
    model, _ = fresh()
    x = segment(20_000, 5).input
    np.testing.assert_allclose(render(model, x, device="cuda"), render(model, x), atol=1e-4)
    np.testing.assert_allclose(render_whole(model, x, device="cuda"), render_whole(model, x), atol=1e-4)
    assert next(model.parameters()).device.type == "cpu"
