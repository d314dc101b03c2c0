"""Creating, listing, revoking and checking API tokens. Only SHA-256 hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import api_tokens
from app.errors import InvalidInputError, NotFoundError

TOKEN_PREFIX = "cdr_"


class Scope(StrEnum):
    """What a token may do."""

    ADMIN = "admin"  # everything
    BILLING = "billing"  # read CDRs, runs and exports; create and download exports


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the token's name and scope."""

    name: str
    scope: Scope


def hash_token(token: str) -> str:
    """The stored form of a token. Tokens are long and random, so a plain SHA-256 suffices
    (no salt or slow hash needed, unlike passwords)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(conn: AsyncConnection, name: str, scope: Scope) -> str:
    """Create a token; the plaintext is returned once and never stored."""
    if not name.strip():
        raise InvalidInputError("a token needs a name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        async with conn.begin_nested():
            await conn.execute(
                api_tokens.insert().values(
                    name=name,
                    scope=scope.value,
                    token_hash=hash_token(token),
                    created_us=time.time_ns() // 1000,
                )
            )
    except IntegrityError as exc:
        raise InvalidInputError(f"a token named {name!r} exists already") from exc
    return token


async def list_tokens(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every token's name, scope and dates (never the token)."""
    result = await conn.execute(
        select(
            api_tokens.c.name,
            api_tokens.c.scope,
            api_tokens.c.created_us,
            api_tokens.c.revoked_us,
            api_tokens.c.last_used_us,
        ).order_by(api_tokens.c.name)
    )
    return [dict(row._mapping) for row in result]


async def revoke_token(conn: AsyncConnection, name: str) -> None:
    """Revoke a token by name; it stops working at once."""
    result = await conn.execute(
        update(api_tokens)
        .where(api_tokens.c.name == name, api_tokens.c.revoked_us.is_(None))
        .values(revoked_us=time.time_ns() // 1000)
    )
    if result.rowcount == 0:
        raise NotFoundError(f"no active token named {name!r}")


async def authenticate(conn: AsyncConnection, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token; None otherwise."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = (
        await conn.execute(
            select(api_tokens.c.name, api_tokens.c.scope).where(
                api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_us.is_(None)
            )
        )
    ).first()
    return None if row is None else Principal(str(row[0]), Scope(row[1]))
