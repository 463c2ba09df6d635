"""Adding an architecture or a recipe is one module and one registration: a GRU stack and a
warm-restart recipe defined here, registered, named by a study YAML, trained, reported in runs.csv
and reloaded — with no other change to the zoo."""

from __future__ import annotations

import dataclasses
import json
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
from models.studies.recipes import builtin as recipes
from models.studies.recipes.registry import Recipe
from models.studies.runs import RunConfig
from models.studies.study import load_study, run_study
from models.training.checkpoints import load_model
from models.training.steps import PlainStep


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


class WarmRestart(Recipe):
    """Fine-tunes each fp32 run of the entry's ``source`` from its best weights, with the plain
    loss, at a tenth of the entry's learning rate."""

    name: ClassVar[str] = "warm_restart_test"
    colour: ClassVar[str] = "#000000"
    spec_keys: ClassVar[tuple[str, ...]] = ("source",)

    def validate_spec(self, spec):
        super().validate_spec(spec)
        if spec.source is None:
            raise ConfigError(f"recipe {spec.label!r}: {self.name} needs source (the recipe whose runs it restarts)")

    def expand(self, spec, at):
        training = dataclasses.replace(at.training, learning_rate=at.training.learning_rate / 10)
        return [RunConfig(dataset=at.dataset, model=at.net, recipe=self.name, variant=spec.label, teacher=teacher,
                          training=training, seed=at.seed, init_run=source.run_id)
                for teacher, source in at.made.get(spec.source, {}).items()]

    def loss_step(self, run, job):
        return PlainStep()


@pytest.fixture
def warm_restart():
    recipes.register(WarmRestart())
    yield
    recipes.unregister("warm_restart_test")


@pytest.mark.slow
def test_a_registered_recipe_trains_through_a_study(tmp_path, warm_restart):
    # The new recipe first, to show that it is expanded after the source it starts from.
    path = _study(tmp_path, students=[{"layers": [4, 4]}],
                  recipes=[{"recipe": "warm_restart_test", "name": "warm", "source": "baseline"},
                           {"recipe": "baseline"}])
    run_study(load_study(path), tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv", keep_default_na=False).set_index("recipe")
    assert sorted(runs.index) == ["baseline", "warm_restart_test"]
    base, warm = runs.loc["baseline"], runs.loc["warm_restart_test"]
    assert (warm["variant"], warm["model"], warm["init_run"], warm["bits"], warm["width"]) == (
        "warm", "S-4-4", base["run_id"], 32, 1.0)
    assert warm["run_id"].startswith("od_S-4-4_warm_s0_")
    assert (warm["epochs"], warm["params"], warm["bytes"]) == (2, base["params"], base["bytes"])
    runs_dir = tmp_path / "out" / "runs"
    config = json.loads((runs_dir / warm["run_id"] / "config.json").read_text())
    assert (config["recipe"], config["init_run"]) == ("warm_restart_test", base["run_id"])
    learning_rate = 3e-4 / 10  # the default learning rate, divided by the recipe
    assert config["training"]["learning_rate"] == pytest.approx(learning_rate)
    restarted, payload = load_model(runs_dir / warm["run_id"])
    source, _ = load_model(runs_dir / base["run_id"])
    assert payload["run_id"] == warm["run_id"]
    # Started from the source's weights: 2 epochs × 2 batches = 4 Adam steps (β = 0.9, 0.999). By
    # Cauchy–Schwarz, step t moves a weight by at most lr · sqrt(Σ a_i² / b_i) with a_i, b_i the
    # bias-corrected moment weights: 1, 1.00136, 1.00361, 1.00676 lr, together ≤ 4.012 lr.
    moved = max(float((p.detach() - source.state_dict()[name]).abs().max()) for name, p in restarted.named_parameters())
    assert 0.0 < moved <= 4.012 * learning_rate


def test_a_registered_recipe_is_listed_and_validates_its_entry(tmp_path, warm_restart):
    with pytest.raises(ConfigError, match=r"recipe 'warm_restart_test': warm_restart_test needs source"):
        load_study(_study(tmp_path, students=[{"layers": [4, 4]}], recipes=[{"recipe": "warm_restart_test"}]))
    # The recipes reading the key given are listed: bits the quantized ones, source the new one too.
    with pytest.raises(ConfigError, match=r"bits applies to the ptq, qat and kd_qat recipes only"):
        load_study(_study(tmp_path, students=[{"layers": [4, 4]}], recipes=[{"recipe": "baseline", "bits": [8]}]))
    with pytest.raises(ConfigError,
                       match=r"source applies to the finetune, ptq, qat, kd_qat and warm_restart_test recipes only"):
        load_study(_study(tmp_path, students=[{"layers": [4, 4]}], recipes=[{"recipe": "baseline", "source": "x"}]))
    with pytest.raises(ConfigError) as error:
        load_study(_study(tmp_path, students=[{"layers": [4, 4]}], recipes=[{"recipe": "prune"}]))
    assert "'warm_restart_test')" in str(error.value)
    # Unregistered again (as the fixture does at the end), a study naming it is refused.
    recipes.unregister("warm_restart_test")
    with pytest.raises(ConfigError, match="unknown recipe 'warm_restart_test'"):
        load_study(_study(tmp_path, students=[{"layers": [4, 4]}],
                          recipes=[{"recipe": "warm_restart_test", "source": "baseline"}, {"recipe": "baseline"}]))


def test_an_architecture_or_recipe_missing_a_required_method_cannot_be_made():
    # Caught when the class is instantiated for registration, not first at training time.
    class NoBuild(Architecture):
        name = "no_build_test"

        def label(self, config):
            return "X"

        def size_label(self, config):
            return "1"

        def macs_per_sample(self, config):
            return 1

    class NoExpand(Recipe):
        name = "no_expand_test"

    with pytest.raises(TypeError, match="build"):
        NoBuild()
    with pytest.raises(TypeError, match="expand"):
        NoExpand()
