"""What retention keeps and for how long, as plain data: the cut-off instants, the order of
the steps, and how long a pass rests between its transactions (pure: no database)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

DAY_US = 86_400 * 1_000_000
# Rows a transaction deletes at most (of its step's own table; a CDR brings its events and
# messages along): a few milliseconds of the one SQLite writer's time.
BATCH_ROWS = 2000


class Horizon(StrEnum):
    """Which retention setting a step's rows follow."""

    MESSAGES = "messages"  # CDRECON_RETAIN_MESSAGES_DAYS
    BILLING = "billing"  # CDRECON_RETAIN_BILLING_DAYS


class Step(StrEnum):
    """One kind of row a pass prunes, in the order a pass takes them. CDRs come before
    events, so an event whose CDR is kept is never taken for one without a CDR."""

    CDRS = "cdrs"  # with their events, the events' further messages and first_exports rows
    EVENTS = "events"  # events of no CDR, with their messages
    MESSAGES = "messages"  # raw messages that carry no call event
    # PostgreSQL: the day partitions of messages that may carry one, once no call event
    # is left in them (SQLite: those messages went with their CDRs and events)
    CALL_MESSAGES = "call_messages"
    MN_PARTICIPANTS = "mn_participants"
    MN_CONFERENCES = "mn_conferences"
    RUNS = "reconciliations"  # with their items
    BATCHES = "exports"  # with their records
    AUDIT = "audit_log"


HORIZONS: dict[Step, Horizon] = {
    step: Horizon.MESSAGES if step is Step.MESSAGES else Horizon.BILLING for step in Step
}


@dataclass(frozen=True, slots=True)
class Policy:
    """Days each horizon keeps (0: forever) and the rows per transaction."""

    messages_days: float
    billing_days: float
    batch_rows: int = BATCH_ROWS

    def cutoff(self, horizon: Horizon, now_us: int) -> int | None:
        """Rows older than this instant (µs) may go; None when the horizon keeps all."""
        days = self.messages_days if horizon is Horizon.MESSAGES else self.billing_days
        if days <= 0:
            return None
        return now_us - round(days * DAY_US)


@dataclass(slots=True)
class Tally:
    """Rows pruned (or, in a dry run, that would be) per table."""

    rows: Counter[str] = field(default_factory=Counter)
    # PostgreSQL: the message partitions dropped (or that would be), with their rows.
    partitions: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, count: int) -> None:
        """Count `count` rows of `table`."""
        if count:
            self.rows[table] += count

    def merge(self, other: Tally) -> None:
        """Add another tally's rows to this one."""
        self.rows.update(other.rows)
        self.partitions.update(other.partitions)

    @property
    def total(self) -> int:
        """Rows of every table."""
        return sum(self.rows.values())


def listed_ids(message_ids: str) -> list[int]:
    """The message ids a CDR lists (`cdrs.message_ids`: ascending, comma-separated)."""
    return [int(part) for part in message_ids.split(",") if part]


def rest_after(seconds: float) -> float:
    """How long a pass waits after a transaction that took `seconds`: twice as long, and at
    least 20 ms, so that on SQLite the batch writer, waiting for the write lock in its busy
    handler, finds it free and ingest keeps at least two thirds of the writer's time."""
    return max(0.02, 2 * seconds)
