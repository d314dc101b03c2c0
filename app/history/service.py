"""MN history in: documents (JSON or CSV) imported whole or not at all, and pulls over REST."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import InvalidInputError
from parsers.history import (
    HistoryFormatError,
    MNConference,
    MNParticipant,
    RecordError,
    parse_document,
    parse_history_time,
)

from .client import Resource
from .repository import HistoryRepository

log = logging.getLogger(__name__)

# Pulls re-read this far behind the checkpoint: the MN may write a record a little after
# a later one (calls ending on different nodes), and re-reading costs only an upsert.
PULL_OVERLAP = timedelta(minutes=10)


class HistoryImportError(InvalidInputError):
    """A document that was rejected, with the reason for each bad record."""

    def __init__(self, source: str, errors: list[RecordError]) -> None:
        self.source = source
        self.errors = errors
        first = errors[0]
        super().__init__(
            f"{source}: {len(errors)} bad record(s); nothing imported. First: record "
            f"{first.row}{f' ({first.record_id})' if first.record_id else ''}"
            f"{f', field {first.field}' if first.field else ''}: {first.reason}"
        )

    def detail(self) -> dict[str, Any]:
        """The JSON error body, with every bad record."""
        return {
            **super().detail(),
            "errors": [
                {"row": e.row, "id": e.record_id, "field": e.field, "reason": e.reason}
                for e in self.errors
            ],
        }


@dataclass(slots=True)
class HistoryImport:
    """What one import stored."""

    source: str
    participants: int = 0
    conferences: int = 0
    errors: list[RecordError] = field(default_factory=list)


def _us(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1_000_000)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def participant_row(record: MNParticipant, source: str, now_us: int) -> dict[str, Any]:
    """The `mn_participants` row of a parsed record."""
    return {
        "id": record.id,
        "call_uuid": record.call_uuid,
        "conversation_id": record.conversation_id,
        "conference_id": record.conference_id,
        "conference_name": record.conference_name,
        "display_name": record.display_name,
        "local_alias": record.local_alias,
        "remote_alias": record.remote_alias,
        "protocol": record.protocol,
        "call_direction": record.call_direction,
        "role": record.role,
        "disconnect_reason": record.disconnect_reason,
        "remote_address": record.remote_address,
        "remote_port": record.remote_port,
        "signalling_node": record.signalling_node,
        "media_node": record.media_node,
        "proxy_node": record.proxy_node,
        "system_location": record.system_location,
        "service_type": record.service_type,
        "service_tag": record.service_tag,
        "call_tag": record.call_tag,
        "vendor": record.vendor,
        "has_media": record.has_media,
        "start_us": _us(record.start_time),
        "end_us": _us(record.end_time),
        "duration": record.duration,
        "record": json.dumps(dict(record.raw), default=_jsonable, ensure_ascii=False),
        "source": source,
        "imported_us": now_us,
    }


def conference_row(record: MNConference, source: str, now_us: int) -> dict[str, Any]:
    """The `mn_conferences` row of a parsed record."""
    return {
        "id": record.id,
        "name": record.name,
        "start_us": _us(record.start_time),
        "end_us": _us(record.end_time),
        "duration": record.duration,
        "participant_count": record.participant_count,
        "service_type": record.service_type,
        "tag": record.tag,
        "record": json.dumps(dict(record.raw), default=_jsonable, ensure_ascii=False),
        "source": source,
        "imported_us": now_us,
    }


async def import_document(
    conn: AsyncConnection, document: bytes | str, source: str
) -> HistoryImport:
    """Store every record of one MN export, or none: a document with any bad record is
    rejected whole (HistoryImportError lists each), so nothing is ever half-imported."""
    try:
        parsed = parse_document(document, filename=source)
    except HistoryFormatError as exc:
        raise InvalidInputError(f"{source}: not MN history: {exc}") from exc
    if parsed.errors:
        raise HistoryImportError(source, parsed.errors)
    now_us = time.time_ns() // 1000
    repository = HistoryRepository.for_connection(conn)
    await repository.upsert_participants(
        conn, [participant_row(p, source, now_us) for p in parsed.participants]
    )
    await repository.upsert_conferences(
        conn, [conference_row(c, source, now_us) for c in parsed.conferences]
    )
    return HistoryImport(source, len(parsed.participants), len(parsed.conferences))


# The MN client's page reader: (resource, filters) -> pages of records.
Pages = Callable[[Resource, Mapping[str, str]], AsyncIterator[list[dict[str, Any]]]]
WindowFilters = Callable[[str, datetime | None, datetime | None], dict[str, str]]


async def pull(
    engine: AsyncEngine,
    pages: Pages,
    url: str,
    window_filters: WindowFilters,
    since: datetime | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> HistoryImport:
    """Pull participant and conference records written since the checkpoint (or `since`).

    Each page is stored in its own transaction together with the checkpoint it reaches, so an
    interrupted pull resumes where it stopped and never skips a record.
    """
    result = HistoryImport(url)
    resources: tuple[Resource, ...] = ("participant", "conference")
    for resource in resources:
        async with engine.begin() as conn:
            saved = await HistoryRepository.for_connection(conn).checkpoint(conn, resource)
        start = since
        if start is None and saved is not None and saved[0] == url:
            start = datetime.fromtimestamp(saved[1] / 1_000_000, UTC) - PULL_OVERLAP
        filters = {**window_filters("end_time", start, None), "order_by": "end_time"}
        async for objects in pages(resource, filters):
            document = json.dumps(objects)
            async with engine.begin() as conn:
                stored = await import_document(conn, document, url)
                ends = [_us(parse_history_time(o.get("end_time"))) for o in objects]
                last = max((e for e in ends if e is not None), default=None)
                if last is not None:
                    await HistoryRepository.for_connection(conn).save_checkpoint(
                        conn, resource, url, last, time.time_ns() // 1000
                    )
            result.participants += stored.participants
            result.conferences += stored.conferences
            if progress is not None:
                progress(resource, len(objects))
    return result
