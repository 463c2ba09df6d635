"""The ratings contract: tidy columns, webMUSHRA names, the query of the ratings that count."""

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from common import ratings_table as rt


def test_tidy_columns_and_webmushra_names():
    assert rt.TIDY_COLUMNS == ("test", "participant", "trial", "item", "condition", "role", "score",
                               "trial_position", "condition_position", "duration_ms", "plays", "submitted_at")
    assert rt.WEBMUSHRA_CONDITIONS == {"reference": "hidden_reference", "anchor35": "anchor_3k5",
                                       "anchor70": "anchor_7k"}
    assert rt.WEBMUSHRA_NAME_OF_ROLE == {"hidden_reference": "reference", "anchor_low": "anchor35",
                                         "anchor_mid": "anchor70"}


def _database() -> sqlite3.Connection:
    # The web app's tables, reduced to the columns the query reads.
    con = sqlite3.connect(":memory:")
    con.executescript(
        """
        CREATE TABLE participants (id INTEGER PRIMARY KEY, test TEXT, code TEXT, excluded BOOLEAN);
        CREATE TABLE pages (id INTEGER PRIMARY KEY, participant_id INT, kind TEXT, trial_position INT,
                            submitted_at TEXT, duration_ms INT, loop_used BOOLEAN);
        CREATE TABLE ratings (id INTEGER PRIMARY KEY, page_id INT, participant_id INT, trial TEXT,
                              condition TEXT, score REAL, condition_position INT, plays INT, listening_ms INT);
        INSERT INTO participants VALUES (1, 'set1', 'P1', 0), (2, 'set1', 'P2', 1), (3, 'other', 'P3', 0);
        INSERT INTO pages VALUES (10, 1, 'training', NULL, '2026-01-01 10:00:00.000000', 1000, 0),
                                 (11, 1, 'trial', 2, '2026-01-01 10:02:00.000000', 30000, 1),
                                 (12, 1, 'trial', 1, '2026-01-01 10:01:00.000000', 20000, 0),
                                 (13, 1, 'trial', 3, NULL, NULL, NULL),
                                 (14, 2, 'trial', 1, '2026-01-01 11:00:00.000000', 5000, 0),
                                 (15, 3, 'trial', 1, '2026-01-01 12:00:00.000000', 5000, 0);
        INSERT INTO ratings VALUES (1, 10, 1, 'tr', 'hidden_reference', 100, 1, 1, 10),
                                   (2, 11, 1, 't2', 'sys', 40, 2, 1, 10),
                                   (3, 11, 1, 't2', 'hidden_reference', 100, 1, 2, 10),
                                   (4, 12, 1, 't1', 'hidden_reference', 95, 1, 1, 10),
                                   (5, 13, 1, 't3', 'hidden_reference', 90, 1, 1, 10),
                                   (6, 14, 2, 't1', 'hidden_reference', 20, 1, 1, 10),
                                   (7, 15, 3, 't1', 'hidden_reference', 80, 1, 1, 10);
        """
    )
    return con


def _ids(con, **kwargs) -> list[tuple]:
    sql = rt.counted_ratings_sql(**kwargs).replace("SELECT p.id AS participant_id", "SELECT r.id AS rid, p.id AS participant_id")
    params = {"test": "set1"} if kwargs.get("one_test") else {}
    return [row[0] for row in con.execute(sql, params)]


def test_only_submitted_rated_pages_of_included_participants_count():
    con = _database()
    # not the training page (1), not the unsubmitted page (5); by participant, trial and condition position
    assert _ids(con) == [4, 3, 2, 7]
    assert _ids(con, include_excluded=True) == [4, 3, 2, 6, 7]
    assert _ids(con, one_test=True) == [4, 3, 2]
    assert _ids(con, one_test=True, include_excluded=True) == [4, 3, 2, 6]


def test_columns_in_order_then_the_extra_ones():
    con = _database()
    cursor = con.execute(rt.counted_ratings_sql(one_test=True, extra=("listening_ms", "loop_used", "excluded")),
                         {"test": "set1"})
    names = [d[0] for d in cursor.description]
    assert names == [*rt.COUNTED_RATING_COLUMNS, "listening_ms", "loop_used", "excluded"]
    assert cursor.fetchone() == (1, "set1", "P1", "t1", "hidden_reference", 95.0, 1, 1, 20000, 1,
                                 "2026-01-01 10:01:00.000000", 10, 0, 0)
    with pytest.raises(ValueError, match="extra: expected columns among"):
        rt.counted_ratings_sql(extra=("token",))


def test_iso_utc():
    assert rt.iso_utc(None) == ""
    assert rt.iso_utc("2026-01-01 10:01:00.123456") == "2026-01-01T10:01:00.123Z"
    assert rt.iso_utc("2026-01-01T10:01:00") == "2026-01-01T10:01:00.000Z"
    assert rt.iso_utc(datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-01T10:00:00.000Z"
    assert rt.iso_utc(datetime(2026, 1, 1, 10, 0)) == "2026-01-01T10:00:00.000Z"
