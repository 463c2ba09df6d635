"""`python -m models render` takes a run folder, a .nam file or an export, with --slim/--width."""


import numpy as np
import pytest
import soundfile as sf
import torch

from models.cli import main
from models.config import to_dict
from models.export.bundle import export_run, load_export
from models.export.nam_format import export_nam
from models.export.nam_read import load_nam
from models.inference.rendering import render
from models.nets.architectures import build_model
from models.nets.slimmable import slim
from models.nets.wavenet import WaveNet, WaveNetPresetConfig, from_preset
from models.training.checkpoints import save_atomic, write_json_atomic
from tests.support.nam_reference import reference_file

LSB_24 = 2.0**-23


def _one_line_error(capsys, code):
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture()
def dry(tmp_path):
    x = (0.3 * np.random.default_rng(4).standard_normal(12000)).astype(np.float32)
    sf.write(tmp_path / "dry.wav", x, 48000, subtype="FLOAT")
    return tmp_path / "dry.wav", x


@pytest.mark.slow
def test_a_nam_file_renders_as_its_loaded_network(tmp_path, dry, capsys):
    path, x = dry
    torch.manual_seed(2)
    export_nam(WaveNet(from_preset("nano")).eval(), tmp_path / "nano.nam", 48000)
    expected = render(load_nam(tmp_path / "nano.nam")[0], x)
    assert main(["render", str(tmp_path / "nano.nam"), str(path), str(tmp_path / "wet.wav")]) == 0
    assert "with nano.nam (NAM format" in capsys.readouterr().out
    wet, rate = sf.read(tmp_path / "wet.wav", dtype="float64")
    assert rate == 48000 and sf.info(tmp_path / "wet.wav").subtype == "PCM_24"
    np.testing.assert_allclose(wet, expected, rtol=0, atol=LSB_24)  # 24-bit rounding
    assert main(["render", str(tmp_path / "nano.nam"), str(path), str(tmp_path / "wet.wav"), "--float"]) == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "wet.wav", dtype="float32")[0], expected)


def test_nams_wavenet_renders_as_nams_engine_did(tmp_path):
    nam, dry = reference_file("models", "wavenet.nam"), reference_file("input.wav")
    reference, _ = sf.read(reference_file("renders", "wavenet.wav"), dtype="float64")
    assert main(["render", str(nam), str(dry), str(tmp_path / "wet.wav")]) == 0
    np.testing.assert_allclose(sf.read(tmp_path / "wet.wav", dtype="float64")[0], reference, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("slim_value", ["0.0", "1.0"])
def test_a_slimmable_container_renders_the_level_asked_for(tmp_path, slim_value):
    nam, dry = reference_file("models", "A2.nam"), reference_file("input.wav")
    reference, _ = sf.read(reference_file("renders", f"A2_slim{slim_value}.wav"), dtype="float64")
    assert main(["render", str(nam), str(dry), str(tmp_path / "wet.wav"), "--slim", slim_value, "--float"]) == 0
    np.testing.assert_allclose(sf.read(tmp_path / "wet.wav", dtype="float64")[0], reference, rtol=0, atol=1e-5)


def test_levels_given_to_a_file_without_them_are_one_line_and_exit_2(tmp_path, capsys):
    nam, dry = reference_file("models", "wavenet.nam"), reference_file("input.wav")
    out = str(tmp_path / "wet.wav")
    line = _one_line_error(capsys, main(["render", str(nam), str(dry), out, "--slim", "0.5"]))
    assert "wavenet.nam" in line
    line = _one_line_error(capsys, main(["render", str(nam), str(dry), out, "--slim", "0.5", "--width", "0.5"]))
    assert "--slim and --width: expected one of them" in line
    container = reference_file("models", "A2.nam")
    line = _one_line_error(capsys, main(["render", str(container), str(dry), out, "--width", "0.5"]))
    assert "A2.nam: is a SlimmableContainer; its levels are chosen with slim, found width 0.5" in line
    line = _one_line_error(capsys, main(["render", str(tmp_path / "model.onnx"), str(dry), out]))
    assert "expected a run folder, a .nam file or an export" in line
    assert not (tmp_path / "wet.wav").exists()


def _run(root, preset="slimmable", recipe="slimmable"):
    """A run folder of an (untrained) WaveNet, as models.studies.runs writes it."""
    net = WaveNetPresetConfig(preset=preset)
    torch.manual_seed(5)
    model = build_model(net)
    name = f"cap_WN-{preset}_{recipe}_s0"
    write_json_atomic({"dataset": {"name": "cap"}, "model": to_dict(net), "recipe": recipe,
                       "variant": recipe, "teacher": None, "seed": 0, "bits": 32, "run_id": name,
                       "git_commit": "0123abcd", "sample_rate": 48000, "knob_names": [], "latency_samples": 0},
                      root / name / "config.json")
    save_atomic({"net": to_dict(net), "dataset": "cap", "sample_rate": 48000, "knob_names": [], "run_id": name,
                 "model": model.state_dict(), "epoch": 1}, root / name / "checkpoint.pt")
    return root / name


@pytest.mark.slow
def test_an_export_renders_as_its_loaded_model_at_any_width_it_keeps(tmp_path, dry, capsys):
    path, x = dry
    run_dir = _run(tmp_path / "runs")
    paths = export_run(run_dir, tmp_path / "export", fmt="pt", name="cap")["paths"]
    model, manifest = load_export(paths["pt"])
    assert len(manifest["widths"]["allowed"]) > 1
    for given in (paths["pt"], paths["json"]):
        assert main(["render", str(given), str(path), str(tmp_path / "wet.wav"), "--float"]) == 0
        np.testing.assert_array_equal(sf.read(tmp_path / "wet.wav", dtype="float32")[0], render(model, x))
    assert main(["render", str(paths["pt"]), str(path), str(tmp_path / "half.wav"), "--float", "--width", "0.5"]) == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "half.wav", dtype="float32")[0], render(slim(model, 0.5), x))
    assert "width 0.5" in capsys.readouterr().out
    line = _one_line_error(capsys, main(["render", str(paths["pt"]), str(path), str(tmp_path / "w.wav"), "--slim", "0.5"]))
    assert "--slim applies to a SlimmableContainer .nam file; an export takes --width" in line
    # An export of a network not trained to slim keeps its one width.
    one = export_run(_run(tmp_path / "runs", "nano", "baseline"), tmp_path / "export", fmt="pt", name="nano")["paths"]
    line = _one_line_error(capsys, main(["render", str(one["json"]), str(path), str(tmp_path / "w.wav"), "--width",
                                         "0.5"]))
    assert "keeps one width" in line
