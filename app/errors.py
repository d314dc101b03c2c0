"""The service's error types, and every error response's one shape, `{"error", "detail"}`,
set up in one place (`install_handlers`)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from app.db.engine import is_busy


class ErrorBody(BaseModel):
    """Every error response's body."""

    error: str = Field(description="A stable code for programs, e.g. `not_found`.")
    detail: str = Field(description="What was wrong, for people.")


# Documented on every /api/v1 route: the 422 entry also replaces FastAPI's own validation
# error schema, which this service never answers with.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or a wrong or revoked one"},
    403: {"model": ErrorBody, "description": "The token's scope does not allow this"},
    422: {"model": ErrorBody, "description": "The request is invalid; nothing was changed"},
    "4XX": {"model": ErrorBody, "description": "Another refusal (unknown id, bad cursor, …)"},
    503: {
        "model": ErrorBody,
        "description": "`database_busy`: no database connection or lock came in time (ingest "
        "has priority); nothing was changed. Retry after the `Retry-After` seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    "5XX": {"model": ErrorBody, "description": "The service failed; the reason is in its log"},
}


def not_found(description: str) -> dict[int | str, dict[str, Any]]:
    """The documented 404 of a route that looks something up."""
    return {404: {"model": ErrorBody, "description": description}}


class CdreconError(Exception):
    """Base of every error a request can cause; `status` is its HTTP status."""

    status = 400
    code = "bad_request"

    def detail(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": self.code, "detail": str(self)}


class NotFoundError(CdreconError):
    """The thing asked for does not exist."""

    status = 404
    code = "not_found"


class InvalidInputError(CdreconError):
    """The request or upload was understood but is wrong; nothing was changed."""

    status = 422
    code = "invalid_input"


class ConflictError(CdreconError):
    """The request cannot be done in the present state of the data; nothing was changed."""

    status = 409
    code = "conflict"


class PayloadTooLargeError(CdreconError):
    """The request body is larger than the service takes; none of it was used."""

    status = 413
    code = "payload_too_large"


class DatabaseBusyError(CdreconError):
    """No database connection or lock came within CDRECON_REQUEST_DATABASE_WAIT: the ingest
    writer has priority. Nothing was changed; the same request later may well work."""

    status = 503
    code = "database_busy"


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A response in the one error shape."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    """`where: what` for each problem, e.g. `query.limit: Input should be greater than 0`."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else error["msg"])
    return "; ".join(problems) or "invalid request"


class RefuseNul:
    """ASGI middleware: a NUL in a request's path or query string is refused with 422 before
    any route sees it. No stored text holds NUL (PostgreSQL refuses it outright), so such a
    value can name nothing, and letting it reach a query would answer 500 on PostgreSQL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")
        ):
            answer = error_response(
                422, InvalidInputError.code, "a request's path and parameters may not hold NUL"
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_handlers(app: FastAPI, *, retry_after: int = 2) -> None:
    """Answer every error, ours, FastAPI's and Starlette's, in the one shape; a busy
    database with 503 and `Retry-After: <retry_after>` seconds; NUL refused up front."""
    app.add_middleware(RefuseNul)

    async def cdrecon_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CdreconError)
        headers = {"Retry-After": str(retry_after)} if isinstance(exc, DatabaseBusyError) else None
        return JSONResponse(exc.detail(), status_code=exc.status, headers=headers)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        try:
            phrase = HTTPStatus(exc.status_code).phrase
        except ValueError:
            phrase = "error"
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers)

    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, InvalidInputError.code, _validation_detail(exc))

    async def database_error(_request: Request, exc: Exception) -> JSONResponse:
        if not is_busy(exc):
            raise exc  # a real failure: the 500 below, with its traceback in the log
        return error_response(
            DatabaseBusyError.status,
            DatabaseBusyError.code,
            "the database is busy with ingest; nothing was changed: try again shortly",
            {"Retry-After": str(retry_after)},
        )

    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback itself after this answer.
        return error_response(500, "internal_error", "internal error; see the service log")

    app.add_exception_handler(CdreconError, cdrecon_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(Exception, internal_error)
