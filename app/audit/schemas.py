"""What the audit log API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    """One action: who (token name), what, on what, with which parameters, from where, when."""

    id: int
    at: datetime
    actor: str = Field(description="The token's name, or `cli`.")
    action: str = Field(examples=["export.create"])
    target: str | None = Field(description="The run, batch or source acted on.")
    parameters: dict[str, Any] | None
    client: str | None = Field(description="The client's address.")
