"""Earshot's .nam exports load in Neural Amp Modeler's own Python package (0.12 and 0.13) and render there
within 1e-5 of Earshot, with NAM's own loudness and gain: models.export.nam_check, run when the NAM
environments of `make nam-venvs` exist (skipped otherwise; EARSHOT_REQUIRE_NAM=1, as in CI, fails instead)."""

import pytest

from models.export.nam_check import DEFAULT_VENVS, TOLERANCE, format_rows, run_check
from tests.support.system_tools import missing_tool


@pytest.mark.slow  # two NAM environments start (lightning imports) and render 18 file loads: a few minutes
def test_every_export_loads_and_renders_the_same_in_nam_012_and_013():
    for label, folder in DEFAULT_VENVS.items():
        if not (folder / "bin" / "python").exists():
            missing_tool(f"NAM {label} environment ({folder})", "make nam-venvs", "EARSHOT_REQUIRE_NAM")
    passed, rows = run_check()
    assert passed, "\n" + format_rows(rows)
    loads = {(r["file"], r["nam"][:4]) for r in rows}
    # 0.5.4 WaveNets in NAM 0.12, 0.7.0 WaveNets in 0.13, LSTM files of both versions in both, and every
    # width of the container as a 0.7.0 WaveNet in 0.13.
    assert ("wavenet_standard_v054.nam", "0.12") in loads and ("wavenet_standard_w50_v070.nam", "0.13") in loads
    assert {("lstm_2x12_v054.nam", "0.13"), ("lstm_1x8_v070.nam", "0.12")} <= loads
    assert sum(f.startswith("wavenet_slimmable_container_w") for f, _ in loads) == 4
    assert all(r["max_abs_diff"] <= TOLERANCE for r in rows)
