"""FastAPI dependencies: the runtime and a database connection per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from app.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The service runtime the app was built with."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_connection(runtime: RuntimeDep) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that commits when the request succeeds."""
    async with runtime.engine.begin() as conn:
        yield conn


# scope="function": the transaction commits before the response is sent, so a client that
# got 201 can read what it created at once (and never gets 201 for a failed commit).
ConnectionDep = Annotated[AsyncConnection, Depends(get_connection, scope="function")]
