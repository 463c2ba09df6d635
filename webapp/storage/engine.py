"""Connections to the results database: SQLite files (created owner-only, WAL, their identity and
integrity watched, writers queued on a lock) and PostgreSQL URLs."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from ..errors import StorageError
from ..settings import make_private_dirs

log = logging.getLogger(__name__)

SQLITE_SYNCHRONOUS = ("normal", "full")

PRIVATE_FILE = 0o600
"""Mode of the SQLite file (its -wal and -shm files copy it) and of the write-lock file: ratings
are personal data, readable by the study's owner only."""


class DatabaseUnavailable(StorageError):
    """The database can no longer store pages: its file was deleted or replaced while the server
    ran, or it is corrupt. Answered with HTTP 503, which the participant's page retries while
    keeping its answers."""


def sqlite_corrupt(exc: BaseException) -> bool:
    """Whether a driver error says the file is damaged or not a database at all."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def database_url_for(test: str, results_dir: Path, database_url: str | None) -> str:
    """The database of ``test``: the shared URL, else SQLite at ``<results_dir>/<test>.db``."""
    if database_url:
        if database_url.startswith("postgresql://"):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; the project ships psycopg 3.
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
        return database_url
    return f"sqlite:///{(Path(results_dir) / f'{test}.db').resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; None for another database."""
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def _open_database_file(path: Path) -> tuple[int, int]:
    """Create the SQLite file (owner-only) unless it exists; its (device, inode).

    Created here rather than by SQLite so that the mode is 0600 whatever the umask, and so that
    the connections can open it with ``mode=rw``: a file deleted under a running server is then
    an error, not a new empty database that takes the next pages. An existing file is only
    stat()ed: closing a descriptor of it would drop this process's SQLite locks on it.
    """
    try:
        make_private_dirs(path.parent)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
            except FileExistsError:  # another worker created it first
                st = os.stat(path)
            else:
                st = os.fstat(fd)
                os.close(fd)
    except OSError as exc:
        raise StorageError(f"{path}: cannot open the results database there ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise StorageError(f"{path}: expected a SQLite results database, found a folder or special file")
    if st.st_mode & 0o077:
        # Info, not a warning: a file of an older release, or shared on purpose; the docs say how.
        log.info("%s is readable by other users (mode %o); ratings are personal data", path, st.st_mode & 0o777)
    return st.st_dev, st.st_ino


class SqliteFile:
    """The SQLite file this process serves, watched: deleted, replaced or damaged under the
    server, it is marked unusable for the rest of the process (the connections still point at
    the old file or a damaged one; only a restart opens it afresh)."""

    def __init__(self, path: Path):
        self.path = path
        # Compared with what the path names before a write is acknowledged (see check).
        self._identity = _open_database_file(path)
        self._broken: str | None = None
        self._last_quick_check = 0.0

    def refuse_if_broken(self) -> None:
        if self._broken is not None:
            raise DatabaseUnavailable(self._broken)

    def fail(self, reason: str) -> DatabaseUnavailable:
        """Mark the database unusable; the error to raise."""
        if self._broken is None:
            self._broken = reason
            log.error("%s", reason)
        return DatabaseUnavailable(self._broken)

    def check(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the path still names the file this process
        opened."""
        self.refuse_if_broken()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            problem = "was deleted while the server ran"
        except OSError as exc:
            problem = f"cannot be checked ({exc.strerror or exc})"
        else:
            if (st.st_dev, st.st_ino) == self._identity:
                return
            problem = "was replaced by another file while the server ran"
        raise self.fail(
            f"results database {self.path} {problem} (process {os.getpid()}): pages are refused from now on "
            f"(participants' pages keep their answers and retry); see 'The database file was deleted or "
            f"damaged' in webapp/docs/running-a-study.md"
        )

    def check_after_error(self, exc: BaseException) -> None:
        """Turn a driver error caused by a vanished, replaced or damaged file into
        :class:`DatabaseUnavailable`; other errors stay as they are."""
        if isinstance(exc, DatabaseUnavailable):
            return
        if sqlite_corrupt(exc):
            raise self.fail(f"results database {self.path} is damaged ({exc}): pages are refused from now on") from exc
        self.check()

    def integrity_problem(self) -> str | None:
        """SQLite's ``PRAGMA quick_check`` (O(size) reads, no lock held against writers): None,
        or the first problem it found. On a read-only connection of its own, so that a damaged
        file is not written to (not even switched to WAL) before it has been checked."""
        self._last_quick_check = time.monotonic()
        try:
            with closing(sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True, timeout=30)) as conn:
                problems = [r for (r,) in conn.execute("PRAGMA quick_check") if r != "ok"]
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
                return f"{self.path}: expected a SQLite results database, found another kind of file ({exc})"
            return f"results database {self.path} failed the integrity check: {exc}"
        if not problems:
            return None
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return f"results database {self.path} failed the integrity check: {problems[0]}{more}"

    def quick_check(self) -> None:
        """:class:`DatabaseUnavailable` (and no page acknowledged from then on) when the file
        fails ``PRAGMA quick_check``."""
        if (problem := self.integrity_problem()) is not None:
            raise self.fail(problem)

    def quick_check_due(self, every_s: float) -> bool:
        return time.monotonic() - self._last_quick_check >= every_s


def sqlite_engine(file: SqliteFile, synchronous: str) -> Engine:
    """An engine on ``file`` (``mode=rw``: never a new empty file in its place), in WAL mode with
    the ``synchronous`` durability; every new connection first checks the file's identity.
    Transactions open with BEGIN, or BEGIN IMMEDIATE under the ``sqlite_immediate`` execution
    option (writers)."""
    path = file.path
    uri = f"file:{quote(str(path))}?mode=rw"

    def _connect():
        # check_same_thread=False: what SQLAlchemy sets for file databases itself (pooled
        # connections move between threads; each is used by one thread at a time).
        try:
            return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        except sqlite3.OperationalError:
            file.check()  # "unable to open database file": was it deleted?
            raise

    engine = create_engine(f"sqlite:///{path}", creator=_connect)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # A connection opened after the file was replaced would read and write the other file.
        file.check()
        # Let SQLAlchemy's "begin" event, not pysqlite, open transactions so writers can take the
        # lock up front (BEGIN IMMEDIATE) instead of failing on a lock upgrade under load.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL (default): every commit is flushed to the disk before the page is acknowledged, so
        # it survives a power cut. NORMAL (WAL): a commit reaches the OS's page cache, which
        # survives a killed server but not a power cut.
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        # Straight to the driver: a statement through SQLAlchemy costs more than BEGIN itself.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def server_engine(url: str) -> Engine:
    """An engine on a database server (PostgreSQL): a pool whose connections are pinged before
    use, so one the server dropped is replaced."""
    return create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)


class SqliteWriteLock:
    """Writers of one SQLite file queued on a lock.

    SQLite lets one writer in at a time and makes the others poll with growing sleeps (up to
    100 ms each), which ruins tail latency under load. Queue writers on a lock instead: a mutex
    between this process's threads and flock() between gunicorn workers, both of which wake the
    next writer the moment the previous one commits.
    """

    def __init__(self, path: Path):
        self.path = path
        self._thread_lock = threading.Lock()
        self._file = None

    @contextmanager
    def held(self):
        with self._thread_lock:
            if self._file is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
                self._file = os.fdopen(fd, "r+b")  # kept until close()
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._thread_lock:
            if self._file is not None:
                self._file.close()
                self._file = None


__all__ = [
    "DatabaseUnavailable",
    "PRIVATE_FILE",
    "SQLITE_SYNCHRONOUS",
    "SqliteFile",
    "SqliteWriteLock",
    "database_url_for",
    "server_engine",
    "sqlite_corrupt",
    "sqlite_engine",
    "sqlite_path",
]
