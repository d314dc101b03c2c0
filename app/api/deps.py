"""FastAPI dependencies: the service state the app was built with, a connection per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from .state import ServiceState


def get_state(request: Request) -> ServiceState:
    """The service state the app was built with."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_connection(state: StateDep) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that commits when the request succeeds."""
    async with state.engine.begin() as conn:
        yield conn


# scope="function": the transaction commits before the response is sent, so a client that
# got 201 can read what it created at once (and never gets 201 for a failed commit).
ConnectionDep = Annotated[AsyncConnection, Depends(get_connection, scope="function")]
