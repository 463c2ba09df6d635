"""Core statements compiled once per database and run on bare DBAPI cursors: the participants'
requests (``Storage.run_fast``) without the per-statement cost of ``Connection.execute``."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from contextlib import closing

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement


class Prepared:
    """A Core statement compiled once for one dialect, run straight on a DBAPI cursor.

    Through ``Connection.execute`` a statement costs about 0.25 ms of Python (cache-key
    generation, events, result objects) beyond the driver's own work: more than the query on a
    small SQLite database. This keeps SQLAlchemy's SQL and its type conversions (JSON, SQLite's
    datetimes and booleans, psycopg's JSON wrapper) and drops the rest. Rows are named tuples.
    """

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, column_keys: list[str] | None = None, many: bool = False
    ):
        # column_keys: an INSERT's columns, when its values come with each execution.
        compiled = statement.compile(dialect=dialect, column_keys=column_keys, for_executemany=many)
        self.sql = compiled.string
        self._defaults = {k: v for k, v in compiled.construct_params(_check=False).items() if v is not None}
        self._order = list(compiled.positiontup) if compiled.positional else None
        self._processors = []
        for bind, name in compiled.bind_names.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self._processors.append((name, proc))
        self._dialect = dialect
        self._column_types = None
        self._result = None
        columns = []
        if getattr(statement, "is_select", False):
            columns = list(statement.selected_columns)
        elif getattr(statement, "is_dml", False):
            columns = list(statement.exported_columns)  # RETURNING
        if columns:
            self._column_types = [c.type.dialect_impl(dialect) for c in columns]
            self._row = namedtuple("Row", [c.key for c in columns])
        self.returns_rows = bool(columns)

    def parameters(self, values: dict):
        p = {**self._defaults, **values}
        for name, proc in self._processors:
            if name in p:
                p[name] = proc(p[name])
        return p if self._order is None else [p[name] for name in self._order]

    def row(self, cursor, raw: tuple | None):
        if raw is None:
            return None
        if self._result is None:
            # Result conversions depend on the driver's column types (psycopg's numeric OIDs).
            self._result = [
                t.result_processor(self._dialect, d[1]) for t, d in zip(self._column_types, cursor.description, strict=True)
            ]
        return self._row(*[v if f is None or v is None else f(v) for f, v in zip(self._result, raw, strict=True)])


class PreparedStatements:
    """The :class:`Prepared` form of each statement run on one database, compiled at its first
    use (the statements are module-level constants, so this stays small)."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._prepared: dict[tuple, Prepared] = {}

    def get(self, statement: ClauseElement, column_keys: list[str] | None = None, many: bool = False) -> Prepared:
        key = (statement, None if column_keys is None else tuple(column_keys), many)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = Prepared(statement, self.dialect, column_keys, many)
        return prepared


class FastConnection:
    """A DBAPI connection running :class:`Prepared` statements (see ``Storage.run_fast``)."""

    def __init__(self, dbapi_connection, statements: PreparedStatements):
        self.dbapi_connection = dbapi_connection
        self.statements = statements

    def first(self, statement: ClauseElement, values: dict):
        """The first row of a SELECT (None: no rows), as a named tuple of its columns' keys."""
        prepared = self.statements.get(statement)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.execute(prepared.sql, prepared.parameters(values))
            return prepared.row(cursor, cursor.fetchone())

    def all(self, statement: ClauseElement, values: dict) -> list:
        """Every row of a SELECT."""
        prepared = self.statements.get(statement)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.execute(prepared.sql, prepared.parameters(values))
            return [prepared.row(cursor, raw) for raw in cursor.fetchall()]

    def insert(self, statement: ClauseElement, row: dict):
        """One row of an ``insert(table)`` whose values are ``row``'s; the RETURNING row if any.
        (Give every column with a Python-side default: they are not filled in here.)"""
        prepared = self.statements.get(statement, sorted(row), many=False)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.execute(prepared.sql, prepared.parameters(row))
            return prepared.row(cursor, cursor.fetchone()) if prepared.returns_rows else None

    def execute(self, statement: ClauseElement, values: dict) -> int:
        """Run an INSERT/UPDATE; returns the number of rows it changed."""
        prepared = self.statements.get(statement)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.execute(prepared.sql, prepared.parameters(values))
            return cursor.rowcount

    def executemany(self, statement: ClauseElement, rows: list[dict]) -> None:
        """One INSERT for many rows (all rows must have the same keys)."""
        prepared = self.statements.get(statement, sorted(rows[0]), many=True)
        with closing(self.dbapi_connection.cursor()) as cursor:
            cursor.executemany(prepared.sql, [prepared.parameters(r) for r in rows])


def run_transaction(conn: FastConnection, work: Callable[[FastConnection], object], begin: str,
                    committing: list[bool], dbapi_error: type[Exception]):
    """``work(conn)`` between ``begin`` and COMMIT (ROLLBACK if it raises); ``committing[0]`` is
    set once COMMIT is sent, after which a lost connection leaves the outcome unknown."""
    cursor = conn.dbapi_connection.cursor()
    try:
        cursor.execute(begin)
        try:
            result = work(conn)
            committing[0] = True
            cursor.execute("COMMIT")
            return result
        except BaseException:
            try:
                cursor.execute("ROLLBACK")  # also after a failed COMMIT, which leaves it open
            except dbapi_error:
                pass
            raise
    finally:
        cursor.close()


__all__ = ["FastConnection", "Prepared", "PreparedStatements", "run_transaction"]
