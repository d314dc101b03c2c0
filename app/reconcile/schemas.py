"""What the reconciliation API takes and returns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from .matching import Status
from .tolerance import MAX_SECONDS, parse_tolerance

Tolerance = Annotated[
    float,
    BeforeValidator(parse_tolerance),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
                {"type": "string", "examples": ["2s", "500ms", "1.5"]},
            ],
            "description": "Seconds, or a duration like `2s`, `500ms`, `1m` (at most an hour), "
            "as `cdrecon reconcile --tolerance` takes it.",
        }
    ),
]


class RunRequest(BaseModel):
    """A half-open window [from, until) and the matching tolerance."""

    from_: datetime = Field(alias="from", examples=["2026-11-20T00:00:00Z"])
    until: datetime = Field(examples=["2026-11-27T00:00:00Z"])
    tolerance: Tolerance = 2.0
    force: bool = Field(
        False, description="Run even when no MN history covers the window; the summary says so."
    )


class Counts(BaseModel):
    """How many CDRs and MN records a run gave each status (a matched pair counts once)."""

    matched: int
    missing_in_mn: int = Field(description="Lost by the MN: the records to recover.")
    missing_in_syslog: int
    mismatched: int
    outside_retention: int
    after_history: int = Field(
        description='Ended after the MN history\'s "as of": not known lost, never exported as lost.'
    )
    open: int
    excluded: int
    unconfirmed: int = Field(
        0,
        description="Not on the MN as far as its history was read, but that read was an "
        "incremental pull that could miss a record the MN wrote late: neither exported nor "
        "alerted until a confirming pull reads its time again (a new run then says).",
    )


class Gap(BaseModel):
    """A run of records missing on the MN between records it kept: a restore gap."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    until: datetime
    count: int
    nodes: list[str]
    last_kept_before: datetime | None
    first_kept_after: datetime | None


class Bounds(BaseModel):
    """The first and last record time of one side's input."""

    first: datetime | None
    last: datetime | None


class Inputs(BaseModel):
    """What a run read."""

    cdrs: int
    mn_records: int
    pairs: int
    syslog: Bounds
    mn: Bounds
    mn_retention_from: datetime | None = Field(description="The oldest MN record stored.")


class Record(BaseModel):
    """The oldest MN record held, and where it came from."""

    time: datetime
    source: str


class AsOf(BaseModel):
    """The newest instant the MN history is known complete up to, and where it came from."""

    time: datetime
    source: str = Field(description="The file, upload or MN URL.")
    kind: str = Field(description="`file`, `upload` or `pull`.")
    basis: str = Field(description="`operator`, `newest end_time`, `file mtime` or `pull start`.")


class Coverage(BaseModel):
    """The MN history a run compared against."""

    oldest_record: Record | None
    as_of: AsOf | None
    forced: bool = Field(description="Run although no MN history covered the window.")
    warning: str | None = Field(description="Why it would have been refused, when forced.")


class RunSummary(BaseModel):
    """A reconciliation run: its window, counts by status, restore gaps and inputs."""

    model_config = ConfigDict(populate_by_name=True)

    id: int
    created_at: datetime
    created_by: str | None
    from_: datetime = Field(alias="from")
    until: datetime
    tolerance_seconds: float
    counts: Counts
    gaps: list[Gap]
    inputs: Inputs
    coverage: Coverage


class Item(BaseModel):
    """A CDR, an MN record, or a pair of both, with its status in a run."""

    seq: int = Field(description="Position in the run.")
    status: Status
    cdr_id: str | None
    mn_id: str | None
    matched_by: str | None = Field(
        description="`id`, `call_uuid` or `heuristic` (conference, alias and start time); "
        "null when unmatched."
    )
    time: datetime | None
    conference_name: str | None
    node: str | None
    differences: dict[str, dict[str, Any]] | None = Field(
        description="For a mismatched pair: each field's `syslog` and `mn` value."
    )
