"""Self-describing exports: the .pt + manifest rebuild the run's model exactly without its folder,
quantized integers survive bit-exactly, slimmed and .nam exports match slim(), and bad input is
refused clearly (library errors and the CLI's exit code 2)."""

import hashlib
import json
import os
import re
import shutil
import stat

import numpy as np
import pyloudnorm
import pytest
import torch

from models.cli import main
from models.config import to_dict
from models.dsp.signals import excerpt
from models.errors import ModelsError
from models.export.bundle import (
    ExportError,
    ExportIntegrityError,
    ExportSchemaError,
    export_run,
    load_export,
    load_export_quantized,
    loudness_test_signal,
)
from models.export.nam_format import load_nam
from models.inference.rendering import render, render_whole
from models.nets.architectures import build_model, parameter_count
from models.nets.lstm import LSTMConfig
from models.nets.quantize import load_quantized
from models.nets.slimmable import slim
from models.nets.wavenet import WaveNetPresetConfig
from models.studies.run_files import finalise_quantized as _finalise_quantized
from models.training.checkpoints import load_model, save_atomic, write_json_atomic

RATE = 16000


def _write_run(runs, name, net, knob_names=(), recipe="baseline", bits=32, metrics=True, seed=0):
    """A run folder as models.studies.runs writes it: config.json, checkpoint.pt and (finished) metrics.json."""
    run_dir = runs / name
    torch.manual_seed(seed)
    model = build_model(net)
    extra = {"dataset": "tiny-device", "sample_rate": RATE, "knob_names": list(knob_names), "run_id": name}
    write_json_atomic({"dataset": {"name": "tiny-device"}, "model": to_dict(net), "recipe": recipe,
                       "variant": recipe, "teacher": None, "seed": seed, "bits": bits, "run_id": name,
                       "git_commit": "0123abcd", "sample_rate": RATE, "knob_names": list(knob_names),
                       "latency_samples": 3}, run_dir / "config.json")
    save_atomic({"net": to_dict(net), **extra, "model": model.state_dict(), "epoch": 1}, run_dir / "checkpoint.pt")
    if bits != 32:
        _finalise_quantized(run_dir, bits)
    if metrics:
        write_json_atomic({"row": {"run_id": name, "test_esr": 0.125, "test_mrstft": 0.5, "rtf_offline": 80.0,
                                   "params": parameter_count(model), "epochs": 1}}, run_dir / "metrics.json")
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "lstm": _write_run(root, "tiny_S-8-4_film", LSTMConfig(layers=(8, 4), n_knobs=1), knob_names=("drive",)),
        "q4": _write_run(root, "tiny_S-8-4_q4", LSTMConfig(layers=(8, 4)), recipe="ptq", bits=4, seed=1),
        "wavenet": _write_run(root, "tiny_WN-slimmable", WaveNetPresetConfig(preset="slimmable"),
                              recipe="slimmable", seed=2),
    }


@pytest.fixture(scope="module")
def audio():
    rng = np.random.default_rng(3)
    return (0.3 * rng.standard_normal(6000)).astype(np.float32)


def test_fp32_export_loads_without_the_run_folder_and_renders_bit_identically(runs, audio, tmp_path):
    run_dir = shutil.copytree(runs["lstm"], tmp_path / "run")
    expected = render(load_model(run_dir)[0], audio, [0.3])
    result = export_run(run_dir, tmp_path / "out")
    shutil.rmtree(run_dir)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny_S-8-4_film.json", "tiny_S-8-4_film.pt"]
    model, manifest = load_export(tmp_path / "out" / "tiny_S-8-4_film.json")
    assert np.array_equal(render(model, audio, [0.3]), expected)
    assert manifest == json.loads((tmp_path / "out" / "tiny_S-8-4_film.json").read_text()) == result["manifest"]
    assert manifest["schema"] == "earshot-export" and manifest["schema_version"] == 1
    assert manifest["architecture"]["net"] == {"arch": "lstm", "layers": [8, 4], "conditioning": "film",
                                               "n_knobs": 1, "preset": None, "width": 1.0}
    assert manifest["architecture"]["knob_names"] == ["drive"]
    # By hand: LSTM 1→8 4·8·(1+8) + 2·32 biases = 352, FiLM 1→16 = 32, LSTM 8→4 4·4·12 + 32 = 224,
    # FiLM 1→8 = 16, dense 4→1 = 5.
    assert manifest["parameters"] == 352 + 32 + 224 + 16 + 5
    # Gate products 4·8·9 + 4·4·12, one FiLM multiply-add per unit (8 + 4), dense 4.
    assert manifest["macs_per_sample"] == 288 + 192 + 12 + 4
    assert manifest["bits"] == 32 and manifest["quantization"] is None
    assert manifest["size"]["bytes"] == manifest["size"]["fp32_bytes"] == 4 * 629
    assert manifest["sample_rate"] == RATE
    assert manifest["widths"]["slimmable"] is False and manifest["widths"]["allowed"] == [1.0]
    assert manifest["latency"]["algorithmic_samples"] == 0 and manifest["latency"]["dataset_compensated_samples"] == 3
    assert manifest["test_metrics"] == {"test_esr": 0.125, "test_mrstft": 0.5, "rtf_offline": 80.0}
    provenance = manifest["provenance"]
    assert provenance["run_id"] == "tiny_S-8-4_film" and provenance["dataset"] == "tiny-device"
    assert provenance["git_commit"] == "0123abcd" and provenance["complete"] is True
    pt_bytes = (tmp_path / "out" / "tiny_S-8-4_film.pt").read_bytes()
    assert provenance["weights_sha256"] == hashlib.sha256(pt_bytes).hexdigest()
    assert manifest["size"]["file_bytes"] == len(pt_bytes)


def test_loudness_is_the_bs1770_level_of_the_output_on_the_fixed_test_signal(tmp_path):
    # Dense weights and bias zero: an LSTMStack then outputs exactly its input (the skip), so the
    # output loudness is the test signal's own, measured here with pyloudnorm directly.
    net = LSTMConfig(layers=(4, 2))
    run_dir = _write_run(tmp_path, "identity", net)
    model, payload = load_model(run_dir)
    with torch.no_grad():
        model.dense.weight.zero_()
        model.dense.bias.zero_()
    save_atomic({**payload, "model": model.state_dict()}, run_dir / "checkpoint.pt")
    manifest = export_run(run_dir, tmp_path / "out")["manifest"]
    x = excerpt("guitar", 3.0, RATE, 1534)
    assert np.array_equal(loudness_test_signal(RATE), x)
    assert np.array_equal(render_whole(model, x), x)
    level = pyloudnorm.Meter(RATE).integrated_loudness(x.astype(np.float64))
    assert manifest["loudness"]["output_lufs"] == pytest.approx(level, abs=1e-3)
    assert manifest["loudness"]["input_lufs"] == pytest.approx(level, abs=1e-3)
    assert manifest["loudness"]["gain_lu"] == 0.0
    assert manifest["loudness"]["test_signal"]["seed"] == 1534


def test_infinite_metrics_are_written_as_null(tmp_path):
    run_dir = _write_run(tmp_path, "perfect", LSTMConfig(layers=(4, 2)))
    write_json_atomic({"row": {"test_esr": 0.0, "test_snr_db": float("inf"), "test_mae": float("nan")}},
                      run_dir / "metrics.json")
    export_run(run_dir, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "perfect.json").read_text())  # strict JSON: no Infinity
    assert manifest["test_metrics"] == {"test_esr": 0.0, "test_snr_db": None, "test_mae": None}


def test_quantized_export_keeps_the_integers_bit_exactly_and_renders_like_the_checkpoint(runs, audio, tmp_path):
    run_dir = runs["q4"]
    manifest = export_run(run_dir, tmp_path, name="q4")["manifest"]
    original, _ = load_quantized(run_dir / "quantized.pt")
    exported = load_export_quantized(tmp_path / "q4")
    assert exported.bits == 4 and set(exported.integers) == set(original.integers)
    for name, q in original.integers.items():
        assert torch.equal(exported.integers[name], q) and exported.integers[name].dtype == torch.int8
        assert torch.equal(exported.scales[name], original.scales[name])
    for name, t in original.floats.items():
        assert torch.equal(exported.floats[name], t)
    model, _ = load_export(tmp_path / "q4.pt")
    assert np.array_equal(render(model, audio), render(load_model(run_dir)[0], audio))
    payload = torch.load(tmp_path / "q4.pt", weights_only=True)
    assert "model" not in payload  # no fp32 copy of the weights: packed integers only
    assert all(p.dtype == torch.uint8 for p in payload["quantized"]["packed"].values())
    assert manifest["bits"] == 4
    q = manifest["quantization"]
    assert set(q["tensors"]) == set(original.integers)
    assert q["tensors"]["lstms.0.weight_hh_l0"] == {"shape": [32, 8], "packed": "quantized.packed.lstms.0.weight_hh_l0",
                                                    "scales": "quantized.scales.lstms.0.weight_hh_l0", "rows": 32}
    # By hand: 4-bit weights 32·1 + 32·8 + 16·8 + 16·4 + 1·4 = 484 values = 242 bytes; one fp32
    # scale per row (32 + 32 + 16 + 16 + 1) and fp32 biases (32 + 32 + 16 + 16 + 1).
    assert manifest["size"]["bytes"] == q["packed_bytes"] == 242 + 4 * 97 + 4 * 97


def test_quantized_export_at_a_width_cuts_integers_and_scales_with_the_weights(runs, audio, tmp_path):
    run_dir = runs["q4"]
    manifest = export_run(run_dir, tmp_path, width=0.5, name="half")["manifest"]
    model, _ = load_export(tmp_path / "half")
    reference = slim(load_model(run_dir)[0], 0.5)
    assert np.array_equal(render(model, audio), render(reference, audio))
    assert manifest["architecture"]["net"]["layers"] == [4, 2] and manifest["widths"]["exported"] == 0.5
    original, _ = load_quantized(run_dir / "quantized.pt")
    cut = load_export_quantized(tmp_path / "half")
    # Width 0.5 of an 8-unit layer keeps units 0-3 of each of the four gate blocks.
    rows = torch.tensor([0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27])
    assert torch.equal(cut.integers["lstms.0.weight_ih_l0"], original.integers["lstms.0.weight_ih_l0"][rows])
    assert torch.equal(cut.integers["lstms.0.weight_hh_l0"], original.integers["lstms.0.weight_hh_l0"][rows][:, :4])
    assert torch.equal(cut.scales["lstms.0.weight_hh_l0"], original.scales["lstms.0.weight_hh_l0"][rows])
    rows1 = torch.tensor([0, 1, 4, 5, 8, 9, 12, 13])
    assert torch.equal(cut.integers["lstms.1.weight_ih_l0"], original.integers["lstms.1.weight_ih_l0"][rows1][:, :4])


@pytest.mark.slow
def test_slimmable_wavenet_exports_pt_and_nam_at_a_width(runs, audio, tmp_path):
    run_dir = runs["wavenet"]
    result = export_run(run_dir, tmp_path, fmt="both", width=0.5)
    name = "tiny_WN-slimmable_w50"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.json", f"{name}.nam", f"{name}.pt"]
    manifest = result["manifest"]
    model, _ = load_export(tmp_path / name)
    expected = render_whole(slim(load_model(run_dir)[0], 0.5), audio)
    assert np.array_equal(render_whole(model, audio), expected)
    nam_model, info = load_nam(tmp_path / f"{name}.nam")
    assert info["sample_rate"] == RATE
    np.testing.assert_allclose(render_whole(nam_model, audio), expected, atol=1e-6)
    assert manifest["files"] == {"weights": f"{name}.pt", "nam": f"{name}.nam"}
    assert manifest["provenance"]["nam_sha256"] == hashlib.sha256((tmp_path / f"{name}.nam").read_bytes()).hexdigest()
    assert manifest["architecture"]["net"]["preset"] == "slimmable" and manifest["architecture"]["net"]["width"] == 0.5
    assert manifest["architecture"]["label"] == "WN-slimmable@50%"
    assert manifest["parameters"] == parameter_count(model) < 13801
    # The cut network has 8 and 4 channels: it can be cut again to k/8 of them.
    assert manifest["widths"]["slimmable"] is True
    assert manifest["widths"]["allowed"] == [k / 8 for k in range(1, 9)]
    assert manifest["latency"]["receptive_field_samples"] == model.receptive_field


def test_a_changed_or_missing_file_or_an_unknown_schema_is_refused(runs, tmp_path):
    export_run(runs["lstm"], tmp_path, name="m")
    manifest_path, pt_path = tmp_path / "m.json", tmp_path / "m.pt"
    good_pt, good_manifest = pt_path.read_bytes(), manifest_path.read_text()

    pt_path.write_bytes(good_pt[:-1] + bytes([good_pt[-1] ^ 1]))
    with pytest.raises(ExportIntegrityError, match="sha256"):
        load_export(manifest_path)
    pt_path.unlink()
    with pytest.raises(ExportError, match="missing"):
        load_export(manifest_path)
    pt_path.write_bytes(good_pt)

    for key, value, message in (("schema_version", 99, "schema version 99"), ("schema", "other", "not an Earshot")):
        manifest_path.write_text(json.dumps({**json.loads(good_manifest), key: value}))
        with pytest.raises(ExportSchemaError, match=message) as info:
            load_export(pt_path)
        assert isinstance(info.value, ModelsError)
    manifest_path.unlink()
    with pytest.raises(ExportError, match="manifest not found"):
        load_export(pt_path)


def test_an_interrupted_export_leaves_the_previous_export_and_no_temporary_files(runs, tmp_path, monkeypatch):
    export_run(runs["lstm"], tmp_path, name="m")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fail(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr("models.export.bundle.build_manifest", fail)
    with pytest.raises(RuntimeError, match="power cut"):
        export_run(runs["lstm"], tmp_path, name="m")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    load_export(tmp_path / "m")


@pytest.mark.slow
def test_cli_exports_a_run_and_explains_its_options(runs, tmp_path, capsys):
    assert main(["-q", "export", str(runs["wavenet"]), "--out", str(tmp_path), "--format", "both",
                 "--name", "wn"]) == 0
    out = capsys.readouterr().out
    assert "wn.pt" in out and "wn.nam" in out and "13801 parameters" in out
    assert load_export(tmp_path / "wn")[1]["widths"]["allowed"][0] == 1 / 16
    with pytest.raises(SystemExit) as info:
        main(["export", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--out DIR", "--format {pt,nam,both}", "--width W", "--name NAME", "RUN_DIR"):
        assert option in text
    assert "LSTM stack is refused" in text and "0 < W <= 1" in text


def test_both_formats_of_an_lstm_stack_write_what_they_can_and_say_what_they_cannot(runs, tmp_path, capsys):
    assert main(["-q", "export", str(runs["lstm"]), "--out", str(tmp_path), "--format", "both", "--name", "s"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.pt"]
    assert "wrote" in out and "not written: the .nam file — cannot export S-8-4 as a .nam LSTM" in out
    model, manifest = load_export(tmp_path / "s")
    assert manifest["files"] == {"weights": "s.pt"}


@pytest.mark.parametrize("case", ["nam_of_lstm", "not_a_run", "untrained", "width_high", "width_zero", "width_tiny",
                                  "bad_name", "unfinished_quantized"])
def test_cli_refuses_bad_input_with_a_message_and_exit_code_2(case, runs, tmp_path, capsys):
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    # A 4-bit run still training: checkpoint.pt holds the fp32 shadow weights, no quantized.pt yet.
    unfinished = _write_run(tmp_path, "unfinished", LSTMConfig(layers=(4, 2)), recipe="qat", metrics=False)
    config = json.loads((unfinished / "config.json").read_text())
    write_json_atomic({**config, "bits": 4}, unfinished / "config.json")
    argv, message = {
        "nam_of_lstm": ([str(runs["lstm"]), "--format", "nam"], "cannot export S-8-4 as a .nam LSTM"),
        "not_a_run": ([str(tmp_path / "empty")], "not a run folder"),
        "untrained": ([str(untrained)], "not trained yet"),
        "width_high": ([str(runs["wavenet"]), "--width", "1.5"], "expected a fraction"),
        "width_zero": ([str(runs["wavenet"]), "--width", "0"], "expected a fraction"),
        "width_tiny": ([str(runs["wavenet"]), "--width", "0.05"], "below the narrowest this WN-slimmable allows (0.0625"),
        "bad_name": ([str(runs["lstm"]), "--name", "../escape"], "plain file name"),
        "unfinished_quantized": ([str(unfinished)], "quantization is not finished"),
    }[case]
    out = tmp_path / "out"
    assert main(["export", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_exported_files_are_ordinary_files_others_can_read(runs, tmp_path):
    # mkstemp creates 0600 files: an export is meant to be copied, served and loaded by others.
    old = os.umask(0o022)
    try:
        export_run(runs["wavenet"], tmp_path, fmt="both")
    finally:
        os.umask(old)
    modes = {p.suffix: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {".pt": 0o644, ".json": 0o644, ".nam": 0o644}


def _two_width_run(root):
    """A slimmable WaveNet run whose slimmable settings name two widths."""
    run_dir = _write_run(root, "tiny_WN-slimmable2", WaveNetPresetConfig(preset="slimmable"), recipe="slimmable",
                         seed=6)
    config = json.loads((run_dir / "config.json").read_text())
    write_json_atomic({**config, "slimmable": {"widths": [0.5, 1.0], "rule": "uniform"}}, run_dir / "config.json")
    return run_dir


@pytest.mark.slow  # three loudness measures of NAM's standard WaveNet: ~5-13 s
def test_cli_writes_a_070_nam_and_a_slimmable_container_and_the_manifest_says_so(tmp_path, capsys):
    run_dir = _two_width_run(tmp_path / "runs")
    out = tmp_path / "out"
    assert main(["-q", "export", str(run_dir), "--out", str(out), "--format", "both", "--nam-version", "0.7.0",
                 "--nam-container", "--name", "wn"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["wn.json", "wn.nam", "wn.pt", "wn_slimmable.nam"]
    assert "wn_slimmable.nam" in printed
    single = json.loads((out / "wn.nam").read_text())
    assert single["version"] == "0.7.0" and "head" in single["config"]["layers"][0]
    container = json.loads((out / "wn_slimmable.nam").read_text())
    assert (container["version"], container["architecture"]) == ("0.7.0", "SlimmableContainer")
    submodels = container["config"]["submodels"]
    # The slimmable preset has 16 and 8 channels; half width keeps 8 and 4.
    assert [[a["channels"] for a in s["model"]["config"]["layers"]] for s in submodels] == [[8, 4], [16, 8]]
    assert [s["max_value"] for s in submodels] == [0.5000000000000001, 1.0]
    assert submodels[1]["model"]["weights"] == single["weights"]
    manifest = json.loads((out / "wn.json").read_text())
    assert manifest["files"] == {"weights": "wn.pt", "nam": "wn.nam", "nam_container": "wn_slimmable.nam"}
    assert manifest["nam"] == {"version": "0.7.0", "container": {
        "file": "wn_slimmable.nam", "version": "0.7.0", "widths": [0.5, 1.0], "max_values": [0.5000000000000001, 1.0]}}
    assert manifest["provenance"]["nam_container_sha256"] == hashlib.sha256(
        (out / "wn_slimmable.nam").read_bytes()).hexdigest()


@pytest.mark.slow
def test_the_default_nam_version_is_054_and_the_manifest_records_it(runs, tmp_path):
    manifest = export_run(runs["wavenet"], tmp_path, fmt="both", width=0.25, name="q")["manifest"]
    assert manifest["nam"] == {"version": "0.5.4", "container": None}
    assert json.loads((tmp_path / "q.nam").read_text())["version"] == "0.5.4"
    assert export_run(runs["lstm"], tmp_path, fmt="pt", name="p")["manifest"]["nam"] is None


@pytest.mark.parametrize("case", ["lstm", "baseline_wavenet", "pt_only", "a_cut_width"])
def test_cli_refuses_a_container_where_there_is_none_in_one_line_with_exit_code_2(case, runs, tmp_path, capsys):
    if case == "baseline_wavenet":
        run_dir = _write_run(tmp_path, "nano", WaveNetPresetConfig(preset="nano"), seed=7)
    elif case == "a_cut_width":
        run_dir = _write_run(tmp_path, "nano50", WaveNetPresetConfig(preset="slimmable", width=0.5),
                             recipe="slimmable", seed=8)
    else:
        run_dir = runs["wavenet" if case == "pt_only" else "lstm"]
    fmt = "pt" if case == "pt_only" else "nam"
    message = {"lstm": "a SlimmableContainer holds the widths of a slimmable WaveNet run",
               "baseline_wavenet": "found WN-nano (recipe 'baseline')",
               "pt_only": "the container is a .nam file; use --format nam or both, found pt",
               "a_cut_width": "one width cut from a slimmable run; export the full-width run"}[case]
    out = tmp_path / "out"
    assert main(["export", str(run_dir), "--out", str(out), "--format", fmt, "--nam-container"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def _study_folder(runs, tmp_path):
    """A study folder as `python -m models study` leaves it: runs/<run_id>/ and runs.csv."""
    study = tmp_path / "study"
    rows = [("tiny_S-8-4_film", "baseline", "1.0"), ("tiny_S-8-4_q4", "ptq", "1.0"),
            ("tiny_WN-slimmable", "slimmable", "1.0")]
    for run_id, _, _ in rows:
        shutil.copytree(runs["lstm"].parent / run_id, study / "runs" / run_id)
    (study / "runs.csv").write_text("run_id,recipe,width\n" + "".join(f"{r},{c},{w}\n" for r, c, w in rows))
    return study


@pytest.mark.slow
def test_export_picks_a_run_of_a_study_folder_by_its_runs_csv_columns(runs, tmp_path, capsys):
    study = _study_folder(runs, tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "export", str(study), "--select", "recipe=slimmable,width=1", "--format", "nam",
                 "--name", "capture", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["capture.nam"]
    assert json.loads((out / "capture.nam").read_text())["architecture"] == "WaveNet"
    # Every run: the two LSTM stacks cannot be .nam files; that is said, and the WaveNet still written.
    assert main(["-q", "export", str(study), "--all", "--format", "nam", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["capture.nam", "tiny_WN-slimmable.nam"]
    assert text.count("not exported: tiny_S-8-4_") == 2 and "cannot export S-8-4 as a .nam LSTM" in text


@pytest.mark.parametrize("args, message", [
    (["--select", "recipe=kd"], "--select recipe=kd: expected exactly one run of .*runs.csv to match, found 0"),
    (["--select", "width=1"], "expected exactly one run .* found 3: tiny_S-8-4_film, tiny_S-8-4_q4, tiny_WN-slimmable"),
    (["--select", "colour=red"], "--select: .*runs.csv has no column 'colour' \\(columns: recipe, run_id, width\\)"),
    (["--select", "recipe"], "--select: expected COLUMN=VALUE\\[,COLUMN=VALUE...\\], found 'recipe'"),
    ([], "is a study folder: pick a run with --select"),
    (["--all", "--name", "x"], "--name names one export; with --all every run keeps its run id"),
])
def test_export_from_a_study_folder_refuses_an_ambiguous_choice_in_one_line(args, message, runs, tmp_path, capsys):
    study = _study_folder(runs, tmp_path)
    assert main(["export", str(study), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "out").exists()
