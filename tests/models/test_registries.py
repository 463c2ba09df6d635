"""Adding an architecture is one module and one registration: a GRU stack defined here, registered,
named by a study YAML, trained, reported in runs.csv and reloaded — with no other change to the zoo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from models.errors import ConfigError
from models.nets import architectures
from models.nets.registry import Architecture
from models.studies.study import load_study, run_study
from models.training.checkpoints import load_model


@dataclass(frozen=True)
class GRUConfig:
    units: int = 4
    n_knobs: int = 0
    arch: Literal["gru_test"] = "gru_test"

    def __post_init__(self) -> None:
        if self.units < 1:
            raise ConfigError(f"model.units: expected >= 1, found {self.units}")


class GRUStack(nn.Module):
    """One GRU → dense(1) + the input sample. x: (batch, time, 1) → (y, state)."""

    def __init__(self, config: GRUConfig):
        super().__init__()
        self.config = config
        self.gru = nn.GRU(1, config.units, batch_first=True)
        self.dense = nn.Linear(config.units, 1)

    def forward(self, x, knobs=None, state=None, return_features=False):
        h, state = self.gru(x, state)
        y = self.dense(h) + x
        return (y, state, [h]) if return_features else (y, state)


class GRUArchitecture(Architecture):
    name: ClassVar[str] = "gru_test"
    config_class: ClassVar[type] = GRUConfig

    def build(self, config):
        return GRUStack(config)

    def label(self, config):
        return f"GRU-{config.units}"

    def size_label(self, config):
        return str(config.units)

    def macs_per_sample(self, config):
        return 3 * config.units * (1 + config.units) + config.units


@pytest.fixture
def gru():
    architectures.register(GRUArchitecture())
    yield
    architectures.unregister("gru_test")


def _study(tmp_path, **overrides):
    study = {
        "name": "reg",
        "datasets": [{"name": "od", "device": "overdrive", "sample_rate": 16000, "duration_s": 2.0}],
        "students": [{"arch": "gru_test", "units": 4}],
        "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 2, "max_batches_per_epoch": 2},
        "output_dir": str(tmp_path / "out"),
        **overrides,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.slow
def test_a_registered_architecture_trains_through_a_study(tmp_path, gru):
    run_study(load_study(_study(tmp_path)), tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv", keep_default_na=False)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row["arch"], row["model"], str(row["layers"]), row["recipe"]) == ("gru_test", "GRU-4", "4", "baseline")
    # By hand: GRU 1→4 has three gates of 4·(1 + 4) weights and two bias vectors of 3·4; dense 4 + 1.
    assert row["params"] == 3 * 4 * 5 + 2 * 3 * 4 + 4 + 1 == 89
    assert row["macs_per_sample"] == 3 * 4 * 5 + 4
    assert row["epochs"] == 2
    run_dir = tmp_path / "out" / "runs" / row["run_id"]
    model, payload = load_model(run_dir)
    assert isinstance(model, GRUStack) and model.config == GRUConfig(units=4)
    assert payload["net"] == {"arch": "gru_test", "units": 4, "n_knobs": 0}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in payload["model"].items())
    # Trained: the weights are no longer those the seed initialised.
    torch.manual_seed(0)
    assert not torch.equal(GRUStack(GRUConfig(units=4)).dense.weight, model.dense.weight)


def test_unknown_architecture_is_one_line_naming_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_study(_study(tmp_path, students=[{"arch": "transformer", "layers": [4]}]))
    message = str(error.value)
    assert "\n" not in message and "'transformer'" in message
    assert "known: lstm, nam_lstm, wavenet" in message


def test_unknown_recipe_is_one_line_naming_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_study(_study(tmp_path, students=[{"layers": [4, 4]}], recipes=[{"recipe": "prune"}]))
    message = str(error.value)
    assert "\n" not in message and "'prune'" in message
    for name in ("baseline", "kd", "ptq", "qat", "kd_qat", "slimmable"):
        assert f"'{name}'" in message


def test_a_student_key_the_architecture_does_not_have_is_refused(tmp_path, gru):
    with pytest.raises(ConfigError, match=r"unknown key 'layers' for arch 'gru_test' \(allowed: arch, units, n_knobs\)"):
        load_study(_study(tmp_path, students=[{"arch": "gru_test", "layers": [4]}]))
