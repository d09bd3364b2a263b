"""HTTP edge of the console: server-rendered pages, forms, cookies.

Every page works without JavaScript. Every form carries a CSRF token tied to the browser's
cookie; a POST is refused before anything else when its token is wrong or when the browser
says it comes from another site (``Origin``, ``Sec-Fetch-Site``). Cookies are HttpOnly,
SameSite=Strict, and Secure when the public URL is https. Answers are never cached, and
a code is shown only in the answer to the POST that issued it.

The request's transaction is opened here (the edge owns it); the work runs on a worker
thread (:func:`exposure.http.blocking.run_blocking`).
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Callable
from datetime import date, datetime
from importlib import resources
from typing import Any, TypeVar

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import UploadFile

from exposure.db import SessionFactory, unit_of_work
from exposure.db.unit_of_work import autocommit
from exposure.http.blocking import run_blocking
from exposure.retention.runtime import ServiceRetention
from verification.console import admin, audit, i18n, service
from verification.console.models import StaffRole
from verification.console.service import ConsoleContext, StaffView
from verification.errors import VerificationError
from verification.service import realms

Clock = Callable[[], datetime]
_T = TypeVar("_T")

PREFIX = "/console"
SESSION_COOKIE = "console_session"
#: A signed-out browser's CSRF cookie (the sign-in form's token is derived from it).
FORM_COOKIE = "console_form"
MAX_UPLOAD_BYTES = 256 * 1024

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends "Origin: null" with its own forms' posts,
    # and the cross-site check needs the real origin.
    "Referrer-Policy": "same-origin",
}

_templates = Environment(
    loader=PackageLoader("verification.console", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


LANGUAGE_COOKIE = "console_language"


def _local_time(zone: str) -> Callable[[datetime], str]:
    def local_time(moment: datetime) -> str:
        return moment.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M (UTC%z)")

    return local_time


def _language_of(request: Request, staff: StaffView | None) -> str:
    """The signed-in person's language; before sign-in, the one chosen on the page (a
    cookie), else the browser's."""
    if staff is not None:
        return staff.language
    chosen = request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE, "")
    if chosen in i18n.LANGUAGES:
        return chosen
    return i18n.best_language(request.headers.get("accept-language", ""))


def _render(
    request: Request,
    staff: StaffView | None,
    name: str,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    language = _language_of(request, staff)
    html = _templates.get_template(name).render(
        language=language,
        _=i18n.translator(language),
        error_text=i18n.error_text,
        role_names=i18n.ROLE_NAMES,
        local_time=_local_time(staff.time_zone if staff else "UTC"),
        staff=staff,
        **values,
    )
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


def _cross_site(request: Request) -> bool:
    """Whether the browser says this request was made by another site's page."""
    if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        return True
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin != own


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 86400 and seconds % 3600 == 0:
        days, hours = divmod(seconds // 3600, 24)
        return f"{days} d" + (f" {hours} h" if hours else "")
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


_templates.globals["duration"] = _duration


def _qr_code(text: str) -> Markup:
    """``text`` as an inline SVG QR code (an authenticator app scans it); inline, so the
    page's content security policy needs no exception for it."""
    # segno's SVG holds only its own path data and the fixed title: no markup of ours.
    return Markup(segno.make(text, error="m").svg_inline(scale=5, light="#fff", border=4))  # noqa: S704


_templates.globals["qr_code"] = _qr_code


def _start_page(staff: StaffView) -> str:
    return f"{PREFIX}/lab" if staff.role in service.LAB_ROLES else f"{PREFIX}/audit"


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == len("YYYY-MM-DD") else None
    except ValueError:
        return None


def create_console_router(
    context: ConsoleContext,
    session_factory: SessionFactory,
    clock: Clock,
    retention: ServiceRetention,
) -> APIRouter:
    """The console's pages, bound to their dependencies."""
    router = APIRouter(include_in_schema=False)

    def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=context.secure_cookies,
        )

    def in_transaction(work: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        with unit_of_work(session_factory) as session:
            return work(session, *args, **kwargs)

    async def signed_in(request: Request) -> StaffView | None:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not cookie:
            return None
        return await run_blocking(in_transaction, _current, cookie)

    def _current(session: Any, cookie: str) -> StaffView | None:
        return service.current_staff(session, context, cookie, clock())

    def refused(
        request: Request, status: int, message: str, staff: StaffView | None = None
    ) -> HTMLResponse:
        return _render(request, staff, "refused.html", status=status, message=message)

    async def checked_form(request: Request, cookie_name: str) -> dict[str, Any] | Response:
        """The POSTed form, or the refusal of a cross-site or CSRF-less post."""
        if _cross_site(request):
            return refused(request, 403, i18n.REFUSED_CROSS_SITE)
        fields: dict[str, Any] = {}
        async with request.form(max_files=1, max_fields=20, max_part_size=MAX_UPLOAD_BYTES) as form:
            for name, value in form.items():
                # An upload is read (one byte past the limit, to tell it was over) before
                # the form, and its spooled file, is closed.
                if isinstance(value, UploadFile):
                    fields[name] = await value.read(MAX_UPLOAD_BYTES + 1)
                else:
                    fields[name] = value
        submitted = fields.get("csrf", "")
        cookie = request.cookies.get(cookie_name, "")
        if not isinstance(submitted, str) or not service.csrf_matches(context, cookie, submitted):
            return refused(request, 403, i18n.REFUSED_CSRF)
        return fields

    def field(form: dict[str, Any], name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    def lab_page(
        request: Request, staff: StaffView, status: int = 200, **values: Any
    ) -> HTMLResponse:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return _render(
            request,
            staff,
            "lab.html",
            status=status,
            csrf=service.csrf_token(context, cookie),
            today=service.local_today(staff, clock()).isoformat(),
            **values,
        )

    # ---- signing in and out ------------------------------------------------------------

    async def home(request: Request) -> Response:
        staff = await signed_in(request)
        target = f"{PREFIX}/sign-in" if staff is None else _start_page(staff)
        return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})

    def sign_in_page(request: Request, status: int = 200, failed: bool = False) -> Response:
        cookie = request.cookies.get(FORM_COOKIE, "")
        fresh = service.unsign(context, cookie) is None
        if fresh:
            cookie = service.new_signed_token(context)
        response = _render(
            request,
            None,
            "sign_in.html",
            status=status,
            csrf=service.csrf_token(context, cookie),
            failed=failed,
        )
        if fresh:
            set_cookie(response, FORM_COOKIE, cookie, None)
        chosen = request.query_params.get("lang", "")
        if chosen in i18n.LANGUAGES:
            set_cookie(response, LANGUAGE_COOKIE, chosen, 365 * 86400)
        return response

    async def sign_in_form(request: Request) -> Response:
        return sign_in_page(request)

    def attempt_sign_in(
        realm_name: str, username: str, password: str, totp_code: str
    ) -> service.SignedIn:
        now = clock()
        limit = service.sign_in_limit(context, realm_name, username)
        with autocommit(session_factory) as connection:
            service.take_sign_in_slot(connection, limit, now)
        signed = in_transaction(
            service.sign_in,
            context,
            realm_name=realm_name,
            username=username,
            password=password,
            totp_code=totp_code,
            now=now,
        )
        with autocommit(session_factory) as connection:
            service.give_back_sign_in_slot(connection, limit, now)
        return signed

    async def sign_in(request: Request) -> Response:
        form = await checked_form(request, FORM_COOKIE)
        if isinstance(form, Response):
            return form
        fields = [str(form.get(name, "")) for name in ("realm", "username", "password", "totp")]
        try:
            signed = await run_blocking(attempt_sign_in, *fields)
        except service.SignInFailed:
            return sign_in_page(request, status=401, failed=True)
        response = RedirectResponse(
            _start_page(signed.staff), status_code=303, headers=_SECURITY_HEADERS
        )
        lifetime = int(context.session_lifetime.total_seconds())
        set_cookie(response, SESSION_COOKIE, signed.cookie, lifetime)
        response.delete_cookie(FORM_COOKIE, path=PREFIX)
        return response

    async def sign_out(request: Request) -> Response:
        form = await checked_form(request, SESSION_COOKIE)
        if isinstance(form, Response):
            return form
        cookie = request.cookies.get(SESSION_COOKIE, "")
        await run_blocking(in_transaction, service.sign_out, context, cookie)
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # ---- the lab's pages ---------------------------------------------------------------

    async def lab_staff(request: Request) -> StaffView | Response:
        staff = await signed_in(request)
        if staff is None:
            return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        if staff.role not in service.LAB_ROLES:
            return refused(request, 403, i18n.REFUSED_NOT_LAB, staff)
        return staff

    async def lab(request: Request) -> Response:
        staff = await lab_staff(request)
        if isinstance(staff, Response):
            return staff
        return lab_page(request, staff)

    async def issue(request: Request) -> Response:
        # The form is checked first: a cross-site post is refused whoever it claims to be.
        form = await checked_form(request, SESSION_COOKIE)
        if isinstance(form, Response):
            return form
        staff = await lab_staff(request)
        if isinstance(staff, Response):
            return staff
        cookie = request.cookies[SESSION_COOKIE]
        date_kind = str(form.get("date_kind", "symptom"))
        day = str(form.get("date", "")).strip()
        order = service.CodeOrder(
            test_type=str(form.get("test_type", "")),
            symptom_date=day if date_kind == "symptom" else "",
            test_date=day if date_kind == "test" else "",
        )
        try:
            issued = await run_blocking(
                in_transaction,
                service.issue_code,
                context,
                staff=staff,
                order=order,
                now=clock(),
            )
        except VerificationError as error:
            return lab_page(request, staff, status=error.status, issue_error=error.code)
        return _render(
            request,
            staff,
            "issued.html",
            csrf=service.csrf_token(context, cookie),
            issued=issued,
            expires_in=int((issued.expires_at - clock()).total_seconds()),
        )

    async def bulk(request: Request) -> Response:
        # The form is checked first: a cross-site post is refused whoever it claims to be.
        form = await checked_form(request, SESSION_COOKIE)
        if isinstance(form, Response):
            return form
        staff = await lab_staff(request)
        if isinstance(staff, Response):
            return staff
        cookie = request.cookies[SESSION_COOKIE]
        raw = form.get("file")
        if not isinstance(raw, bytes):
            return lab_page(request, staff, status=400, bulk_error=i18n.BULK_NO_FILE)
        if len(raw) > MAX_UPLOAD_BYTES:
            return lab_page(request, staff, status=413, bulk_error=i18n.BULK_TOO_LARGE)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return lab_page(request, staff, status=400, bulk_error=i18n.BULK_NOT_UTF8)
        try:
            issued = await run_blocking(
                in_transaction, service.issue_bulk, context, staff=staff, text=text, now=clock()
            )
        except service.BulkRejected as rejected:
            return lab_page(request, staff, status=400, row_errors=rejected.errors)
        return _render(
            request,
            staff,
            "bulk_issued.html",
            csrf=service.csrf_token(context, cookie),
            issued=issued,
        )

    async def status(request: Request) -> Response:
        staff = await lab_staff(request)
        if isinstance(staff, Response):
            return staff
        uuid = request.query_params.get("uuid", "")
        try:
            found = await run_blocking(in_transaction, service.code_status, staff=staff, uuid=uuid)
        except VerificationError as error:
            return lab_page(request, staff, status=error.status, status_error=error.code)
        return lab_page(request, staff, code_uuid=uuid.strip(), code_status=found, now=clock())

    async def expire(request: Request) -> Response:
        # The form is checked first: a cross-site post is refused whoever it claims to be.
        form = await checked_form(request, SESSION_COOKIE)
        if isinstance(form, Response):
            return form
        staff = await lab_staff(request)
        if isinstance(staff, Response):
            return staff
        uuid = str(form.get("uuid", ""))
        try:
            found = await run_blocking(
                in_transaction, service.expire_code, staff=staff, uuid=uuid, now=clock()
            )
        except VerificationError as error:
            return lab_page(request, staff, status=error.status, status_error=error.code)
        return lab_page(
            request, staff, code_uuid=uuid.strip(), code_status=found, now=clock(), expired=True
        )

    # ---- the auditor's pages (read-only) ------------------------------------------------

    async def audit_staff(request: Request) -> StaffView | Response:
        staff = await signed_in(request)
        if staff is None:
            return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        if staff.role not in audit.AUDIT_ROLES:
            return refused(request, 403, i18n.REFUSED_NOT_AUDITOR, staff)
        return staff

    async def compliance_page(request: Request) -> Response:
        staff = await audit_staff(request)
        if isinstance(staff, Response):
            return staff
        report = await run_blocking(audit.compliance, retention, staff, clock())
        csrf = service.csrf_token(context, request.cookies[SESSION_COOKIE])
        return _render(request, staff, "audit.html", csrf=csrf, report=report, chain=report["log"])

    async def log_page(request: Request) -> Response:
        staff = await audit_staff(request)
        if isinstance(staff, Response):
            return staff
        query = request.query_params
        wanted = audit.LogFilter(
            kind=query.get("kind", ""),
            since=_day(query.get("since", "")),
            until=_day(query.get("until", "")),
        )
        view = await run_blocking(audit.log_view, retention, staff, wanted)
        csrf = service.csrf_token(context, request.cookies[SESSION_COOKIE])
        return _render(
            request, staff, "audit_log.html", csrf=csrf, view=view, wanted=wanted, chain=view.chain
        )

    async def log_export(request: Request) -> Response:
        staff = await audit_staff(request)
        if isinstance(staff, Response):
            return staff
        document = await run_blocking(audit.export, retention, staff)
        name = f"retention-log-{retention.service.value}-{clock():%Y%m%dT%H%MZ}.json"
        return Response(
            json.dumps(document, indent=1, sort_keys=True) + "\n",
            media_type="application/json",
            headers={
                **_SECURITY_HEADERS,
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )

    # ---- the staff member's own account ------------------------------------------------

    def account_page(
        request: Request,
        staff: StaffView,
        *,
        has_one: bool,
        status: int = 200,
        pending: service.PendingSecondFactor | None = None,
        **values: Any,
    ) -> HTMLResponse:
        if not has_one and pending is None:
            pending = service.new_second_factor(context, staff)
        return _render(
            request,
            staff,
            "account.html",
            status=status,
            csrf=service.csrf_token(context, request.cookies[SESSION_COOKIE]),
            has_second_factor=has_one,
            pending=None if has_one else pending,
            **values,
        )

    async def account(request: Request) -> Response:
        staff = await signed_in(request)
        if staff is None:
            return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        has_one = await run_blocking(in_transaction, service.has_second_factor, staff)
        return account_page(request, staff, has_one=has_one)

    async def add_second_factor(request: Request) -> Response:
        # The form is checked first: a cross-site post is refused whoever it claims to be.
        form = await checked_form(request, SESSION_COOKIE)
        if isinstance(form, Response):
            return form
        staff = await signed_in(request)
        if staff is None:
            return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        sealed, code = field(form, "pending"), field(form, "code")
        try:
            await run_blocking(
                in_transaction,
                service.add_second_factor,
                context,
                staff=staff,
                sealed=sealed,
                code=code,
                now=clock(),
            )
        except service.SecondFactorRefused as refusal:
            pending = None
            if refusal.code == service.SECOND_FACTOR_CODE_WRONG:
                # The same secret again: the person has already added it to their app.
                pending = service.pending_second_factor(context, staff, sealed)
            exists = refusal.code == service.SECOND_FACTOR_EXISTS
            return account_page(
                request,
                staff,
                has_one=exists,
                status=409 if exists else 400,
                pending=pending,
                second_factor_error=refusal.code,
            )
        return account_page(request, staff, has_one=True, second_factor_added=True)

    router.add_api_route(f"{PREFIX}/account", account, methods=["GET"])
    router.add_api_route(f"{PREFIX}/account/second-factor", add_second_factor, methods=["POST"])

    # ---- the realm admin's page and changes --------------------------------------------

    async def admin_staff(request: Request) -> StaffView | Response:
        staff = await signed_in(request)
        if staff is None:
            return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        if staff.role not in admin.ADMIN_ROLES:
            return refused(request, 403, i18n.REFUSED_NOT_ADMIN, staff)
        return staff

    async def render_admin(
        request: Request, staff: StaffView, status: int = 200, **values: Any
    ) -> HTMLResponse:
        overview = await run_blocking(in_transaction, admin.overview, staff, clock())
        csrf = service.csrf_token(context, request.cookies[SESSION_COOKIE])
        return _render(
            request,
            staff,
            "admin.html",
            status=status,
            csrf=csrf,
            overview=overview,
            small=admin.SMALL_COUNT,
            key_kinds=[kind.value for kind in realms.ApiKeyKind],
            roles=[role.value for role in StaffRole],
            **values,
        )

    async def admin_page(request: Request) -> Response:
        staff = await admin_staff(request)
        if isinstance(staff, Response):
            return staff
        return await render_admin(request, staff)

    async def admin_change(
        request: Request, change: Callable[[Any, StaffView, dict[str, Any]], Any]
    ) -> tuple[StaffView, Any] | Response:
        """Run one of the admin's changes in a transaction, or answer with the admin page
        saying why it was refused (nothing of it kept)."""
        # The form is checked first: a cross-site post is refused whoever it claims to be.
        form = await checked_form(request, SESSION_COOKIE)
        if isinstance(form, Response):
            return form
        staff = await admin_staff(request)
        if isinstance(staff, Response):
            return staff
        try:
            result = await run_blocking(in_transaction, change, staff, form)
        except admin.AdminRefused as refusal:
            return await render_admin(
                request,
                staff,
                status=400,
                admin_error=refusal.message,
                admin_error_detail=refusal.detail,
            )
        return staff, result

    async def admin_changed(
        request: Request, change: Callable[[Any, StaffView, dict[str, Any]], Any], done: str
    ) -> Response:
        outcome = await admin_change(request, change)
        if isinstance(outcome, Response):
            return outcome
        return await render_admin(request, outcome[0], admin_done=done)

    async def create_api_key(request: Request) -> Response:
        def change(session: Any, staff: StaffView, form: dict[str, Any]) -> realms.NewApiKey:
            return admin.create_api_key(
                session,
                context,
                staff=staff,
                kind=field(form, "kind"),
                name=field(form, "name"),
                now=clock(),
            )

        outcome = await admin_change(request, change)
        if isinstance(outcome, Response):
            return outcome
        staff, created = outcome
        # The key's only showing: the answer to this POST, never cached, never logged.
        return _render(
            request,
            staff,
            "api_key_created.html",
            csrf=service.csrf_token(context, request.cookies[SESSION_COOKIE]),
            key=created.record,
            plaintext=created.plaintext,
        )

    async def disable_api_key(request: Request) -> Response:
        def change(session: Any, staff: StaffView, form: dict[str, Any]) -> object:
            return admin.disable_api_key(
                session, staff=staff, key_id=field(form, "id"), now=clock()
            )

        return await admin_changed(request, change, i18n.ADMIN_KEY_DISABLED)

    async def create_staff(request: Request) -> Response:
        def change(session: Any, staff: StaffView, form: dict[str, Any]) -> object:
            return admin.create_staff(
                session,
                context,
                staff=staff,
                username=field(form, "username"),
                role=field(form, "role"),
                password=field(form, "password"),
                now=clock(),
            )

        return await admin_changed(request, change, i18n.ADMIN_STAFF_CREATED)

    async def disable_staff(request: Request) -> Response:
        def change(session: Any, staff: StaffView, form: dict[str, Any]) -> object:
            return admin.disable_staff(
                session, staff=staff, username=field(form, "username"), now=clock()
            )

        return await admin_changed(request, change, i18n.ADMIN_STAFF_DISABLED)

    async def remove_second_factor(request: Request) -> Response:
        def change(session: Any, staff: StaffView, form: dict[str, Any]) -> object:
            return admin.remove_second_factor(
                session, staff=staff, username=field(form, "username"), now=clock()
            )

        return await admin_changed(request, change, i18n.ADMIN_APP_REMOVED)

    async def change_limits(request: Request) -> Response:
        def change(session: Any, staff: StaffView, form: dict[str, Any]) -> object:
            return admin.change_code_limits(
                session,
                staff=staff,
                short_code_minutes=field(form, "short_code_minutes"),
                long_code_minutes=field(form, "long_code_minutes"),
                daily_issue_limit=field(form, "daily_issue_limit"),
                now=clock(),
            )

        return await admin_changed(request, change, i18n.ADMIN_LIMITS_CHANGED)

    router.add_api_route(f"{PREFIX}/admin/api-keys", create_api_key, methods=["POST"])
    router.add_api_route(f"{PREFIX}/admin/api-keys/disable", disable_api_key, methods=["POST"])
    router.add_api_route(f"{PREFIX}/admin/staff", create_staff, methods=["POST"])
    router.add_api_route(f"{PREFIX}/admin/staff/disable", disable_staff, methods=["POST"])
    router.add_api_route(
        f"{PREFIX}/admin/staff/remove-second-factor", remove_second_factor, methods=["POST"]
    )
    router.add_api_route(f"{PREFIX}/admin/limits", change_limits, methods=["POST"])
    router.add_api_route(f"{PREFIX}/admin", admin_page, methods=["GET"])
    router.add_api_route(f"{PREFIX}/audit", compliance_page, methods=["GET"])
    router.add_api_route(f"{PREFIX}/audit/log", log_page, methods=["GET"])
    router.add_api_route(f"{PREFIX}/audit/export", log_export, methods=["GET"])

    assets = resources.files("verification.console") / "static"
    static_files = {
        "countdown.js": ((assets / "countdown.js").read_bytes(), "text/javascript"),
        "console.css": ((assets / "console.css").read_bytes(), "text/css"),
    }

    def static_route(name: str) -> Callable[[Request], Any]:
        body, media_type = static_files[name]

        async def serve_file(_request: Request) -> Response:
            return Response(
                body,
                media_type=media_type,
                headers={
                    "Cache-Control": "public, max-age=3600",
                    "X-Content-Type-Options": "nosniff",
                },
            )

        return serve_file

    router.add_api_route(PREFIX, home, methods=["GET"])
    for name in static_files:
        router.add_api_route(f"{PREFIX}/static/{name}", static_route(name), methods=["GET"])
    router.add_api_route(f"{PREFIX}/sign-in", sign_in_form, methods=["GET"])
    router.add_api_route(f"{PREFIX}/sign-in", sign_in, methods=["POST"])
    router.add_api_route(f"{PREFIX}/sign-out", sign_out, methods=["POST"])
    router.add_api_route(f"{PREFIX}/lab", lab, methods=["GET"])
    router.add_api_route(f"{PREFIX}/lab/issue", issue, methods=["POST"])
    router.add_api_route(f"{PREFIX}/lab/bulk", bulk, methods=["POST"])
    router.add_api_route(f"{PREFIX}/lab/status", status, methods=["GET"])
    router.add_api_route(f"{PREFIX}/lab/expire", expire, methods=["POST"])
    return router


__all__ = ["PREFIX", "SESSION_COOKIE", "StaffRole", "create_console_router"]
