"""A tiny study end to end: expansion, training only what is missing, runs.csv and the comparison."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from common import audio_metrics as metrics
from models.cli import main
from models.data.datasets import DatasetConfig
from models.data.sources import load_dataset
from models.errors import ConfigError
from models.inference.rendering import render_whole
from models.studies.recipes.quantized import FINE_TUNED, SOURCE_AS_IS
from models.studies.recipes.slimmable import TRAINED_ALONE
from models.studies.study import RUNS_COLUMNS, expand, load_study, run_study
from models.training.checkpoints import load_model

TINY = {
    "name": "tiny",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": 16000, "duration_s": 3.0}],
    "teachers": [{"name": "small", "layers": [16, 8]}],
    "students": [{"layers": [8, 8]}, {"layers": [16, 8]}],
    "recipes": [{"recipe": "baseline"}, {"recipe": "kd", "distill": {"feature_loss": "kl"}}],
    "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 1, "max_batches_per_epoch": 3,
                 "learning_rate": 0.003},
}


def write_study(tmp_path, data=TINY):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**data, "output_dir": str(tmp_path / "out")}))
    return path


def test_expansion_shares_the_small_teacher_with_the_baseline_student(tmp_path):
    runs = expand(load_study(write_study(tmp_path)))
    described = [(r.model.layers, r.recipe, r.teacher) for r in runs]
    # teacher S-16-8 is the S-16-8 baseline run; S-16-8 is not distilled into itself
    assert described == [((16, 8), "baseline", None), ((8, 8), "baseline", None), ((8, 8), "kd", "small")]
    kd = runs[2]
    assert kd.teacher_run == runs[0].run_id
    assert len({r.run_id for r in runs}) == 3


@pytest.mark.slow
def test_study_trains_once_and_writes_the_comparison(tmp_path):
    study = load_study(write_study(tmp_path))
    out = tmp_path / "out"
    frame = run_study(study, out)
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns[: len(RUNS_COLUMNS)]) == RUNS_COLUMNS
    assert len(runs) == 3 and set(runs["recipe"]) == {"baseline", "kd"}
    s88 = runs[runs["layers"] == "8-8"].set_index("recipe")
    assert s88.loc["baseline", "params"] == 937 and s88.loc["kd", "macs_per_sample"] == 808
    assert s88.loc["kd", "teacher"] == "small"

    # Test metrics agree with an independent render of the test split (whole file, batch 1).
    dataset = load_dataset(DatasetConfig(**TINY["datasets"][0]))
    run_id = s88.loc["baseline", "run_id"]
    model, _ = load_model(out / "runs" / run_id)
    seg = dataset.splits["test"][0]
    assert s88.loc["baseline", "test_esr"] == pytest.approx(metrics.esr(render_whole(model, seg.input), seg.target), rel=1e-3)

    table = pd.read_csv(out / "comparison.csv")
    assert sorted(table["metric"]) == sorted(["test_mae", "test_mse", "test_esr", "test_esr_pre", "test_mrstft"])
    for _, row in table.iterrows():
        base, kd = s88.loc["baseline", row["metric"]], s88.loc["kd", row["metric"]]
        assert row["improvement_pct"] == pytest.approx(100 * (base - kd) / base)
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A second run trains nothing and leaves every checkpoint untouched.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.pt")}
    statuses = []
    again = run_study(study, out, on_run=lambda run, status: statuses.append(status))
    assert statuses == ["skip", "skip", "skip"]
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.pt")} == stamps
    pd.testing.assert_frame_equal(again.reset_index(drop=True), frame.reset_index(drop=True))


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, r"unknown key 'colour'"),
    ({"teachers": []}, r"recipe 'kd' is kd but the study has no teachers"),
    ({"recipes": [{"recipe": "kd", "teachers": ["huge"]}]}, r"unknown teacher\(s\) \['huge'\]"),
    ({"training": {"max_epoch": 3}}, r"training: unknown key 'max_epoch'"),
    ({"datasets": [{"name": "x", "device": "overdrive"}, {"name": "x", "device": "fuzz"}]}, "unique"),
    # A source naming no recipe of the study: the message lists the recipes that can be sources
    # (this raised TypeError while a local list shadowed the registry's names()).
    ({"recipes": [{"recipe": "baseline"}, {"recipe": "qat", "bits": [8], "source": "nothing"}]},
     r"recipe 'qat' has source 'nothing', expected the name of a baseline or kd recipe of this study"),
])
def test_bad_studies_are_rejected_with_the_reason(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_study(write_study(tmp_path, {**TINY, **change}))


def test_cli_dry_run_and_errors(tmp_path, capsys):
    path = write_study(tmp_path)
    assert main(["study", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("to do") for line in lines)
    assert main(["study", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err


def test_every_verb_explains_its_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    verbs = ["study", "train", "dataset", "devices", "render", "bench", "export", "measure"]
    assert all(v in out for v in verbs)
    for verb in verbs:
        with pytest.raises(SystemExit) as exc:
            main([verb, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert f"python -m models {verb}" in text and "options:" in text
        assert "%%" not in text  # argparse leaves an escaped percent sign unformatted in descriptions


@pytest.mark.slow
def test_render_verb_writes_the_model_output(tmp_path, capsys):
    import soundfile as sf

    run_study(load_study(write_study(tmp_path)), tmp_path / "out")
    run_dir = next((tmp_path / "out" / "runs").glob("od_S-8-8_baseline_*"))
    x = (0.3 * np.sin(2 * np.pi * 110 * np.arange(8000) / 16000)).astype(np.float32)
    sf.write(tmp_path / "dry.wav", x, 16000)
    assert main(["render", str(run_dir), str(tmp_path / "dry.wav"), str(tmp_path / "wet.wav")]) == 0
    wet, rate = sf.read(tmp_path / "wet.wav", dtype="float32")
    model, _ = load_model(run_dir)
    assert rate == 16000
    # chunked rendering: within 1e-4 of whole-file (the documented accuracy) plus 24-bit rounding
    np.testing.assert_allclose(wet, render_whole(model, x), atol=1e-4)
    sf.write(tmp_path / "dry44.wav", x, 44100)
    assert main(["render", str(run_dir), str(tmp_path / "dry44.wav"), str(tmp_path / "w.wav")]) == 2
    assert "44100 Hz, but the model was trained at 16000 Hz" in capsys.readouterr().err


@pytest.mark.slow
def test_conditioned_study_with_projection_response_kd_and_balanced_sampling(tmp_path):
    data = {
        "name": "cond",
        "datasets": [{"name": "odd", "device": "overdrive_drive", "sample_rate": 16000, "duration_s": 2.0,
                      "knob_values": [0.0, 1.0]}],
        "teachers": [{"name": "t", "layers": [16, 8]}],
        "students": [{"layers": [8, 4]}],
        "recipes": [{"recipe": "baseline"},
                    {"recipe": "kd", "name": "kd-proj", "distill": {
                        "feature_loss": "mse", "response_alpha": 0.5, "balanced_sampling": True, "clusters": 3}}],
        "conditioning": "concat",
        "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 1, "max_batches_per_epoch": 2},
    }
    out = tmp_path / "out"
    runs = run_study(load_study(write_study(tmp_path, data)), out)
    assert list(runs["variant"]) == ["baseline", "baseline", "kd-proj"]
    kd_dir = out / "runs" / runs.iloc[2]["run_id"]
    model, payload = load_model(kd_dir)
    assert payload["knob_names"] == ["drive"]
    # The projection head (4 → 8 units) was trained but is not part of the student.
    assert not any("projection" in key for key in payload["model"])
    assert model.config.n_knobs == 1 and model.config.conditioning == "concat"
    # Concatenated knob: LSTM(8) sees 2 inputs, so 4·8·(2+8) + LSTM(4) 4·4·(8+4) + dense 4 = 516.
    assert runs.iloc[2]["macs_per_sample"] == 4 * 8 * 10 + 4 * 4 * 12 + 4


@pytest.mark.slow
def test_quantized_recipes_in_a_study(tmp_path):
    from models.nets.quantize import load_quantized

    data = {**TINY, "students": [{"layers": [8, 8]}],
            "recipes": [{"recipe": "baseline"}, {"recipe": "kd"},
                        {"recipe": "ptq", "bits": [8, 2], "source": "baseline"},
                        {"recipe": "qat", "bits": [4], "source": "baseline", "training": {"max_epochs": 1}},
                        {"recipe": "kd_qat", "bits": [4], "source": "kd"}]}
    out = tmp_path / "out"
    frame = run_study(load_study(write_study(tmp_path, data)), out)
    every = frame[frame["layers"] == "8-8"]
    # the recipes' runs and their budget-matched controls: fp32 fine-tuning of each qat source (the
    # kd_qat one distilled), plain qat of the kd source at 4 bits (the kd_qat's "no teacher") and
    # that qat run's own plain fp32 fine-tuning
    assert sorted(zip(every["variant"], every["teacher"].fillna(""), strict=True)) == sorted([
        ("baseline", ""), ("kd", "small"), ("ptq8", ""), ("ptq2", ""), ("qat4", ""), ("kd_qat4", "small"),
        ("finetune", ""), ("kd_finetune", "small"), ("qat4", "small"), ("finetune", "small")])
    controls = pd.read_csv(out / "controls.csv")
    tuned = every[every["variant"] == "kd_finetune"].iloc[0]
    assert tuned["teacher_run"] == every.set_index("variant").loc["kd", "teacher_run"]
    runs = every[(every["teacher"].fillna("") == "") | (every["recipe"] != "qat")]
    runs = runs[runs["recipe"] != "finetune"].set_index("variant")
    # every quantized run is compared with a budget-matched fp32 control: no "budget not matched"
    assert not pd.read_csv(out / "quantization.csv")["control"].str.contains("not matched").any()
    kd_qat_id = runs.loc["kd_qat4", "run_id"]
    assert set(controls.loc[controls["run_id"] == kd_qat_id, "control_run"]) == {
        tuned["run_id"], every[(every["recipe"] == "qat") & (every["teacher"] == "small")].iloc[0]["run_id"]}
    assert runs.loc["kd_qat4", "teacher"] == "small" and runs.loc["kd_qat4", "init_run"] == runs.loc["kd", "run_id"]
    assert runs.loc["ptq8", "init_run"] == runs.loc["baseline", "run_id"]
    # packed bytes of S-8-8 at 4 bits: weights 32+256+256+256+8 = 808 → 404 bytes; scales 32+32+32+32+1 = 129
    # floats (biases): 937 − 808 = 129 → 4·129 + 4·129
    assert runs.loc["qat4", "bytes"] == 404 + 4 * 129 + 4 * 129
    assert runs.loc["ptq2", "bytes"] == 202 + 4 * 129 + 4 * 129
    assert runs.loc["ptq8", "ratio_to_fp32"] == pytest.approx((808 + 8 * 129) / (4 * 937))
    # The renderer uses exactly the dequantized integers.
    run_dir = out / "runs" / runs.loc["qat4", "run_id"]
    model, payload = load_model(run_dir)
    weights, _ = load_quantized(run_dir / "quantized.pt")
    for name, value in weights.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert payload["bits"] == 4
    table = pd.read_csv(out / "quantization.csv")
    teacher_bytes = 4 * 2057  # the small teacher is S-16-8 in fp32
    kd_qat = table[table["variant"] == "kd_qat4"]
    assert len(kd_qat) == 2  # against the fp32 fine-tuning and against plain qat
    assert kd_qat["ratio_to_teacher"].tolist() == pytest.approx([runs.loc["kd_qat4", "bytes"] / teacher_bytes] * 2)
    against = kd_qat.set_index("control").loc[f"{FINE_TUNED} (kd_finetune)"]
    assert against["control_test_esr"] == pytest.approx(tuned["test_esr"])
    assert against["esr_change_pct"] == pytest.approx(100 * (runs.loc["kd_qat4", "test_esr"] - tuned["test_esr"])
                                                      / tuned["test_esr"])
    ptq = table[table["variant"] == "ptq8"].iloc[0]
    assert ptq["control"] == f"{SOURCE_AS_IS} (baseline)"
    assert (out / "pareto.png").is_file()


def test_quantized_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs bits"):
        load_study(write_study(tmp_path, {**TINY, "recipes": [{"recipe": "ptq", "source": "baseline"}]}))
    with pytest.raises(ConfigError, match="needs a kd source"):
        load_study(write_study(tmp_path, {**TINY, "recipes": [
            {"recipe": "baseline"}, {"recipe": "kd_qat", "bits": [4], "source": "baseline"}]}))
    with pytest.raises(ConfigError, match=r"bits: expected one of"):
        load_study(write_study(tmp_path, {**TINY, "recipes": [
            {"recipe": "baseline"}, {"recipe": "ptq", "bits": [1], "source": "baseline"}]}))


@pytest.mark.slow
def test_parallel_jobs_give_the_same_runs_as_sequential(tmp_path):
    data = {**TINY, "recipes": [{"recipe": "baseline"}, {"recipe": "kd"},
                                {"recipe": "ptq", "bits": [4], "source": "kd"}]}
    study = load_study(write_study(tmp_path, data))
    sequential = run_study(study, tmp_path / "seq")
    statuses = []
    parallel = run_study(study, tmp_path / "par", jobs=2, on_run=lambda run, status: statuses.append(status))
    assert statuses == ["train"] * len(sequential)
    assert list(parallel["run_id"]) == list(sequential["run_id"])
    # Same seeds, same single-thread arithmetic: identical results in another process.
    pd.testing.assert_series_equal(parallel["test_esr"], sequential["test_esr"])
    # A run started (wrote config.json) only after its teacher / fp32 source finished (metrics.json):
    # a teacher still training already has a checkpoint.pt, so starting early would not fail loudly.
    runs = tmp_path / "par" / "runs"
    checked = 0
    for run in expand(study):
        for dep in (run.teacher_run, run.init_run):
            if dep:
                finished = (runs / dep / "metrics.json").stat().st_mtime_ns
                assert (runs / run.run_id / "config.json").stat().st_mtime_ns >= finished
                checked += 1
    assert checked == 2  # S-8-8 kd ← its teacher, S-8-8 ptq4 ← that kd student


@pytest.mark.slow
def test_study_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray", reason="pip install -c constraints.txt ray")
    data = {**TINY, "students": [{"layers": [8, 8]}],
            "recipes": [{"recipe": "baseline"}, {"recipe": "kd"}]}
    study = load_study(write_study(tmp_path, data))
    # A real local Ray instance started here (2 CPUs, loopback), stopped at the end.
    import tempfile

    # Ray's unix sockets need a short path (107 bytes at most): not pytest's deep tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    try:
        address = ray.get_runtime_context().gcs_address
        on_ray = run_study(study, tmp_path / "ray_out", ray_address=address)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    sequential = run_study(study, tmp_path / "seq")
    assert list(on_ray["run_id"]) == list(sequential["run_id"])
    pd.testing.assert_series_equal(on_ray["test_esr"], sequential["test_esr"])
    assert (tmp_path / "ray_out" / "runs.csv").is_file()


def test_run_ids_ignore_settings_left_at_their_defaults():
    from models.nets.lstm import LSTMConfig
    from models.studies.runs import RunConfig
    from models.training.loop import TrainingConfig

    base = RunConfig(dataset=DatasetConfig(name="od", device="overdrive"), model=LSTMConfig(layers=(8, 8)))
    explicit = RunConfig(dataset=DatasetConfig(name="od", device="overdrive", sample_rate=48000),
                         model=base.model, training=TrainingConfig(batch_size=8), bits=32)
    assert explicit.run_id == base.run_id
    other = RunConfig(dataset=base.dataset, model=base.model, training=TrainingConfig(batch_size=4))
    assert other.run_id != base.run_id



SLIM = {
    "name": "slim",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": 16000, "duration_s": 3.0}],
    "students": [{"layers": [8, 4]}, {"arch": "wavenet", "preset": "slimmable"},
                 {"arch": "wavenet", "preset": "slimmable", "width": 0.25}],
    "recipes": [{"recipe": "baseline", "students": ["WN-slimmable@25%"]},
                {"recipe": "slimmable", "slimmable": {"widths": [0.25, 0.5, 1.0], "rule": "sandwich",
                                                      "inplace_distillation": True}}],
    "training": {"window_samples": 512, "warmup_samples": 64, "max_epochs": 1, "max_batches_per_epoch": 2,
                 "batch_size": 2, "learning_rate": 0.003},
}


@pytest.mark.slow
def test_slimmable_recipe_trains_once_and_cuts_every_width(tmp_path, capsys):
    from models.nets.architectures import build_model
    from models.nets.lstm import LSTMConfig
    from models.nets.slimmable import slim
    from models.nets.wavenet import from_preset

    out = tmp_path / "out"
    frame = run_study(load_study(write_study(tmp_path, SLIM)), out).set_index("variant")
    wn = frame[frame["arch"] == "wavenet"]
    # the slimmable WaveNet at 1.0 / 0.5 / 0.25, and each slimmed width's layout trained alone with the
    # same budget: the quarter width by the study's baseline entry, the half as the recipe's control
    assert sorted(zip(wn["recipe"], wn["width"], wn["layers"], strict=True)) == [
        ("baseline", 1.0, "4-2"), ("baseline", 1.0, "8-4"),
        ("slimmable", 0.25, "4-2"), ("slimmable", 0.5, "8-4"), ("slimmable", 1.0, "16-8")]
    assert sorted(wn.index[wn["recipe"] == "baseline"]) == ["alone", "baseline"]
    full = wn[(wn["recipe"] == "slimmable") & (wn["width"] == 1.0)].iloc[0]
    quarter = wn[(wn["recipe"] == "slimmable") & (wn["width"] == 0.25)].iloc[0]
    assert full["params"] == 13_801 and quarter["init_run"] == full["run_id"]
    # Hand count of the 25 % layout (channels 4 and 2, 10 + 10 layers of kernel 3, mono condition):
    # array 1: rechannel 4 + 10·(conv 3·4·4 + 4, mixer 4, 1×1 16 + 4) + head 2·4 = 4 + 760 + 8 = 772
    # array 2: rechannel 2·4 + 10·(3·2·2 + 2 + 2 + 4 + 2) + head 2 + bias 1 = 8 + 220 + 3 = 231
    assert quarter["params"] == 772 + 231
    assert quarter["model"] == "WN-slimmable@25%"
    # The cut run holds exactly the first channels of the trained slimmable network.
    big, _ = load_model(out / "runs" / full["run_id"])
    small, payload = load_model(out / "runs" / quarter["run_id"])
    x = torch.randn(1, 700, 1) * 0.2
    cut = slim(big, 0.25)
    with torch.inference_mode():
        assert torch.equal(small(x)[0], cut(x)[0])
        assert not torch.allclose(small(x)[0], big(x)[0])
    assert payload["net"]["width"] == 0.25
    # The slimmable LSTM S-8-4: widths 1.0, 0.5 (S-4-2) and 0.25 (S-2-1).
    lstm = frame[(frame["arch"] == "lstm") & (frame["recipe"] == "slimmable")].set_index("width")
    assert lstm.loc[0.5, "layers"] == "4-2" and lstm.loc[0.25, "layers"] == "2-1"
    assert lstm.loc[0.5, "params"] == sum(p.numel() for p in build_model(LSTMConfig(layers=(4, 2))).parameters())

    sweep = pd.read_csv(out / "width_sweep.csv")
    wn_sweep = sweep[sweep["model"] == "WN-slimmable"].set_index("width")
    assert list(wn_sweep.index) == [0.25, 0.5, 1.0]
    baseline_quarter = wn[wn["recipe"] == "baseline"].iloc[0]
    assert wn_sweep.loc[0.25, "independent_run"] == baseline_quarter["run_id"]
    assert wn_sweep.loc[0.25, "independent_test_esr"] == pytest.approx(baseline_quarter["test_esr"])
    half_alone = wn[(wn["recipe"] == "baseline") & (wn["layers"] == "8-4")].iloc[0]
    assert wn_sweep.loc[0.5, "independent_run"] == half_alone["run_id"]
    assert list(wn_sweep["control"]) == [TRAINED_ALONE, TRAINED_ALONE, "none trained"]  # 25, 50, 100 %
    assert (out / "width_sweep.png").is_file()
    assert from_preset("slimmable").receptive_field - 1 == 4092
    config = __import__("json").loads((out / "runs" / full["run_id"] / "config.json").read_text())
    # the study asked for 64 warm-up samples; the WaveNet's windows were warmed up over its receptive field
    assert config["training"]["warmup_samples"] == 64
    assert config["effective_training"]["warmup_samples"] == 4092
    # `train RUN_DIR` rebuilds the same run (same id, already complete) from that config.json
    capsys.readouterr()
    assert main(["-q", "train", str(out / "runs" / full["run_id"]), "--resume"]) == 0
    assert f"training {full['run_id']} in" in capsys.readouterr().out
    log = (out / "runs" / full["run_id"] / "log.jsonl").read_text()
    assert log.count("\n") == 1


def test_slimmable_study_errors(tmp_path):
    with pytest.raises(ConfigError, match="distils LSTM features"):
        load_study(write_study(tmp_path, {**SLIM, "teachers": [{"name": "t", "layers": [16, 8]}],
                                          "recipes": [{"recipe": "kd", "students": ["WN-slimmable"]}]}))
    with pytest.raises(ConfigError, match="unknown student"):
        load_study(write_study(tmp_path, {**SLIM, "recipes": [{"recipe": "baseline", "students": ["S-9-9"]}]}))
    with pytest.raises(ConfigError, match="already at width 0.25"):
        load_study(write_study(tmp_path, {**SLIM, "recipes": [
            {"recipe": "slimmable", "students": ["WN-slimmable@25%"]}]}))
    with pytest.raises(ConfigError, match="slimmable.widths: expected fractions"):
        load_study(write_study(tmp_path, {**SLIM, "recipes": [{"recipe": "slimmable", "slimmable": {"widths": [1.5]}}]}))
