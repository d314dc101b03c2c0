"""The browser session: sign-in with a pasted API token, sign-out, and the check every page
makes for a signed-in principal of the right scope.

The browser keeps the API token in an HttpOnly, SameSite=Strict cookie (`cdrecon_token`),
which `app.auth.deps` also accepts, so the page's download links are the API's own routes.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.deps import StateDep
from app.audit.service import record as audit
from app.auth.deps import COOKIE
from app.auth.tokens import Principal, Scope, authenticate

from .render import render

MAX_FORM_BYTES = 8 * 1024

router = APIRouter(include_in_schema=False)


def login_form(error: str | None = None, status_code: int = 200) -> HTMLResponse:
    return render("login.html", status_code=status_code, error=error)


def forget_token(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def cross_site(request: Request) -> bool:
    """True when the browser says the form was posted from another site (CSRF).
    Sec-Fetch-Site is set by the browser itself, so a proxy rewriting Host does not matter;
    clients that do not send it (curl, scripts) are let through."""
    site = request.headers.get("sec-fetch-site")
    return site is not None and site not in ("same-origin", "none")


async def posted_form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The fields of a urlencoded form body, first value of each (empty when the body is
    not a form or is over `max_bytes`)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > max_bytes:
            return {}
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=50)
    except ValueError:  # more fields than any of our forms has
        return {}
    return {name: values[0] for name, values in fields.items() if values}


async def signed_in(
    request: Request,
    conn: AsyncConnection,
    status_code: int = 200,
    scope: Scope | None = None,
) -> Principal | HTMLResponse:
    """The principal of the session cookie, or the page to answer with instead: the
    sign-in form (`status_code` when there is no cookie; 401 when its token stopped
    working), or 403 when `scope` is given and the principal's scope is another (admin
    may do everything)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return login_form(status_code=status_code)
    principal = await authenticate(conn, token)
    if principal is None:
        response = login_form(
            "The saved token is no longer valid (revoked?). Sign in with another.", 401
        )
        forget_token(response, request)
        return response
    if scope is not None and principal.scope not in (scope, Scope.ADMIN):
        return render(
            "forbidden.html",
            status_code=403,
            principal=principal,
            needed=scope.value,
        )
    return principal


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, state: StateDep) -> Response:
    """Check a pasted API token; keep it in the session cookie and go to the overview."""
    if cross_site(request):
        return login_form("Sign-in must come from this site's own form.", 403)
    token = (await posted_form(request)).get("token", "").strip()
    principal = None
    if token:
        async with state.engine.begin() as conn:
            principal = await authenticate(conn, token)
            if principal is not None:
                client = request.client.host if request.client else None
                await audit(conn, principal.name, "web.login", None, None, client)
    if principal is None:
        return login_form(
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
    if cross_site(request):
        return login_form("Sign-out must come from this site's own page.", 403)
    response = RedirectResponse("/", status_code=303)
    forget_token(response, request)
    return response
