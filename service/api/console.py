"""The audit console: server-rendered pages for people watching a training run.

`/console` lists rejected items newest first with filters (verdict, time range, rule, text), a
chart of counts per verdict over time (inline SVG, drawn here) and export links; `/console/
items/{id}` shows one item's program with its violation lines marked. Every read goes through
service/api/auditing.py, like `/v1/audit`, so API keys and the audit scope apply the same way
(docs/design.md §5). Pages use no external assets and a strict Content-Security-Policy.

A browser cannot send `Authorization` on a link, so with API keys configured the console signs
in once with a key and keeps a session cookie (service/api/auth.py); a request that does send
`Authorization: Bearer <key>` is served too.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from azr_verify.service import __version__
from azr_verify.service.api.auditing import (
    MAX_TEXT_CHARS,
    AuditFilters,
    Chart,
    audit_query,
    export_response,
    read_chart,
    read_page,
    read_record,
    read_rules,
)
from azr_verify.service.api.auth import SESSION_S, ApiKeys
from azr_verify.service.api.deps import ApiKeysDep, AuditStoreDep
from azr_verify.service.api.errors import ApiError
from azr_verify.service.models import Verdict
from azr_verify.service.stores.audit.export import utc_text
from azr_verify.service.stores.audit.records import AuditRecord

HERE = Path(__file__).parent
PAGE_SIZE = 50
MAX_PROGRAM_LINES = 2000
LIVE_REFRESH_S = 10
SESSION_COOKIE = "azr_verify_console"
RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "all": None}
RANGE_LABELS = {"15m": "last 15 minutes", "1h": "last hour", "6h": "last 6 hours",
                "24h": "last 24 hours", "7d": "last 7 days", "all": "all time"}
REJECTIONS = [v for v in Verdict if v.is_rejection]
SECURITY_HEADERS = {
    # Same-origin scripts and styles only: no CDN can be used by accident, and nothing a
    # model wrote can run even if escaping ever failed.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The chart's drawing area, in SVG user units (the SVG scales to the page width).
CHART_W, CHART_H, CHART_LEFT, CHART_BOTTOM, CHART_TOP = 960, 190, 44, 22, 8


class SignInRequired(Exception):
    """The console needs a key and the request carries none (or an expired session)."""


class ConsoleHTMLResponse(HTMLResponse):
    def render(self, content: Any) -> bytes:
        # Programs may hold lone surrogates, which UTF-8 cannot encode: show them escaped.
        return str(content).encode("utf-8", "backslashreplace")


# -- the form ---------------------------------------------------------------------------------


@dataclass
class ConsoleForm:
    """The list page's query string, kept as typed so the form shows it back."""

    verdict: str = ""
    rule: str = ""
    q: str = ""
    range: str = "all"
    start: str = ""
    end: str = ""
    live: bool = False
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_request(cls, request: Request) -> ConsoleForm:
        p = request.query_params
        return cls(verdict=p.get("verdict", ""), rule=p.get("rule", "").strip(),
                   q=p.get("q", "").strip()[:MAX_TEXT_CHARS],
                   range=p.get("range", "all") if p.get("range") in RANGES else "all",
                   start=p.get("start", "").strip(), end=p.get("end", "").strip(),
                   live=p.get("live") == "1")

    def filters(self, now: float) -> AuditFilters:
        """Lenient: a field that does not parse is reported and ignored, never a 422 page."""
        verdict = None
        if self.verdict:
            try:
                verdict = Verdict(self.verdict)
            except ValueError:
                self.errors.append(f"unknown verdict {self.verdict!r}")
        since: float | None = None
        until: float | None = None
        span = RANGES[self.range]
        if span is not None:
            # Whole minutes (hours for long spans), so the chart is answered from the
            # audit log's per-minute (per-hour) counts.
            unit = 3600 if span >= 6 * 3600 else 60
            since = math.floor((now - span) / unit) * unit
        if self.start:
            since = self._time(self.start, "from")
        if self.end:
            until = self._time(self.end, "to")
        return AuditFilters(verdict=verdict, since=since, until=until,
                            rule=self.rule or None, text=self.q or None)

    def _time(self, text: str, label: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.errors.append(f"{label}: {text!r} is not a date and time "
                               "(YYYY-MM-DD HH:MM, UTC) or a UNIX time")
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()

    def params(self, **changes: str) -> dict[str, str]:
        values = {"verdict": self.verdict, "rule": self.rule, "q": self.q,
                  "range": "" if self.range == "all" else self.range, "start": self.start,
                  "end": self.end, "live": "1" if self.live else ""}
        values.update(changes)
        return {k: v for k, v in values.items() if v}

    def link(self, path: str = "/console", **changes: str) -> str:
        query = urlencode(self.params(**changes))
        return f"{path}?{query}" if query else path


# -- the chart --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    verdict: str
    title: str


@dataclass(frozen=True)
class ChartView:
    bars: list[Bar]
    totals: list[tuple[str, int]]
    total: int
    peak: int
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str, str]]  # x, text, anchor
    bucket_text: str
    truncated: bool


def _nice_ceiling(value: int) -> int:
    if value <= 5:
        return max(value, 1)
    magnitude = 10 ** int(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return value


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def chart_view(chart: Chart) -> ChartView:
    counts = chart.counts
    buckets = counts.buckets
    peak = max((sum(b.values()) for b in buckets), default=0)
    top = _nice_ceiling(peak)
    plot_w = CHART_W - CHART_LEFT
    plot_h = CHART_H - CHART_BOTTOM - CHART_TOP
    slot = plot_w / len(buckets)
    gap = min(2.0, slot * 0.2)
    bars: list[Bar] = []
    for index, bucket in enumerate(buckets):
        x = CHART_LEFT + index * slot + gap / 2
        base = float(CHART_H - CHART_BOTTOM)
        begin = counts.start + index * counts.width
        when = f"{utc_text(begin)} + {_duration_text(counts.width)}"
        for verdict in REJECTIONS:
            n = bucket.get(verdict.value, 0)
            if not n:
                continue
            height = plot_h * n / top
            base -= height
            bars.append(Bar(round(x, 2), round(base, 2), round(slot - gap, 2),
                            round(height, 2), verdict.value,
                            f"{when} UTC: {n} {verdict.value}"))
    totals: dict[str, int] = {}
    for bucket in buckets:
        for name, n in bucket.items():
            totals[name] = totals.get(name, 0) + n
    ordered = [(v.value, totals[v.value]) for v in REJECTIONS if totals.get(v.value)]
    y_ticks = [(round(CHART_H - CHART_BOTTOM - plot_h * k / 2, 2), top * k // 2)
               for k in (0, 1, 2)]
    stop = counts.start + counts.width * len(buckets)
    x_labels = [(CHART_LEFT, utc_text(counts.start)[:16], "start"),
                (CHART_LEFT + plot_w / 2, utc_text((counts.start + stop) / 2)[:16], "middle"),
                (CHART_W, utc_text(stop)[:16], "end")]
    return ChartView(bars, ordered, chart.total, peak, y_ticks, x_labels,
                     _duration_text(counts.width), counts.truncated)


# -- rows and items -----------------------------------------------------------------------


def _summary(record: AuditRecord) -> str:
    if record.violations:
        return ", ".join(f"{v.rule}: {v.name} (line {v.line})" for v in record.violations[:3]) \
            + (" ..." if len(record.violations) > 3 else "")
    if record.error_type and record.error:
        return f"{record.error_type}: {record.error}"
    return record.error_type or record.error or ""


def _excerpt(record: AuditRecord, limit: int = 90) -> str:
    """The line that says most: the first violation's, else the first line of code that is
    not a signature or a comment."""
    lines = record.program.split("\n")
    chosen = None
    if record.violations and 0 < record.violations[0].line <= len(lines):
        chosen = lines[record.violations[0].line - 1]
    else:
        code = [line for line in lines
                if line.strip() and not line.lstrip().startswith(("#", "def ", "@"))]
        chosen = code[0] if code else next((line for line in lines if line.strip()), "")
    text = chosen.strip()
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


@dataclass(frozen=True)
class ProgramLine:
    number: int
    text: str
    notes: list[str]


def program_lines(record: AuditRecord) -> tuple[list[ProgramLine], int]:
    """The program's lines with the policy's notes on violation lines; and lines not shown."""
    notes: dict[int, list[str]] = {}
    for v in record.violations:
        notes.setdefault(v.line, []).append(f"{v.rule}: {v.name}")
    lines = record.program.split("\n")
    shown = [ProgramLine(k, text, notes.get(k, []))
             for k, text in enumerate(lines[:MAX_PROGRAM_LINES], start=1)]
    return shown, max(0, len(lines) - MAX_PROGRAM_LINES)


# -- routes -----------------------------------------------------------------------------------


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(version=__version__, rejections=[v.value for v in REJECTIONS],
                       session_hours=SESSION_S // 3600)
    return env


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this service, never another site."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console"


def console_caller(request: Request, keys: ApiKeysDep) -> str | None:
    """FastAPI dependency of the console's pages: the signed-in key's name (None when the
    service has no keys); raises SignInRequired, which redirects to the sign-in page."""
    if not keys.enabled:
        return None
    header = request.headers.get("authorization")
    if header:
        name = keys.name_for(header)
    else:
        token = request.cookies.get(SESSION_COOKIE)
        name = keys.name_for_session(token) if token else None
    if name is None:
        raise SignInRequired
    request.state.key_name = name
    return name


ConsoleCaller = Annotated[str | None, Depends(console_caller)]


def install_console(app: FastAPI) -> None:
    """Adds /console, its assets and the sign-in handler to the app."""
    templates = _templates()
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    def render(request: Request, keys: ApiKeys, name: str, status: int = 200,
               **context: Any) -> Response:
        html = templates.get_template(name).render(
            request_path=request.url.path, auth_enabled=keys.enabled,
            signed_in=getattr(request.state, "key_name", None), **context)
        return ConsoleHTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?{urlencode({'next': target})}",
                                status_code=303, headers={"Cache-Control": "no-store"})

    app.add_exception_handler(SignInRequired, sign_in_required)
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    async def console(request: Request, key_name: ConsoleCaller, keys: ApiKeysDep,
                      store: AuditStoreDep) -> Response:
        form = ConsoleForm.from_request(request)
        now = time.time()
        filters = form.filters(now)
        try:
            query = audit_query(keys, key_name, filters)
        except ApiError as exc:
            form.errors.append(str(exc.detail))
            query = audit_query(keys, key_name, AuditFilters(
                verdict=filters.verdict, since=filters.since, until=filters.until,
                rule=filters.rule))
        before = request.query_params.get("before") or None
        try:
            page = await read_page(store, query, PAGE_SIZE, before)
        except ApiError as exc:
            form.errors.append(str(exc.detail))
            page = await read_page(store, query, PAGE_SIZE, None)
            before = None
        chart = await read_chart(store, query, now)
        rows = [{"id": r.id, "time": utc_text(r.time), "verdict": r.verdict.value,
                 "summary": _summary(r), "excerpt": _excerpt(r),
                 "key": r.api_key_name or "", "item_id": "" if r.item_id is None
                 else str(r.item_id), "link": form.link(f"/console/items/{r.id}")}
                for r in page.records]
        return render(
            request, keys, "console.html", form=form, rows=rows, chart=chart_view(chart),
            chart_w=CHART_W, chart_h=CHART_H, rules=await read_rules(store),
            ranges=RANGE_LABELS, live_refresh_s=LIVE_REFRESH_S if form.live else 0,
            newest_link=form.link() if before else None,
            older_link=form.link(before=page.next_cursor) if page.next_cursor else None,
            export_jsonl=form.link("/console/export", format="jsonl"),
            export_csv=form.link("/console/export", format="csv"),
            live_link=form.link(live="" if form.live else "1"),
            verdict_link=lambda v: form.link(verdict=v))

    @router.get("/console/items/{record_id}")
    async def item(request: Request, record_id: str, key_name: ConsoleCaller, keys: ApiKeysDep,
                   store: AuditStoreDep) -> Response:
        form = ConsoleForm.from_request(request)
        query = audit_query(keys, key_name, AuditFilters())
        record = await read_record(store, query, record_id)
        if record is None:
            return render(request, keys, "missing.html", status=404, record_id=record_id,
                          back=form.link())
        lines, hidden = program_lines(record)
        return render(
            request, keys, "item.html", record=record, time=utc_text(record.time), lines=lines,
            hidden_lines=hidden, back=form.link(),
            meta=json.dumps(record.meta, indent=2, ensure_ascii=False, default=str)
            if record.meta is not None else None)

    @router.get("/console/export")
    async def export(request: Request, key_name: ConsoleCaller, keys: ApiKeysDep,
                     store: AuditStoreDep) -> Response:
        form = ConsoleForm.from_request(request)
        filters = form.filters(time.time())
        if form.errors:
            raise ApiError(422, "validation_error", "; ".join(form.errors))
        return export_response(store, audit_query(keys, key_name, filters),
                               request.query_params.get("format", "jsonl"))

    @router.get("/console/login")
    async def login_page(request: Request, keys: ApiKeysDep) -> Response:
        target = _safe_next(request.query_params.get("next"))
        if not keys.enabled:
            return RedirectResponse(target, status_code=303)
        return render(request, keys, "login.html", next=target, error=None)

    @router.post("/console/login")
    async def login(request: Request, keys: ApiKeysDep) -> Response:
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        target = _safe_next(fields.get("next", [""])[0])
        if not keys.enabled:
            return RedirectResponse(target, status_code=303)
        name = keys.name_of_key(fields.get("key", [""])[0])
        if name is None:
            return render(request, keys, "login.html", status=401, next=target,
                          error="That is not one of this service's API keys.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, keys.session_token(name), max_age=SESSION_S,
                            path="/console", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @router.post("/console/logout")
    async def logout(request: Request) -> Response:
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    app.include_router(router)

