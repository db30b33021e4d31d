"""The server-rendered pages (Chinese, the wording of 《发热门诊医疗服务监测系统数据对接 用户操作说明》): 登录, 上传发热门诊病例 with
上传记录情况, the upload error list, 资料下载, and the administrators' pages.

Every handler starts from :func:`_user` (logged in, initial password changed) and reads data only
through :mod:`hqms.web.scope` / :mod:`hqms.web.rates` with the caller's principal. Anything out of
scope is a 404, the same page as an unknown id.
"""
from __future__ import annotations

import re
import secrets

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from hqms import spec
from hqms.accounts import ADMIN_ROLES, ROLE_ZH, AccountError, LoginResult
from hqms.intake.cli import ERROR_FIELDS, summarise_errors, write_errors_csv
from hqms.web import materials, rates, scope
from hqms.web.auth import (PRE_COOKIE, SESSION_COOKIE, Caller, accounts_of, caller, check_csrf,
                           check_login_csrf, clear_cookie, pre_session, set_cookie)
from hqms.web.service import take_upload, upload_view

router = APIRouter(include_in_schema=False)
PAGE_SIZES = (10, 20, 50)
ERRORS_PER_PAGE = 50


class LoginRequired(Exception):
    """No (valid) session: the app answers with a redirect to 登录."""


class PasswordChangeRequired(Exception):
    """Initial password not yet changed: everything but 修改密码 redirects there."""


def _user(request: Request, allow_initial: bool = False) -> Caller:
    who = caller(request)
    if who is None or who.via_token:
        raise LoginRequired()
    if who.principal.must_change and not allow_initial:
        raise PasswordChangeRequired()
    return who


def _admin(request: Request) -> Caller:
    who = _user(request)
    if who.principal.role not in ADMIN_ROLES:
        raise HTTPException(status_code=404)
    return who


def render(request: Request, template: str, who: Caller | None, status_code: int = 200, **context) -> HTMLResponse:
    context.update(who=who.principal if who else None, csrf=who.csrf if who else None,
                   role_zh=ROLE_ZH, nav=_nav(who))
    return request.app.state.templates.TemplateResponse(request, template, context, status_code=status_code)


def _nav(who: Caller | None) -> list[tuple[str, str]]:
    if who is None or who.principal.must_change:
        return []
    items = [("/upload", "上传发热门诊病例" if who.principal.is_hospital else "上传记录情况")]
    if who.principal.role in ADMIN_ROLES:
        items += [("/admin", "报送情况"), ("/admin/hospitals", "医疗机构列表"), ("/admin/bulletins", "流感监测周报")]
    return items + [("/downloads", "资料下载"), ("/password", "修改密码")]


# --- login ---------------------------------------------------------------------------------------

LOGIN_MESSAGES = {
    "bad_credentials": "登录名/手机号或密码不正确",
    "backoff": "尝试次数过多，请 {wait} 秒后再试",
    "locked": "连续多次密码错误，账号已锁定 {minutes} 分钟；如忘记密码请联系管理员重置",
}


@router.get("/login")
def login_page(request: Request) -> Response:
    return _login_form(request)


def _login_form(request: Request, message: str | None = None, status_code: int = 200,
                name: str = "") -> Response:
    pre, csrf, fresh = pre_session(request)
    response = request.app.state.templates.TemplateResponse(
        request, "login.html", {"who": None, "nav": [], "login_csrf": csrf, "message": message,
                                "name": name}, status_code=status_code)
    if fresh:
        set_cookie(request, response, PRE_COOKIE, pre)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    check_login_csrf(request, form.get("csrf_token"))
    name = str(form.get("login") or "")
    result: LoginResult = accounts_of(request).authenticate(name, str(form.get("password") or ""))
    if result.principal is None:
        text = LOGIN_MESSAGES[result.reason].format(wait=result.wait_seconds,
                                                    minutes=max(1, result.wait_seconds // 60))
        return _login_form(request, text, 429 if result.reason != "bad_credentials" else 401, name)
    token, _ = accounts_of(request).new_session(result.principal)
    response = RedirectResponse("/password" if result.principal.must_change else "/", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token)
    clear_cookie(request, response, PRE_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    who = _user(request, allow_initial=True)
    form = await request.form()
    check_csrf(request, who, form.get("csrf_token"))
    accounts_of(request).end_session(request.cookies[SESSION_COOKIE])
    accounts_of(request).audit(who.principal.login, "logout")
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@router.get("/password")
def password_page(request: Request) -> Response:
    who = _user(request, allow_initial=True)
    return render(request, "password.html", who, forced=who.principal.must_change)


@router.post("/password")
async def change_password(request: Request) -> Response:
    who = _user(request, allow_initial=True)
    form = await request.form()
    check_csrf(request, who, form.get("csrf_token"))
    new = str(form.get("new_password") or "")
    if new != str(form.get("new_password2") or ""):
        return render(request, "password.html", who, 400, forced=who.principal.must_change,
                      message="两次输入的新密码不一致")
    try:
        accounts_of(request).change_password(who.principal, str(form.get("old_password") or ""), new)
    except AccountError as exc:
        return render(request, "password.html", who, 400, forced=who.principal.must_change, message=str(exc))
    return RedirectResponse("/?changed=1", status_code=303)


@router.get("/")
def home(request: Request) -> Response:
    who = _user(request)
    return RedirectResponse("/admin" if who.principal.role in ADMIN_ROLES else "/upload", status_code=303)


# --- upload and the record list ------------------------------------------------------------------

@router.get("/upload")
def upload_page(request: Request, page: int = 1, size: int = 10, upload: str | None = None) -> Response:
    who = _user(request)
    return _upload_page(request, who, page, size, just=upload)


def _upload_page(request: Request, who: Caller, page: int, size: int, just: str | None = None,
                 refusal: str | None = None, status_code: int = 200) -> Response:
    accounts = accounts_of(request)
    size = size if size in PAGE_SIZES else 10
    listing = scope.page_uploads(accounts, who.principal, page, size)
    latest = scope.get_upload(accounts, who.principal, just) if just else None
    return render(request, "upload.html", who, status_code, listing=listing,
                  rows=[upload_view(r) for r in listing.rows], sizes=PAGE_SIZES,
                  latest=upload_view(latest) if latest else None, refusal=refusal,
                  streams=[(s, materials.STREAM_ZH[s]) for s in spec.STREAMS],
                  max_mb=request.app.state.cfg.max_zip_bytes // (1024 * 1024),
                  max_bytes=request.app.state.cfg.max_zip_bytes)


@router.post("/upload")
async def upload(request: Request) -> Response:
    who = _user(request)
    outcome = await take_upload(request, who)
    if outcome.upload_id is None:
        return _upload_page(request, who, 1, 10, refusal=outcome.message_zh, status_code=outcome.http_status)
    return RedirectResponse(f"/upload?upload={outcome.upload_id}", status_code=303)


def _scoped_upload(request: Request, who: Caller, upload_id: str) -> dict:
    row = scope.get_upload(accounts_of(request), who.principal, upload_id)
    if row is None:
        raise HTTPException(status_code=404)
    return row


@router.get("/uploads/{upload_id}/errors")
def errors_page(request: Request, upload_id: str, page: int = 1, file: str | None = None,
                column: str | None = None, rule: str | None = None) -> Response:
    who = _user(request)
    row = _scoped_upload(request, who, upload_id)
    accounts = accounts_of(request)
    listing = scope.page_errors(accounts, upload_id, page, ERRORS_PER_PAGE, file=file, column=column, rule=rule)
    return render(request, "errors.html", who, upload=upload_view(row), listing=listing,
                  choices=scope.error_filter_values(accounts, upload_id),
                  chosen={"file": file or "", "column": column or "", "rule": rule or ""})


@router.get("/uploads/{upload_id}/errors.csv")
def errors_csv(request: Request, upload_id: str) -> Response:
    who = _user(request)
    _scoped_upload(request, who, upload_id)
    return errors_csv_response(request, who, upload_id)


def errors_csv_response(request: Request, who: Caller, upload_id: str) -> Response:
    """``hqms errors ID --csv``'s file (same writer), for an upload already scope-checked."""
    accounts = accounts_of(request)
    errors = [{k: e[k] for k in ERROR_FIELDS} for e in accounts.registry.errors(upload_id)]
    tmp = request.app.state.cfg.work_dir / "web" / f"errors-{secrets.token_hex(8)}.csv"
    write_errors_csv(errors, tmp)
    accounts.audit(who.principal.login, "download", f"errors:{upload_id}")
    return FileResponse(tmp, media_type="text/csv; charset=utf-8", filename=f"{upload_id}_errors.csv",
                        background=BackgroundTask(tmp.unlink, missing_ok=True))


# --- 资料下载 ------------------------------------------------------------------------------------

@router.get("/downloads")
def downloads_page(request: Request) -> Response:
    who = _user(request)
    return render(request, "downloads.html", who, items=materials.catalogue())


@router.get("/downloads/{slug}")
def download(request: Request, slug: str) -> Response:
    who = _user(request)
    return material_response(request, who, slug)


def material_response(request: Request, who: Caller, slug: str) -> Response:
    item = materials.find(slug)
    if item is None:
        raise HTTPException(status_code=404)
    instructions = request.app.state.templates.get_template("instructions.html").render(
        streams=materials.streams_for_instructions(),
        max_mb=request.app.state.cfg.max_zip_bytes // (1024 * 1024))
    data = materials.build(slug, instructions)
    accounts_of(request).audit(who.principal.login, "download", slug)
    return Response(data, media_type=item.media_type,
                    headers={"Content-Disposition": materials.content_disposition(item.file_name)})


# --- administrators ------------------------------------------------------------------------------

@router.get("/admin")
def admin_rates(request: Request, stream: str | None = None, days: int = 14) -> Response:
    who = _admin(request)
    days = min(max(days, 1), 366)
    stream = stream if stream in spec.STREAMS else None
    try:
        rows = rates.rates(request.app.state.cfg, who.principal, stream, days)
    except rates.MartsUnavailable:
        rows = None
    return render(request, "admin.html", who, rows=rows, stream=stream or "", days=days,
                  streams=[(s, materials.STREAM_ZH[s]) for s in spec.STREAMS])


@router.get("/admin/hospitals")
def admin_hospitals(request: Request) -> Response:
    who = _admin(request)
    accounts = accounts_of(request)
    try:
        registry = rates.hospitals(request.app.state.cfg, who.principal)
    except rates.MartsUnavailable:
        registry = {}
    in_scope = accounts.orgs_in_scope(who.principal)
    listed = {a["org_code"]: a for a in accounts.hospital_accounts(in_scope)}
    orgs = sorted(set(registry) | set(listed))
    last = scope.last_uploads(accounts, orgs)
    hospitals = [{"org_code": org, "name": (registry.get(org) or {}).get("name") or (listed.get(org) or {}).get("display_name") or "",
                  "city": (registry.get(org) or {}).get("city_name") or "",
                  "account": listed.get(org), "overdue": (registry.get(org) or {}).get("overdue", {}),
                  "last": upload_view(last[org]) if org in last else None} for org in orgs]
    return render(request, "hospitals.html", who, hospitals=hospitals, marts=bool(registry),
                  stream_zh=materials.STREAM_ZH)


@router.get("/admin/hospitals/{org}")
def admin_hospital(request: Request, org: str, page: int = 1) -> Response:
    who = _admin(request)
    accounts = accounts_of(request)
    if not scope.org_in_scope(accounts, who.principal, org):
        raise HTTPException(status_code=404)
    listing = scope.page_uploads(accounts, who.principal, page, 10, org=org)
    summaries = {r["upload_id"]: summarise_errors(accounts.registry.errors(r["upload_id"]))
                 for r in listing.rows if upload_view(r)["has_errors"]}
    return render(request, "hospital.html", who, org=org, listing=listing,
                  rows=[upload_view(r) for r in listing.rows], summaries=summaries)


# --- the weekly bulletin (hqms bulletin, written by the daily marts DAG) --------------------------

#: An epidemiological week's folder name (``2025-W03``); anything else is not a bulletin (404).
WEEK_LABEL = re.compile(r"\d{4}-W\d{2}")
#: Files every administrator may open: the public variant, built from the suppressed aggregates.
PUBLIC_BULLETIN = {"bulletin.html": "text/html; charset=utf-8", "bulletin.pdf": "application/pdf"}
#: The administrators' variant holds every hospital's timeliness (hospital × day): national
#: administrators and operators only, since a city's administrator sees only their hospitals.
FULL_BULLETIN = {"bulletin-admin.html": "text/html; charset=utf-8", "bulletin-admin.pdf": "application/pdf"}


def _bulletin_files(who: Caller) -> dict[str, str]:
    return {**PUBLIC_BULLETIN, **FULL_BULLETIN} if who.principal.sees_everything else PUBLIC_BULLETIN


@router.get("/admin/bulletins")
def admin_bulletins(request: Request) -> Response:
    who = _admin(request)
    folder = request.app.state.cfg.marts_dir / "bulletin"
    allowed = _bulletin_files(who)
    weeks = []
    if folder.is_dir():
        for week in sorted((p for p in folder.iterdir() if WEEK_LABEL.fullmatch(p.name)), reverse=True):
            files = [name for name in allowed if (week / name).is_file()]
            if files:
                weeks.append({"label": week.name, "files": files})
    return render(request, "bulletins.html", who, weeks=weeks)


@router.get("/admin/bulletins/{week}/{name}")
def admin_bulletin_file(request: Request, week: str, name: str) -> Response:
    who = _admin(request)
    media = _bulletin_files(who).get(name)
    path = request.app.state.cfg.marts_dir / "bulletin" / week / name
    if media is None or not WEEK_LABEL.fullmatch(week) or not path.is_file():
        raise HTTPException(status_code=404)
    accounts_of(request).audit(who.principal.login, "download", f"bulletin/{week}/{name}")
    return FileResponse(path, media_type=media)
