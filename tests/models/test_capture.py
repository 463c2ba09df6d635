"""A capture to distill: datasets ``{teacher_nam: FILE}`` rendered through a .nam file."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.config import from_dict
from models.data.datasets import DatasetConfig
from models.data.latency import measure_latency
from models.data.sources import load_dataset
from models.dsp import signals
from models.errors import ConfigError, DatasetError
from models.export.nam_format import export_nam
from models.inference.rendering import render_whole
from models.nets.wavenet import WaveNet, from_preset
from tests.support.nam_reference import reference_file

SPLITS = ("train", "validation", "test")


def _joined(dataset, role):
    return np.concatenate([segment.__getattribute__(role) for split in SPLITS for segment in dataset.splits[split]])


@pytest.fixture(scope="module")
def nano(tmp_path_factory):
    """A random-weight nano WaveNet and its export to .nam."""
    torch.manual_seed(1)
    model = WaveNet(from_preset("nano")).eval()
    path = tmp_path_factory.mktemp("capture") / "nano.nam"
    export_nam(model, path, 48000)
    return model, path


def test_the_targets_are_the_capture_rendering_the_programme(nano):
    model, path = nano
    dataset = load_dataset({"name": "mycapture", "teacher_nam": str(path), "duration_s": 3.0, "seed": 4})
    dry = signals.program(3.0, 48000, 4)
    np.testing.assert_array_equal(_joined(dataset, "input"), dry)
    # The network the file was written from, run over the whole programme at once.
    np.testing.assert_allclose(_joined(dataset, "target"), render_whole(model, dry), rtol=0, atol=1e-5)
    lengths = [dataset.splits[s][0].num_samples for s in SPLITS]
    assert lengths == [round(0.7 * 144000), round(0.85 * 144000) - round(0.7 * 144000), 144000 - round(0.85 * 144000)]
    assert dataset.sample_rate == 48000 and dataset.knob_names == () and dataset.latency_samples == 0
    assert dataset.latency.basis == "aligned by construction"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert f"capture nano.nam (NAM format {json.loads(path.read_text())['version']}, WaveNet, sha256 {sha})" in (
        dataset.description)
    # The new estimate agrees that the render is aligned.
    assert measure_latency(_joined(dataset, "input"), _joined(dataset, "target"), 48000, 50.0).samples == 0


def test_the_users_dry_files_through_nams_wavenet_give_nams_own_render(tmp_path):
    """NAM's C++ engine rendered input.wav through wavenet.nam: the targets are that render."""
    nam, dry_file = reference_file("models", "wavenet.nam"), reference_file("input.wav")
    reference, rate = sf.read(reference_file("renders", "wavenet.wav"), dtype="float32")
    dataset = load_dataset({"name": "wn", "teacher_nam": str(nam), "dry": str(dry_file)})
    np.testing.assert_allclose(_joined(dataset, "target"), reference, rtol=0, atol=1e-5)
    assert rate == dataset.sample_rate == 48000
    assert "1 file: input.wav" in dataset.description
    # A folder of dry files and a list give one segment per file in every split.
    (tmp_path / "dry").mkdir()
    dry, _ = sf.read(dry_file, dtype="float32")
    sf.write(tmp_path / "dry" / "a.wav", dry[:48000], 48000, subtype="FLOAT")
    sf.write(tmp_path / "dry" / "b.wav", dry[48000:], 48000, subtype="FLOAT")
    for entry in (str(tmp_path / "dry"), [str(tmp_path / "dry" / "a.wav"), str(tmp_path / "dry" / "b.wav")]):
        two = load_dataset({"name": "wn", "teacher_nam": str(nam), "dry": entry})
        assert all(len(two.splits[s]) == 2 for s in SPLITS)
        first = np.concatenate([two.splits[s][0].target for s in SPLITS])
        np.testing.assert_allclose(first, reference[:48000], rtol=0, atol=1e-5)
    # At another rate the dry files are refused, or resampled when asked.
    sf.write(tmp_path / "dry44.wav", dry[:44100], 44100, subtype="FLOAT")
    with pytest.raises(DatasetError, match=r"dry44.wav: sample rate 44100 Hz; expected the capture's 48000 Hz"):
        load_dataset({"name": "wn", "teacher_nam": str(nam), "dry": str(tmp_path / "dry44.wav")})
    resampled = load_dataset({"name": "wn", "teacher_nam": str(nam), "dry": str(tmp_path / "dry44.wav"),
                              "resample": True})
    assert sum(s.num_samples for split in SPLITS for s in resampled.splits[split]) == 48000


@pytest.mark.parametrize("slim", [0.0, 1.0])
def test_a_slimmable_container_plays_the_level_asked_for(slim):
    nam, dry_file = reference_file("models", "A2.nam"), reference_file("input.wav")
    reference, _ = sf.read(reference_file("renders", f"A2_slim{slim}.wav"), dtype="float32")
    dataset = load_dataset({"name": "a2", "teacher_nam": str(nam), "slim": slim, "dry": str(dry_file)})
    np.testing.assert_allclose(_joined(dataset, "target"), reference, rtol=0, atol=1e-5)
    assert f"SlimmableContainer, slim {slim:g}, sha256" in dataset.description
    with pytest.raises(ConfigError, match=r"teacher_nam: .*A2.nam: is a SlimmableContainer; its levels are chosen "
                                          r"with slim, found width"):
        load_dataset({"name": "a2", "teacher_nam": str(nam), "width": slim, "dry": str(dry_file)})


def test_mistakes_are_one_line_config_errors_naming_the_key(tmp_path, nano):
    _, path = nano
    with pytest.raises(ConfigError, match=r"dataset 'c': teacher_nam .*missing.nam: expected a .nam file, found no such"):
        load_dataset({"name": "c", "teacher_nam": str(tmp_path / "missing.nam")})
    (tmp_path / "broken.nam").write_text("{not json")
    with pytest.raises(ConfigError, match=r"dataset 'c': teacher_nam: .*broken.nam line 1: not valid JSON"):
        load_dataset({"name": "c", "teacher_nam": str(tmp_path / "broken.nam")})
    with pytest.raises(ConfigError, match=r"exactly one of 'device'.*'teacher_nam'.*found both 'device' and 'teacher_nam'"):
        from_dict(DatasetConfig, {"name": "c", "device": "fuzz", "teacher_nam": str(path)}, "datasets[0]")
    with pytest.raises(ConfigError, match=r"dataset 'c': teacher_nam .*nano.nam runs at 48000 Hz but sample_rate is "
                                          r"44100 Hz; expected them equal \(set sample_rate: 48000\)"):
        load_dataset({"name": "c", "teacher_nam": str(path), "sample_rate": 44100})
    with pytest.raises(ConfigError, match=r"dataset 'c': teacher_nam: .*nano.nam"):
        load_dataset({"name": "c", "teacher_nam": str(path), "slim": 0.5, "duration_s": 1.0})  # no levels
    with pytest.raises(ConfigError, match=r"'slim' applies to a teacher_nam dataset only, found it with a device"):
        DatasetConfig(name="c", device="fuzz", slim=0.5)
    with pytest.raises(ConfigError, match=r"at most one of 'slim'.*and 'width'"):
        DatasetConfig(name="c", teacher_nam=str(path), slim=0.5, width=0.5)
    with pytest.raises(ConfigError, match=r"'latency_samples' sets the latency of recordings \(path\) only"):
        DatasetConfig(name="c", teacher_nam=str(path), latency_samples=3)
    with pytest.raises(ConfigError, match=r"dry .*nowhere: no such file or folder"):
        load_dataset({"name": "c", "teacher_nam": str(path), "dry": str(tmp_path / "nowhere")})


def test_a_study_entry_reads_dry_as_one_path_or_a_list(nano):
    _, path = nano
    one = from_dict(DatasetConfig, {"name": "c", "teacher_nam": str(path), "dry": "takes/"}, "datasets[0]")
    many = from_dict(DatasetConfig, {"name": "c", "teacher_nam": str(path), "dry": ["a.wav", "b.wav"]}, "datasets[0]")
    assert one.dry == "takes/" and many.dry == ("a.wav", "b.wav")


def test_width_cuts_a_zoo_network_read_from_a_nam_file(nano):
    """width on a 0.5.x WaveNet .nam is the zoo's cut: the targets are the first half of the
    channels of the network the file was written from (slim() checked by hand in test_slimmable)."""
    from models.nets.slimmable import slim

    model, path = nano
    dataset = load_dataset({"name": "c", "teacher_nam": str(path), "width": 0.5, "duration_s": 1.0})
    dry = signals.program(1.0, 48000, 0)
    np.testing.assert_allclose(_joined(dataset, "target"), render_whole(slim(model, 0.5).eval(), dry),
                               rtol=0, atol=1e-5)
    assert "WaveNet, width 0.5, sha256" in dataset.description


@pytest.mark.slow
def test_a_capture_replaced_at_the_same_path_gets_new_run_ids(tmp_path):
    """The run id hashes the capture's bytes, not only its path: a new .nam at the same path must
    not reuse runs trained on the old one."""
    from models.nets.architectures import student_config
    from models.studies.run_config import RunConfig

    path = tmp_path / "amp.nam"
    ids = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        export_nam(WaveNet(from_preset("nano")).eval(), path, 48000)
        dataset = from_dict(DatasetConfig, {"name": "amp", "teacher_nam": str(path)}, "dataset")
        net = student_config({"arch": "nam_lstm", "hidden_size": 4}, "concat", "students[0]")
        ids.append(RunConfig(dataset=dataset, model=net).run_id)
    assert ids[0] != ids[1]
    assert ids[1] == RunConfig(dataset=dataset, model=net).run_id


def test_the_shipped_capture_study_trains_what_the_readme_says():
    """models/studies/capture.yaml (README, "From a .nam capture to smaller .nam students"): three
    students on the capture's response, two 8-bit ptq, one 4-bit qat with its fp32 fine-tuning
    control, a slimmable 16-unit LSTM cut to 8 units whose control is the 8-unit baseline (same
    budget: reused, not trained twice) — nine runs."""
    from models.studies.study import expansion, load_study

    root = Path(__file__).parents[2]
    study = load_study(root / "models" / "studies" / "capture.yaml")
    assert [d.teacher_nam for d in study.datasets] == ["results/exports/capture/demo-wavenet.nam"]
    runs, controls = expansion(study)
    made = sorted((r.run_id.split("_")[1], r.variant, r.bits, r.width) for r in runs)
    assert made == [
        ("NAM-LSTM-1x16", "baseline", 32, 1.0), ("NAM-LSTM-1x16", "finetune", 32, 1.0),
        ("NAM-LSTM-1x16", "ptq8", 8, 1.0), ("NAM-LSTM-1x16", "qat4", 4, 1.0),
        ("NAM-LSTM-1x16", "slimmable", 32, 1.0), ("NAM-LSTM-1x16", "slimmable50", 32, 0.5),
        ("NAM-LSTM-1x8", "baseline", 32, 1.0), ("NAM-LSTM-1x8", "ptq8", 8, 1.0), ("WN-nano", "baseline", 32, 1.0),
    ]
    by_id = {r.run_id: r for r in runs}
    pairs = {(by_id[row.run_id].variant, by_id[row.control_run].variant) for row in controls.itertuples()}
    assert ("slimmable50", "baseline") in pairs and ("qat4", "finetune") in pairs and ("ptq8", "baseline") in pairs
