"""What the MN history API returns."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.errors import ErrorBody

# The most repeated ids an answer lists (`duplicates` counts them all).
DUPLICATES_SHOWN = 100


class HistoryImported(BaseModel):
    """What an upload stored."""

    source: str
    participants: int = Field(description="Participant records stored (each id once).")
    conferences: int = Field(description="Conference records stored (each id once).")
    duplicates: int = Field(
        default=0,
        description="Ids found more than once in the document; each was stored once, its "
        "last copy.",
    )
    duplicate_ids: list[str] = Field(
        default_factory=list, description=f"The first {DUPLICATES_SHOWN} of those ids."
    )
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
