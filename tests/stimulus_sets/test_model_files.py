"""Model files as stimulus-set systems and references: a ``.nam`` capture and Earshot exports are
rendered, aligned and levelled like study runs, carry hand-countable facts into the manifest and
the report, can be the reference, and bad input is one line."""

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch
import yaml
from scipy import signal as sps

from evaluation.correlations import cost_view
from evaluation.manifest import annotate, load_manifest
from models.config import to_dict
from models.dsp.signals import excerpt
from models.export.bundle import export_run
from models.export.nam_format import export_nam
from models.inference.rendering import render
from models.nets.architectures import build_model
from models.nets.lstm import LSTMConfig
from models.nets.slimmable import slim
from models.nets.wavenet import PRESETS, WaveNet, WaveNetConfig
from models.studies.run_files import finalise_quantized
from models.training.checkpoints import load_model, save_atomic, write_json_atomic
from stimulus_sets import build
from stimulus_sets.build import build_from_file
from stimulus_sets.check import check_stimulus_set
from stimulus_sets.cli import main
from stimulus_sets.errors import ConfigError, StimulusConfigError
from tests.evaluation.inputs import tidy_frame

RATE = 22050  # the lowest common rate that holds the 7 kHz anchor's stop band
MARGIN = round(0.05 * RATE)  # max_latency_ms 50
FADE = round(0.005 * RATE)
ITEMS = [{"name": "guitar", "kind": "guitar"}, {"name": "bass", "kind": "bass"}]
NAM_REFERENCE = Path(__file__).resolve().parents[1] / "data" / "nam-reference"

# Hand counts. A nano WaveNet (NAM's preset, no knobs): array 1, 1 → 4 channels, 7 layers of
# kernel 3, head 4 → 2 without bias; array 2, 4 → 2 channels, 13 layers, head 2 → 1 with bias.
# Per layer: dilated conv c·c·3 + c, input mixer c, 1×1 c·c + c.
NANO_PARAMS = (4 + 7 * (48 + 4 + 4 + 16 + 4) + 8) + (8 + 13 * (12 + 2 + 2 + 4 + 2) + 2 + 1)
# Rechannel in·c; per layer conv 3·c·c, mixer c, 1×1 c·c; head c·head (biases not counted).
NANO_MACS = (4 + 7 * (48 + 4 + 16) + 8) + (8 + 13 * (12 + 2 + 4) + 2)
# LSTM 1 → 8 → 4 and a dense 4 → 1 (an LSTMStack): 4H(I + H) weights and 2·4H biases per layer.
LSTM_PARAMS = (32 + 256 + 64) + (128 + 64 + 32) + 5
LSTM_MACS = 4 * 8 * (1 + 8) + 4 * 4 * (8 + 4) + 4
# 8 bits: one byte per weight of the quantized matrices, an fp32 scale per row, fp32 biases.
Q8_BYTES = (32 + 256 + 128 + 64 + 4) + 4 * (32 + 32 + 16 + 16 + 1) + 4 * (32 + 32 + 16 + 16 + 1)
# The same stack cut to half width, 1 → 4 → 2: (16 + 64 + 32) + (32 + 16 + 16) + 3.
HALF_PARAMS = 112 + 64 + 3
# The nano WaveNet cut to half width: arrays of 2 and 1 channels (layers 2·2·3 + 2, 2, 2·2 + 2; 1·1·3 + 1, 1, 1 + 1).
HALF_NANO_PARAMS = (2 + 7 * (14 + 2 + 6) + 2) + (2 + 13 * (4 + 1 + 2) + 1 + 1)


def nano(seed, head_scale=0.5):
    """A random nano WaveNet, loud enough to be rated (the preset's head scale 0.02 leaves it near silence)."""
    torch.manual_seed(seed)
    return WaveNet(WaveNetConfig(arrays=PRESETS["nano"], head_scale=head_scale, preset="nano")).eval()


def write_run(runs, name, net, recipe="baseline", bits=32, seed=0, dataset=None):
    """A finished run folder as models.studies.runs writes it (random weights)."""
    run_dir = runs / name
    torch.manual_seed(seed)
    model = build_model(net)
    extra = {"dataset": "od", "sample_rate": RATE, "knob_names": [], "run_id": name}
    write_json_atomic({"dataset": dataset or {"name": "od", "device": "overdrive"}, "model": to_dict(net),
                       "recipe": recipe, "variant": recipe, "teacher": None, "seed": seed, "bits": bits,
                       "run_id": name, "sample_rate": RATE, "knob_names": []}, run_dir / "config.json")
    save_atomic({"net": to_dict(net), **extra, "model": model.state_dict(), "epoch": 1}, run_dir / "checkpoint.pt")
    if bits != 32:
        finalise_quantized(run_dir, bits)
    write_json_atomic({"row": {"run_id": name, "test_esr": 0.125}}, run_dir / "metrics.json")
    return run_dir


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A capture and a student as .nam files, an 8-bit export and a slimmable export."""
    root = tmp_path_factory.mktemp("files")
    capture, student = nano(1), nano(2)
    export_nam(capture, root / "capture.nam", RATE)
    export_nam(student, root / "student.nam", RATE)
    export_nam(nano(3), root / "capture_48k.nam", 48000)
    runs = root / "runs"
    q8 = write_run(runs, "od_S-8-4_ptq8", LSTMConfig(layers=(8, 4)), recipe="ptq", bits=8, seed=4)
    wide = write_run(runs, "od_S-8-4_slimmable", LSTMConfig(layers=(8, 4)), recipe="slimmable", seed=5)
    export_run(q8, root / "exports", "pt")
    export_run(wide, root / "exports", "pt")
    return {"root": root, "capture": capture, "student": student, "q8": load_model(q8)[0],
            "wide": load_model(wide)[0]}


@pytest.fixture(autouse=True, scope="module")
def quick_timing():
    # The real-time factor is timed on 4 s, five times; a quarter second twice keeps tests fast.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "RTF_REPEATS", 2)
        patch.setattr(build, "RTF_AUDIO_S", 0.25)
        yield


SYSTEMS = [{"id": "student_nam", "nam": "student.nam"},
           {"id": "student_nam_w50", "nam": "student.nam", "width": 0.5},
           {"id": "student_q8", "export": "exports/od_S-8-4_ptq8.pt"},
           {"id": "student_w50", "export": "exports/od_S-8-4_slimmable.json", "width": 0.5}]


def write_config(folder, **changes):
    data = {"items": ITEMS, "reference": {"nam": "capture.nam"}, "strict": False, "duration_s": 1.0,
            "training_trials": 0, "seed": 3,
            "groups": [{"name": "students", "systems": SYSTEMS}], **changes}
    path = folder / "set.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def built(files):
    root = files["root"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the config's paths are relative to the working directory
        config = write_config(root)
        assert main(["-q", "build", str(config), "--out", "set"]) == 0
    out = root / "set"
    return out, json.loads((out / "manifest.json").read_text())


def faded(x):
    x = x.copy()
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(FADE) / FADE)
    x[:FADE] *= ramp
    x[-FADE:] *= ramp[::-1]
    return x


def levelled(x, trial_gain_db):
    return x * 10 ** ((-23.0 - pyloudnorm.Meter(RATE).integrated_loudness(x) + trial_gain_db) / 20)


def dry_of(manifest, item):
    seed = manifest["items"][item]["seed"]
    return excerpt(manifest["items"][item]["kind"], (RATE + 2 * MARGIN) / RATE, RATE, seed)


@pytest.mark.slow
def test_model_files_render_like_the_models_themselves_against_the_capture(files, built):
    out, manifest = built
    assert manifest["study"] is None and manifest["bs1534_enforced"] is False
    assert manifest["groups"] == {"students": {"student_nam": "nam:student.nam",
                                               "student_nam_w50": "nam:student.nam@width=0.5",
                                               "student_q8": "export:od_S-8-4_ptq8.pt",
                                               "student_w50": "export:od_S-8-4_slimmable.json@width=0.5"}}
    direct = {"student_nam": files["student"], "student_nam_w50": slim(files["student"], 0.5), "student_q8": files["q8"],
              "student_w50": slim(files["wide"], 0.5)}
    for trial in manifest["trials"]:
        folder = out / "audio" / trial["id"]
        assert trial["device"] == "nam:capture.nam"
        dry = dry_of(manifest, trial["item"])
        # the reference is the capture's output, faded and levelled like a device's
        wet = render(files["capture"], dry).astype(np.float64)[MARGIN : MARGIN + RATE]
        reference = sf.read(folder / "reference.wav", dtype="float64")[0]
        np.testing.assert_allclose(reference, levelled(faded(wet), trial["trial_gain_db"]), atol=2.0**-23)
        for cond in (c for c in trial["conditions"] if c["role"] == "system"):
            y = render(direct[cond["id"]], dry).astype(np.float64)
            lag = int(np.argmax(sps.correlate(y, wet, mode="valid"))) - MARGIN  # the documented alignment
            assert cond["latency_samples"] == lag
            expected = levelled(faded(y[MARGIN + lag : MARGIN + lag + RATE]), trial["trial_gain_db"])
            np.testing.assert_allclose(sf.read(folder / cond["file"], dtype="float64")[0], expected, atol=2.0**-23)


def test_model_facts_are_hand_counts_and_name_the_files(files, built):
    _, manifest = built
    facts = {c["id"]: c for c in manifest["trials"][0]["conditions"] if c["role"] == "system"}
    nam = facts["student_nam"]
    # a .nam file does not name its preset: the label is its channels per layer array
    assert (nam["arch"], nam["model"], nam["layers"], nam["bits"], nam["width"]) == ("wavenet", "WN-4-2", "4-2", 32, 1.0)
    assert (nam["params"], nam["macs_per_sample"], nam["bytes"]) == (NANO_PARAMS, NANO_MACS, 4 * NANO_PARAMS)
    assert nam["run_id"] is None and nam["recipe"] is None
    data = (files["root"] / "student.nam").read_bytes()
    assert nam["origin"] == {"source": "nam", "file": "student.nam", "path": "student.nam",
                             "sha256": hashlib.sha256(data).hexdigest(), "file_bytes": len(data),
                             "nam_version": "0.5.4", "nam_architecture": "WaveNet", "sample_rate": RATE,
                             "slim": None, "width": None}
    q8 = facts["student_q8"]
    assert (q8["arch"], q8["model"], q8["bits"], q8["recipe"], q8["dataset"]) == ("lstm", "S-8-4", 8, "ptq", "od")
    assert (q8["params"], q8["macs_per_sample"], q8["bytes"]) == (LSTM_PARAMS, LSTM_MACS, Q8_BYTES)
    pt = files["root"] / "exports" / "od_S-8-4_ptq8.pt"
    assert q8["origin"]["source"] == "export" and q8["origin"]["file"] == "od_S-8-4_ptq8.pt"
    assert q8["origin"]["sha256"] == hashlib.sha256(pt.read_bytes()).hexdigest()
    assert q8["origin"]["run_id"] == "od_S-8-4_ptq8"
    nam_half = facts["student_nam_w50"]
    assert (nam_half["model"], nam_half["width"], nam_half["params"]) == ("WN-2-1@50%", 0.5, HALF_NANO_PARAMS)
    assert nam_half["origin"]["width"] == 0.5 and nam_half["origin"]["sha256"] == nam["origin"]["sha256"]
    half = facts["student_w50"]
    assert (half["model"], half["width"], half["params"], half["bytes"]) == ("S-4-2", 0.5, HALF_PARAMS, 4 * HALF_PARAMS)
    for cond in facts.values():
        assert cond["rtf_offline"] > 0 and cond["rtf_stream"] is None
    timing = manifest["rtf_measurement"]
    assert timing["systems"] == list(manifest["groups"]["students"].values())
    assert timing["repeats"] == 2 and timing["offline_audio_s"] == 0.25 and timing["threads"] == 1
    assert manifest["items"]["guitar"]["reference_model"]["file"] == "capture.nam"


def test_the_report_shows_model_files_with_their_facts(built):
    out, manifest = built
    loaded = load_manifest(out)
    systems = loaded.conditions[loaded.conditions["role"] == "system"].drop_duplicates("condition")
    assert systems.set_index("condition")["origin"].to_dict() == {
        "student_nam": "nam", "student_nam_w50": "nam", "student_q8": "export", "student_w50": "export"}
    rows = [(f"L{i}", trial["id"], cond["id"], None, 50.0 + i)
            for i in range(3) for trial in manifest["trials"] for cond in trial["conditions"]]
    view = cost_view(annotate(tidy_frame(rows), loaded), loaded.conditions).set_index("condition")
    assert view.loc["student_q8", ["origin", "params", "bytes", "macs_per_sample"]].tolist() == [
        "export", LSTM_PARAMS, Q8_BYTES, LSTM_MACS]
    assert view.loc["student_nam", "origin"] == "nam" and view.loc["student_nam", "rtf_offline"] > 0


def test_check_passes_a_set_of_model_files_and_the_web_app_serves_it(built, capsys):
    from webapp.manifest import load_stimulus_set

    out, manifest = built
    frame = check_stimulus_set(out)
    assert frame["ok"].all(), frame[~frame["ok"]]
    assert main(["check", str(out)]) == 0
    assert len(load_stimulus_set(out).trials) == len(manifest["trials"])


RUNS_CSV = ("run_id,dataset,arch,model,layers,recipe,variant,teacher,bits,width,seed,params,bytes,macs_per_sample,"
            "rtf_offline,rtf_stream,init_run,teacher_run\n"
            f"od_S-8-4_baseline_s0_0123abcd,od,lstm,S-8-4,8-4,baseline,baseline,,32,1.0,0,{LSTM_PARAMS},"
            f"{4 * LSTM_PARAMS},{LSTM_MACS},50.0,20.0,,\n")


def test_a_study_whose_dataset_is_a_capture_takes_the_capture_as_reference(files, tmp_path, monkeypatch):
    # A study trained on the capture's output names it in its runs' dataset settings (teacher_nam).
    root = files["root"]
    study = tmp_path / "zoo"
    run = write_run(study / "runs", "od_S-8-4_baseline_s0_0123abcd", LSTMConfig(layers=(8, 4)), seed=6,
                    dataset={"name": "od", "device": None, "teacher_nam": str(root / "capture.nam")})
    (study / "runs.csv").write_text(RUNS_CSV)
    monkeypatch.chdir(root)
    config = write_config(tmp_path, study_dir=str(study), reference=None, items=ITEMS[:1],
                          groups=[{"name": "mixed", "systems": [{"id": "baseline", "recipe": "baseline"},
                                                                {"id": "student_nam", "nam": "student.nam"}]}])
    manifest = build_from_file(config, tmp_path / "set")
    trial = manifest["trials"][0]
    assert manifest["study"]["capture"] == str(root / "capture.nam") and manifest["study"]["device"] is None
    assert trial["device"] == "nam:capture.nam"
    dry = dry_of(manifest, "guitar")
    wet = render(files["capture"], dry).astype(np.float64)[MARGIN : MARGIN + RATE]
    reference = sf.read(tmp_path / "set/audio" / trial["id"] / "reference.wav", dtype="float64")[0]
    np.testing.assert_allclose(reference, levelled(faded(wet), trial["trial_gain_db"]), atol=2.0**-23)
    baseline = next(c for c in trial["conditions"] if c["id"] == "baseline")
    assert baseline["origin"]["source"] == "study" and baseline["origin"]["run_id"] == run.name
    assert (baseline["params"], baseline["rtf_offline"]) == (LSTM_PARAMS, 50.0)  # runs.csv's, not measured again
    assert manifest["rtf_measurement"]["systems"] == ["nam:student.nam"]
    # an item's own reference wins over the study's capture
    own = [{**ITEMS[0], "reference": {"nam": "student.nam"}}]
    config = write_config(tmp_path, study_dir=str(study), reference=None, items=own,
                          groups=[{"name": "g", "systems": [{"id": "baseline", "recipe": "baseline"}]}])
    assert build_from_file(config, tmp_path / "own")["trials"][0]["device"] == "nam:student.nam"


@pytest.mark.parametrize("changes, match", [
    ({"groups": [{"name": "g", "systems": [{"id": "x", "nam": "nope.nam"}]}]},
     r"group 'g', system 'x': nam: expected a .nam file, found nothing at nope.nam"),
    ({"groups": [{"name": "g", "systems": [{"id": "x", "nam": "student.nam", "export": "a.pt"}]}]},
     r"system 'x': expected one of 'nam' \(a .nam file\) or 'export' \(an Earshot export\), found both"),
    ({"groups": [{"name": "g", "systems": [{"id": "x", "nam": "student.nam", "slim": 0.3}]}]},
     r"system 'x': nam: .*student.nam.*slim"),
    ({"groups": [{"name": "g", "systems": [{"id": "x", "export": "exports/od_S-8-4_ptq8.pt", "slim": 0.3}]}]},
     r"system 'x': 'slim' is NAM's slim value .* and needs 'nam', found export"),
    ({"groups": [{"name": "g", "systems": [{"id": "x", "nam": "student.nam", "recipe": "kd"}]}]},
     r"system 'x': 'recipe' selects a study run, but the system is the model file 'student.nam' \(nam\)"),
    ({"groups": [{"name": "g", "systems": [{"id": "x", "export": "exports/od_S-8-4_ptq8.pt", "width": 0.5}]}]},
     r"system 'x': width: expected one of the widths the export od_S-8-4_ptq8.pt allows \[1.0\], found 0.5"),
    ({"groups": [{"name": "g", "systems": [{"id": "x", "nam": str(NAM_REFERENCE / "models/A2.nam"), "width": 0.5}]}]},
     r"system 'x': nam: .*A2.nam: is a SlimmableContainer; its levels are chosen with slim, found width 0.5"),
    ({"groups": [{"name": "g", "systems": [{"id": "x", "nam": "capture_48k.nam"}]}], "sample_rate": RATE},
     r"condition 'x' \(model nam:capture_48k.nam\): the model runs at 48000 Hz .* but the set is at 22050 Hz"),
    ({"reference": {"nam": "capture_48k.nam"}},
     r"reference model nam:capture_48k.nam: the model runs at 48000 Hz"),
    ({"groups": [{"name": "g", "systems": [{"id": "x", "recipe": "kd"}]}]},
     r"no study_dir: group 'g', system 'x' selects a study run; expected 'nam: FILE' or 'export: FILE'"),
    ({"reference": None}, r"no study_dir: item 'guitar' has no reference"),
    ({"items": [{**ITEMS[0], "reference": {"slim": 0.5}}]},
     r"reference: expected 'nam' \(a .nam file\) or 'export' \(an Earshot export\), found neither"),
])
def test_bad_model_files_are_one_line_naming_the_key(files, tmp_path, monkeypatch, capsys, changes, match):
    monkeypatch.chdir(files["root"])
    config = write_config(tmp_path, **changes)
    with pytest.raises((ConfigError, StimulusConfigError), match=match):
        build_from_file(config, tmp_path / "out")
    assert main(["build", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()  # a warning may precede it (too few items for the systems)
    assert err[-1].startswith(f"error: {config}") and sum(line.startswith("error") for line in err) == 1, err
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "out").exists()


def test_an_export_changed_after_it_was_written_is_refused(files, tmp_path, monkeypatch):
    exports = tmp_path / "exports"
    shutil.copytree(files["root"] / "exports", exports)
    pt = exports / "od_S-8-4_ptq8.pt"
    pt.write_bytes(pt.read_bytes() + b"\0")
    shutil.copy(files["root"] / "capture.nam", tmp_path / "capture.nam")
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, groups=[{"name": "g", "systems": [{"id": "x", "export": str(pt)}]}])
    with pytest.raises(StimulusConfigError, match=r"system 'x': export: .*od_S-8-4_ptq8.pt: sha256 .* does not match"):
        build_from_file(config, tmp_path / "out")


def test_a_system_of_a_set_built_before_origins_is_a_study_run_when_it_names_one():
    from common.stimulus_set import system_origin

    assert system_origin({"id": "a", "role": "system", "run_id": "od_S-8-8_kd"}) == "study"
    assert system_origin({"id": "a", "role": "system"}) is None
    assert system_origin({"id": "a", "origin": {"source": "nam"}, "run_id": None}) == "nam"


def test_a_model_file_is_timed_as_the_zoo_times_its_runs(monkeypatch):
    from models.studies import cost

    ticks = itertools.count()
    monkeypatch.setattr(cost, "_clock", lambda: 0.5 * next(ticks))  # every timed call takes 0.5 s
    table = cost.measure_models([cost.TimedModel("nam:a.nam", nano(1), "WN-4-2", RATE)], repeats=3, offline_s=0.2,
                                stream_s=None)
    row = table.iloc[0]
    assert (row["run_id"], row["model"], row["repeats"], row["threads"]) == ("nam:a.nam", "WN-4-2", 3, 1)
    assert row["rtf_offline_median"] == row["rtf_offline_min"] == pytest.approx(0.4)  # 0.2 s of audio in 0.5 s
    assert row["rtf_stream_median"] is None and row["stream_audio_s"] is None
    assert next(ticks) == 6  # 3 rounds × 2 readings; no streaming, and the warm-up reads no clock


@pytest.mark.slow  # about 6 s: NAM's A2 WaveNets at 48 kHz
def test_a_set_of_nams_own_files_plays_what_nams_engine_renders(tmp_path, monkeypatch):
    # NAM's A2.nam (a SlimmableContainer, format 0.7.0) as the reference at its default level and as
    # a system at slim 0; renders/*.wav are NAM's C++ engine's output for input.wav (see the folder's README).
    monkeypatch.chdir(NAM_REFERENCE)
    config = tmp_path / "set.yaml"
    config.write_text(yaml.safe_dump({
        "items": [{"name": "chirp", "dry": "input.wav"}], "reference": {"nam": "models/A2.nam"},
        "groups": [{"name": "a2", "systems": [{"id": "a2_small", "nam": "models/A2.nam", "slim": 0.0}]}],
        "strict": False, "duration_s": 1.0, "training_trials": 0}))
    manifest = build_from_file(config, tmp_path / "set")
    rate = 48000
    trial = manifest["trials"][0]
    assert manifest["sample_rate"] == rate and trial["device"] == "nam:A2.nam"
    system = trial["conditions"][-1]
    # the engine's renders are aligned with their input, and both levels model the same device
    assert system["latency_samples"] == 0
    data = (NAM_REFERENCE / "models" / "A2.nam").read_bytes()
    assert {k: system["origin"][k] for k in ("nam_version", "nam_architecture", "nam_submodel", "slim", "sha256")} == {
        "nam_version": "0.7.0", "nam_architecture": "SlimmableContainer", "nam_submodel": 0, "slim": 0.0,
        "sha256": hashlib.sha256(data).hexdigest()}
    meter = pyloudnorm.Meter(rate)
    fade = round(0.005 * rate)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    for name, render_file in (("reference.wav", "A2.wav"), (system["file"], "A2_slim0.0.wav")):
        engine = sf.read(NAM_REFERENCE / "renders" / render_file, dtype="float64")[0][:rate]
        engine[:fade] *= ramp
        engine[-fade:] *= ramp[::-1]
        gain = 10 ** ((-23.0 - meter.integrated_loudness(engine) + trial["trial_gain_db"]) / 20)
        played = sf.read(tmp_path / "set/audio" / trial["id"] / name, dtype="float64")[0]
        assert np.max(np.abs(played - gain * engine)) <= gain * 1e-5 + 2.0**-23, name
