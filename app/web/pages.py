"""HTTP routes of the browser pages: the overview at `/`, a run at `/runs/{id}`, token
sign-in and sign-out.

The browser keeps the API token in an HttpOnly, SameSite=Strict cookie (`cdrecon_token`),
which `app.auth.deps` also accepts, so the page's download links are the API's own routes.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.deps import StateDep
from app.audit.service import record as audit
from app.auth.deps import COOKIE
from app.auth.tokens import Principal, authenticate
from app.paging import InvalidCursor
from app.reconcile.service import RunNotFound

from .explorer import router as explorer_router
from .overview import SILENT_AFTER, load_overview, run_url, status_label
from .run import ITEMS_PER_PAGE, UnknownStatus, load_run_page

HERE = FilePath(__file__).parent
STYLESHEET_URL = "/web/cdrecon.css"
ICON_URL = "/web/cdrecon.svg"
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
    stylesheet=STYLESHEET_URL,
    icon=ICON_URL,
    default_limit=ITEMS_PER_PAGE,
    silent_minutes=int(SILENT_AFTER.total_seconds() // 60),
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


async def _signed_in(
    request: Request, conn: AsyncConnection, status_code: int = 200
) -> Principal | HTMLResponse:
    """The principal of the session cookie, or the sign-in form to answer with instead
    (`status_code` when there is no cookie; 401 when its token stopped working)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return _login_form(status_code=status_code)
    principal = await authenticate(conn, token)
    if principal is None:
        response = _login_form(
            "The saved token is no longer valid (revoked?). Sign in with another.", 401
        )
        _forget_token(response, request)
        return response
    return principal


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, state: StateDep) -> HTMLResponse:
    """The overview for the signed-in token, or the sign-in form."""
    async with state.engine.connect() as conn:
        principal = await _signed_in(request, conn)
        if isinstance(principal, HTMLResponse):
            return principal
        view = await load_overview(conn, principal, state.queued())
    return render("overview.html", view=view)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    request: Request,
    state: StateDep,
    run_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    status: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = ITEMS_PER_PAGE,
) -> HTMLResponse:
    """A run's summary and its records, a page at a time, of one status or all; for any
    token that may read runs (admin and billing)."""
    async with state.engine.connect() as conn:
        principal = await _signed_in(request, conn, status_code=401)
        if isinstance(principal, HTMLResponse):
            return principal
        try:
            view = await load_run_page(conn, run_id, status or None, cursor or None, limit)
        except RunNotFound:
            return _run_error(principal, run_id, f"There is no reconciliation run {run_id}.", 404)
        except UnknownStatus:
            return _run_error(principal, run_id, f"Run {run_id} has no status {status!r}.", 400)
        except InvalidCursor:
            return _run_error(
                principal, run_id, "That page link is not valid; start from the first page.", 400
            )
    return render("run.html", principal=principal, view=view)


def _run_error(principal: Principal, run_id: int, error: str, status_code: int) -> HTMLResponse:
    return render(
        "run_error.html",
        status_code=status_code,
        principal=principal,
        error=error,
        first_url=run_url(run_id) if status_code != 404 else None,
    )


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
