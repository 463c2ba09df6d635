"""User mistakes end in one line on stderr naming what was expected, what was found and where,
exit status 2, no traceback, nothing half-written and nothing of the user's deleted."""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from models.cli import main

RUN = {
    "dataset": {"name": "od", "device": "overdrive", "sample_rate": 8000, "duration_s": 1.0},
    "model": {"layers": [4, 4]},
    "training": {"window_samples": 128, "warmup_samples": 32, "max_epochs": 1, "max_batches_per_epoch": 2,
                 "batch_size": 4},
}


def one_line_error(capsys, code: int) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def trained(tmp_path, capsys):
    """A finished tiny run: its folder, and a dry WAV at its sample rate to render."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(RUN))
    assert main(["-q", "train", str(config), "--runs", str(tmp_path / "runs")]) == 0
    capsys.readouterr()
    (run_dir,) = (tmp_path / "runs").iterdir()
    dry = tmp_path / "dry.wav"
    sf.write(dry, np.zeros(800, dtype=np.float32), 8000)
    return run_dir, dry


def follow_advice(line: str) -> Path:
    """Do literally what a damaged-checkpoint error says; returns the run folder it names."""
    advice = re.search(r"delete (\S+) and (\S+), then run the study again \(or `python -m models train (\S+)`\)",
                       line)
    assert advice, line
    for name in advice.groups()[:2]:
        Path(name).unlink(missing_ok=True)
    return Path(advice.group(3))


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated"])
def test_a_damaged_checkpoint_is_one_line_whose_advice_gets_the_run_going(trained, tmp_path, capsys, damage):
    run_dir, dry = trained
    (run_dir / "checkpoint.pt").write_bytes(damage)
    line = one_line_error(capsys, main(["render", str(run_dir), str(dry), str(tmp_path / "wet.wav")]))
    assert f"{run_dir / 'checkpoint.pt'}: corrupt or unreadable checkpoint" in line
    if not damage:
        assert "empty (0 bytes)" in line
    assert main(["-q", "train", str(follow_advice(line))]) == 0
    assert main(["render", str(run_dir), str(dry), str(tmp_path / "wet.wav")]) == 0


def test_an_empty_last_pt_of_an_interrupted_run_is_one_line_whose_advice_works(trained, capsys):
    run_dir, _ = trained
    (run_dir / "metrics.json").unlink()  # the run was interrupted before it finished
    (run_dir / "last.pt").write_bytes(b"")
    line = one_line_error(capsys, main(["-q", "train", str(run_dir), "--resume"]))
    assert f"{run_dir / 'last.pt'}: corrupt or unreadable checkpoint" in line
    assert main(["-q", "train", str(follow_advice(line)), "--resume"]) == 0
    assert (run_dir / "metrics.json").is_file()


def test_a_run_missing_only_its_checkpoint_trains_again_instead_of_sticking(trained, capsys):
    # last.pt alone cannot finish a run: the best epoch's weights are gone with checkpoint.pt.
    run_dir, _ = trained
    (run_dir / "checkpoint.pt").unlink()
    assert main(["-q", "train", str(run_dir), "--resume"]) == 0
    assert (run_dir / "checkpoint.pt").is_file()


@pytest.mark.parametrize("text, found", [("{\"dataset\": ", "line 1"), ("[1, 2]", "expected a mapping")])
def test_a_malformed_config_json_of_a_run_folder_is_one_line_naming_it(tmp_path, capsys, text, found):
    run_dir = tmp_path / "runs" / "broken"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(text)
    line = one_line_error(capsys, main(["train", str(run_dir)]))
    assert str(run_dir / "config.json") in line and found in line


@pytest.mark.parametrize("section, key", [
    ({"training": {**RUN["training"], "loss": {"mae": -1}}}, "training.loss.mae: expected a weight >= 0"),
    ({"training": {**RUN["training"], "loss": {"mae": 1, "esr": -0.5}}}, "training.loss.esr: expected a weight >= 0"),
])
def test_negative_loss_weights_are_refused_naming_file_and_key(tmp_path, capsys, section, key):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**RUN, **section}))
    line = one_line_error(capsys, main(["train", str(config), "--runs", str(tmp_path / "runs")]))
    assert str(config) in line and key in line
    assert not (tmp_path / "runs").exists()


STUDY = {
    "name": "tiny",
    "datasets": [RUN["dataset"]],
    "teachers": [{"name": "small", "layers": [8, 4]}],
    "students": [{"layers": [4, 4]}],
    "recipes": [{"recipe": "baseline"}, {"recipe": "kd"}],
    "training": RUN["training"],
}


@pytest.mark.parametrize("change, key", [
    ({"training": {**RUN["training"], "loss": {"mae": -1}}}, "training.loss.mae: expected a weight >= 0"),
    ({"recipes": [{"recipe": "baseline"}, {"recipe": "kd", "distill": {"alpha": -1}}]},
     "distill.alpha: expected a weight >= 0, found -1"),
    ({"recipes": [{"recipe": "baseline"}, {"recipe": "kd", "distill": {"response_alpha": "-1e-2"}}]},
     "distill.response_alpha: expected a weight >= 0, found -0.01"),
    ({"teachers": [{"name": "small", "layers": [8, 4], "training": {"loss": {"esr_pre": -2}}}]},
     "training.loss.esr_pre: expected a weight >= 0"),
])
def test_negative_weights_in_a_study_are_refused_naming_file_and_key(tmp_path, capsys, change, key):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({**STUDY, **change, "output_dir": str(tmp_path / "out")}))
    line = one_line_error(capsys, main(["study", str(study)]))
    assert str(study) in line and key in line
    assert not (tmp_path / "out").exists()
