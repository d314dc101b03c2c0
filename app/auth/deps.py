"""Request dependencies: who is calling, and may they do this."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.deps import StateDep
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


# Declares the scheme in the OpenAPI document (the "Authorize" button at /docs); the check
# itself is ours, so that every refusal has the same JSON body.
bearer_scheme = HTTPBearer(auto_error=False, description="An API token from `cdrecon token create`")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def current_principal(
    request: Request, state: StateDep, credentials: BearerDep = None
) -> Principal:
    """The caller, from `Authorization: Bearer <token>` (or the web page's cookie); 401 if
    there is none or it is bad."""
    token = credentials.credentials if credentials else request.cookies.get(COOKIE)
    if not token:
        raise Unauthenticated("missing token: send Authorization: Bearer <token>")
    async with state.engine.connect() as conn:
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
