"""Rendering of the browser pages: the template environment, the pages' security headers,
and the stylesheet and icon they load (served from the package, never from a CDN)."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .overview import SILENT_AFTER, status_label
from .run import ITEMS_PER_PAGE
from .traffic import BUCKET_MINUTES, BUCKETS, HEIGHT, TICKS

HERE = FilePath(__file__).parent
STYLESHEET_URL = "/web/cdrecon.css"
ICON_URL = "/web/cdrecon.svg"

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["count"] = lambda n: f"{n:,}"
templates.filters["status_label"] = status_label
templates.globals.update(
    stylesheet=STYLESHEET_URL,
    icon=ICON_URL,
    default_limit=ITEMS_PER_PAGE,
    silent_minutes=int(SILENT_AFTER.total_seconds() // 60),
    traffic_step=BUCKET_MINUTES,
    traffic_width=BUCKETS,
    traffic_height=HEIGHT,
    traffic_ticks=TICKS,
)
_stylesheet = (HERE / "static" / "cdrecon.css").read_bytes()
_icon = (HERE / "static" / "cdrecon.svg").read_bytes()

# The pages load nothing but their own stylesheet and post forms only to themselves.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A template rendered (autoescaped) into a response with the pages' security headers."""
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def _asset(body: bytes, media_type: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get(STYLESHEET_URL)
async def stylesheet() -> Response:
    """The pages' stylesheet."""
    return _asset(_stylesheet, "text/css; charset=utf-8")


@router.get(ICON_URL)
async def icon() -> Response:
    """The pages' icon (without one the browser asks for /favicon.ico and logs a 404)."""
    return _asset(_icon, "image/svg+xml")
