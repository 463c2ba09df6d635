"""One results database as the app uses it: ORM sessions for the experimenter's pages, the fast
path (:mod:`.prepared`) for the participants', and its health."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from ..errors import StorageError
from .engine import (
    SQLITE_SYNCHRONOUS,
    DatabaseUnavailable,
    SqliteFile,
    SqliteWriteLock,
    server_engine,
    sqlite_corrupt,
    sqlite_engine,
    sqlite_path,
)
from .prepared import FastConnection, PreparedStatements, run_transaction
from .schema import SchemaInfo, create_or_upgrade

log = logging.getLogger(__name__)


class Storage:
    """One database: an engine, session factories for reading and for writing, and the fast path.

    One access style per request: the participants' requests run Core statements through
    :meth:`run_fast` only; the experimenter's pages and the admin logins use ORM sessions
    (:meth:`reading`, :meth:`writing`) only.
    """

    def __init__(self, url: str, sqlite_synchronous: str = "full"):
        if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise StorageError(f"sqlite_synchronous: expected one of {SQLITE_SYNCHRONOUS}, found {sqlite_synchronous!r}")
        self.url = url
        path = sqlite_path(url)
        self._file = SqliteFile(path) if path is not None else None
        if self._file is not None:
            self.engine = sqlite_engine(self._file, sqlite_synchronous)
            write_engine = self.engine.execution_options(sqlite_immediate=True)
        else:
            self.engine = server_engine(url)
            write_engine = self.engine
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_engine = write_engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(write_engine, expire_on_commit=False)
        self._write_lock = SqliteWriteLock(Path(url[len("sqlite:///") :] + ".writelock")) if self.is_sqlite else None
        self._statements = PreparedStatements(self.engine.dialect)
        self._thread_lock = threading.Lock()
        self._local = threading.local()
        self._fast_connections: list = []
        self._dbapi_error = self.engine.dialect.loaded_dbapi.Error

    @contextmanager
    def reading(self):
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def writing(self):
        """A session whose transaction commits on leaving the block (rolls back on error)."""
        if self.is_sqlite:
            self._refuse_if_broken()
            with self._write_lock.held():
                with self._write() as session, session.begin():
                    yield session
                self.check_file()
        else:
            with self._write() as session, session.begin():
                yield session

    @contextmanager
    def writing_core(self):
        """A Core connection whose transaction commits on leaving the block (rolls back on error)."""
        if self.is_sqlite:
            self._refuse_if_broken()
            with self._write_lock.held():
                with self._write_engine.connect() as conn, conn.begin():
                    yield conn
                self.check_file()
        else:
            with self._write_engine.connect() as conn, conn.begin():
                yield conn

    def _fast_connection(self) -> FastConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # One DBAPI connection per thread, kept open: no pool checkout and, on PostgreSQL,
            # no pre-ping round trip per request. Made by the engine, so its connect-time
            # settings (SQLite's WAL, foreign keys, ...) apply; a broken one is replaced below.
            proxied = self.engine.raw_connection()
            dbapi_connection = proxied.dbapi_connection
            proxied.detach()
            if not self.is_sqlite:
                # Statements outside BEGIN commit on their own: a lone SELECT costs no extra
                # round trips.
                dbapi_connection.autocommit = True
            conn = self._local.conn = FastConnection(dbapi_connection, self._statements)
            with self._thread_lock:
                self._fast_connections.append(dbapi_connection)
        return conn

    def _drop_fast_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._thread_lock:
                if conn.dbapi_connection in self._fast_connections:
                    self._fast_connections.remove(conn.dbapi_connection)
            try:
                conn.dbapi_connection.close()
            except self._dbapi_error:
                pass

    def run_fast(self, work: Callable[[FastConnection], object], write: bool):
        """``work(conn)`` on this thread's :class:`FastConnection`; returns what it returns.

        ``write``: inside one transaction that commits before this returns (rolls back if
        ``work`` raises); SQLite writers take the write lock first, as :meth:`writing_core`
        does. Otherwise autocommit: every statement is its own transaction with its own
        snapshot (reads, or a single statement that writes; see ``submissions.submit``).
        Driver errors come out as SQLAlchemy's exceptions (``IntegrityError``, ...). A
        connection found dropped (a PostgreSQL restart) is replaced; ``work`` runs again once on
        the new one unless a transaction's COMMIT had been sent (whether it landed is then
        unknown, and the error goes to the caller: a retried page submission is answered from its
        idempotency key). In autocommit, ``work`` must be safe to run again for the same reason.
        """
        for attempt in range(2):
            conn = self._fast_connection()
            committing = [False]
            try:
                if not write:
                    return work(conn)
                if self.is_sqlite:
                    self._refuse_if_broken()
                    with self._write_lock.held():
                        result = run_transaction(conn, work, "BEGIN IMMEDIATE", committing, self._dbapi_error)
                        # One stat() per write (microseconds): a commit into a deleted or
                        # replaced file is lost at the next restart, so it is not acknowledged.
                        self.check_file()
                        return result
                return run_transaction(conn, work, "BEGIN", committing, self._dbapi_error)
            except self._dbapi_error as exc:
                if self._file is not None:
                    self._file.check_after_error(exc)
                disconnected = self.engine.dialect.is_disconnect(exc, conn.dbapi_connection, None)
                if disconnected:
                    self._drop_fast_connection()
                if disconnected and attempt == 0 and not committing[0]:
                    log.info("database connection lost, reconnecting: %s", exc)
                    continue
                raise DBAPIError.instance(None, None, exc, self._dbapi_error) from exc

    def _refuse_if_broken(self) -> None:
        if self._file is not None:
            self._file.refuse_if_broken()

    def check_file(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the SQLite path still names the file this
        process opened (no-op on PostgreSQL)."""
        if self._file is not None:
            self._file.check()

    def quick_check(self) -> None:
        """:class:`DatabaseUnavailable` (and no page acknowledged from then on) when a SQLite
        file fails ``PRAGMA quick_check``."""
        if self._file is not None:
            self._file.quick_check()

    def health(self, quick_check_every_s: float) -> str | None:
        """None when the database can store pages, else the reason it cannot. SQLite: the file
        identity each time, ``PRAGMA quick_check`` at most every ``quick_check_every_s``.
        PostgreSQL: one round trip."""
        try:
            if self._file is not None:
                self._file.check()
                if self._file.quick_check_due(quick_check_every_s):
                    self._file.quick_check()
            else:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
        except DatabaseUnavailable as exc:
            return str(exc)
        except DBAPIError as exc:
            return f"database {self.engine.url!r} cannot be reached: {exc.orig}"
        return None

    def initialise(self) -> None:
        """Check a SQLite file's integrity, then create or upgrade the tables; several workers
        may call this at the same time. A file that is not a usable database is a
        :class:`StorageError` naming it."""
        # A damaged file found now is one error for the command to print, nothing to log.
        if self._file is not None and (problem := self._file.integrity_problem()) is not None:
            raise StorageError(problem)
        where = self._file.path if self._file is not None else repr(self.engine.url)
        try:
            self._initialise_with_retries()
        except OSError as exc:  # the write-lock file beside the database
            raise StorageError(f"{where}: cannot use the results database there ({exc.strerror or exc})") from exc
        except DBAPIError as exc:
            if isinstance(exc.orig, StorageError):
                raise exc.orig from exc
            if self.is_sqlite and sqlite_corrupt(exc.orig):
                raise StorageError(f"{where}: expected a SQLite results database, found a damaged file "
                                   f"or another kind of file ({exc.orig})") from exc
            raise StorageError(f"{where}: cannot open the results database ({exc.orig})") from exc

    def _initialise_with_retries(self) -> None:
        for attempt in range(5):
            try:
                if self.is_sqlite:
                    # Workers starting together on a new file would otherwise fail at once with
                    # "database is locked": SQLite refuses (without waiting) a reader's upgrade
                    # to writer while another connection writes.
                    with self._write_lock.held():
                        self._initialise_once()
                else:
                    self._initialise_once()
                return
            except (OperationalError, IntegrityError) as exc:
                if attempt == 4:
                    raise StorageError(f"cannot initialise the database {self.engine.url!r}: {exc}") from exc
                log.info("schema initialisation raced another worker, retrying: %s", exc)
                self.engine.dispose()

    def _initialise_once(self) -> None:
        with self.engine.connect() as conn:
            create_or_upgrade(conn, repr(self.engine.url))

    def schema_version(self) -> int:
        with self.reading() as s:
            return int(s.scalar(select(SchemaInfo.value).where(SchemaInfo.key == "schema_version")))

    def dispose(self) -> None:
        with self._thread_lock:
            connections, self._fast_connections = self._fast_connections, []
        for conn in connections:
            try:
                conn.close()
            except self._dbapi_error:
                pass
        self._local = threading.local()
        self.engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()


__all__ = ["Storage"]
