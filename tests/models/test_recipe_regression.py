"""Regression pin: every recipe trains a tiny study to the same runs as before the zoo's refactor.

The expected run ids, runs.csv facts, best validation losses and weight sums were recorded by
running this study with the code of commit 397dada (before the zoo was split into subpackages and
before the architecture and recipe registries and the loss-step strategies replaced the string
switches), on the development machine (2-core x86-64, torch 2.13.0 CPU). That older code is the
independent implementation here: the refactor must not change what a seed trains. Losses and weight
sums are compared to 1e-5 relative, not bit for bit: a different CPU (another SIMD path in the BLAS)
changes the last bits of float32 training, which would make exact digests fail for no fault.
"""

import json
import math

import pytest
import torch
import yaml

from models.studies.study import load_study, run_study
from models.training.checkpoints import load_payload

STUDY = {
    "name": "pin",
    "datasets": [{"name": "od", "device": "overdrive", "sample_rate": 16000, "duration_s": 3.0}],
    "teachers": [{"name": "small", "layers": [16, 8]}],
    "students": [{"layers": [8, 8]}, {"arch": "wavenet", "preset": "nano"}],
    "recipes": [
        # Controls (budget-matched runs the recipes ask for) came later; the runs pinned are the recipes' own.
        {"controls": False, "recipe": "baseline", "students": ["S-8-8"]},
        {"controls": False, "recipe": "kd", "distill": {"feature_loss": "kl", "response_alpha": 0.5}},
        {"controls": False, "recipe": "ptq", "bits": [4], "source": "baseline"},
        {"controls": False, "recipe": "qat", "bits": [8], "source": "baseline"},
        {"controls": False, "recipe": "kd_qat", "bits": [4], "source": "kd"},
        {"controls": False, "recipe": "slimmable", "students": ["S-8-8"],
         "slimmable": {"widths": [0.5, 1.0], "rule": "sandwich", "inplace_distillation": True}},
        {"controls": False, "recipe": "slimmable", "name": "slim_wn", "slimmable": {"widths": [0.5, 1.0]},
         "students": ["WN-nano"]},
    ],
    "training": {"window_samples": 256, "warmup_samples": 64, "max_epochs": 2, "max_batches_per_epoch": 3,
                 "learning_rate": 0.003},
}

ROW_COLUMNS = ("arch", "model", "layers", "recipe", "variant", "teacher", "bits", "width", "params", "bytes",
               "macs_per_sample", "epochs", "best_epoch", "init_run", "teacher_run")

# run id -> (best validation loss (inf: not trained), sum of |weights| of checkpoint.pt, runs.csv facts),
# recorded with commit 397dada (see the module docstring).
EXPECTED: dict[str, tuple[float, float, tuple]] = {
    "od_S-16-8_baseline_s0_f2b6cfa7": (0.25034570693969727, 304.19576334330486,
        ("lstm", "S-16-8", "16-8", "baseline", "baseline", "", 32, 1.0, 2057, 8228, 1864, 2, 2, "", "")),
    "od_S-8-8_baseline_s0_d605cdba": (0.11163120716810226, 168.4603840248892,
        ("lstm", "S-8-8", "8-8", "baseline", "baseline", "", 32, 1.0, 937, 3748, 808, 2, 2, "", "")),
    "od_S-8-8_kd-small_s0_29e4a359": (0.1118198037147522, 168.34127568930853,
        ("lstm", "S-8-8", "8-8", "kd", "kd", "small", 32, 1.0, 937, 3748, 808, 2, 2, "", "od_S-16-8_baseline_s0_f2b6cfa7")),
    "od_S-8-8_kd_qat4-small_s0_5af78333": (0.1114463210105896, 168.50998056377284,
        ("lstm", "S-8-8", "8-8", "kd_qat", "kd_qat4", "small", 4, 1.0, 937, 1436, 808, 2, 1,
         "od_S-8-8_kd-small_s0_29e4a359", "od_S-16-8_baseline_s0_f2b6cfa7")),
    "od_S-8-8_ptq4_s0_e70d5205": (math.inf, 168.78732499212492,
        ("lstm", "S-8-8", "8-8", "ptq", "ptq4", "", 4, 1.0, 937, 1436, 808, 0, 0, "od_S-8-8_baseline_s0_d605cdba", "")),
    "od_S-8-8_qat8_s0_d2050fbb": (0.11098027974367142, 168.23752799723297,
        ("lstm", "S-8-8", "8-8", "qat", "qat8", "", 8, 1.0, 937, 1840, 808, 2, 2, "od_S-8-8_baseline_s0_d605cdba", "")),
    "od_S-8-8_slimmable50_s0_a8ad4597": (math.inf, 49.597465350525454,
        ("lstm", "S-4-4", "4-4", "slimmable", "slimmable50", "", 32, 0.5, 277, 1108, 212, 0, 0,
         "od_S-8-8_slimmable_s0_f3c1a62e", "")),
    "od_S-8-8_slimmable_s0_f3c1a62e": (0.11270469054579735, 168.44731272791978,
        ("lstm", "S-8-8", "8-8", "slimmable", "slimmable", "", 32, 1.0, 937, 3748, 808, 2, 2, "", "")),
    "od_WN-nano_slim_wn50_s0_b40712d3": (math.inf, 56.43805209733546,
        ("wavenet", "WN-nano@50%", "2-1", "slimmable", "slim_wn50", "", 32, 0.5, 253, 1012, 198, 0, 0,
         "od_WN-nano_slim_wn_s0_274b8b86", "")),
    "od_WN-nano_slim_wn_s0_274b8b86": (0.014590263366699219, 185.9968021888053,
        ("wavenet", "WN-nano", "4-2", "slimmable", "slim_wn", "", 32, 1.0, 841, 3364, 732, 2, 2, "", "")),
}


@pytest.mark.slow
def test_every_recipe_trains_the_runs_recorded_before_the_refactor(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "output_dir": str(tmp_path / "out")}))
    run_study(load_study(path), tmp_path / "out")
    found = {}
    for run_dir in sorted((tmp_path / "out" / "runs").iterdir()):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        weights = load_payload(run_dir / "checkpoint.pt")["model"]
        l1 = sum(float(t.detach().to(torch.float64).abs().sum()) for t in weights.values())
        found[run_dir.name] = (metrics["validation_loss"], l1, tuple(metrics["row"][c] for c in ROW_COLUMNS))
    assert sorted(found) == sorted(EXPECTED)
    for run_id, (loss, l1, row) in EXPECTED.items():
        assert found[run_id][2] == row, run_id
        assert found[run_id][0] == pytest.approx(loss, rel=1e-5), run_id
        assert found[run_id][1] == pytest.approx(l1, rel=1e-5), run_id
