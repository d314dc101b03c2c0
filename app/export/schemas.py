"""What the export API returns: a batch's manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class RunSource(BaseModel):
    """A batch made of a reconciliation run's records of one status."""

    run_id: int
    status: str


class WindowSource(BaseModel):
    """A batch made of the closed CDRs starting in [from_us, until_us) (epoch microseconds)."""

    from_us: int | None
    until_us: int | None


class Digests(BaseModel):
    """The sha256 of each download format: a download always has these bytes."""

    csv: str
    jsonl: str


class Manifest(BaseModel):
    """An export batch: what went into it, how much, and the digest of each format."""

    id: str = Field(examples=["exp_20261127_1a2b3c4d5e6f"])
    created_by: str
    created_at: datetime
    source: RunSource | WindowSource
    filters: dict[str, Any] = Field(description="The filters the batch was made with.")
    record_count: int
    total_duration: int = Field(description="Seconds, summed over the records.")
    first_start_time: datetime | None
    last_start_time: datetime | None
    sha256: Digests
