"""The CDR pages: `/cdrs` finds CDRs by window, conference, alias, protocol and state, a
page at a time, and `/cdrs/{id}` shows one with its events and the raw syslog lines behind
them; read through the same queries as the API's `/api/v1/cdrs`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.deps import StateDep
from app.auth.tokens import Principal, Scope
from app.cdr import queries
from app.cdr.schemas import Cdr
from app.paging import InvalidCursor
from app.times import iso, to_us

from .moment import Moment
from .overview import hms
from .render import render
from .session import signed_in

CDRS_PER_PAGE = 50
DEFAULT_WINDOW = timedelta(hours=24)  # what the page opens on, before any search
STATES = ("open", "closed", "failed", "excluded")
# Pexip's protocol names, offered as suggestions; any text is accepted (caseless).
PROTOCOLS = ("SIP", "H323", "WebRTC", "RTMP", "MSSIP", "Teams", "GMS", "API")
TEXT_MAX = 255

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class SearchForm:
    """The search fields as asked (shown again in the form) and what is wrong with them."""

    start: str = ""  # as the datetime-local input shows it (UTC, no zone)
    until: str = ""
    conference: str = ""
    alias: str = ""
    protocol: str = ""
    state: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # field name -> message

    def query(self) -> dict[str, str]:
        """The form as URL query parameters (an empty window bound is kept: it means none)."""
        fields = {"from": self.start, "until": self.until}
        fields |= {
            name: value
            for name, value in (
                ("conference", self.conference),
                ("alias", self.alias),
                ("protocol", self.protocol),
                ("state", self.state),
            )
            if value
        }
        return fields


@dataclass(frozen=True, slots=True)
class Filters:
    """A checked search, as the query takes it."""

    from_us: int | None
    until_us: int | None
    conference: str | None
    alias: str | None
    protocol: str | None
    state: str | None


@dataclass(frozen=True, slots=True)
class CdrRow:
    """One CDR in the results table."""

    id: str
    url: str
    start: Moment | None
    end: Moment | None
    conference: str | None
    participant: str | None
    remote_alias: str | None
    protocol: str | None
    direction: str | None
    node: str | None
    duration: str | None
    state: str


@dataclass(frozen=True, slots=True)
class CdrSearch:
    """The search page: the form, one page of results and the links around it."""

    form: SearchForm
    rows: list[CdrRow]
    defaulted: bool  # the window is the page's default, not one asked for
    next_url: str | None
    first_url: str | None
    json_url: str | None  # the same search on the API (None when the form has errors)


@dataclass(frozen=True, slots=True)
class ReceivedLine:
    """One raw syslog message as it arrived."""

    id: int
    received: Moment | None
    node: str | None  # the syslog HOSTNAME
    transport: str
    peer: str | None  # address:port, TLS subject, or the imported file (admin only)
    text: str
    truncated: bool


@dataclass(frozen=True, slots=True)
class EventRow:
    """One call event of a CDR, with the lines it was received in."""

    time: Moment | None
    node: str | None
    name: str | None
    message: str | None
    fields: list[tuple[str, str]]
    lines: list[ReceivedLine]


@dataclass(frozen=True, slots=True)
class CdrPage:
    """One CDR: its fields in MN names, its events, the raw lines behind them."""

    id: str
    state: str
    conference: str | None
    facts: list[tuple[str, str, Moment | None]]  # (label, text, time when it is one)
    events: list[EventRow]
    json_url: str
    conference_url: str | None
    peers_shown: bool


def cdr_url(participant_id: str) -> str:
    """The page of one CDR."""
    return f"/cdrs/{quote(participant_id, safe='')}"


def search_url(form: SearchForm, cursor: str | None = None, limit: int | None = None) -> str:
    """The search page for `form`, at `cursor`."""
    query = form.query()
    if cursor:
        query["cursor"] = cursor
    if limit:
        query["limit"] = str(limit)
    return f"/cdrs?{urlencode(query)}"


def _input_time(moment: datetime) -> str:
    """As a datetime-local input shows it: UTC, to the second, no zone."""
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()


def _parse_time(text: str) -> datetime:
    """A bound as typed (UTC unless it says otherwise), to the second like the form's input."""
    moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(microsecond=0)


def check_search(asked: dict[str, str | None], now: datetime) -> tuple[SearchForm, Filters | None]:
    """The form as asked and its filters, or None with a message per wrong field. With no
    field asked at all, the last DEFAULT_WINDOW; a blank bound means none."""
    if all(value is None for value in asked.values()):
        start = _input_time(now - DEFAULT_WINDOW)
        return SearchForm(start=start), Filters(to_us(_parse_time(start)), None, *[None] * 4)
    text = {name: (value or "").strip()[: TEXT_MAX * 2] for name, value in asked.items()}
    errors: dict[str, str] = {}
    bounds: dict[str, int | None] = {}
    for name in ("from", "until"):
        bounds[name] = None
        if text[name]:
            try:
                moment = _parse_time(text[name])
            except ValueError:
                errors[name] = "Give a date and time, e.g. 2026-11-26T10:00 (UTC)."
                continue
            bounds[name] = to_us(moment)
            text[name] = _input_time(moment)  # what the form's input can show
    start_us, until_us = bounds["from"], bounds["until"]
    if start_us is not None and until_us is not None and until_us <= start_us:
        errors["until"] = "Until must be later than From."
    for name in ("conference", "alias", "protocol"):
        if len(text[name]) > TEXT_MAX:
            errors[name] = f"At most {TEXT_MAX} characters."
    if text["state"] and text["state"] not in STATES:
        errors["state"] = "Choose a state from the list."
    form = SearchForm(
        start=text["from"],
        until=text["until"],
        conference=text["conference"],
        alias=text["alias"],
        protocol=text["protocol"],
        state=text["state"],
        errors=errors,
    )
    if errors:
        return form, None
    return form, Filters(
        start_us,
        until_us,
        text["conference"] or None,
        text["alias"] or None,
        text["protocol"] or None,
        text["state"] or None,
    )


def cdr_row(row: dict[str, Any]) -> CdrRow:
    """A `cdrs` table row for the results table."""
    duration = row.get("duration")
    return CdrRow(
        id=str(row["id"]),
        url=cdr_url(str(row["id"])),
        start=Moment.of(iso(row.get("start_us"))),
        end=Moment.of(iso(row.get("end_us"))),
        conference=row.get("conference_name"),
        participant=row.get("display_name"),
        remote_alias=row.get("remote_alias"),
        protocol=row.get("protocol"),
        direction=row.get("call_direction"),
        node=row.get("node"),
        duration=hms(duration) if isinstance(duration, int) else None,
        state=str(row["state"]),
    )


def _peer(row: dict[str, Any]) -> str | None:
    if row.get("source"):
        return f"file {row['source']}"
    if row.get("peer_host") is None:
        return None
    peer = str(row["peer_host"])
    if row.get("peer_port"):
        peer = f"{peer}:{row['peer_port']}"
    if row.get("tls_subject"):
        peer = f"{peer} ({row['tls_subject']})"
    return peer


def received_line(row: dict[str, Any], peers_shown: bool) -> ReceivedLine:
    """A raw message row (`queries.received_messages`) as shown; the sender's address only
    for admin tokens, as on the overview."""
    text = bytes(row["raw"]).decode("utf-8", errors="replace").rstrip("\r\n")
    return ReceivedLine(
        id=int(row["id"]),
        received=Moment.of(iso(row["received_us"])),
        node=row.get("hostname"),
        transport=str(row["transport"]),
        peer=_peer(row) if peers_shown else None,
        text=text,
        truncated=bool(row.get("truncated")),
    )


def _fact(name: str, value: Any) -> tuple[str, str, Moment | None]:
    label = name.replace("_", " ")
    if isinstance(value, datetime):
        moment = Moment.of(value)
        return label, moment.text if moment else "", moment
    if value is None or value == "":
        return label, "\N{EN DASH}", None
    if name == "duration" and isinstance(value, int):
        return label, f"{hms(value)} ({value:,} s)", None
    return label, str(value), None


def cdr_page(
    leg: dict[str, Any],
    leg_events: list[dict[str, Any]],
    received: list[dict[str, Any]],
    peers_shown: bool,
) -> CdrPage:
    """A CDR (its `cdrs` row), its events and their raw messages, as the page shows them."""
    cdr = Cdr.from_row(leg)
    cdr_id, conference = str(leg["id"]), leg.get("conference_name")
    lines = {int(row["id"]): received_line(row, peers_shown) for row in received}
    events = [
        EventRow(
            time=Moment.of(iso(event["time_us"])),
            node=event.get("node"),
            name=event.get("name"),
            message=event.get("message"),
            fields=sorted((str(k), str(v)) for k, v in (event.get("fields") or {}).items()),
            lines=[lines[i] for i in event["message_ids"] if i in lines],
        )
        for event in leg_events
    ]
    return CdrPage(
        id=cdr_id,
        state=cdr.state,
        conference=conference,
        facts=[_fact(name, value) for name, value in cdr.model_dump().items() if name != "id"],
        events=events,
        json_url=f"/api/v1/cdrs/{quote(cdr_id, safe='')}",
        conference_url=search_url(SearchForm(conference=conference)) if conference else None,
        peers_shown=peers_shown,
    )


async def load_search(
    conn: AsyncConnection,
    asked: dict[str, str | None],
    cursor: str | None,
    limit: int,
    now: datetime | None = None,
) -> CdrSearch:
    """The search page for the fields `asked`; InvalidCursor for a cursor not ours."""
    form, filters = check_search(asked, now or datetime.now(UTC))
    if filters is None:
        return CdrSearch(form, [], False, None, None, None)
    rows, next_cursor = await queries.page_cdrs(
        conn,
        limit=limit,
        cursor=cursor,
        from_us=filters.from_us,
        until_us=filters.until_us,
        conference=filters.conference,
        protocol=filters.protocol,
        state=filters.state,
        alias=filters.alias,
    )
    custom = limit if limit != CDRS_PER_PAGE else None
    api = {
        name: value
        for name, value in (
            ("from", iso(filters.from_us)),
            ("until", iso(filters.until_us)),
            ("conference", filters.conference),
            ("alias", filters.alias),
            ("protocol", filters.protocol),
            ("state", filters.state),
        )
        if value
    }
    return CdrSearch(
        form=form,
        rows=[cdr_row(row) for row in rows],
        defaulted=all(value is None for value in asked.values()),
        next_url=search_url(form, next_cursor, custom) if next_cursor else None,
        first_url=search_url(form, limit=custom) if cursor else None,
        json_url="/api/v1/cdrs" + (f"?{urlencode(api)}" if api else ""),
    )


TextQuery = Annotated[str | None, Query(max_length=TEXT_MAX * 4)]


@router.get("/cdrs", response_class=HTMLResponse)
async def search(
    request: Request,
    state: StateDep,
    from_: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
    conference: TextQuery = None,
    alias: TextQuery = None,
    protocol: TextQuery = None,
    cdr_state: Annotated[str | None, Query(alias="state", max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = CDRS_PER_PAGE,
) -> HTMLResponse:
    """CDRs found by window, conference, alias, protocol and state; any signed-in token."""
    asked = {
        "from": from_,
        "until": until,
        "conference": conference,
        "alias": alias,
        "protocol": protocol,
        "state": cdr_state,
    }
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401)
        if isinstance(principal, HTMLResponse):
            return principal
        try:
            view = await load_search(conn, asked, cursor or None, limit)
        except InvalidCursor:
            form, _ = check_search(asked, datetime.now(UTC))
            return _error(
                principal,
                "That page link is not valid; start from the first page.",
                400,
                search_url(form),
            )
    return render(
        "cdrs.html",
        principal=principal,
        current="cdrs",
        view=view,
        states=STATES,
        protocols=PROTOCOLS,
    )


@router.get("/cdrs/{participant_id}", response_class=HTMLResponse)
async def detail(
    request: Request,
    state: StateDep,
    participant_id: str,
) -> HTMLResponse:
    """One CDR with its events and the raw syslog lines behind them; any signed-in token
    (the senders' addresses for admin tokens only)."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401)
        if isinstance(principal, HTMLResponse):
            return principal
        found = await queries.get_cdr(conn, participant_id)
        if found is None:
            return _error(
                principal, f"There is no CDR for participant {participant_id!r}.", 404, None
            )
        leg, leg_events = found
        ids = [i for event in leg_events for i in event["message_ids"]]
        received = await queries.received_messages(conn, ids)
    view = cdr_page(leg, leg_events, received, principal.scope is Scope.ADMIN)
    return render("cdr.html", principal=principal, current="cdrs", view=view)


def _error(
    principal: Principal, error: str, status_code: int, first_url: str | None
) -> HTMLResponse:
    return render(
        "cdr_error.html",
        status_code=status_code,
        principal=principal,
        current="cdrs",
        error=error,
        first_url=first_url,
    )
