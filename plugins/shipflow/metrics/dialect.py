"""The few SQL expressions SQLite and PostgreSQL spell differently, behind one helper: ``Portable``.

Everything else the metrics need is plain SQLAlchemy Core that both engines run as is: group by,
case, window functions (``row_number()``/``count()`` over a partition), ``VALUES``. What differs:

- **A JSON value as text** needs nothing here: SQLAlchemy's own JSON accessors
  (``payload[("conf", "commit_time")].as_string()``) render ``JSON_EXTRACT`` on SQLite and
  ``#>>`` on PostgreSQL.
- **A JSON number** (``number``): ``as_float()`` would make PostgreSQL fail the whole query on one
  value that is not a number, so the type is checked first (``json_type`` / ``json_typeof``);
  anything but a number reads as NULL on both engines.
- **The items of a JSON array or object** (``items``): SQLite's ``json_each`` and PostgreSQL's
  ``json_array_elements`` / ``json_each`` as a table in FROM (implicitly lateral on both). The
  input is checked to be an array (or object) first: PostgreSQL raises on anything else, SQLite
  would iterate it.
- **Seconds since the epoch** (``epoch``): SQLite keeps times as ISO text, read with
  ``julianday``; PostgreSQL ``EXTRACT(EPOCH FROM ...)``.
- **Which index a join uses** (``by_run``): SQLite plans without statistics (nothing runs
  ``ANALYZE`` on the audit store), so for "this release's approvals" it prefers
  ``ix_audit_event_kind_time`` (``kind = ? AND time < ?``: every approval of the whole history, once
  per release) over ``ix_audit_event_dag_id_run_id``. A unary ``+`` on ``kind``, SQLite's documented way
  to take a term out of index use, leaves it the run's index. PostgreSQL has statistics: unchanged.
- **An ISO 8601 text as a time** (``iso8601_epoch``): only text of the shape
  ``YYYY-MM-DD[T ]HH:MM[:SS[.f]][Z|±HH:MM]`` naming a real date and time is read (no offset means
  UTC); anything else is NULL on both engines. The pattern does the checking because PostgreSQL
  has no cast that returns NULL instead of failing the query; SQLite evaluates it with Python's
  ``re`` (SQLAlchemy registers ``REGEXP`` on every pysqlite connection).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, DateTime, Float, String, case, cast, column, extract, func, literal, literal_column
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.selectable import TableValuedAlias

# A real calendar date (leap years included), a time, an optional UTC offset.
_DATE = (
    r"(?:[1-9]\d{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    r"|(?:[1-9]\d(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)-02-29)"
)
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?"
_OFFSET = r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
ISO8601 = rf"^{_DATE}[T ]{_TIME}{_OFFSET}?$"
_HAS_OFFSET = rf"{_OFFSET}$"
_UNIX_EPOCH_JULIAN_DAY = 2440587.5
_SECONDS_PER_DAY = 86400.0


def _sqlite_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{key}"' for key in path)


class JsonItems:
    """The items of a JSON array or object, as a table to join: ``from_`` with ``key`` and per-field readers."""

    def __init__(self, from_: TableValuedAlias, postgres: bool) -> None:
        self.from_ = from_
        self._postgres = postgres

    @property
    def key(self) -> ColumnElement[Any]:
        """An object item's key (for an array, its index on SQLite, absent on PostgreSQL: do not use it)."""
        return self.from_.c.key

    @property
    def is_object(self) -> ColumnElement[bool]:
        return self._type() == "object"

    def _type(self) -> ColumnElement[str]:
        if self._postgres:
            return func.json_typeof(self.from_.c.value)
        return self.from_.c.type

    def text(self, field: str) -> ColumnElement[str]:
        """The item's ``field`` as text, when the item is an object; else NULL."""
        value = self.from_.c.value
        return case((self._type() == "object", value[field].as_string()))

    def number(self, field: str) -> ColumnElement[float]:
        """The item's ``field`` when the item is an object and the field a number; else NULL."""
        value = self.from_.c.value
        if self._postgres:
            is_number = func.json_typeof(value[field]) == "number"
        else:
            is_number = func.json_type(value, _sqlite_path((field,))).in_(("integer", "real"))
        return case((self._type() == "object", case((is_number, value[field].as_float()))))

    def word(self, field: str) -> ColumnElement[str]:
        """The item itself if it is a string, else its ``field`` if it is an object (``"promoted"`` or
        ``{"outcome": "promoted", ...}``); else NULL."""
        value = self.from_.c.value
        if self._postgres:
            as_text = value.op("#>>", return_type=String)(literal_column("'{}'::text[]"))  # the string itself
            return case((self._type() == "string", as_text), (self._type() == "object", value[field].as_string()))
        return case((self._type() == "text", self.from_.c.atom), (self._type() == "object", value[field].as_string()))


class Portable:
    """Builds the dialect-specific expressions for one engine (``Portable(connection.dialect.name)``)."""

    def __init__(self, dialect_name: str) -> None:
        if dialect_name not in ("sqlite", "postgresql"):
            raise ValueError(f"shipflow.metrics runs on SQLite and PostgreSQL, not {dialect_name}")
        self.postgres = dialect_name == "postgresql"

    def number(self, json: ColumnElement[Any], *path: str) -> ColumnElement[float]:
        """The number at ``path`` in ``json``; NULL when missing or not a number."""
        if self.postgres:
            is_number = func.json_typeof(json[path]) == "number"
        else:
            is_number = func.json_type(json, _sqlite_path(path)).in_(("integer", "real"))
        return case((is_number, json[path].as_float()))

    def items(self, json: ColumnElement[Any], *path: str, of: str = "array") -> JsonItems:
        """The items of the array (``of="array"``) or object (``of="object"``) at ``path``: none if it is not one."""
        if self.postgres:
            checked = case((func.json_typeof(json[path]) == of, json[path]))
            if of == "array":
                from_ = func.json_array_elements(checked).table_valued(column("value", JSON))
            else:
                from_ = func.json_each(checked).table_valued(column("key", String), column("value", JSON))
        else:
            kind = func.json_type(json, _sqlite_path(path))
            checked = case((kind == of, func.json_extract(json, _sqlite_path(path))))
            from_ = func.json_each(checked).table_valued(
                column("key", String), column("value", JSON), column("type", String), column("atom")
            )
        return JsonItems(from_, self.postgres)

    def by_run(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """``column`` as a term no index is chosen for on SQLite (``+kind``): for joins from a run to its
        own events, which must go through the (dag_id, run_id) index. The same column on PostgreSQL."""
        if self.postgres:
            return column
        return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)

    def epoch(self, timestamp: ColumnElement[Any]) -> ColumnElement[float]:
        """Seconds since 1970-01-01 UTC of a stored time (SQLite keeps UTC text, PostgreSQL timestamptz)."""
        if self.postgres:
            return extract("epoch", timestamp).cast(Float)
        return (func.julianday(timestamp) - _UNIX_EPOCH_JULIAN_DAY) * _SECONDS_PER_DAY

    def iso8601_epoch(self, text: ColumnElement[str]) -> ColumnElement[float]:
        """Seconds since the epoch of an ISO 8601 text (see the module doc for the shape); NULL otherwise."""
        if self.postgres:
            in_utc = text + case((text.regexp_match(_HAS_OFFSET), literal("")), else_=literal("Z"))
            seconds = extract("epoch", cast(in_utc, DateTime(timezone=True))).cast(Float)
            return case((text.regexp_match(ISO8601), seconds))
        return case(
            (text.regexp_match(ISO8601), (func.julianday(text) - _UNIX_EPOCH_JULIAN_DAY) * _SECONDS_PER_DAY)
        )

