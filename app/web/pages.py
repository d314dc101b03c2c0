"""HTTP routes of the browser pages: the overview at `/`, token sign-in and sign-out.

The browser keeps the API token in an HttpOnly, SameSite=Strict cookie (`cdrecon_token`),
which `app.auth.deps` also accepts, so the page's download links are the API's own routes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.api.deps import StateDep
from app.audit.service import record as audit
from app.auth.deps import COOKIE
from app.auth.tokens import authenticate

from .explorer import router as explorer_router
from .overview import SILENT_AFTER, load_overview, status_label

HERE = Path(__file__).parent
STYLESHEET_URL = "/web/cdrecon.css"
MAX_FORM_BYTES = 8 * 1024

router = APIRouter(include_in_schema=False)
router.include_router(explorer_router)

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
    stylesheet=STYLESHEET_URL, silent_minutes=int(SILENT_AFTER.total_seconds() // 60)
)
_stylesheet = (HERE / "static" / "cdrecon.css").read_bytes()

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


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A template rendered (autoescaped) into a response with the pages' security headers."""
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def _login_form(error: str | None = None, status_code: int = 200) -> HTMLResponse:
    return render("login.html", status_code=status_code, error=error)


def _forget_token(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def _cross_site(request: Request) -> bool:
    """True when the browser says the form was posted from another site (login CSRF).
    Sec-Fetch-Site is set by the browser itself, so a proxy rewriting Host does not matter;
    clients that do not send it (curl, scripts) are let through."""
    site = request.headers.get("sec-fetch-site")
    return site is not None and site not in ("same-origin", "none")


async def _posted_token(request: Request) -> str:
    """The `token` field of a urlencoded form body (read up to MAX_FORM_BYTES)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return ""
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_FORM_BYTES:
            return ""
    fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    return (fields.get("token") or [""])[0].strip()


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, state: StateDep) -> HTMLResponse:
    """The overview for the signed-in token, or the sign-in form."""
    token = request.cookies.get(COOKIE)
    if not token:
        return _login_form()
    async with state.engine.connect() as conn:
        principal = await authenticate(conn, token)
        if principal is None:
            response = _login_form(
                "The saved token is no longer valid (revoked?). Sign in with another.", 401
            )
            _forget_token(response, request)
            return response
        view = await load_overview(conn, principal, state.queued())
    return render("overview.html", view=view)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, state: StateDep) -> Response:
    """Check a pasted API token; keep it in the session cookie and go to the overview."""
    if _cross_site(request):
        return _login_form("Sign-in must come from this site's own form.", 403)
    token = await _posted_token(request)
    principal = None
    if token:
        async with state.engine.begin() as conn:
            principal = await authenticate(conn, token)
            if principal is not None:
                client = request.client.host if request.client else None
                await audit(conn, principal.name, "web.login", None, None, client)
    if principal is None:
        return _login_form(
            "That token is not valid: it is mistyped, revoked, or from another cdrecon.", 401
        )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the session cookie and go back to the sign-in form."""
    if _cross_site(request):
        return _login_form("Sign-out must come from this site's own page.", 403)
    response = RedirectResponse("/", status_code=303)
    _forget_token(response, request)
    return response


@router.get(STYLESHEET_URL)
async def stylesheet() -> Response:
    """The pages' stylesheet."""
    return Response(
        _stylesheet,
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )
