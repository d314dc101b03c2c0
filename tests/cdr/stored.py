"""What the CDR tests read back from a real database."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr.extract import may_carry_call_event
from app.db.models import cdrs
from app.db.partitions import partitioned


async def legs(engine: AsyncEngine) -> dict[str, tuple[object, ...]]:
    """Each stored leg's state, duration, disconnect reason and protocol, by participant id:
    the shape of `tests.cdr.scenario.EXPECTED`."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                cdrs.c.id, cdrs.c.state, cdrs.c.duration, cdrs.c.disconnect_reason, cdrs.c.protocol
            )
        )
        return {row[0]: tuple(row[1:]) for row in rows}


async def count(engine: AsyncEngine, table: object) -> int:
    """Rows in `table`."""
    async with engine.connect() as conn:
        query = select(func.count()).select_from(table)  # type: ignore[arg-type]
        return int((await conn.execute(query)).scalar_one())


def deferrable(engine: AsyncEngine, frames: list[bytes]) -> int:
    """How many of `frames` a deferred write lists for the catch-up: on PostgreSQL only
    those that may carry a call event (`Deriver.listed`)."""
    if not partitioned(engine):
        return len(frames)
    return sum(1 for frame in frames if may_carry_call_event(frame))
