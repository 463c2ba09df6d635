"""Stimulus sets end to end on a tiny trained study: the set, its levels, ``check``, webMUSHRA
export, determinism and bad input."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch
import yaml
from scipy import signal as sps

from common import audio_metrics as metrics
from common.outputs import MARKER
from evaluation.manifest import load_manifest
from models.dsp.devices import get_device
from models.dsp.signals import excerpt
from models.studies.study import load_study, run_study
from models.training.checkpoints import load_payload, save_atomic
from stimulus_sets.bench import bench_config
from stimulus_sets.build import build_from_file
from stimulus_sets.check import check_stimulus_set
from stimulus_sets.cli import main
from stimulus_sets.config import load_stimulus_config
from stimulus_sets.errors import ConfigError, StimulusError
from stimulus_sets.selection import select_runs
from webapp.manifest import load_stimulus_set
from webapp.webmushra import import_webmushra

RATE = 22050  # the lowest common rate that holds the 7 kHz anchor's stop band
STUDY = {
    "name": "tiny",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": RATE, "duration_s": 3.0}],
    "teachers": [{"name": "small", "layers": [16, 8]}],
    "students": [{"layers": [8, 8]}],
    "recipes": [{"recipe": "baseline"}, {"recipe": "kd", "distill": {"feature_loss": "kl"}},
                {"recipe": "ptq", "bits": [4], "source": "baseline"}],
    "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 1, "max_batches_per_epoch": 2,
                 "learning_rate": 0.003},
}
ITEMS = [{"name": "guitar", "kind": "guitar"}, {"name": "bass", "kind": "bass"}, {"name": "drums", "kind": "drums"},
         {"name": "guitar_2", "kind": "guitar"}, {"name": "bass_2", "kind": "bass"}]
GROUPS = [
    {"name": "S-8-8", "layers": [8, 8], "systems": [{"id": "distilled", "recipe": "kd"},
                                                    {"id": "non_distilled", "recipe": "baseline"}]},
    {"name": "teacher", "layers": [8, 8], "teacher": "small", "systems": [{"id": "non_distilled", "recipe": "baseline"}]},
]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The trained study folder (runs.csv, runs/, study.yaml)."""
    root = tmp_path_factory.mktemp("study")
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "output_dir": str(root / "zoo")}))
    run_study(load_study(path), root / "zoo")
    return root / "zoo"


def write_config(folder, study, **changes):
    data = {"study_dir": str(study), "items": ITEMS, "groups": GROUPS, "duration_s": 1.0, "training_trials": 2,
            "seed": 3, **changes}
    path = folder / "stimuli.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def built(study, tmp_path_factory):
    folder = tmp_path_factory.mktemp("set")
    config = write_config(folder, study)
    out = folder / "demo"
    assert main(["-q", "build", str(config), "--out", str(out)]) == 0
    return out, json.loads((out / "manifest.json").read_text()), config


def read(path):
    audio, rate = sf.read(path, dtype="float64")
    return audio, rate


def true_peak(x):
    return 20 * np.log10(np.abs(sps.resample_poly(x, 4, 1)).max())


def test_set_layout_roles_and_limits(built):
    out, manifest, _ = built
    assert manifest["schema"] == 1 and manifest["sample_rate"] == RATE and manifest["bs1534_enforced"] is True
    assert manifest["loudness_target_lufs"] == -23.0 and manifest["bs1534_exceeded"] == []
    rated = [t for t in manifest["trials"] if not t["training"]]
    assert [t["id"] for t in rated] == [f"{i['name']}_{g['name']}" for i in ITEMS for g in GROUPS]
    roles = {}
    for trial in manifest["trials"]:
        ids = [c["id"] for c in trial["conditions"]]
        assert ids[:3] == ["hidden_reference", "anchor_3k5", "anchor_7k"] and len(ids) <= 12
        for c in trial["conditions"]:
            assert roles.setdefault(c["id"], c["role"]) == c["role"]  # one role per id across trials
        lengths = {read(out / "audio" / trial["id"] / c["file"])[0].size for c in trial["conditions"]}
        lengths.add(read(out / "audio" / trial["id"] / trial["reference"])[0].size)
        assert lengths == {RATE}  # 1.0 s everywhere
        assert sf.info(out / "audio" / trial["id"] / "distilled.wav" if "distilled" in ids else
                       out / "audio" / trial["id"] / "teacher.wav").subtype == "PCM_24"
        folder = out / "audio" / trial["id"]
        assert (folder / "hidden_reference.wav").read_bytes() == (folder / "reference.wav").read_bytes()
        reference = read(folder / "reference.wav")[0]
        for anchor in ("anchor_3k5", "anchor_7k"):  # zero phase: no delay against the reference
            lags = sps.correlation_lags(RATE, RATE)
            assert lags[np.argmax(sps.correlate(read(folder / f"{anchor}.wav")[0], reference))] == 0
    assert roles == {"hidden_reference": "hidden_reference", "anchor_3k5": "anchor_low", "anchor_7k": "anchor_mid",
                     "distilled": "system", "non_distilled": "system", "teacher": "system"}
    teacher = next(c for c in manifest["trials"][1]["conditions"] if c["id"] == "teacher")
    assert teacher["layers"] == "16-8" and teacher["recipe"] == "baseline" and teacher["params"] == 2057
    distilled = next(c for c in manifest["trials"][0]["conditions"] if c["id"] == "distilled")
    assert distilled["recipe"] == "kd" and distilled["teacher"] == "small" and distilled["macs_per_sample"] == 808


def test_manifest_loads_in_the_web_app_and_the_evaluation(built):
    out, manifest, _ = built
    stimulus_set = load_stimulus_set(out)
    assert len(stimulus_set.trials) == len(manifest["trials"]) and len(stimulus_set.training_trials) == 2
    loaded = load_manifest(out)
    systems = loaded.conditions[loaded.conditions["role"] == "system"]
    assert systems["objective_esr"].notna().all() and systems["params"].notna().all()
    assert set(loaded.objective_names()) == set(metrics.METRIC_NAMES)


def test_reference_is_the_device_output_faded_and_loudness_aligned(built):
    out, manifest, _ = built
    trial = manifest["trials"][0]
    seed = manifest["items"][trial["item"]]["seed"]
    margin = round(0.05 * RATE)  # max_latency_ms 50 on both sides
    dry = excerpt("guitar", (RATE + 2 * margin) / RATE, RATE, seed)
    wet = get_device("overdrive").process(dry, RATE)[margin : margin + RATE].astype(np.float64)
    n = round(0.005 * RATE)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    wet[:n] *= ramp
    wet[-n:] *= ramp[::-1]
    meter = pyloudnorm.Meter(RATE)
    gain = 10 ** ((-23.0 - meter.integrated_loudness(wet) + trial["trial_gain_db"]) / 20)
    reference, _ = read(out / "audio" / trial["id"] / "reference.wav")
    np.testing.assert_allclose(reference, gain * wet, atol=2.0**-23)


def test_every_signal_is_at_the_loudness_target_under_the_peak_ceiling(built):
    out, manifest, _ = built
    meter = pyloudnorm.Meter(RATE)
    for trial in manifest["trials"]:
        assert trial["trial_gain_db"] <= 0.0
        for cond in trial["conditions"]:
            x, _ = read(out / "audio" / trial["id"] / cond["file"])
            assert meter.integrated_loudness(x) == pytest.approx(-23.0 + trial["trial_gain_db"], abs=0.05)
            assert true_peak(x) <= -1.0
            assert x[0] == 0.0 and x[-1] == 0.0  # raised-cosine fades start and end at silence


def test_objective_metrics_compare_each_system_with_the_reference(built):
    out, manifest, _ = built
    trial = manifest["trials"][2]
    folder = out / "audio" / trial["id"]
    reference = read(folder / "reference.wav")[0] / 10 ** (trial["reference_gain_db"] / 20)
    for cond in trial["conditions"]:
        if cond["role"] != "system":
            continue
        assert abs(cond["latency_samples"]) <= round(0.05 * RATE)
        system = read(folder / cond["file"])[0] / 10 ** (cond["gain_db"] / 20)  # undo the loudness gain
        expected = metrics.compute_all(system, reference, RATE)
        for name in ("mae", "esr", "esr_pre", "mrstft", "loudness_difference_lu"):
            assert cond["objective"][name] == pytest.approx(expected[name], rel=1e-3, abs=1e-4)


def test_training_trials_span_the_impairments(built):
    _, manifest, _ = built
    rated = [t for t in manifest["trials"] if not t["training"]]
    training = [t for t in manifest["trials"] if t["training"]]
    assert [t["id"] for t in training] == ["training_1", "training_2"]

    def impairment(t):
        return np.mean([np.log10(c["objective"]["esr"]) for c in t["conditions"] if c["role"] == "system"])

    scores = {t["id"]: impairment(t) for t in rated}
    assert training[0]["source_trial"] == max(scores, key=scores.get)
    assert training[1]["source_trial"] == min(scores, key=scores.get)
    source = next(t for t in rated if t["id"] == training[0]["source_trial"])
    assert training[0]["conditions"] == source["conditions"]


@pytest.mark.slow
def test_check_passes_a_fresh_set(built, capsys):
    out, _, _ = built
    frame = check_stimulus_set(out)
    assert frame["ok"].all(), frame[~frame["ok"]]
    assert {"file", "lengths", "loudness", "clipping", "anchor", "hidden_reference", "signals", "items"} <= set(frame["check"])
    assert main(["check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "OK    guitar_S-8-8:" in text and "13 of 13 passed" in text


def _broken_copy(out, tmp_path, break_it):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    break_it(copy)
    return check_stimulus_set(copy)


def _scale(path, factor):
    x, rate = sf.read(path, dtype="float64")
    sf.write(path, x * factor, rate, subtype="PCM_24")


@pytest.mark.parametrize("break_it, check, condition", [
    (lambda s: _scale(s / "audio/bass_S-8-8/distilled.wav", 10 ** (2 / 20)), "loudness", "distilled"),
    (lambda s: (s / "audio/bass_S-8-8/non_distilled.wav").unlink(), "file", "non_distilled"),
    (lambda s: shutil.copy(s / "audio/bass_S-8-8/reference.wav", s / "audio/bass_S-8-8/anchor_3k5.wav"),
     "anchor", "anchor_3k5"),
    (lambda s: _scale(s / "audio/bass_S-8-8/anchor_7k.wav", 10 ** (12 / 20)), "clipping", "anchor_7k"),
])
def test_check_names_what_is_wrong(built, tmp_path, break_it, check, condition):
    out, _, _ = built
    frame = _broken_copy(out, tmp_path, break_it)
    failed = frame[~frame["ok"]]
    assert set(failed["trial"]) == {"bass_S-8-8"}
    assert ((failed["check"] == check) & (failed["condition"] == condition)).any(), failed


@pytest.mark.slow
def test_check_fails_on_unequal_lengths_and_cli_exits_1(built, tmp_path, capsys):
    out, _, _ = built

    def truncate(s):
        path = s / "audio/drums_teacher/teacher.wav"
        x, rate = sf.read(path, dtype="float64")
        sf.write(path, x[:-100], rate, subtype="PCM_24")

    frame = _broken_copy(out, tmp_path, truncate)
    assert frame[~frame["ok"]]["check"].tolist() == ["lengths"]
    assert main(["check", str(tmp_path / "copy")]) == 1
    assert "FAIL  drums_teacher:" in capsys.readouterr().out


def test_webmushra_export_imports_back(built, tmp_path):
    out, manifest, _ = built
    config = yaml.safe_load((out / "webmushra.yaml").read_text())
    pages = [p for p in config["pages"] if isinstance(p, dict) and p["type"] == "mushra"]
    randomised = next(p for p in config["pages"] if isinstance(p, list))
    assert randomised[0] == "random" and len(randomised) - 1 == 10 and len(pages) == 2
    first = randomised[1]
    assert first["createAnchor35"] is False and set(first["stimuli"]) == {"anchor_3k5", "anchor_7k", "distilled",
                                                                          "non_distilled"}
    # laid out as webMUSHRA expects: the set under configs/resources/audio/<set>/, the YAML in configs/
    root = tmp_path / "webMUSHRA"
    shutil.copytree(out, root / "configs/resources/audio" / manifest["name"])
    shutil.copy(out / "webmushra.yaml", root / "configs/demo.yaml")
    imported = import_webmushra(root / "configs/demo.yaml", tmp_path / "imported")
    back = load_stimulus_set(imported)
    assert len(back.trials) == len(manifest["trials"])
    a = read(out / "audio/guitar_S-8-8/distilled.wav")[0]
    b = read(imported / "audio/guitar_S-8-8/distilled.wav")[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_same_config_and_seed_give_byte_identical_sets(built, tmp_path):
    out, manifest, config = built
    again = tmp_path / out.name
    build_from_file(config, again, command=manifest["provenance"]["command"])
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "manifest.json":
            assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    second = json.loads((again / "manifest.json").read_text())
    for m in (manifest, second):
        m["provenance"].pop("created_at")
        # other developers commit to the same checkout, so HEAD may move between the two builds
        assert len(m["provenance"].pop("git_commit")) in (40, len("unknown"))
    assert second == manifest


def test_no_strict_relaxes_the_limits_and_says_so(study, tmp_path):
    many = [{"id": f"copy_{i}", "recipe": "baseline"} for i in range(10)]
    config = write_config(tmp_path, study, items=ITEMS[:2], duration_s=0.8, training_trials=0, bit_depth=16,
                          groups=[{"name": "big", "layers": [8, 8], "systems": many}])
    with pytest.raises(StimulusError) as error:
        build_from_file(config, tmp_path / "strict")
    assert "13 signals per trial" in str(error.value) and "at least 5" in str(error.value)
    assert not (tmp_path / "strict").exists()
    assert main(["-q", "build", str(config), "--out", str(tmp_path / "relaxed"), "--no-strict"]) == 0
    manifest = json.loads((tmp_path / "relaxed/manifest.json").read_text())
    assert manifest["bs1534_enforced"] is False and len(manifest["bs1534_exceeded"]) == 2
    assert "--no-strict" in manifest["provenance"]["command"]
    assert len(manifest["trials"][0]["conditions"]) == 13
    assert sf.info(tmp_path / "relaxed/audio/guitar_big/copy_9.wav").subtype == "PCM_16"
    assert sf.info(tmp_path / "relaxed/audio/guitar_big/copy_9.wav").frames == round(0.8 * RATE)
    frame = check_stimulus_set(tmp_path / "relaxed")
    assert frame["ok"].all() and "signals" not in set(frame["check"])  # limits not enforced: not checked


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_bad_input_is_named_and_nothing_is_written(study, tmp_path, capsys):
    def fails(match, exc=StimulusError, **changes):
        config = write_config(tmp_path, study, **{"training_trials": 0, **changes})
        out = tmp_path / "out"
        with pytest.raises(exc, match=match):
            build_from_file(config, out)
        assert not out.exists() and _leftovers(tmp_path) == []

    fails(r"unknown key 'colour'", ConfigError, colour="red")
    fails(r"item 'x'.*exactly one of 'kind'.*found neither", ConfigError, items=[{"name": "x"}] * 5)
    fails(r"items\[0\]: unknown key 'level'", ConfigError, items=[{**ITEMS[0], "level": 3}] + ITEMS[1:])
    fails(r"knobs: this model needs values for no knobs, found \['drive'\]", knobs={"drive": 0.5})
    fails(r"group 'S-8-8', system 'distilled': expected exactly one run .* found 0",
          groups=[{"name": "S-8-8", "layers": [32, 8], "systems": [{"id": "distilled", "recipe": "kd"}]}])
    fails(r"system 'base': expected exactly one run .* found 2",
          groups=[{"name": "any", "systems": [{"id": "base", "recipe": "baseline"}]}])
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(study / "runs.csv", untrained / "runs.csv")  # the table without the run folders
    fails(r"run od_S-8-8_[\w-]+ is not trained: no checkpoint.pt in", study_dir=str(untrained))
    fails(r"the model was trained at 22050 Hz, but the set is at 44100 Hz", sample_rate=44100)
    short = tmp_path / "short.wav"
    sf.write(short, np.full(RATE // 2, 0.1), RATE)
    fails(r"item 'mine': dry: .*short.wav is too short: expected at least 1.000 s .* found 0.500 s",
          items=ITEMS[:4] + [{"name": "mine", "dry": str(short)}])
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(2 * RATE), RATE)
    fails(r"item 'quiet': the reference is silent", items=ITEMS[:4] + [{"name": "quiet", "dry": str(silent)}])
    fails(r"training_trials repeats rated trials: expected 0 to 10 .* found 11", ConfigError, training_trials=11)

    # the CLI prints one line naming the config file, no traceback, exit status 2
    config = write_config(tmp_path, study, sample_rate=44100)
    assert main(["build", str(config), "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: ") and "Traceback" not in err and err.count("\n") == 1
    for changes in ({"groups": [{"name": "any", "systems": [{"id": "base", "recipe": "baseline"}]}]},
                    {"items": ITEMS[:2], "training_trials": 0}, {"dataset": "nope"}, {"knobs": {"drive": 0.5}},
                    {"items": [{**ITEMS[0], "start_s": 1.0}]}):
        config = write_config(tmp_path, study, **{"training_trials": 0, **changes})
        assert main(["build", str(config), "--out", str(tmp_path / "cli")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {config}") and err.count("\n") == 1, err
    assert not (tmp_path / "cli").exists()


def test_an_absurd_duration_is_refused_by_the_memory_it_would_need(study, tmp_path, capsys):
    config = write_config(tmp_path, study, duration_s=1e9, training_trials=0)
    assert main(["-q", "build", str(config), "--out", str(tmp_path / "out"), "--no-strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: stimulus config: duration_s 1e+09 s at 22050 Hz for 5 items") and \
        "GB of memory, more than this machine's" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_nan_output_names_the_run(study, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(study, zoo)
    run = next(p for p in (zoo / "runs").iterdir() if "_S-8-8_kd-" in p.name)
    payload = load_payload(run / "checkpoint.pt")
    payload["model"] = {k: torch.full_like(v, float("nan")) if k.startswith("dense") else v
                        for k, v in payload["model"].items()}
    save_atomic(payload, run / "checkpoint.pt")
    config = write_config(tmp_path, study, study_dir=str(zoo), training_trials=0)
    with pytest.raises(StimulusError, match=rf"run {run.name} on item 'guitar': the output holds nan at sample 0"):
        build_from_file(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_existing_set_is_kept_unless_forced(study, tmp_path, capsys):
    config = write_config(tmp_path, study, groups=GROUPS[:1], training_trials=0)
    target = tmp_path / "set"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(StimulusError, match="already exists"):
        build_from_file(config, target)
    # --force replaces only a set this command wrote: a folder of the user's is refused, whole.
    assert main(["-q", "build", str(config), "--out", str(target), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{target}: already exists and was not written by the stimulus set command" in err
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"] and _leftovers(tmp_path) == []
    (target / "keep.txt").unlink()
    first = build_from_file(config, target, force=True)  # an empty folder is a new one
    assert len(first["trials"]) == len(ITEMS) and _leftovers(tmp_path) == []
    # Readable by a web server's user (under the usual umask 022).
    assert target.stat().st_mode & 0o055 == 0o055
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in target.rglob("*.wav"))
    stamp = (target / "manifest.json").stat().st_mtime_ns
    build_from_file(config, target, force=True)  # its own set: replaced
    assert (target / "manifest.json").stat().st_mtime_ns != stamp

    # A file the user put into the set is never deleted silently.
    (target / "test.yaml").write_text("mine too")
    assert main(["-q", "build", str(config), "--out", str(target), "--force"]) == 2
    err = capsys.readouterr().err
    assert "holds 'test.yaml', which the stimulus set command did not write" in err
    assert (target / "test.yaml").read_text() == "mine too" and (target / "manifest.json").is_file()
    (target / "test.yaml").unlink()

    # A set written before sets were marked is replaced when it holds nothing but its own files.
    (target / MARKER).unlink()
    build_from_file(config, target, force=True)
    (target / MARKER).unlink()
    (target / "audio" / "notes.txt").write_text("not the set's")
    with pytest.raises(StimulusError, match="was not written by the stimulus set command"):
        build_from_file(config, target, force=True)
    assert (target / "audio" / "notes.txt").is_file() and not (target / MARKER).exists()
    assert _leftovers(tmp_path) == []

    # --force without an existing folder simply builds it.
    fresh = tmp_path / "fresh"
    assert main(["-q", "build", str(config), "--out", str(fresh), "--force"]) == 0
    assert (fresh / "manifest.json").is_file()


def test_bench_config_has_twelve_trials_from_the_study(study):
    config = bench_config(study)
    assert len(config.items) * len(config.groups) == 12 and config.duration_s == 10.0
    assert all(len(g.condition_ids) + 3 <= 12 for g in config.groups)
    assert [g.name for g in config.groups] == ["S-8-8", "students", "zoo", "S-8-8-copy3"]
    assert config.groups[2].condition_ids[-1] == "teacher"


def test_quantized_runs_are_selected_by_bits(study, tmp_path):
    groups = [{"name": "S-8-8", "layers": [8, 8], "systems": [{"id": "q4", "recipe": "ptq", "bits": 4},
                                                              {"id": "fp32", "recipe": "baseline"}]}]
    config = load_stimulus_config(write_config(tmp_path, study, groups=groups, training_trials=0))
    (q4_id, q4), (fp32_id, fp32) = select_runs(config).groups["S-8-8"]
    assert (q4_id, q4.facts["recipe"], q4.facts["bits"]) == ("q4", "ptq", 4)
    assert (fp32_id, fp32.facts["recipe"], fp32.facts["bits"]) == ("fp32", "baseline", 32)
    assert q4.facts["bytes"] < fp32.facts["bytes"]


@pytest.mark.slow
def test_user_dry_and_wet_files_make_the_item(study, tmp_path):
    dry = excerpt("guitar", 2.0, RATE, 11).astype(np.float64)
    # the "real device" has 20 samples of latency; its recording is the reference
    wet = np.concatenate([np.zeros(20), get_device("overdrive_warm").process(dry, RATE)[:-20]])
    sf.write(tmp_path / "dry.wav", dry, RATE, subtype="FLOAT")
    sf.write(tmp_path / "wet.wav", wet, RATE, subtype="FLOAT")
    item = {"name": "mine", "dry": str(tmp_path / "dry.wav"), "wet": str(tmp_path / "wet.wav"), "start_s": 0.5}
    config = write_config(tmp_path, study, items=ITEMS[:4] + [item], groups=GROUPS[:1], training_trials=0)
    manifest = build_from_file(config, tmp_path / "set")
    trial = next(t for t in manifest["trials"] if t["item"] == "mine")
    assert manifest["items"]["mine"] == {"dry": item["dry"], "start_s": 0.5, "wet": item["wet"]}
    expected = wet[RATE // 2 : RATE // 2 + RATE].copy()
    n = round(0.005 * RATE)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    expected[:n] *= ramp
    expected[-n:] *= ramp[::-1]
    expected *= 10 ** (trial["reference_gain_db"] / 20)
    reference = read(tmp_path / "set/audio" / trial["id"] / "reference.wav")[0]
    np.testing.assert_allclose(reference, expected, atol=2.0**-23)
    assert all(isinstance(c["latency_samples"], int) for c in trial["conditions"] if c["role"] == "system")
    assert check_stimulus_set(tmp_path / "set")["ok"].all()


def test_one_common_gain_per_trial_keeps_loud_targets_under_the_ceiling(study, tmp_path):
    config = write_config(tmp_path, study, groups=GROUPS[:1], training_trials=0, loudness_target_lufs=-8.0)
    manifest = build_from_file(config, tmp_path / "set")
    meter = pyloudnorm.Meter(RATE)
    for trial in manifest["trials"]:
        assert trial["trial_gain_db"] < 0.0  # -8 LUFS would push peaks over -1 dBFS
        folder = tmp_path / "set/audio" / trial["id"]
        signals = [read(folder / c["file"])[0] for c in trial["conditions"]]
        levels = [meter.integrated_loudness(x) for x in signals]
        np.testing.assert_allclose(levels, -8.0 + trial["trial_gain_db"], atol=0.05)
        peaks = [true_peak(x) for x in signals]
        assert max(peaks) <= -1.0 and max(peaks) == pytest.approx(-1.0, abs=0.05)  # no more gain taken than needed


def test_every_verb_explains_its_options(tmp_path, capsys):
    result = subprocess.run([sys.executable, "-m", "stimulus_sets", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "python -m stimulus_sets" in result.stdout
    assert all(verb in result.stdout for verb in ("build", "check", "bench"))
    options = {"build": ("CONFIG", "--out", "--force", "--no-strict", "--threads"), "check": ("SET",),
               "bench": ("--study-dir",)}
    for verb, names in options.items():
        with pytest.raises(SystemExit) as exc:
            main([verb, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert f"python -m stimulus_sets {verb}" in text and all(name in text for name in names), text
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no manifest.json" in err and err.startswith("error: ") and err.count("\n") == 1


def test_silent_output_names_the_run(study, tmp_path, monkeypatch):
    # A model that renders silence (here: a render replaced by zeros for one run) must stop the
    # build: loudness alignment would otherwise amplify nothing into noise.
    import stimulus_sets.build as stimulus_sets

    original = stimulus_sets.render_item

    def silent_for_kd(model, payload, item, knobs, threads):
        y = original(model, payload, item, knobs, threads)
        return np.zeros_like(y) if "_kd-" in payload.get("run_id", "") else y

    monkeypatch.setattr(stimulus_sets, "render_item", silent_for_kd)
    config = write_config(tmp_path, study, training_trials=0)
    with pytest.raises(StimulusError, match=r"run \S+_kd-\S+ on item '\w+': the output is silent"):
        build_from_file(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# runs.csv of a study with an LSTM student S-16-8 (baseline and slimmable) and NAM's slimmable
# WaveNet, both cut to 50 % and 25 %, as the zoo writes it (the cut runs' rows hold the cut network).
SLIMMABLE_RUNS = """run_id,dataset,arch,model,layers,recipe,teacher,bits,width,params,variant,seed,init_run
od_S-16-8_baseline_s0_a467c40d,od,lstm,S-16-8,16-8,baseline,,32,1.0,2057,baseline,0,
od_S-16-8_slimmable_s0_82580553,od,lstm,S-16-8,16-8,slimmable,,32,1.0,2057,slimmable,0,
od_S-16-8_slimmable50_s0_470afae8,od,lstm,S-8-4,8-4,slimmable,,32,0.5,581,slimmable50,0,od_S-16-8_slimmable_s0_82580553
od_S-16-8_slimmable25_s0_2de66639,od,lstm,S-4-2,4-2,slimmable,,32,0.25,179,slimmable25,0,od_S-16-8_slimmable_s0_82580553
od_WN-slimmable_slimmable_s0_ff8dcddf,od,wavenet,WN-slimmable,16-8,slimmable,,32,1.0,13801,slimmable,0,
od_WN-slimmable_slimmable50_s0_0656e1b6,od,wavenet,WN-slimmable@50%,8-4,slimmable,,32,0.5,3637,slimmable50,0,od_WN-slimmable_slimmable_s0_ff8dcddf
od_WN-slimmable_slimmable25_s0_d3141890,od,wavenet,WN-slimmable@25%,4-2,slimmable,,32,0.25,1003,slimmable25,0,od_WN-slimmable_slimmable_s0_ff8dcddf
"""


def test_slimmed_and_wavenet_runs_are_selected_by_model_and_width(tmp_path):
    from stimulus_sets.config import GroupSpec, SystemSpec
    from stimulus_sets.selection import matching_runs, wanted_columns
    from stimulus_sets.study_folder import load_trained_study

    (tmp_path / "runs.csv").write_text(SLIMMABLE_RUNS)
    study = load_trained_study(tmp_path)
    wn = GroupSpec(name="wn", model="WN-slimmable", systems=(SystemSpec(id="slim_25", recipe="slimmable", width=0.25),
                                                             SystemSpec(id="full", recipe="slimmable", width=1.0)))
    lstm = GroupSpec(name="lstm", layers=(16, 8), systems=(SystemSpec(id="base", recipe="baseline"),
                                                            SystemSpec(id="slim_50", recipe="slimmable", width=0.5)))

    def hits(group, system):
        return [r["run_id"].split("_s0_")[0] for r in matching_runs(study, list(study.runs),
                                                                     wanted_columns(system, group, 0))]

    # a cut run is named by the network it was cut from (its init_run), as in the study file
    assert hits(wn, wn.systems[0]) == ["od_WN-slimmable_slimmable25"]
    assert hits(wn, wn.systems[1]) == ["od_WN-slimmable_slimmable"]
    # the group's layers select LSTM runs only: the WaveNet's channels (16-8) are no LSTM sizes
    assert hits(lstm, lstm.systems[0]) == ["od_S-16-8_baseline"]
    assert hits(lstm, lstm.systems[1]) == ["od_S-16-8_slimmable50"]
    assert hits(lstm, SystemSpec(id="any", recipe="slimmable")) == [
        "od_S-16-8_slimmable", "od_S-16-8_slimmable50", "od_S-16-8_slimmable25"]
    # the cut network's own label is no selector of it
    cut = GroupSpec(name="x", model="WN-slimmable@25%", systems=(SystemSpec(id="a"),))
    assert hits(cut, cut.systems[0]) == []
    with pytest.raises(ConfigError, match="one of 'layers' or 'model'"):
        GroupSpec(name="x", layers=(8, 8), model="WN-slimmable", systems=())


# --- selection from runs.csv -----------------------------------------------------------------------

RUN_ID = r"[0-9a-f]{8}"


def test_the_set_selects_the_runs_the_study_file_describes(built):
    # The selectors of GROUPS, resolved by hand through the run-id format
    # <dataset>_<model>_<variant>[-<teacher>]_s<seed>_<hash> (docs/formats.md).
    _, manifest, _ = built
    expected = {"S-8-8": {"distilled": "od_S-8-8_kd-small_s0_", "non_distilled": "od_S-8-8_baseline_s0_"},
                "teacher": {"non_distilled": "od_S-8-8_baseline_s0_", "teacher": "od_S-16-8_baseline_s0_"}}
    assert set(manifest["groups"]) == set(expected)
    for group, conditions in expected.items():
        assert list(manifest["groups"][group]) == list(conditions)
        for cid, prefix in conditions.items():
            assert re.fullmatch(prefix + RUN_ID, manifest["groups"][group][cid]), (group, cid)
    assert manifest["study"]["name"] == "tiny" and manifest["study"]["dataset"] == "od"
    assert manifest["study"]["device"] == "overdrive" and manifest["trials"][0]["device"] == "overdrive"


def test_model_facts_are_the_runs_metrics_exactly(study, built):
    # The facts come from runs.csv; they must be the values (and types) the run wrote into its
    # metrics.json, or a set rebuilt from the same study would not be byte-identical.
    from common.stimulus_set import MODEL_FACTS
    from stimulus_sets.study_folder import load_trained_study

    rows = {row["run_id"]: row for row in load_trained_study(study).runs}
    assert len(rows) == 4
    for run_id, row in rows.items():
        metrics = json.loads((study / "runs" / run_id / "metrics.json").read_text())["row"]
        ours = {key: row.get(key) for key in MODEL_FACTS}
        theirs = {key: metrics.get(key) for key in MODEL_FACTS}
        assert json.dumps(ours) == json.dumps(theirs), run_id
    _, manifest, _ = built
    for trial in manifest["trials"]:
        for cond in trial["conditions"]:
            if cond["role"] == "system":
                metrics = json.loads((study / "runs" / cond["run_id"] / "metrics.json").read_text())["row"]
                assert json.dumps({k: cond[k] for k in MODEL_FACTS}) == json.dumps({k: metrics[k] for k in MODEL_FACTS})


def test_a_missing_runs_csv_or_unknown_run_is_one_line_naming_the_key(study, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = write_config(tmp_path, empty, training_trials=0)
    assert main(["build", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {config}: study_dir: expected a trained study folder holding runs.csv, found no "
                   f"{empty / 'runs.csv'}; train the study with `python -m models study FILE` (it writes the "
                   "folder, by default results/zoo/<name>)\n")
    groups = [{"name": "S-8-8", "systems": [{"id": "mine", "run_id": "od_S-8-8_kd-small_s0_00000000"}]}]
    config = write_config(tmp_path, study, groups=groups, training_trials=0)
    assert main(["build", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: group 'S-8-8', system 'mine': expected exactly one run of study 'tiny' "
                          "to match run_id 'od_S-8-8_kd-small_s0_00000000', found 0; the runs on 'od' in "
                          f"{study / 'runs.csv'}: od_S-16-8_baseline_s0_") and err.count("\n") == 1
    groups = [{"name": "S-8-8", "layers": [8, 8], "teacher": "big", "systems": []}]
    config = write_config(tmp_path, study, groups=groups, training_trials=0)
    assert main(["build", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "group 'S-8-8': teacher: expected one of the teachers the study's students learnt from ['small']" in err
    assert "found 'big'" in err and err.count("\n") == 1
    # a config of the old form, naming the study file, is told what to write instead
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"study": "models/studies/demo.yaml", "items": ITEMS, "groups": GROUPS}))
    assert main(["build", str(old), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {old}: study: expected 'study_dir', the trained study folder holding runs.csv (e.g. "
                   "results/zoo/demo), found 'study: models/studies/demo.yaml'\n")
    assert not (tmp_path / "out").exists()


def test_several_datasets_need_a_name_and_a_bad_table_is_named(study, tmp_path):
    two = tmp_path / "two"
    two.mkdir()
    table = (study / "runs.csv").read_text().splitlines()
    # the same rows once more as dataset "od2" (the dataset is the column after the run id)
    copies = [",".join([fields[0] + "x", "od2", *fields[2:]]) for fields in (line.split(",") for line in table[1:])]
    (two / "runs.csv").write_text("\n".join([*table, *copies]) + "\n")
    config = load_stimulus_config(write_config(tmp_path, two, training_trials=0))
    with pytest.raises(StimulusError, match=r"study_dir: the runs of .*runs.csv are on the datasets \['od', 'od2'\]; "
                                            r"name one with 'dataset:'"):
        select_runs(config)
    (two / "runs.csv").write_text("run_id,dataset\nx,od\n")
    with pytest.raises(StimulusError, match=r"runs.csv: expected the columns .* found no \['arch', 'model'"):
        select_runs(config)
    (two / "runs.csv").write_text((study / "runs.csv").read_text().replace(",32,1.0,", ",32,wide,", 1))
    with pytest.raises(StimulusError, match=r"runs.csv line 2: column 'width': expected a number, found 'wide'"):
        select_runs(config)


def test_stimuli_out_below_a_file_is_one_line_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("the user's file")
    config = write_config(tmp_path, tmp_path / "nowhere", training_trials=0)
    assert main(["build", str(config), "--out", str(blocker / "set")]) == 2
    err = capsys.readouterr().err
    assert f"{blocker / 'set'}: expected a folder that can be created, found that {blocker} is a file" in err
    assert err.count("\n") == 1 and blocker.read_text() == "the user's file"
