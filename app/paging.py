"""Keyset paging of every API list: one page shape and one opaque cursor encoding."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from app.errors import CdreconError

T = TypeVar("T")
Key = tuple[int | str, ...]
_INT64 = (-(2**63), 2**63 - 1)  # what the database's keys can hold


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next, until it is null."""

    items: list[T]
    next_cursor: str | None = Field(description="Null on the last page.")


class InvalidCursor(CdreconError):
    """A cursor this service did not hand out."""

    status = 400
    code = "invalid_cursor"


def encode_cursor(key: Key) -> str:
    """The opaque cursor of a keyset position (the sort key of the last row given)."""
    text = json.dumps(list(key), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type[int] | type[str]) -> tuple[Any, ...]:
    """The keyset position behind `cursor`, whose parts have `types`; InvalidCursor if it is
    not one of ours."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        # bool is an int to isinstance, and never a key.
        or not all(type(part) is kind for part, kind in zip(key, types, strict=True))
        or any(type(part) is int and not _INT64[0] <= part <= _INT64[1] for part in key)
    ):
        raise InvalidCursor(f"invalid cursor {cursor[:64]!r}: pass back a next_cursor as given")
    return tuple(key)


def cut_page(rows: Sequence[T], limit: int, key: Callable[[T], Key]) -> tuple[list[T], str | None]:
    """The first `limit` rows of `rows` (fetched with `limit + 1`, so that one more tells a
    next page exists) and the cursor of that next page, or None on the last."""
    if len(rows) <= limit:
        return list(rows), None
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1]))
