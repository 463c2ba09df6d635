"""The ``earshot`` console script: each subcommand runs the stage's own command line with the same
arguments, from the installed entry point, and loads only that stage."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EARSHOT = Path(sys.executable).with_name("earshot")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EARSHOT), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module", autouse=True)
def installed():
    if not EARSHOT.exists() and shutil.which("earshot") is None:
        pytest.fail(f"the console script is not installed: expected {EARSHOT} (pip install -e . creates it)")


def test_help_lists_every_stage_in_pipeline_order():
    out = run("--help")
    assert out.returncode == 0
    # argparse indents the subcommands by 4 and wraps their help further in.
    listed = [line.split()[0] for line in out.stdout.splitlines() if line[:4] == "    " and line[4] != " "]
    assert listed == ["zoo", "stimuli", "serve", "webapp", "report", "analysis"]


@pytest.mark.slow
@pytest.mark.parametrize("subcommand, module_args", [
    (["zoo", "devices"], ["-m", "models", "devices"]),
    (["serve", "--help"], ["-m", "webapp", "serve", "--help"]),
    (["report", "--help"], ["-m", "evaluation", "report", "--help"]),
    (["analysis", "--help"], ["-m", "evaluation", "--help"]),
    (["stimuli", "--help"], ["-m", "stimulus_sets", "--help"]),
])
def test_a_subcommand_prints_what_the_stage_cli_prints(subcommand, module_args):
    ours = run(*subcommand)
    theirs = subprocess.run([sys.executable, *module_args], capture_output=True, text=True, timeout=120)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
    assert ours.stdout


@pytest.mark.slow
def test_a_user_error_in_a_stage_is_its_one_line_and_exit_2(tmp_path):
    out = run("report", "--ratings", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "report"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "missing.csv" in out.stderr
    assert not (tmp_path / "report").exists()


def test_an_unknown_subcommand_names_the_known_ones():
    out = run("train")
    assert out.returncode == 2
    assert "invalid choice: 'train'" in out.stderr and "'zoo'" in out.stderr


def test_serving_loads_neither_torch_nor_the_zoo():
    code = ("import sys; from earshot import cli; from webapp import __main__ as w; "
            "w.main = lambda argv: print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'models'}), argv) or 0; "
            "sys.exit(cli.main(['serve', 'stimuli/demo']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[] ['serve', 'stimuli/demo']"
