"""The tokens page (admin only): every API token, a form to create one (its secret shown
once, in that answer alone), and revoking, through the same functions as `cdrecon token`.

A form with a wrong field comes back as 200 with the message beside the field: it is a
page the person corrects, not a failed request (the browser would log a 4xx as an error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.deps import StateDep
from app.audit.service import record as audit
from app.auth.tokens import Principal, Scope, create_token, list_tokens, revoke_token
from app.errors import InvalidInputError, NotFoundError
from app.times import iso

from .moment import Moment
from .render import render
from .session import cross_site, forget_token, login_form, posted_form, signed_in

NAME_MAX = 128  # api_tokens.name

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as the table lists it (never its secret, which is not stored)."""

    name: str
    scope: str
    created: Moment | None
    revoked: Moment | None


@dataclass(frozen=True, slots=True)
class TokenForm:
    """What the create form shows again after a refusal: the fields and what is wrong."""

    name: str = ""
    scope: str = Scope.BILLING.value
    errors: dict[str, str] = field(default_factory=dict)  # field name -> message


def token_row(row: dict[str, Any]) -> TokenRow:
    """A `list_tokens` row for the table."""
    return TokenRow(
        name=str(row["name"]),
        scope=str(row["scope"]),
        created=Moment.of(iso(row["created_us"])),
        revoked=Moment.of(iso(row["revoked_us"])),
    )


def check_form(fields: dict[str, str]) -> tuple[str, Scope] | TokenForm:
    """The name and scope asked for, or the form again with a message per wrong field."""
    name = fields.get("name", "").strip()
    scope_text = fields.get("scope", "")
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the token a name: who or what will use it (e.g. billing-export)."
    elif len(name) > NAME_MAX:
        errors["name"] = f"A name has at most {NAME_MAX} characters."
    try:
        scope = Scope(scope_text)
    except ValueError:
        errors["scope"] = "Choose admin or billing."
        scope = Scope.BILLING
    if errors:
        return TokenForm(name=name[: NAME_MAX * 2], scope=scope_text, errors=errors)
    return name, scope


async def _page(
    conn: AsyncConnection,
    principal: Principal,
    *,
    status_code: int = 200,
    form: TokenForm | None = None,
    created: tuple[str, str, str] | None = None,  # (name, scope, secret)
    notice: str | None = None,
    revoked: str | None = None,
) -> HTMLResponse:
    tokens = [token_row(row) for row in await list_tokens(conn)]
    if any(token.name == revoked and token.revoked for token in tokens):
        notice = f"Token {revoked!r} is revoked."
    return render(
        "tokens.html",
        status_code=status_code,
        principal=principal,
        current="tokens",
        name_max=NAME_MAX,
        tokens=tokens,
        active=sum(1 for token in tokens if token.revoked is None),
        form=form or TokenForm(),
        created=created,
        notice=notice,
    )


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.get("/tokens", response_class=HTMLResponse)
async def tokens_page(
    request: Request, state: StateDep, revoked: str | None = None
) -> HTMLResponse:
    """Every token with its scope and dates, and the form to create one; admin only.
    `revoked` names the token just revoked (the revoke form comes back here)."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401, scope=Scope.ADMIN)
        if isinstance(principal, HTMLResponse):
            return principal
        return await _page(conn, principal, revoked=revoked)


async def _admin_post(request: Request, conn: AsyncConnection) -> Principal | HTMLResponse:
    """The admin behind a form posted from this site, or the page that refuses it."""
    principal = await signed_in(request, conn, status_code=401, scope=Scope.ADMIN)
    if isinstance(principal, HTMLResponse):
        return principal
    if cross_site(request):
        return await _page(conn, principal, status_code=403, notice=_CROSS_SITE)
    return principal


@router.post("/tokens", response_class=HTMLResponse)
async def create(request: Request, state: StateDep) -> HTMLResponse:
    """Create a token; the answer shows its secret, once."""
    async with state.engine.begin() as conn:
        principal = await _admin_post(request, conn)
        if not isinstance(principal, Principal):
            return principal
        checked = check_form(await posted_form(request))
        if isinstance(checked, TokenForm):
            return await _page(conn, principal, form=checked)
        name, scope = checked
        try:
            secret = await create_token(conn, name, scope)
        except InvalidInputError:  # the only refusal left: the name is taken
            taken = f"A token named {name!r} exists already (maybe revoked); choose another name."
            form = TokenForm(name=name, scope=scope.value, errors={"name": taken})
            return await _page(conn, principal, form=form)
        await audit(
            conn, principal.name, "token.create", name, {"scope": scope.value}, _client(request)
        )
        return await _page(conn, principal, created=(name, scope.value, secret))


@router.post("/tokens/revoke", response_class=HTMLResponse)
async def revoke(request: Request, state: StateDep) -> Response:
    """Revoke a token by name; it stops working at once (revoking one's own signs out)."""
    async with state.engine.begin() as conn:
        principal = await _admin_post(request, conn)
        if not isinstance(principal, Principal):
            return principal
        name = (await posted_form(request)).get("name", "")
        try:
            await revoke_token(conn, name)
        except NotFoundError:
            notice = f"There is no active token named {name!r}; the list below is current."
            return await _page(conn, principal, status_code=404, notice=notice)
        await audit(conn, principal.name, "token.revoke", name, None, _client(request))
        if name == principal.name:
            response = login_form(
                f"You revoked {name!r}, the token this browser was signed in with. "
                "Sign in with another.",
                200,
            )
            forget_token(response, request)
            return response
    # Back to the list by GET, so that reloading it does not post the form again.
    return RedirectResponse(f"/tokens?{urlencode({'revoked': name})}", status_code=303)


_CROSS_SITE = "That form was posted from another site; nothing was changed."
