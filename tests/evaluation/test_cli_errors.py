"""The command line with user mistakes: one line on stderr, exit status 2, nothing of the user's
replaced or deleted, no half-written output. And the outputs it may replace: only its own."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.__main__ import main

REPO = Path(__file__).parents[2]
FAST = ["--no-pdf", "--permutations", "100", "--bootstrap", "100"]


def _panel_csv(path: Path, scores=None) -> Path:
    """A complete tidy panel: 4 listeners × 2 items × (reference, anchor, two systems)."""
    rng = np.random.default_rng(3)
    lines = ["participant,trial,condition,score"]
    for listener in "ABCD":
        for trial in ("t1", "t2"):
            for condition, level in (
                ("Reference", 100),
                ("Anchor", 20),
                ("sysA", 70),
                ("sysB", 50),
            ):
                score = level if level == 100 else round(level + rng.normal(0, 5))
                lines.append(f"{listener},{trial},{condition},{score}")
    if scores:
        lines.extend(scores)
    path.write_text("\n".join(lines) + "\n")
    return path


def _fails(capsys, argv: list[str], *fragments: str) -> str:
    """Run the CLI, expecting a user error: exit 2 and exactly one line on stderr."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _report(ratings, out, *extra):
    return ["report", "--ratings", ratings, "--out", out, *FAST, *extra]


# ------------------------------------------------------------------------ report --out (item 2)
def test_report_refuses_a_folder_holding_a_database_and_keeps_it(tmp_path, capsys):
    ratings = _panel_csv(tmp_path / "panel.csv")
    folder = tmp_path / "results"
    folder.mkdir()
    db = folder / "ratings.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE ratings (participant, trial, condition, score)")
        conn.execute("INSERT INTO ratings VALUES ('A', 't', 'c', 50)")
    before = db.read_bytes()
    _fails(capsys, _report(ratings, folder), str(folder), "not written by the report command")
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["panel.csv", "results"]


def test_report_refuses_the_ratings_file_as_out(tmp_path, capsys):
    ratings = _panel_csv(tmp_path / "panel.csv")
    before = ratings.read_bytes()
    _fails(capsys, _report(ratings, ratings), f"--out {ratings}", "the input")
    assert ratings.read_bytes() == before
    # nor a folder that holds it
    _fails(capsys, _report(ratings, tmp_path), "folder holding the input")
    assert ratings.read_bytes() == before


@pytest.mark.slow
def test_report_replaces_its_own_previous_report(tmp_path, capsys):
    ratings = _panel_csv(tmp_path / "panel.csv")
    out = tmp_path / "report"
    assert main([str(a) for a in _report(ratings, out, "--title", "first")]) == 0
    assert "first" in (out / "report.html").read_text()
    assert main([str(a) for a in _report(ratings, out, "--title", "second")]) == 0
    html = (out / "report.html").read_text()
    assert "second" in html and "first" not in html
    assert json.loads((out / ".earshot-output.json").read_text())["kind"] == "report"
    # no staging or old folders left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["panel.csv", "report"]
    capsys.readouterr()
    # a file the user added to the report folder makes it theirs: refused, kept
    (out / "notes.txt").write_text("mine")
    _fails(capsys, _report(ratings, out), "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"


def test_simulate_never_overwrites_a_non_csv_file_or_writes_into_the_stimulus_set(tmp_path, capsys):
    from tests.evaluation.test_report import _set

    manifest = _set(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("mine")
    simulate = ["simulate", "--stimuli", manifest.folder, "--listeners", "3", "--out"]
    _fails(capsys, [*simulate, text], str(text), "expected a path ending in .csv")
    assert text.read_text() == "mine"
    manifest_text = (manifest.folder / "manifest.json").read_text()
    _fails(capsys, [*simulate, manifest.folder / "manifest.json"], "manifest.json")
    _fails(capsys, [*simulate, manifest.folder / "panel.csv"], "outside the input folder")
    assert (manifest.folder / "manifest.json").read_text() == manifest_text
    assert not (manifest.folder / "panel.csv").exists()


def test_validate_refuses_issues_on_the_ratings_file(tmp_path, capsys):
    ratings = _panel_csv(tmp_path / "panel.csv")
    before = ratings.read_bytes()
    _fails(capsys, ["validate", "--ratings", ratings, "--issues", ratings], "--issues", "the input")
    assert ratings.read_bytes() == before


# -------------------------------------------------------------- one-line user errors (item 3)
def test_unwritable_out_below_a_regular_file(tmp_path, capsys):
    ratings = _panel_csv(tmp_path / "panel.csv")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails(capsys, _report(ratings, blocker / "sub" / "report"), "cannot write there", str(blocker))
    from tests.evaluation.test_report import _set

    manifest = _set(tmp_path)
    _fails(
        capsys,
        ["simulate", "--stimuli", manifest.folder, "--out", blocker / "panel.csv"],
        "cannot write there",
        str(blocker),
    )
    assert blocker.read_text() == "x"


def _random_db(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _truncated_db(path: Path) -> Path:
    whole = path.with_name("whole.db")
    with sqlite3.connect(whole) as conn:
        conn.execute("CREATE TABLE ratings (participant, trial, condition, score)")
        conn.executemany(
            "INSERT INTO ratings VALUES (?, ?, ?, ?)",
            [(f"p{i}", "t", "c", 50) for i in range(3000)],
        )
    path.write_bytes(whole.read_bytes()[:5000])
    return path


@pytest.mark.parametrize(
    "name, make, fragments",
    [
        ("random.db", _random_db, ["cannot read the database", "file is not a database"]),
        ("truncated.db", _truncated_db, ["cannot read the database", "malformed"]),
        ("empty.csv", lambda p: p.write_bytes(b"") and p, ["empty file (0 bytes)"]),
        (
            "binary.csv",
            lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20) and p,
            ["binary data"],
        ),
        (
            "latin1.csv",
            lambda p: (
                p.write_bytes("participant,trial,condition,score\nA,Café,c,50\n".encode("latin-1"))
                and p
            ),
            ["line 2", "byte 0xe9", "expected UTF-8"],
        ),
        ("folder", lambda p: p.mkdir() or p, ["expected a ratings file, found a folder"]),
        (
            "header.csv",
            lambda p: p.write_text("participant,trial,condition,score\n") and p,
            ["expected at least one rating", "header but no rows"],
        ),
    ],
)
def test_unreadable_ratings_are_one_line_errors(tmp_path, capsys, name, make, fragments):
    path = tmp_path / name
    make(path)
    line = _fails(capsys, _report(path, tmp_path / "out"), str(path), *fragments)
    assert "excluded" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_corrupt_database_through_a_real_process_prints_no_traceback(tmp_path):
    db = _random_db(tmp_path / "results.db")
    done = subprocess.run(
        [sys.executable, "-m", "evaluation", "validate", "--ratings", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(db) in done.stderr


def test_misspelt_condition_in_roles_lists_the_known_conditions(tmp_path, capsys):
    ratings = _panel_csv(tmp_path / "panel.csv")
    roles = "Reference=hidden_reference,Anchr=anchor_low"
    line = _fails(capsys, _report(ratings, tmp_path / "out", "--roles", roles), "['Anchr']")
    assert "known conditions: ['Anchor', 'Reference', 'sysA', 'sysB']" in line
    _fails(capsys, ["validate", "--ratings", ratings, "--roles", roles], "['Anchr']")
    assert not (tmp_path / "out").exists()


def test_scores_outside_the_scale_are_refused_unless_allowed(tmp_path, capsys):
    ratings = _panel_csv(tmp_path / "panel.csv", scores=["E,t1,sysA,120"])
    out = tmp_path / "out"
    # 1 header + 4 × 2 × 4 ratings: the extra row is on line 34.
    _fails(
        capsys, _report(ratings, out), str(ratings), "line 34", "found 120", "--allow-out-of-range"
    )
    assert not out.exists()
    assert main([str(a) for a in _report(ratings, out, "--allow-out-of-range")]) == 0
    numbers = json.loads((out / "numbers.json").read_text())
    assert any("1 scores lie outside 0–100" in w and "kept" in w for w in numbers["warnings"])
    assert "outside 0–100" in (out / "report.html").read_text()


def test_out_of_range_in_a_list_valued_file_names_its_line(tmp_path, capsys):
    path = tmp_path / "lists.csv"
    path.write_text(
        "signal,condition,ratings,participant_ids\n"
        's1,a,"[10, 20, 30]","[1, 2, 3]"\n'
        's1,b,"[10, -4, 30]","[1, 2, 3]"\n'
    )
    _fails(
        capsys, ["validate", "--ratings", path], str(path), "line 3", "participant 2", "found -4"
    )


@pytest.mark.parametrize(
    "content, fragments",
    [
        (b"\xff\xfe\x00c\x00o", ["expected UTF-8"]),
        (b"confidence: 2\n", ["report.confidence", "found 2"]),
        (b"confidnce: 0.9\n", ["unknown key 'confidnce'"]),
        (b"a: [\n", ["not valid YAML"]),
    ],
)
def test_config_errors_name_their_file(tmp_path, capsys, content, fragments):
    ratings = _panel_csv(tmp_path / "panel.csv")
    config = tmp_path / "report.yaml"
    config.write_bytes(content)
    _fails(capsys, _report(ratings, tmp_path / "out", "--config", config), str(config), *fragments)
    screening = tmp_path / "screening.yaml"
    screening.write_bytes(content)
    _fails(
        capsys, ["validate", "--ratings", ratings, "--screening-config", screening], str(screening)
    )


def test_an_option_refused_by_the_config_says_it_came_from_the_command_line(tmp_path, capsys):
    ratings = _panel_csv(tmp_path / "panel.csv")
    _fails(
        capsys,
        _report(ratings, tmp_path / "out", "--confidence", "2"),
        "command line",
        "confidence",
    )


def test_power_pilot_out_of_range_refused_unless_allowed(tmp_path, capsys):
    pilot = _panel_csv(tmp_path / "pilot.csv", scores=["E,t1,sysA,-3"])
    power = ["power", "--pilot", pilot, "--roles", "Reference=hidden_reference,Anchor=anchor_low"]
    power += ["--difference", "10", "--simulations", "200", "--max-listeners", "20"]
    _fails(capsys, power, str(pilot), "line 34", "found -3")
    assert main([str(a) for a in [*power, "--allow-out-of-range"]]) == 0
