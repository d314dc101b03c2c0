"""The service's error types, mapped to HTTP responses in one place (`install_handlers`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error response's body."""

    error: str
    detail: str


# Documented on every /api/v1 route.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or a wrong or revoked one"},
    403: {"model": ErrorBody, "description": "The token's scope does not allow this"},
}


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


def install_handlers(app: FastAPI) -> None:
    """Turn every CdreconError into its JSON response."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CdreconError)
        return JSONResponse(exc.detail(), status_code=exc.status)

    app.add_exception_handler(CdreconError, handle)
