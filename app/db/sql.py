"""Plain INSERT statements for the bulk paths, in the driver's own parameter style.

SQLAlchemy's per-value processing of executemany parameters costs more than the insert
itself on the ingest path, so bulk writes go straight to the driver. `ON CONFLICT` is the
same syntax on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence


def placeholders(paramstyle: str, count: int) -> str:
    """`?, ?, ?` or `$1, $2, $3` or `%s, %s, %s` for the driver's paramstyle."""
    if paramstyle == "qmark":
        return ", ".join("?" * count)
    if paramstyle == "numeric_dollar":
        return ", ".join(f"${i}" for i in range(1, count + 1))
    if paramstyle == "format":
        return ", ".join(["%s"] * count)
    raise ValueError(f"unsupported DB-API paramstyle {paramstyle!r}")


def insert_sql(
    table: str,
    columns: Sequence[str],
    paramstyle: str,
    *,
    conflict: Sequence[str] = (),
    update: bool = False,
) -> str:
    """INSERT of `columns`; on a conflict over `conflict`, nothing, or (`update`) the new
    values replace the old ones."""
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({placeholders(paramstyle, len(columns))})"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO "
        changed = [c for c in columns if c not in conflict]
        if update and changed:
            sql += "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in changed)
        else:
            sql += "NOTHING"
    return sql
