"""Request dependencies: who is calling, and may they do this."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.deps import RuntimeDep
from app.errors import CdreconError

from .tokens import Principal, Scope, authenticate

COOKIE = "cdrecon_token"


class Unauthenticated(CdreconError):
    """No token, or a token that is wrong or revoked."""

    status = 401
    code = "unauthenticated"


class Forbidden(CdreconError):
    """A valid token whose scope does not allow this."""

    status = 403
    code = "forbidden"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # The web pages keep the token in a cookie set by their login form.
    return request.cookies.get(COOKIE)


async def current_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """The caller, from `Authorization: Bearer <token>`; 401 if there is none or it is bad."""
    token = _bearer(request)
    if not token:
        raise Unauthenticated("missing token: send Authorization: Bearer <token>")
    async with runtime.engine.connect() as conn:
        principal = await authenticate(conn, token)
    if principal is None:
        raise Unauthenticated("invalid or revoked token")
    request.state.principal = principal
    return principal


async def reader(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """Any valid token: admin or billing."""
    return principal


async def admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """An admin token only; 403 for billing."""
    if principal.scope is not Scope.ADMIN:
        raise Forbidden(f"token {principal.name!r} has scope {principal.scope}; this needs admin")
    return principal


ReaderDep = Annotated[Principal, Depends(reader)]
AdminDep = Annotated[Principal, Depends(admin)]
