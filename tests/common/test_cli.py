"""The stages' shared command-line wrapper: a user's mistake is one line and exit 2, Ctrl-C is 130
with its advice, and a bug is not swallowed."""

import pytest

from common.cli import one_line, run_verb
from common.errors import EarshotError


def test_a_multi_line_user_error_is_one_line_and_exit_2(capsys):
    def verb():
        raise EarshotError("study.yaml: key 'layers'\n   expected a list\nfound 3")

    assert run_verb(verb, interrupted="x") == 2
    assert capsys.readouterr().err == "error: study.yaml: key 'layers' expected a list found 3\n"


def test_ctrl_c_is_130_with_the_advice(capsys):
    def verb():
        raise KeyboardInterrupt

    assert run_verb(verb, interrupted="interrupted: run it again to resume") == 130
    assert capsys.readouterr().err == "\ninterrupted: run it again to resume\n"


def test_a_bug_is_not_turned_into_a_user_error():
    def verb():
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        run_verb(verb, interrupted="x")


def test_the_verbs_status_passes_through_and_one_line_keeps_a_single_line():
    assert run_verb(lambda: 1, interrupted="x") == 1
    assert one_line(ValueError("a  b")) == "a  b"
