"""The measure phase: real-time factors timed alone after training (cost.csv, runs.csv's rtf columns)."""

import itertools

import pandas as pd
import pytest
import yaml

from common.provenance import cpu_model
from models.cli import main
from models.studies import cost
from models.studies.cost import COST_COLUMNS, is_busy, measure_runs, measure_study

# Two LSTM students of the same kind, one strictly smaller (8 vs 64 units in the first layer).
STUDY = {
    "name": "cost",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": 16000, "duration_s": 3.0}],
    "students": [{"layers": [8, 8]}, {"layers": [64, 8]}],
    "recipes": [{"recipe": "baseline"}],
    "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 1, "max_batches_per_epoch": 2,
                 "learning_rate": 0.003},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-run study trained through the CLI (which ends with the measure phase)."""
    root = tmp_path_factory.mktemp("cost")
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "output_dir": str(root / "out")}))
    assert main(["-q", "study", str(path)]) == 0
    return path, root / "out"


def _run_dirs(out):
    return [out / "runs" / run_id for run_id in pd.read_csv(out / "runs.csv")["run_id"]]


@pytest.mark.slow
def test_study_ends_with_the_measure_phase_and_measure_rewrites_it(trained, capsys):
    path, out = trained
    after_study = pd.read_csv(out / "cost.csv")
    assert list(after_study.columns) == COST_COLUMNS and len(after_study) == 2

    capsys.readouterr()
    assert main(["-q", "measure", str(path), "--repeats", "3"]) == 0  # the YAML names the folder
    assert f"wrote {out / 'cost.csv'} and updated {out / 'runs.csv'}" in capsys.readouterr().out
    table = pd.read_csv(out / "cost.csv")
    runs = pd.read_csv(out / "runs.csv")
    assert list(table.columns) == COST_COLUMNS
    assert list(table["run_id"]) == list(runs["run_id"])
    assert set(table["model"]) == {"S-8-8", "S-64-8"}
    assert (table["repeats"] == 3).all() and (table["stream_block_samples"] == 128).all()
    assert (table["threads"] == 1).all() and (table["cpu_model"] == cpu_model()).all()
    for kind in ("offline", "stream"):
        assert (table[f"rtf_{kind}_min"] <= table[f"rtf_{kind}_median"]).all()
        assert (table[f"rtf_{kind}_median"] <= table[f"rtf_{kind}_max"]).all()
        assert (table[f"rtf_{kind}_min"] > 0).all()
        # runs.csv's figures are this call's medians, not the ones timed during training
        merged = runs.merge(table, on="run_id")
        assert merged[f"rtf_{kind}"].to_numpy() == pytest.approx(merged[f"rtf_{kind}_median"].to_numpy())
    # a new measurement, not the study's (three timed rounds instead of five)
    assert (after_study["repeats"] == 5).all()


@pytest.mark.slow
def test_real_time_factor_is_audio_seconds_over_seconds_taken(trained, monkeypatch):
    _, out = trained
    # A clock that advances 0.5 s per reading: every timed call takes 0.5 s.
    ticks = itertools.count()
    monkeypatch.setattr(cost, "_clock", lambda: 0.5 * next(ticks))
    table = measure_runs(_run_dirs(out), repeats=3, offline_s=1.0, stream_s=0.25)
    # 1 s rendered in 0.5 s: 2× real time; 0.25 s streamed in 0.5 s: 0.5×
    assert table["rtf_offline_median"].tolist() == [2.0, 2.0]
    assert table["rtf_offline_min"].tolist() == [2.0, 2.0] and table["rtf_offline_max"].tolist() == [2.0, 2.0]
    assert table["rtf_stream_median"].tolist() == [0.5, 0.5]
    # 2 runs × 3 rounds × 2 timings × 2 readings: the warm-up reads no clock
    assert next(ticks) == 24


@pytest.mark.slow
def test_busy_flag_follows_the_load_average(trained, monkeypatch):
    _, out = trained
    run_dirs = _run_dirs(out)[:1]
    monkeypatch.setattr(cost.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cost.os, "getloadavg", lambda: (3.5, 3.0, 2.0))
    busy = measure_runs(run_dirs, repeats=1, offline_s=0.25, stream_s=0.1)
    assert busy["busy"].tolist() == [True]
    assert busy["load_avg_1min_before"].tolist() == [3.5] and busy["cpu_count"].tolist() == [2]
    monkeypatch.setattr(cost.os, "getloadavg", lambda: (1.2, 3.0, 2.0))
    assert measure_runs(run_dirs, repeats=1, offline_s=0.25, stream_s=0.1)["busy"].tolist() == [False]


def test_busy_threshold_is_the_core_count():
    # the measuring process accounts for up to 1: one other process on 2 cores still leaves it a core
    assert not is_busy(2.0, 1.5, 2)
    assert is_busy(2.01, 0.4, 2)  # before or after: the 1-minute average lags
    assert is_busy(0.4, 2.5, 2)
    assert not is_busy(None, None, 2) and not is_busy(5.0, 5.0, None)


@pytest.mark.slow
def test_a_smaller_network_is_not_reported_slower(trained):
    _, out = trained
    table = measure_study(out, repeats=5).set_index("model")
    if table["busy"].any():
        pytest.skip("the machine was busy (load above the core count): the comparison needs a quiet one")
    small, large = table.loc["S-8-8"], table.loc["S-64-8"]
    assert small["rtf_offline_median"] >= large["rtf_offline_median"]
    assert small["rtf_stream_median"] >= large["rtf_stream_median"]


def test_measure_errors_name_what_was_expected(tmp_path, capsys):
    assert main(["measure", str(tmp_path)]) == 2
    assert f"{tmp_path}: expected a study folder holding runs.csv, found none" in capsys.readouterr().err
    assert main(["measure", str(tmp_path), "--repeats", "0"]) == 2
    assert "--repeats: expected >= 1, found 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["measure", "--help"])
    assert exc.value.code == 0
    assert "python -m models measure" in capsys.readouterr().out
