"""NAM-shaped LSTM students (``arch: nam_lstm``): a study with every recipe, every tool reloading
their run folders, ``.nam`` round trips, distillation features and errors that say what to write."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from models.cli import main
from models.errors import ConfigError
from models.export.bundle import load_export
from models.export.nam_read import load_nam
from models.inference.rendering import render_whole
from models.nets.architectures import build_model, of, student_config
from models.nets.lstm import LSTMConfig
from models.nets.nam_lstm import NamLSTMConfig
from models.studies.recipes.kd import WITHOUT_DISTILLATION
from models.studies.recipes.kd_qat import WITHOUT_TEACHER
from models.studies.recipes.quantized import FINE_TUNED, SOURCE_AS_IS
from models.studies.recipes.slimmable import TRAINED_ALONE
from models.studies.study import expansion, load_study, run_study
from models.training.checkpoints import load_model
from models.training.distill import DistillConfig, FeatureAligner

RATE = 16000
TO_NAM = {"student_layer": -1, "feature_loss": "mse"}  # the LSTM output, through a projection head
STUDY = {
    "name": "nam-students",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": RATE, "duration_s": 2.0}],
    "teachers": [{"name": "stack", "layers": [8, 8]},
                 {"name": "nam", "model": {"arch": "nam_lstm", "hidden_size": 6, "num_layers": 2}}],
    "students": [{"arch": "nam_lstm", "hidden_size": 4}],
    "recipes": [{"recipe": "baseline"},
                {"recipe": "kd", "distill": TO_NAM},
                {"recipe": "ptq", "bits": [8], "source": "baseline"},
                {"recipe": "qat", "bits": [4], "source": "baseline"},
                {"recipe": "kd_qat", "bits": [4], "source": "kd", "distill": TO_NAM},
                {"recipe": "finetune", "source": "kd"},
                {"recipe": "slimmable", "slimmable": {"widths": [0.5, 1.0], "rule": "sandwich"}}],
    "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 1, "max_batches_per_epoch": 2,
                 "batch_size": 4, "learning_rate": 0.003},
}
# (variant, teacher, model, bits, width) of every run: the teachers' baselines, the recipes' runs and
# their budget-matched controls (the 2-unit cut trained alone; fp32 fine-tuning of every qat source —
# for the kd sources that is the finetune entry's run, distilled with the same budget; plain qat of
# each kd source and its own, undistilled, fine-tuning).
EXPECTED_RUNS = sorted([
    ("baseline", "", "S-8-8", 32, 1.0), ("baseline", "", "NAM-LSTM-2x6", 32, 1.0),
    ("baseline", "", "NAM-LSTM-1x4", 32, 1.0),
    ("kd", "stack", "NAM-LSTM-1x4", 32, 1.0), ("kd", "nam", "NAM-LSTM-1x4", 32, 1.0),
    ("slimmable", "", "NAM-LSTM-1x4", 32, 1.0), ("slimmable50", "", "NAM-LSTM-1x2", 32, 0.5),
    ("alone", "", "NAM-LSTM-1x2", 32, 1.0),
    ("ptq8", "", "NAM-LSTM-1x4", 8, 1.0), ("qat4", "", "NAM-LSTM-1x4", 4, 1.0),
    ("finetune", "", "NAM-LSTM-1x4", 32, 1.0),
    ("kd_qat4", "stack", "NAM-LSTM-1x4", 4, 1.0), ("kd_qat4", "nam", "NAM-LSTM-1x4", 4, 1.0),
    ("finetune", "stack", "NAM-LSTM-1x4", 32, 1.0), ("finetune", "nam", "NAM-LSTM-1x4", 32, 1.0),
    ("finetune", "stack", "NAM-LSTM-1x4", 32, 1.0), ("finetune", "nam", "NAM-LSTM-1x4", 32, 1.0),
    ("qat4", "stack", "NAM-LSTM-1x4", 4, 1.0), ("qat4", "nam", "NAM-LSTM-1x4", 4, 1.0),
])


def write_study(tmp_path, data=STUDY):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**data, "output_dir": str(tmp_path / "out")}))
    return path


def _nam(hidden_size=4, num_layers=1, seed=0):
    torch.manual_seed(seed)
    return build_model(NamLSTMConfig(hidden_size=hidden_size, num_layers=num_layers)).eval()


def test_a_nam_lstm_s_features_are_every_layers_output():
    """Checked against two one-layer ``nn.LSTM`` modules holding the same weights."""
    model = _nam(hidden_size=4, num_layers=2)
    x = 0.5 * torch.randn(2, 300, 1)
    first, second = torch.nn.LSTM(1, 4, batch_first=True), torch.nn.LSTM(4, 4, batch_first=True)
    with torch.no_grad():
        for layer, module in enumerate((first, second)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(module, f"{name}_l0").copy_(getattr(model.lstm, f"{name}_l{layer}"))
        y, (h, c), features = model(x, return_features=True)
        out0, _ = first(x)
        out1, (h1, c1) = second(out0)
        plain, _ = model(x)
    assert len(features) == 2
    torch.testing.assert_close(features[0], out0, atol=1e-6, rtol=0)
    torch.testing.assert_close(features[1], out1, atol=1e-6, rtol=0)
    torch.testing.assert_close(y, plain, atol=1e-6, rtol=0)
    torch.testing.assert_close(h[1:], h1, atol=1e-6, rtol=0)
    assert of(model.config).feature_size(model.config, -1) == 4


def test_a_nam_lstm_student_aligns_through_a_projection_head():
    aligner = FeatureAligner(DistillConfig(**TO_NAM), NamLSTMConfig(hidden_size=4), LSTMConfig(layers=(16, 8)))
    assert isinstance(aligner.projection, torch.nn.Linear)
    assert (aligner.projection.in_features, aligner.projection.out_features) == (4, 8)
    # a NAM LSTM teacher's layers are features too (layer 0 of a 2 × 6 network: 6 units)
    aligner = FeatureAligner(DistillConfig(teacher_layer=0, **TO_NAM), NamLSTMConfig(hidden_size=4),
                             NamLSTMConfig(hidden_size=6, num_layers=2))
    assert aligner.projection.out_features == 6
    with pytest.raises(ConfigError, match=r"student_layer: layer index 1 is out of range for NAM-LSTM-1x4 .*"
                                          r"expected -1"):
        FeatureAligner(DistillConfig(feature_loss="mse"), NamLSTMConfig(hidden_size=4), LSTMConfig(layers=(16, 8)))
    with pytest.raises(ConfigError, match="set projection: true"):
        FeatureAligner(DistillConfig(student_layer=-1), NamLSTMConfig(hidden_size=4), LSTMConfig(layers=(16, 8)))


def test_every_recipe_expands_for_a_nam_lstm_student_with_its_controls(tmp_path):
    runs, controls = expansion(load_study(write_study(tmp_path)))
    described = sorted((r.variant, r.teacher or "", of(r.model).label(r.model), r.bits, r.width) for r in runs)
    cut = [r for r in runs if r.width < 1.0]
    assert len(cut) == 1  # the cut run holds the full network's config; its checkpoint the 2-unit cut
    described = sorted(d if d[4] == 1.0 else (d[0], d[1], "NAM-LSTM-1x2", d[3], d[4]) for d in described)
    assert described == EXPECTED_RUNS
    by_id = {r.run_id: r for r in runs}
    kinds = {(by_id[row.run_id].variant, by_id[row.run_id].teacher or "", row.control,
              by_id[row.control_run].variant) for row in controls.itertuples()}
    assert {("kd", "stack", WITHOUT_DISTILLATION, "baseline"), ("kd", "nam", WITHOUT_DISTILLATION, "baseline"),
            ("slimmable50", "", TRAINED_ALONE, "alone"), ("ptq8", "", SOURCE_AS_IS, "baseline"),
            ("qat4", "", FINE_TUNED, "finetune"), ("kd_qat4", "nam", FINE_TUNED, "finetune"),
            ("slimmable", "", TRAINED_ALONE, "baseline"), ("qat4", "stack", FINE_TUNED, "finetune"),
            ("kd_qat4", "stack", WITHOUT_TEACHER, "qat4")} <= kinds


@pytest.mark.parametrize("change, message", [
    # the paper's default layer is a two-layer stack's second: a one-layer NAM LSTM has -1 only
    ({"recipes": [{"recipe": "kd", "distill": {"feature_loss": "mse"}}]},
     r"recipe 'kd', student NAM-LSTM-1x4, teacher 'stack': distill.student_layer: layer index 1 is out of range"),
    ({"recipes": [{"recipe": "kd", "distill": {"student_layer": -1}}]},
     r"student layer -1 has 4 units but teacher layer -1 has 8; set projection: true"),
    ({"teachers": [{"name": "t"}]}, r"teacher 't': expected layers .* or model .*, found neither"),
    ({"teachers": [{"name": "t", "layers": [8], "model": {"arch": "nam_lstm"}}]}, r"found both"),
    ({"teachers": [{"name": "t", "model": {"arch": "wavenet", "preset": "nano"}}]},
     r"teacher 't': model: .* expected a distillable architecture \(lstm, nam_lstm\), found 'wavenet'"),
    ({"teachers": [{"name": "t", "model": {"arch": "nam_lstm", "size": 8}}]}, r"unknown key 'size'"),
])
def test_bad_nam_lstm_studies_say_what_to_write(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_study(write_study(tmp_path, {**STUDY, **change}))


def test_the_lstm_stack_refusal_names_a_study_entry_that_works():
    from models.export.nam_format import export_nam

    stack = build_model(LSTMConfig(layers=(16, 8)))
    with pytest.raises(ConfigError, match="no input skip") as refused:
        export_nam(stack, "never-written.nam", RATE)
    entry = str(refused.value).split("`")[1]
    assert entry == "{arch: nam_lstm, hidden_size: 16}"
    net = student_config(yaml.safe_load(entry), "film", "students[0]")
    assert net == NamLSTMConfig(hidden_size=16)


@pytest.mark.slow
def test_nam_lstm_students_train_with_every_recipe_and_every_tool_reloads_them(tmp_path, capsys):
    from stimulus_sets.config import GroupSpec, SystemSpec
    from stimulus_sets.selection import matching_runs, wanted_columns
    from stimulus_sets.study_folder import load_trained_study

    out = tmp_path / "out"
    run_study(load_study(write_study(tmp_path)), out)  # what `python -m models study` trains
    assert main(["-q", "measure", str(out), "--repeats", "1"]) == 0
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False)
    assert sorted(zip(runs["variant"], runs["teacher"], runs["model"], runs["bits"], runs["width"],
                      strict=True)) == EXPECTED_RUNS
    rows = {(r.variant, r.teacher): r for r in runs.itertuples()}
    # Counted by hand. NAM-LSTM-1x4: 4·4·(1 + 4) weights + 2·16 biases + head 4 + 1 = 117 parameters,
    # 4·4·5 + 4 = 84 multiply-adds; 1x2: 4·2·3 + 16 + 3 = 43 and 4·2·3 + 2 = 26; 2x6: 4·6·7 + 4·6·12
    # + 2·48 + 7 = 559 and 168 + 288 + 6 = 462.
    assert (rows["baseline", ""].params, rows["baseline", ""].macs_per_sample, rows["baseline", ""].bytes) \
        == (117, 84, 4 * 117)
    assert (rows["slimmable50", ""].params, rows["slimmable50", ""].macs_per_sample) == (43, 26)
    assert (rows["alone", ""].params, rows["alone", ""].layers) == (43, "2")
    teacher = runs[runs["model"] == "NAM-LSTM-2x6"].iloc[0]
    assert (teacher["params"], teacher["macs_per_sample"], teacher["layers"]) == (559, 462, "6-6")
    # 4-bit weights 16 + 64 + 4 → 8 + 32 + 2 bytes; 33 row scales; fp32 biases 32 + 1 and the
    # initial state 2·4 (the network as stored)
    assert rows["qat4", ""].bytes == 42 + 4 * 33 + 4 * 41
    assert rows["ptq8", ""].bytes == 84 + 4 * 33 + 4 * 41
    # the measure phase timed every run
    cost = pd.read_csv(out / "cost.csv")
    assert set(cost["run_id"]) == set(runs["run_id"]) and (cost["rtf_offline_median"] > 0).all()
    comparison = (out / "comparison.md").read_text()
    assert "| od | stack | NAM-LSTM-1x4 |" in comparison and "S-4" not in comparison

    # Every run folder: checkpoint, export (.pt + .json + .nam), .nam read back, CLI render.
    dry = np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.3
    sf.write(tmp_path / "dry.wav", dry, RATE, subtype="FLOAT")
    for row in runs.itertuples():
        run_dir = out / "runs" / row.run_id
        model, payload = load_model(run_dir)
        whole = render_whole(model, dry)
        exported = tmp_path / "exports" / row.run_id
        if row.arch != "nam_lstm":
            continue  # the stack teacher has no .nam (its refusal is tested above)
        assert main(["-q", "export", str(run_dir), "--format", "both", "--out", str(exported)]) == 0
        again, manifest = load_export(exported / f"{row.run_id}.json")
        assert manifest["bits"] == row.bits and manifest["files"]["nam"] == f"{row.run_id}.nam"
        np.testing.assert_array_equal(render_whole(again, dry), whole)
        nam, info = load_nam(exported / f"{row.run_id}.nam")
        document = json.loads((exported / f"{row.run_id}.nam").read_text())
        assert (document["architecture"], info["sample_rate"]) == ("LSTM", RATE)
        assert document["config"]["hidden_size"] == model.config.hidden_size
        # The .nam holds the run's weights (a quantized run's dequantized ones, said in its metadata)
        # and starts from its settled state: the run's network started there renders the same.
        for name in ("weight_ih_l0", "weight_hh_l0"):
            assert torch.equal(getattr(nam.lstm, name), getattr(model.lstm, name)), (row.run_id, name)
        assert ("earshot_weights" in document["metadata"]) == (row.bits < 32)
        assert document["metadata"]["bits"] == row.bits
        started = build_model(model.config).eval()
        started.load_state_dict(model.state_dict())
        with torch.no_grad():
            started.initial_hidden.copy_(nam.initial_hidden)
            started.initial_cell.copy_(nam.initial_cell)
        np.testing.assert_allclose(render_whole(nam, dry), render_whole(started, dry), rtol=0, atol=1e-6)
    capsys.readouterr()

    # The slimmable network exported at half width is the cut run, in both formats.
    full, half = out / "runs" / rows["slimmable", ""].run_id, out / "runs" / rows["slimmable50", ""].run_id
    assert main(["-q", "export", str(full), "--format", "both", "--width", "0.5", "--out", str(tmp_path / "w")]) == 0
    cut, _ = load_model(half)
    nam, _ = load_nam(tmp_path / "w" / f"{full.name}_w50.nam")
    exported, manifest = load_export(tmp_path / "w" / f"{full.name}_w50.json")
    assert manifest["architecture"]["label"] == "NAM-LSTM-1x2" and manifest["widths"]["allowed"] == [0.5, 1.0]
    for name, tensor in cut.state_dict().items():
        assert torch.equal(exported.state_dict()[name], tensor), name
    assert torch.equal(nam.lstm.weight_hh_l0, cut.lstm.weight_hh_l0) and nam.config.hidden_size == 2

    # `render` and `train RUN_DIR` read a run folder; the kd run is complete, so nothing trains.
    kd = out / "runs" / rows["kd", "nam"].run_id
    assert main(["-q", "render", str(kd), str(tmp_path / "dry.wav"), str(tmp_path / "wet.wav")]) == 0
    wet, rate = sf.read(tmp_path / "wet.wav", dtype="float32")
    assert rate == RATE
    np.testing.assert_allclose(wet, render_whole(load_model(kd)[0], dry), rtol=0, atol=2e-7)  # 24-bit WAV
    log = (kd / "log.jsonl").read_text()
    assert main(["-q", "train", str(kd), "--resume"]) == 0
    assert (kd / "log.jsonl").read_text() == log
    # the kd student keeps no projection head
    assert not any("projection" in key for key in load_model(kd)[1]["model"])

    # A stimulus set selects them by model label, recipe, teacher, bits and width.
    study = load_trained_study(out)
    group = GroupSpec(name="nam", model="NAM-LSTM-1x4", systems=(SystemSpec(id="x"),))
    for system, expected in [(SystemSpec(id="slim", recipe="slimmable", width=0.5), rows["slimmable50", ""]),
                             (SystemSpec(id="kd", recipe="kd", teacher="nam"), rows["kd", "nam"]),
                             (SystemSpec(id="q4", recipe="kd_qat", bits=4, teacher="stack"), rows["kd_qat4", "stack"])]:
        hits = matching_runs(study, list(study.runs), wanted_columns(system, group, 0))
        assert [hit["run_id"] for hit in hits] == [expected.run_id]
