"""What the MN history API returns."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.errors import ErrorBody


class HistoryImported(BaseModel):
    """What an upload stored."""

    source: str
    participants: int
    conferences: int
    as_of: str | None = Field(
        description='When the history is known complete up to ("as of"); null when nothing '
        "tells (no end_time in it: give `as_of`)."
    )
    as_of_basis: str | None = Field(
        description="How it was decided: `operator` or `newest end_time`."
    )


class RecordProblem(BaseModel):
    """Why one record of a rejected document is bad."""

    row: int = Field(description="1-based number of the record in its document.")
    id: str | None = Field(description="The record's `id`, when it has a usable one.")
    field: str | None = Field(description="The field at fault; null for the record as a whole.")
    reason: str


class HistoryRejected(ErrorBody):
    """A document rejected whole, with every bad record (when records were the problem)."""

    errors: list[RecordProblem] = Field(default_factory=list)
