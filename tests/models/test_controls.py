"""Budget-matched controls: what each recipe asks the study to train beside its runs, read from the
expansion of a study file (no training)."""

import pytest
import yaml

from models.cli import main
from models.studies.recipes.kd import WITHOUT_DISTILLATION
from models.studies.recipes.kd_qat import WITHOUT_TEACHER
from models.studies.recipes.quantized import FINE_TUNED, SOURCE_AS_IS
from models.studies.recipes.slimmable import TRAINED_ALONE
from models.studies.study import expansion, load_study

STUDY = {
    "name": "controls",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": 16000, "duration_s": 3.0}],
    "teachers": [{"name": "small", "layers": [16, 8]}],
    "students": [{"layers": [8, 8]}, {"arch": "wavenet", "preset": "nano"}],
    "recipes": [
        {"recipe": "baseline", "students": ["S-8-8"]},
        {"recipe": "kd", "distill": {"feature_loss": "kl", "alpha": 0.5}},
        {"recipe": "ptq", "bits": [8], "source": "baseline"},
        {"recipe": "kd_qat", "bits": [8, 4], "source": "kd", "distill": {"feature_loss": "kl", "alpha": 2.0},
         "training": {"max_epochs": 3, "learning_rate": 0.001}},
        {"recipe": "slimmable", "students": ["WN-nano"], "slimmable": {"widths": [0.5, 1.0]},
         "training": {"batch_size": 2, "window_samples": 512}},
    ],
    "seeds": [0, 1],
    "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 2, "learning_rate": 0.003},
}


def _expand(tmp_path, data=STUDY):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**data, "output_dir": str(tmp_path / "out")}))
    runs, controls = expansion(load_study(path))
    return {run.run_id: run for run in runs}, controls, list(runs)


def _controls_of(runs, controls, run_id):
    return {row.control: runs[row.control_run] for row in controls[controls["run_id"] == run_id].itertuples()}


def test_every_control_matches_its_run_but_for_what_the_recipe_does(tmp_path):
    runs, controls, order = _expand(tmp_path)
    by = lambda **want: [r for r in runs.values() if all(getattr(r, k) == v for k, v in want.items())]  # noqa: E731
    assert set(controls["control_run"]) <= set(runs)
    for seed in (0, 1):
        # kd: the student trained alone, the baseline entry's own run (one run, not two).
        kd, = by(recipe="kd", seed=seed)
        baseline, = by(recipe="baseline", seed=seed, variant="baseline", model=kd.model)
        assert _controls_of(runs, controls, kd.run_id) == {WITHOUT_DISTILLATION: baseline}
        assert baseline.training == kd.training and baseline.dataset == kd.dataset
        # ptq trains nothing more: its control is its source.
        ptq, = by(recipe="ptq", seed=seed)
        assert _controls_of(runs, controls, ptq.run_id) == {SOURCE_AS_IS: baseline}
        for bits in (8, 4):
            student, = by(recipe="kd_qat", seed=seed, bits=bits)
            found = _controls_of(runs, controls, student.run_id)
            assert set(found) == {FINE_TUNED, WITHOUT_TEACHER}
            tuned, plain = found[FINE_TUNED], found[WITHOUT_TEACHER]
            # fp32 fine-tuning from the same kd source, same teacher, distillation and budget
            assert (tuned.recipe, tuned.bits, tuned.init_run) == ("finetune", 32, kd.run_id)
            assert tuned.teacher_run == student.teacher_run == kd.teacher_run
            assert tuned.distill == student.distill and tuned.distill.alpha == 2.0
            assert tuned.training == student.training and tuned.training.max_epochs == 3
            assert tuned.training.learning_rate == 0.001 and tuned.seed == seed
            assert tuned.variant == "kd_finetune"
            # plain qat of the same source at the same bits and budget: no teacher; being quantized
            # itself, it has its own control, the plain fp32 fine-tuning
            assert (plain.recipe, plain.bits, plain.init_run, plain.teacher_run) == ("qat", bits, kd.run_id, None)
            assert plain.training == student.training
            plain_tuned = _controls_of(runs, controls, plain.run_id)[FINE_TUNED]
            assert (plain_tuned.recipe, plain_tuned.variant, plain_tuned.init_run) == ("finetune", "finetune", kd.run_id)
            assert (plain_tuned.teacher_run, plain_tuned.distill) == (None, None)
            assert plain_tuned.training == student.training
        # one distilled and one plain fine-tuning per source, shared by the 8- and 4-bit students
        assert sorted(r.variant for r in by(recipe="finetune", seed=seed)) == ["finetune", "kd_finetune"]
        # slimmable: the slimmed width trained alone, with the slimmable entry's budget; the full
        # width is not compressed and the study trains no full-width network alone: no control
        full, = by(recipe="slimmable", seed=seed, width=1.0)
        half, = by(recipe="slimmable", seed=seed, width=0.5)
        alone = _controls_of(runs, controls, half.run_id)[TRAINED_ALONE]
        assert (alone.recipe, alone.variant, alone.width, alone.seed) == ("baseline", "alone", 1.0, seed)
        assert alone.model.label == "WN-nano@50%" and alone.training == full.training
        assert alone.training.batch_size == 2 and alone.training.window_samples == 512
        assert _controls_of(runs, controls, full.run_id) == {}
        assert not by(recipe="baseline", model=full.model)
    # Every control comes before nothing that depends on it: sources precede their fine-tuning.
    position = {run.run_id: i for i, run in enumerate(order)}
    for run in runs.values():
        if run.init_run:
            assert position[run.init_run] < position[run.run_id]


def test_the_full_width_is_compared_with_a_network_trained_alone_where_the_study_trains_one(tmp_path):
    slim = STUDY["recipes"][-1]
    entry = {"recipe": "baseline", "name": "alone", "students": ["WN-nano"], "training": slim["training"]}
    runs, controls, _ = _expand(tmp_path, {**STUDY, "recipes": [entry, *STUDY["recipes"]]})
    for seed in (0, 1):
        full, = [r for r in runs.values() if r.recipe == "slimmable" and r.width == 1.0 and r.seed == seed]
        alone = _controls_of(runs, controls, full.run_id)[TRAINED_ALONE]
        assert (alone.recipe, alone.variant, alone.model, alone.training) == ("baseline", "alone", full.model,
                                                                             full.training)
    # another budget is not a control
    other = {**entry, "training": {"batch_size": 4}}
    runs, controls, _ = _expand(tmp_path, {**STUDY, "recipes": [other, *STUDY["recipes"]]})
    full_ids = [r.run_id for r in runs.values() if r.recipe == "slimmable" and r.width == 1.0]
    assert not controls["run_id"].isin(full_ids).any()


def test_controls_false_trains_none(tmp_path):
    data = {**STUDY, "recipes": [{**entry, "controls": False} if entry["recipe"] != "baseline" else entry
                                 for entry in STUDY["recipes"]]}
    runs, controls, _ = _expand(tmp_path, data)
    assert controls.empty
    assert {r.recipe for r in runs.values()} == {"baseline", "kd", "ptq", "kd_qat", "slimmable"}
    assert not [r for r in runs.values() if r.variant == "alone"]


def test_dry_run_lists_the_controls(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "output_dir": str(tmp_path / "out")}))
    assert main(["study", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "od_S-8-8_kd_finetune-small_s0_" in out and "od_S-8-8_finetune-small_s0_" in out
    assert "od_S-8-8_qat4-small_s1_" in out
    assert "od_WN-nano@50%_alone_s0_" in out


def test_finetune_entry_needs_a_source(tmp_path):
    from models.errors import ConfigError

    data = {**STUDY, "recipes": [{"recipe": "baseline"}, {"recipe": "finetune"}]}
    with pytest.raises(ConfigError, match="finetune needs source"):
        _expand(tmp_path, data)
