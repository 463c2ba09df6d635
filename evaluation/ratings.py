"""Ratings I/O: every supported source becomes one tidy DataFrame, one row per rating.

The tidy columns are :data:`common.ratings_table.TIDY_COLUMNS` (the contract the web app's export
follows too). Only ``participant``, ``trial`` (or ``item``), ``condition`` and ``score`` are
required; the others are filled with missing values. Participant answers (questionnaire, crowd
ids) are a second frame keyed by ``participant``.

Sources: the tidy CSV, a webMUSHRA ``mushra.csv``, any long CSV with a column mapping, list-valued
CSV files such as the Stahl et al. (2024) panel, and a results database (SQLite file or SQLAlchemy
URL) holding either a tidy ``ratings`` table or the web app's tables.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.ratings_table import (
    COUNTED_RATING_COLUMNS,
    PAGES_TABLE,
    PARTICIPANTS_TABLE,
    RATINGS_TABLE,
    REQUIRED_COLUMNS,
    TIDY_COLUMNS,
    WEBMUSHRA_CSV_COLUMNS,
    WEBMUSHRA_REQUIRED_COLUMNS,
    WEBMUSHRA_ROLES,
    counted_ratings_sql,
    iso_utc,
)
from common.stimulus_set import ROLES

from .errors import ConfigError, RatingsFormatError, RatingsSourceError

log = logging.getLogger(__name__)

_STRING_COLUMNS = ("test", "participant", "trial", "item", "condition", "role", "submitted_at")
_INT_COLUMNS = ("trial_position", "condition_position", "plays")
_FLOAT_COLUMNS = ("score", "duration_ms")
# webMUSHRA columns that are not questionnaire answers.
_WEBMUSHRA_NON_ANSWERS = set(WEBMUSHRA_CSV_COLUMNS)


@dataclass(frozen=True)
class Ratings:
    """Ratings of one test: ``ratings`` in the tidy format, ``participants`` keyed by participant."""

    ratings: pd.DataFrame
    participants: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"participant": pd.Series([], dtype=object)})
    )
    source: str = ""


def to_tidy(frame: pd.DataFrame, *, where: str = "ratings") -> pd.DataFrame:
    """Check and normalise a frame that already uses tidy column names.

    Missing optional columns are added; ``item`` defaults to ``trial`` and ``trial`` to ``item``;
    ``test`` defaults to ``"test"``. Raises RatingsFormatError naming what is missing or malformed.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if "trial" not in frame.columns and "item" not in frame.columns:
        missing.append("trial (or item)")
    if missing:
        raise RatingsFormatError(
            f"{where}: expected columns {list(REQUIRED_COLUMNS) + ['trial']}, missing {missing}; "
            f"found {list(frame.columns)}"
        )
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for column in TIDY_COLUMNS:
        if column in frame.columns:
            out[column] = frame[column].to_numpy()
    if "trial" not in out:
        out["trial"] = out["item"]
    if "item" not in out:
        out["item"] = out["trial"]
    if "test" not in out:
        out["test"] = "test"
    for column in ("participant", "trial", "item", "condition"):
        values = out[column]
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise RatingsFormatError(f"{where}: row {row + 1}: {column} is empty")
    scores = pd.to_numeric(out["score"], errors="coerce")
    bad = scores.isna() & out["score"].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise RatingsFormatError(
            f"{where}: row {row + 1}: score: expected a number, found {out['score'].iloc[row]!r}"
        )
    out["score"] = scores.astype(float)
    if "role" in out:
        # The web app writes an empty role for a condition its manifest does not know.
        out["role"] = out["role"].where(out["role"].astype(str).str.strip() != "", pd.NA)
        roles = out["role"].dropna()
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise RatingsFormatError(
                f"{where}: role: expected one of {list(ROLES)}, found {unknown}"
            )
    for column in TIDY_COLUMNS:
        if column not in out:
            out[column] = pd.NA
    for column in _STRING_COLUMNS:
        out[column] = _text_column(out[column])
    for column in _INT_COLUMNS:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("Int64")
    out["duration_ms"] = pd.to_numeric(out["duration_ms"], errors="coerce").astype(float)
    return out[list(TIDY_COLUMNS)]


def _text_column(values: pd.Series) -> pd.Series:
    """Strings (object dtype) with missing values kept as <NA>; 2.0 from a numeric column → "2"."""
    missing = values.isna().to_numpy()
    if missing.all():
        return pd.Series(pd.NA, index=values.index, dtype=object)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.astype(float)
        whole = np.isclose(numbers % 1, 0) | missing
        if whole.all():
            values = numbers.astype("Int64")
    text = values.astype(str).astype(object)
    if missing.any():
        text[missing] = pd.NA
    return text


def _as_text(value) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return pd.NA
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_text_file(path: Path) -> None:
    """Refuse a file that cannot be a CSV before pandas does, with a message that says why."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise RatingsSourceError(f"{path}: cannot be read ({exc.strerror})") from None
    if not head:
        raise RatingsFormatError(
            f"{path}: expected a CSV file with a header and ratings, found an empty file (0 bytes)"
        )
    if b"\x00" in head:
        hint = (
            " (a SQLite database? give it a .db suffix or --format database)"
            if head.startswith(b"SQLite format 3")
            else ""
        )
        raise RatingsFormatError(
            f"{path}: expected a CSV text file, found binary data (NUL bytes){hint}"
        )


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> RatingsFormatError:
    # pandas decodes in chunks, so its offset is not the file's: find the first bad byte again.
    try:
        data = path.read_bytes()
        data.decode("utf-8")
        where, byte = "", exc.object[exc.start]
    except UnicodeDecodeError as full:
        line = data.count(b"\n", 0, full.start) + 1
        where, byte = f"line {line}: ", data[full.start]
    except OSError:
        where, byte = "", exc.object[exc.start]
    return RatingsFormatError(
        f"{path}: {where}expected UTF-8 text, found byte {byte:#04x} that is not UTF-8 "
        f"(a binary file, or another encoding such as Latin-1: save it as UTF-8)"
    )


def _read_csv(path: Path | str, **kwargs) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        raise RatingsSourceError(f"{path}: expected a ratings file, found a folder")
    if not path.is_file():
        raise RatingsSourceError(f"{path}: no such ratings file")
    _check_text_file(path)
    try:
        return pd.read_csv(path, dtype=object, keep_default_na=True, **kwargs)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except pd.errors.EmptyDataError:
        raise RatingsFormatError(
            f"{path}: expected a CSV header line, found only blank lines"
        ) from None
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RatingsFormatError(f"{path}: not a readable CSV file ({first})") from None


def check_score_range(ratings: pd.DataFrame, where: str, locate=None) -> None:
    """Refuse scores outside the 0–100 MUSHRA scale, naming the first one found.

    ``locate(i)`` names the source position of tidy row ``i`` (a CSV line, a table row); the
    message also gives that rating's participant, trial and condition.
    """
    scores = ratings["score"]
    bad = np.flatnonzero(((scores < 0) | (scores > 100)).to_numpy())
    if bad.size == 0:
        return
    i = int(bad[0])
    row = ratings.iloc[i]
    position = locate(i) if locate is not None else f"row {i + 1}"
    more = f" ({bad.size - 1} more outside 0–100)" if bad.size > 1 else ""
    raise RatingsFormatError(
        f"{where}: {position} (participant {row['participant']}, trial {row['trial']}, condition "
        f"{row['condition']}): score: expected 0–100, found {row['score']:g}{more}; "
        f"--allow-out-of-range keeps such scores"
    )


def _csv_line(i: int) -> str:
    # Data row i (0-based) of a CSV with one header line sits on line i + 2.
    return f"line {i + 2}"


def read_tidy_csv(
    path: Path | str,
    participants_path: Path | str | None = None,
    *,
    allow_out_of_range: bool = False,
) -> Ratings:
    """Read the tidy CSV the web app exports (and optionally its participants CSV).

    Scores outside 0–100 are refused (naming the line) unless ``allow_out_of_range``.
    """
    ratings = to_tidy(_read_csv(path), where=str(path))
    if not allow_out_of_range:
        check_score_range(ratings, str(path), _csv_line)
    participants = _participants_frame(ratings)
    if participants_path is not None:
        participants = _read_csv(participants_path)
        if "participant" not in participants.columns:
            raise RatingsFormatError(
                f"{participants_path}: expected a 'participant' column, found "
                f"{list(participants.columns)}"
            )
    return Ratings(ratings, participants, str(path))


def read_long_csv(
    path: Path | str, mapping: Mapping[str, str], *, allow_out_of_range: bool = False
) -> Ratings:
    """Read any long CSV (one row per rating) given ``mapping``: tidy column → file column.

    For example ``{"participant": "listener", "item": "stimulus", "condition": "system",
    "score": "rating"}``. Unmapped tidy columns that the file happens to have are used as they are.
    """
    frame = _read_csv(path)
    unknown = sorted(set(mapping) - set(TIDY_COLUMNS))
    if unknown:
        raise ConfigError(
            f"column mapping: unknown tidy column(s) {unknown}; expected {TIDY_COLUMNS}"
        )
    absent = {k: v for k, v in mapping.items() if v not in frame.columns}
    if absent:
        raise RatingsFormatError(
            f"{path}: column mapping names file column(s) {sorted(absent.values())} that the file "
            f"does not have; found {list(frame.columns)}"
        )
    renamed = frame.rename(columns={v: k for k, v in mapping.items()})
    renamed = renamed.loc[:, ~renamed.columns.duplicated(keep="first")]
    ratings = to_tidy(renamed, where=str(path))
    if not allow_out_of_range:
        check_score_range(ratings, str(path), _csv_line)
    return Ratings(ratings, _participants_frame(ratings), str(path))


def read_webmushra_csv(
    path: Path | str, test: str | None = None, *, allow_out_of_range: bool = False
) -> Ratings:
    """Read webMUSHRA's ``mushra.csv`` (one row per rating).

    ``session_uuid`` is the participant, ``trial_id`` the trial (and item), ``rating_stimulus`` the
    condition and ``rating_score`` the score. The conditions ``reference``, ``anchor35`` and
    ``anchor70`` get the roles hidden reference, low anchor and mid anchor; other conditions stay
    without a role until :func:`assign_roles`. Columns between ``session_uuid`` and ``trial_id``
    (questionnaire answers) go to the participants frame.
    """
    frame = _read_csv(path)
    missing = [c for c in WEBMUSHRA_REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise RatingsFormatError(
            f"{path}: not a webMUSHRA mushra.csv: missing {missing}; found {list(frame.columns)}"
        )
    tidy = pd.DataFrame(
        {
            "test": frame["session_test_id"] if "session_test_id" in frame else (test or "test"),
            "participant": frame["session_uuid"],
            "trial": frame["trial_id"],
            "condition": frame["rating_stimulus"],
            "role": frame["rating_stimulus"].map(WEBMUSHRA_ROLES),
            "score": frame["rating_score"],
        }
    )
    if test is not None:
        tidy["test"] = test
    ratings = to_tidy(tidy, where=str(path))
    if not allow_out_of_range:
        check_score_range(ratings, str(path), _csv_line)
    answer_columns = [c for c in frame.columns if c not in _WEBMUSHRA_NON_ANSWERS]
    participants = (
        frame[["session_uuid", *answer_columns]]
        .rename(columns={"session_uuid": "participant"})
        .drop_duplicates("participant")
        .reset_index(drop=True)
    )
    participants["participant"] = participants["participant"].map(_as_text)
    return Ratings(ratings, participants, str(path))


def read_list_valued_csv(
    path: Path | str,
    *,
    item_column: str = "signal",
    condition_column: str = "condition",
    scores_column: str = "ratings",
    participants_column: str = "participant_ids",
    test: str = "test",
    allow_out_of_range: bool = False,
) -> Ratings:
    """Read a file with one row per item × condition whose scores and listener ids are lists.

    The default column names are those of the Stahl et al. (2024) neural-codec MUSHRA panel
    (``signal, condition, ratings, participant_ids``). Each row becomes one tidy row per listener.
    """
    frame = _read_csv(path)
    needed = [item_column, condition_column, scores_column, participants_column]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise RatingsFormatError(
            f"{path}: expected list-valued columns {needed}, missing {missing}; "
            f"found {list(frame.columns)}"
        )
    rows, lines = [], []
    for index, row in frame.iterrows():
        where = f"{path}: line {index + 2}"
        scores = _parse_list(row[scores_column], f"{where}, {scores_column}")
        ids = _parse_list(row[participants_column], f"{where}, {participants_column}")
        if len(scores) != len(ids):
            raise RatingsFormatError(
                f"{where}: expected as many {scores_column} as {participants_column}, found "
                f"{len(scores)} and {len(ids)}"
            )
        for participant, score in zip(ids, scores, strict=True):
            rows.append((participant, row[item_column], row[condition_column], score))
            lines.append(index + 2)
    tidy = pd.DataFrame(rows, columns=["participant", "trial", "condition", "score"])
    tidy["test"] = test
    ratings = to_tidy(tidy, where=str(path))
    if not allow_out_of_range:
        check_score_range(ratings, str(path), lambda i: f"line {lines[i]}, {scores_column}")
    return Ratings(ratings, _participants_frame(ratings), str(path))


def _parse_list(text: object, where: str) -> list:
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as exc:
        raise RatingsFormatError(
            f"{where}: expected a list such as [1, 2], found {text!r}"
        ) from exc
    if not isinstance(value, (list, tuple)):
        raise RatingsFormatError(f"{where}: expected a list such as [1, 2], found {text!r}")
    return list(value)


def _participants_frame(ratings: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"participant": pd.unique(ratings["participant"])})


def read_database(
    source: str | Path,
    test: str | None = None,
    *,
    include_excluded: bool = False,
    allow_out_of_range: bool = False,
) -> Ratings:
    """Read ratings from a results database: a SQLite file path or an SQLAlchemy URL.

    A ``ratings`` table with the tidy columns is read as it is. Otherwise the web app's tables
    (``ratings``, ``pages``, ``participants``) are read with the web app's own export query,
    :func:`common.ratings_table.counted_ratings_sql`: only submitted ``kind = 'trial'`` pages
    (training grades are discarded), in the export's order; participants the experimenter
    excluded are left out unless ``include_excluded``. The participants frame always lists
    everyone. ``test`` keeps one test of a database that holds several.
    """
    import sqlalchemy as sa  # only needed for this source

    url = _database_url(source)
    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if "ratings" not in tables:
                raise RatingsSourceError(
                    f"{source}: expected a table 'ratings', found tables {sorted(tables)}"
                )
            rating_columns = {c["name"] for c in sa.inspect(conn).get_columns("ratings")}
            if set(REQUIRED_COLUMNS) <= rating_columns and "trial" in rating_columns:
                raw = pd.read_sql_query(sa.text("SELECT * FROM ratings"), conn)
                participants = (
                    pd.read_sql_query(sa.text("SELECT * FROM participants"), conn)
                    if "participants" in tables
                    else None
                )
                ratings = to_tidy(raw, where=f"{source}: table ratings")
            else:
                ratings, participants = _read_webapp_tables(
                    conn, tables, rating_columns, source, include_excluded
                )
    except sa.exc.SQLAlchemyError as exc:
        # SQLAlchemy's text spans several lines (the SQL, a link); the driver's own words suffice.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise RatingsSourceError(
            f"{source}: cannot read the database ({reason}); expected a SQLite file or URL of the "
            f"web app's results"
        ) from None
    finally:
        if "engine" in locals():
            engine.dispose()
    if test is not None:
        known = sorted(pd.unique(ratings["test"]))
        ratings = ratings[ratings["test"] == test].reset_index(drop=True)
        if ratings.empty:
            raise RatingsFormatError(
                f"{source}: no ratings for test {test!r}; tests found: {known}"
            )
    if not allow_out_of_range:
        check_score_range(ratings, f"{source}: table ratings")
    if participants is None or "participant" not in participants.columns:
        participants = _participants_frame(ratings)
    return Ratings(ratings, participants, str(source))


def _database_url(source: str | Path) -> str:
    text = str(source)
    if "://" in text:
        return text
    path = Path(text)
    if not path.is_file():
        raise RatingsSourceError(f"{path}: no such database file (give a file or a URL)")
    return f"sqlite:///{path.resolve()}"


_WEBAPP_RATING_COLUMNS = {"participant_id", "page_id", "trial", "condition", "score"}


def _read_webapp_tables(
    conn, tables: set[str], rating_columns: set[str], source, include_excluded: bool
) -> tuple:
    import sqlalchemy as sa

    missing = sorted(_WEBAPP_RATING_COLUMNS - rating_columns)
    needed = (PARTICIPANTS_TABLE, PAGES_TABLE)
    if missing or not set(needed) <= tables:
        raise RatingsFormatError(
            f"{source}: table {RATINGS_TABLE} has neither the tidy columns {list(TIDY_COLUMNS)} nor "
            f"the web app's columns {sorted(_WEBAPP_RATING_COLUMNS)} with tables {list(needed)}; "
            f"found columns {sorted(rating_columns)} and tables {sorted(tables)}"
        )
    # The web app's exports run the same query: the same ratings count in both.
    raw = pd.read_sql_query(sa.text(counted_ratings_sql(include_excluded=include_excluded)), conn)
    raw = raw[list(COUNTED_RATING_COLUMNS)].drop(columns=["participant_id"])
    raw["submitted_at"] = raw["submitted_at"].map(iso_utc)
    ratings = to_tidy(raw, where=f"{source}: table {RATINGS_TABLE}")
    people = pd.read_sql_query(sa.text(f"SELECT * FROM {PARTICIPANTS_TABLE}"), conn)
    people = people.rename(columns={"id": "participant_id", "code": "participant"})
    if "excluded" in people and not include_excluded:
        excluded = int(people["excluded"].fillna(False).astype(bool).sum())
        if excluded:
            log.info("%s: left out %d participants the experimenter excluded", source, excluded)
    for column in people.columns:
        if people[column].map(lambda v: isinstance(v, (dict, list))).any():
            people[column] = people[column].map(json.dumps)
    secret = [c for c in ("token",) if c in people.columns]
    return ratings, people.drop(columns=secret)


def detect_format(path: Path | str) -> str:
    """Guess a CSV's format from its header: ``tidy``, ``webmushra`` or ``list``."""
    header = set(_read_csv(path, nrows=0).columns)
    if set(WEBMUSHRA_REQUIRED_COLUMNS) <= header:
        return "webmushra"
    if {"ratings", "participant_ids"} <= header:
        return "list"
    if set(REQUIRED_COLUMNS) <= header and ({"trial", "item"} & header):
        return "tidy"
    raise RatingsFormatError(
        f"{path}: cannot tell the format from the header {sorted(header)}: expected the tidy "
        f"columns {list(REQUIRED_COLUMNS) + ['trial']}, webMUSHRA's {list(WEBMUSHRA_REQUIRED_COLUMNS)} or "
        f"list-valued 'ratings' and 'participant_ids'; give a column mapping for other files"
    )


def load_ratings(
    source: str | Path,
    *,
    format: str = "auto",
    mapping: Mapping[str, str] | None = None,
    include_excluded: bool = False,
    allow_out_of_range: bool = False,
) -> Ratings:
    """Load ratings from any supported source.

    ``format``: ``auto`` (database for ``.db``/``.sqlite`` files and URLs, else from the CSV
    header), ``tidy``, ``webmushra``, ``list``, ``long`` (needs ``mapping``) or ``database``.
    ``include_excluded`` keeps participants the experimenter excluded in the web app (databases).
    Scores outside 0–100 are refused, naming where, unless ``allow_out_of_range``. A source without
    a single rating (a header-only CSV, an empty table) is an error too: nothing can be analysed.
    """
    text = str(source)
    formats = ("auto", "tidy", "webmushra", "list", "long", "database")
    if format not in formats:
        raise ConfigError(f"ratings format: expected one of {list(formats)}, found {format!r}")
    if mapping is not None and format == "auto":
        format = "long"
    if format == "auto":
        if "://" in text or Path(text).suffix.lower() in (".db", ".sqlite", ".sqlite3"):
            format = "database"
        else:
            format = detect_format(text)
    keep = {"allow_out_of_range": allow_out_of_range}
    if format == "database":
        ratings = read_database(source, include_excluded=include_excluded, **keep)
    elif format == "tidy":
        ratings = read_tidy_csv(source, **keep)
    elif format == "webmushra":
        ratings = read_webmushra_csv(source, **keep)
    elif format == "list":
        ratings = read_list_valued_csv(source, **keep)
    elif mapping is None:
        raise ConfigError(
            "ratings format 'long' needs a column mapping (tidy column → file column)"
        )
    else:
        ratings = read_long_csv(source, mapping, **keep)
    if ratings.ratings.empty:
        found = (
            "none (an empty ratings table, or only participants the experimenter excluded)"
            if format == "database"
            else "a header but no rows"
        )
        raise RatingsFormatError(f"{source}: expected at least one rating, found {found}")
    return ratings


def assign_roles(
    ratings: pd.DataFrame, roles: Mapping[str, str], *, default: str | None = "system"
) -> pd.DataFrame:
    """Return a copy with ``role`` set from ``roles`` (condition id → role).

    Conditions not in ``roles`` keep a role they already have, else get ``default`` (``None``
    leaves them missing). Unknown role names are an error, and so is a condition the ratings do
    not have: a misspelt anchor would otherwise silently stay a system and enter the omnibus test.
    """
    unknown = {c: r for c, r in roles.items() if r not in ROLES}
    if unknown:
        raise ConfigError(f"roles: expected roles among {list(ROLES)}, found {unknown}")
    known = sorted(pd.unique(ratings["condition"].dropna()), key=str)
    absent = [c for c in roles if c not in set(known)]
    if absent:
        raise ConfigError(
            f"roles: condition(s) {absent} not found in the ratings; known conditions: {known}"
        )
    out = ratings.copy()
    mapped = out["condition"].map(dict(roles))
    role = mapped.where(mapped.notna(), out["role"])
    if default is not None:
        role = role.where(role.notna(), default)
    out["role"] = role.astype(object)
    return out

