"""The API explorer: Swagger UI at /docs and ReDoc at /redoc, from assets installed with
fastapi-offline, so they work on a network with no internet."""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

ASSETS_URL: Final = "/web/explorer"
OPENAPI_URL: Final = "/openapi.json"
_ASSETS = files("fastapi_offline") / "static"
_TYPES: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}

# Both pages start themselves with an inline script and style with inline CSS; nothing
# they load or fetch may come from anywhere but this service (ReDoc's bundle links a logo
# on its CDN: this keeps the browser from asking for it).
EXPLORER_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


def _explorer(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(EXPLORER_HEADERS)
    return page


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    """Swagger UI over the service's OpenAPI document."""
    return _explorer(
        get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title="cdrecon API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )
    )


@router.get("/redoc", response_class=HTMLResponse)
async def redoc() -> HTMLResponse:
    """ReDoc over the service's OpenAPI document."""
    return _explorer(
        get_redoc_html(
            openapi_url=OPENAPI_URL,
            title="cdrecon API",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
    )


@router.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> Response:
    """One of the explorer's installed files."""
    media_type = _TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, "no such explorer asset")
    return Response(
        (_ASSETS / name).read_bytes(),
        media_type=media_type,
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
