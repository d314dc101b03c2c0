"""What the alerts API returns."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from .policy import Kind, State


class Alert(BaseModel):
    """A gap the watch found (records syslog saw that the MN lacks), or a restore (records
    the MN held at an earlier pull and no longer returns), from first seen to cleared."""

    model_config = ConfigDict(populate_by_name=True)

    id: int
    kind: Kind = Field(description="`gap` (a watch run) or `restore` (the pull's check).")
    state: State = Field(description="`open` until exported or acknowledged, then `cleared`.")
    first_seen: datetime
    updated: datetime = Field(description="When it last grew or changed state.")
    cleared: datetime | None
    cleared_by: str | None = Field(
        description="`exported` when every record is in an export batch, `found on the MN` "
        "when the MN wrote every record of a gap after all, else who acknowledged."
    )
    from_: datetime = Field(alias="from", description="The first record's call end.")
    until: datetime = Field(description="The last record's call end.")
    last_kept_before: datetime | None = Field(
        description="The last record the MN kept before the gap, within the window looked at."
    )
    first_kept_after: datetime | None
    count: int = Field(description="Records in the alert.")
    nodes: list[str] = Field(description="The nodes that logged them (gaps).")
    run_id: int | None = Field(description="The newest watch run that saw the gap.")
    source: str | None = Field(description="The MN pulled from (restores).")


class AlertRecord(BaseModel):
    """One record of an alert: a CDR id (gap) or an MN record id (restore), and its call end."""

    id: str
    time: datetime
