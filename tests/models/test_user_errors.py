"""User mistakes end in one line on stderr naming what was expected, what was found and where,
exit status 2, no traceback, nothing half-written and nothing of the user's deleted."""

import json
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


def write_study(tmp_path, **changes) -> Path:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({**STUDY, "output_dir": str(tmp_path / "out"), **changes}))
    return study


@pytest.fixture
def blocker(tmp_path):
    """A regular file: no folder can be created below it, not even by root."""
    path = tmp_path / "blocker"
    path.write_text("the user's file")
    yield path
    assert path.read_text() == "the user's file"  # left exactly as it was


def test_a_study_out_below_a_file_is_one_line(tmp_path, capsys, blocker):
    line = one_line_error(capsys, main(["study", str(write_study(tmp_path)), "--out", str(blocker / "out")]))
    assert str(blocker / "out") in line and "is a part of the path a file?" in line


def test_a_dataset_write_below_a_file_is_one_line_before_any_work(capsys, blocker):
    line = one_line_error(capsys, main(["dataset", "--device", "overdrive", "--sample-rate", "8000",
                                        "--duration-s", "1", "--write", str(blocker / "wavs")]))
    assert f"--write {blocker / 'wavs'}: expected a folder that can be created" in line
    assert f"{blocker} is a file" in line


def test_a_dataset_write_replaces_only_its_own_folder(tmp_path, capsys):
    wavs = tmp_path / "wavs"
    args = ["dataset", "--device", "overdrive", "--sample-rate", "8000", "--duration-s", "1", "--write", str(wavs)]
    assert main(args) == 0 and main(args) == 0  # its own folder: replaced
    assert len(list(wavs.glob("*.wav"))) == 6
    (wavs / "notes.txt").write_text("mine")
    line = one_line_error(capsys, main(args))
    assert "holds 'notes.txt'" in line and (wavs / "notes.txt").read_text() == "mine"


def test_render_output_below_a_file_is_one_line(trained, capsys, blocker):
    run_dir, dry = trained
    line = one_line_error(capsys, main(["render", str(run_dir), str(dry), str(blocker / "wet.wav")]))
    assert f"{blocker / 'wet.wav'}: expected a WAV file to write" in line


@pytest.mark.parametrize("changes, found", [
    ({"datasets": [{**RUN["dataset"], "duration_s": 1e12}]}, r"duration_s 1e\+12 s at sample_rate 8000 Hz needs "
     r"84 bytes per sample .*: about [\d.e+]+ GB of memory, more than this machine's [\d.]+ GB; expected at most "
     r"about [\d.e+]+ s"),
    ({"datasets": [{**RUN["dataset"], "sample_rate": 10**12}]}, r"sample_rate 1000000000000 Hz needs"),
    ({"students": [{"layers": [200000, 200000]}]}, r"model.layers: \[200000, 200000\] has about 4.8e\+11 parameters; "
     r"training needs 16 bytes each .*: about [\d.e+]+ GB of memory, more than this machine's"),
])
def test_absurd_sizes_are_refused_by_the_memory_they_would_need(tmp_path, capsys, changes, found):
    study = write_study(tmp_path, **changes)
    line = one_line_error(capsys, main(["study", str(study)]))
    assert str(study) in line and re.search(found, line), line
    assert not (tmp_path / "out").exists()


def test_an_absurd_dataset_duration_on_the_command_line_is_one_line(capsys):
    line = one_line_error(capsys, main(["dataset", "--device", "overdrive", "--duration-s", "1e12"]))
    assert "duration_s 1e+12 s at sample_rate 48000 Hz needs" in line


@pytest.mark.parametrize("changes, found", [
    ({"recipes": [{"recipe": "kd"}], "teachers": []}, "recipe 'kd' is kd but the study has no teachers"),
    ({"students": [{"arch": "wavenet", "preset": "huge"}]}, "model.preset: a wavenet needs one of"),
    ({"datasets": [{**RUN["dataset"], "split_fractions": [0.5, 0.5, 0.5]}]}, "split_fractions must sum to 1"),
    ({"students": [{"layers": [4, 4], "colour": "red"}]}, "unknown key 'colour'"),
    ({"training": {**RUN["training"], "learning_rate": "fast"}}, "learning_rate: expected a number, found 'fast'"),
])
def test_study_config_errors_name_the_file(tmp_path, capsys, changes, found):
    study = write_study(tmp_path, **changes)
    line = one_line_error(capsys, main(["study", str(study)]))
    assert line.startswith(f"error: {study}") and found in line, line


def test_a_learning_rate_written_1e_3_is_a_number(tmp_path, capsys):
    from models.studies.study import expand, load_study

    study = tmp_path / "study.yaml"
    text = yaml.safe_dump({**STUDY, "output_dir": str(tmp_path / "out")})
    study.write_text(text.replace("  batch_size: 4\n", "  batch_size: 4\n  learning_rate: 1e-3\n"))
    assert load_study(study).training["learning_rate"] == "1e-3"  # a string to YAML 1.1 …
    assert {run.training.learning_rate for run in expand(load_study(study))} == {1e-3}  # … a number to the zoo
    assert main(["study", str(study), "--dry-run"]) == 0


def test_a_damaged_metrics_json_is_one_line_whose_advice_works(trained, capsys):
    run_dir, _ = trained
    (run_dir / "metrics.json").write_text('{"row": ')
    command = ["-q", "train", str(run_dir)]
    line = one_line_error(capsys, main(command))
    assert f"{run_dir / 'metrics.json'}: expected the finished run's JSON" in line and "line 1" in line
    assert "delete it and run the same command again" in line
    (run_dir / "metrics.json").unlink()
    assert main(command) == 0 and (run_dir / "metrics.json").is_file()


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    study = tmp_path / "study.yaml"
    study.write_bytes(b"name: caf\xe9\n")
    line = one_line_error(capsys, main(["study", str(study)]))
    assert f"{study}: expected UTF-8 text, found byte 0xe9 at offset 9" in line


def test_a_log_line_cut_short_by_a_kill_does_not_stop_the_resume(trained):
    run_dir, _ = trained
    (run_dir / "metrics.json").unlink()  # killed before it finished …
    with (run_dir / "log.jsonl").open("a") as log:
        log.write('{"epoch": 1, "train_lo')  # … in the middle of writing a log line
    assert main(["-q", "train", str(run_dir), "--resume"]) == 0
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0]
