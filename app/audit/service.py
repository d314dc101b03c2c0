"""Writing and reading the audit log. Entries are written in the caller's transaction, so
an action and its audit entry commit together or not at all."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import audit_log
from app.paging import cut_page, decode_cursor
from app.times import iso


async def record(
    conn: AsyncConnection,
    actor: str,
    action: str,
    target: str | None = None,
    parameters: dict[str, Any] | None = None,
    client: str | None = None,
) -> None:
    """Append one entry."""
    await conn.execute(
        audit_log.insert().values(
            at_us=time.time_ns() // 1000,
            actor=actor,
            action=action,
            target=target,
            parameters=json.dumps(parameters, default=str, sort_keys=True) if parameters else None,
            client=client,
        )
    )


async def page(
    conn: AsyncConnection, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest entries first, and the cursor of the next (older) page; None on the last."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit + 1)
    if cursor:
        query = query.where(audit_log.c.id < decode_cursor(cursor, int)[0])
    rows, next_cursor = cut_page(
        [dict(row._mapping) for row in await conn.execute(query)], limit, lambda row: (row["id"],)
    )
    for row in rows:
        row["at"] = iso(row.pop("at_us"))
        row["parameters"] = json.loads(row["parameters"]) if row["parameters"] else None
    return rows, next_cursor
