"""Ratings I/O and the validation summary."""

import ast
import sqlite3

import pandas as pd
import pytest

from evaluation.errors import (
    ConfigError,
    EvaluationError,
    ManifestError,
    RatingsFormatError,
    RatingsSourceError,
)
from evaluation.manifest import annotate, load_manifest
from evaluation.ratings import (
    TIDY_COLUMNS,
    assign_roles,
    detect_format,
    load_ratings,
    read_database,
    read_list_valued_csv,
    read_long_csv,
    read_webmushra_csv,
)
from evaluation.validation import validate_ratings
from tests.evaluation.inputs import tidy_frame, write_manifest


def test_tidy_csv_fills_optional_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("participant,trial,condition,score,plays\nP1,t1,a,90,2\nP1,t1,b,40.5,\n")
    loaded = load_ratings(path)
    frame = loaded.ratings
    assert list(frame.columns) == list(TIDY_COLUMNS)
    assert frame["item"].tolist() == ["t1", "t1"]
    assert frame["test"].tolist() == ["test", "test"]
    assert frame["score"].tolist() == [90.0, 40.5]
    assert frame["plays"].tolist()[0] == 2 and pd.isna(frame["plays"].tolist()[1])
    assert frame["role"].isna().all()
    assert loaded.participants["participant"].tolist() == ["P1"]


def test_tidy_csv_errors_name_the_problem(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("participant,trial,score\nP1,t1,90\n")
    with pytest.raises(RatingsFormatError, match=r"missing \['condition'\]"):
        load_ratings(path, format="tidy")
    path.write_text("participant,trial,condition,score\nP1,t1,a,90\nP1,t1,b,good\n")
    with pytest.raises(RatingsFormatError, match=r"row 2: score: expected a number, found 'good'"):
        load_ratings(path, format="tidy")
    with pytest.raises(RatingsSourceError, match="no such ratings file"):
        load_ratings(tmp_path / "absent.csv")
    path.write_text("a,b\n1,2\n")
    with pytest.raises(RatingsFormatError, match="cannot tell the format"):
        detect_format(path)


def test_webmushra_csv(tmp_path):
    path = tmp_path / "mushra.csv"
    path.write_text(
        "session_test_id,session_uuid,age,trial_id,rating_stimulus,rating_score,rating_time,rating_comment\n"
        "t,u1,31,trial1,reference,100,1500,\n"
        "t,u1,31,trial1,anchor35,10,1500,\n"
        "t,u1,31,trial1,anchor70,35,1500,\n"
        "t,u1,31,trial1,C1,70,1500,\n"
        "t,u2,45,trial1,reference,95,1500,\n"
    )
    assert detect_format(path) == "webmushra"
    loaded = read_webmushra_csv(path)
    frame = loaded.ratings
    assert frame["role"].tolist()[:3] == ["hidden_reference", "anchor_low", "anchor_mid"]
    assert pd.isna(frame["role"].iloc[3])
    assert frame["participant"].tolist() == ["u1", "u1", "u1", "u1", "u2"]
    assert loaded.participants.to_dict("list") == {"participant": ["u1", "u2"], "age": ["31", "45"]}
    roled = assign_roles(frame, {"C1": "system"})
    assert roled["role"].tolist()[3] == "system"
    with pytest.raises(ConfigError, match="expected roles among"):
        assign_roles(frame, {"C1": "reference"})


def test_long_csv_with_mapping(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("listener,stimulus,system,rating\nL1,s1,x,50\nL2,s1,x,60\n")
    frame = read_long_csv(
        path,
        {"participant": "listener", "item": "stimulus", "condition": "system", "score": "rating"},
    ).ratings
    assert frame["trial"].tolist() == ["s1", "s1"]
    assert frame["score"].tolist() == [50.0, 60.0]
    with pytest.raises(RatingsFormatError, match=r"\['listner'\]"):
        read_long_csv(
            path,
            {
                "participant": "listner",
                "item": "stimulus",
                "condition": "system",
                "score": "rating",
            },
        )
    with pytest.raises(ConfigError, match="unknown tidy column"):
        read_long_csv(path, {"listener_id": "listener"})


def test_list_valued_stahl_file(stahl_dir):
    path = stahl_dir / "ratings_formated.csv"
    raw = pd.read_csv(path)
    frame = read_list_valued_csv(path).ratings
    expected_n = sum(len(ast.literal_eval(s)) for s in raw["ratings"])
    assert len(frame) == expected_n
    first = frame.iloc[0]
    assert (first["participant"], first["trial"], first["condition"], first["score"]) == (
        "2",
        "VCTK_p229_293",
        "Proposed 1.38",
        41.0,
    )
    assert frame["participant"].nunique() == 21
    assert detect_format(path) == "list"


def test_stahl_validation_summary(stahl_dir):
    frame = read_list_valued_csv(stahl_dir / "ratings_formated.csv").ratings
    summary = validate_ratings(frame)
    # Independent counts with plain pandas
    per_listener = frame.groupby("participant")["trial"].nunique()
    assert summary.n_participants == 21
    assert summary.n_trials == 16 and summary.n_conditions == 9
    assert summary.trials_per_participant_min == per_listener.min() == 8
    assert summary.trials_per_participant_max == 8
    assert not summary.complete  # 8 of 16 signals per listener
    assert summary.balanced == (frame.groupby(["trial", "condition"]).size().nunique() == 1)
    assert summary.out_of_range == 0 and summary.duplicates == 0 and summary.missing_cells == 0
    page_max = frame.groupby(["participant", "trial"])["score"].max()
    assert summary.trials_without_100 == int((page_max < 100).sum())


def test_validation_summary_counts_by_hand():
    frame = tidy_frame(
        [
            ("A", "t1", "ref", "hidden_reference", 100),
            ("A", "t1", "sys", "system", 120),  # out of range
            ("A", "t2", "ref", "hidden_reference", 80),  # page without a 100
            ("A", "t2", "sys", "system", 50),
            ("B", "t1", "ref", "hidden_reference", 100),
            ("B", "t1", "ref", "hidden_reference", 100),  # duplicate
            # B rated t1 without 'sys': one missing cell; B never saw t2
            ("C", "t1", "ref", "hidden_reference", None),  # missing score
            ("C", "t1", "sys", "system", 30),  # page max 30 (NaN ignored) → no 100
        ]
    )
    summary = validate_ratings(frame)
    assert summary.out_of_range == 1
    assert summary.duplicates == 1
    assert summary.missing_cells == 1
    assert summary.missing_scores == 1
    assert summary.trials_without_100 == 2
    assert not summary.complete and not summary.ok
    kinds = summary.issues.groupby("kind").size().to_dict()
    assert kinds == {
        "duplicate": 1,
        "missing_cell": 1,
        "missing_score": 1,
        "no_100": 2,
        "out_of_range": 1,
    }
    missing = summary.issues[summary.issues["kind"] == "missing_cell"].iloc[0]
    assert (missing["participant"], missing["trial"], missing["condition"]) == ("B", "t1", "sys")
    assert any("duplicate" in line for line in summary.lines())


def _webapp_database(path):
    # The web app's tables (webapp/storage/schema.py), reduced to the columns the reader uses.
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE participants (id INTEGER PRIMARY KEY, test TEXT, token TEXT, code TEXT, answers TEXT,
                                   excluded BOOLEAN);
        CREATE TABLE pages (id INTEGER PRIMARY KEY, participant_id INT, position INT, kind TEXT,
                            trial TEXT, trial_position INT, submitted_at TEXT, duration_ms INT);
        CREATE TABLE ratings (id INTEGER PRIMARY KEY, page_id INT, participant_id INT, trial TEXT,
                              condition TEXT, score REAL, condition_position INT, plays INT,
                              listening_ms INT);
        INSERT INTO participants VALUES (1, 'set1', 'secret', 'P00000001', '{"age": 30}', 0);
        INSERT INTO participants VALUES (2, 'set1', 'secret2', 'P00000002', NULL, 1);
        INSERT INTO pages VALUES (12, 2, 1, 'trial', 't1', 1, '2026-01-01T11:00:00', 20000);
        INSERT INTO pages VALUES (13, 1, 3, 'trial', 't2', 2, NULL, NULL);
        INSERT INTO ratings VALUES (4, 12, 2, 't1', 'hidden_reference', 20, 1, 1, 100);
        INSERT INTO ratings VALUES (5, 13, 1, 't2', 'hidden_reference', 100, 1, 1, 100);
        INSERT INTO pages VALUES (10, 1, 1, 'training', 'tr', NULL, '2026-01-01T10:00:00', 1000);
        INSERT INTO pages VALUES (11, 1, 2, 'trial', 't1', 1, '2026-01-01T10:01:00', 30000);
        INSERT INTO ratings VALUES (1, 10, 1, 'tr', 'hidden_reference', 100, 1, 1, 100);
        INSERT INTO ratings VALUES (2, 11, 1, 't1', 'hidden_reference', 97, 2, 3, 100);
        INSERT INTO ratings VALUES (3, 11, 1, 't1', 'distilled', 61, 1, 2, 100);
        """
    )
    con.commit()
    con.close()


def test_read_webapp_database(tmp_path):
    db = tmp_path / "set1.db"
    _webapp_database(db)
    loaded = load_ratings(db)
    frame = loaded.ratings
    # the training page's rating, the unsubmitted page's and the excluded participant's are left out
    assert len(frame) == 2
    assert frame["participant"].tolist() == ["P00000001"] * 2
    assert frame["test"].tolist() == ["set1"] * 2
    # in the web app's export order: participant, trial position, condition position
    assert frame["score"].tolist() == [61.0, 97.0]
    assert frame["trial_position"].tolist() == [1, 1]
    assert frame["duration_ms"].tolist() == [30000.0, 30000.0]
    assert frame["condition_position"].tolist() == [1, 2]
    assert frame["submitted_at"].tolist() == ["2026-01-01T10:01:00.000Z"] * 2
    assert "token" not in loaded.participants.columns
    assert loaded.participants["participant"].tolist() == ["P00000001", "P00000002"]
    everyone = read_database(db, include_excluded=True).ratings
    assert sorted(everyone["participant"].unique()) == ["P00000001", "P00000002"]
    with pytest.raises(RatingsFormatError, match="no ratings for test 'other'"):
        read_database(db, test="other")


def test_read_tidy_database_table(tmp_path):
    db = tmp_path / "tidy.sqlite"
    con = sqlite3.connect(db)
    pd.DataFrame(
        {
            "participant": ["a", "b"],
            "trial": ["t", "t"],
            "condition": ["x", "x"],
            "score": [1.0, 2.0],
        }
    ).to_sql("ratings", con, index=False)
    con.close()
    assert read_database(f"sqlite:///{db}").ratings["score"].tolist() == [1.0, 2.0]


def test_database_errors(tmp_path):
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    with pytest.raises(RatingsSourceError, match="expected a table 'ratings'"):
        read_database(db)
    with pytest.raises(RatingsSourceError, match="no such database file"):
        read_database(tmp_path / "none.db")


def test_manifest_annotates_ratings(tmp_path):
    folder = write_manifest(
        tmp_path / "set",
        [
            {
                "id": "tr",
                "item": "guitar",
                "training": True,
                "conditions": [("hidden_reference", "hidden_reference", None)],
            },
            {
                "id": "t1",
                "item": "guitar",
                "group": "S-32-8",
                "conditions": [
                    ("hidden_reference", "hidden_reference", None),
                    ("anchor_7k", "anchor_mid", None),
                    (
                        "distilled",
                        "system",
                        {"run_id": "r1", "bytes": 4000, "objective": {"esr": 0.1}},
                    ),
                ],
            },
        ],
    )
    manifest = load_manifest(folder)
    assert manifest.roles() == {
        "hidden_reference": "hidden_reference",
        "anchor_7k": "anchor_mid",
        "distilled": "system",
    }
    assert manifest.objective_names() == ["esr"]
    row = manifest.conditions.set_index(["trial", "condition"]).loc[("t1", "distilled")]
    assert row["bytes"] == 4000 and row["objective_esr"] == 0.1
    ratings = tidy_frame(
        [
            ("A", "tr", "hidden_reference", None, 100),
            ("A", "t1", "hidden_reference", None, 100),
            ("A", "t1", "distilled", None, 70),
        ]
    )
    annotated = annotate(ratings, manifest)
    assert annotated["trial"].tolist() == ["t1", "t1"]
    assert annotated["role"].tolist() == ["hidden_reference", "system"]
    assert annotated["group"].tolist() == ["S-32-8", "S-32-8"]
    assert annotated["item"].tolist() == ["guitar", "guitar"]
    bad = tidy_frame([("A", "t9", "distilled", None, 70)])
    with pytest.raises(ManifestError, match="t9/distilled"):
        annotate(bad, manifest)


def test_manifest_errors(tmp_path):
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(
        '{"schema": 1, "sample_rate": 48000, "trials": [{"id": "t", "reference": "r.wav", "conditions": [{"id": "x", "role": "anchor", "file": "x.wav"}]}]}'
    )
    with pytest.raises(ManifestError, match=r"conditions\[0\].role: expected one of"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"schema": 7}')
    with pytest.raises(EvaluationError, match="schema: expected one of"):
        load_manifest(tmp_path)


def test_empty_role_is_missing_not_an_error():
    frame = pd.DataFrame(
        {
            "participant": ["A", "A"],
            "trial": ["t", "t"],
            "condition": ["x", "y"],
            "role": ["system", ""],
            "score": [1, 2],
        }
    )
    from evaluation.ratings import to_tidy

    tidy = to_tidy(frame)
    assert tidy["role"].iloc[0] == "system" and pd.isna(tidy["role"].iloc[1])
