"""The JSON API (``/api/v1``): the same accounts and scope as the pages, for machines.

Machines authenticate with ``Authorization: Bearer <token>`` (``hqms accounts token create``);
a browser session works too (state-changing calls then need ``X-CSRF-Token``). The schema is
published at ``/openapi.json``; docs/api.md describes the calls and the front-end machine's use.

Exactly-once for the front-end machine: ``POST /api/v1/uploads`` with ``Idempotency-Key: <sha256
of the zip>`` answers the org's upload already accepted for those bytes (``replayed: true``)
instead of recording a duplicate, and ``GET /api/v1/uploads?sha256=…`` finds it without sending
the bytes again.
"""
from __future__ import annotations

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from hqms.accounts import ROLE_ZH
from hqms.intake.cli import ERROR_FIELDS
from hqms.web import materials, scope
from hqms.web.auth import Caller, accounts_of, caller
from hqms.web.pages import errors_csv_response, material_response
from hqms.web.service import take_upload, upload_view

router = APIRouter(prefix="/api/v1", tags=["hqms"])


class UploadRecord(BaseModel):
    upload_id: str
    file_name: str
    received_at: str
    received_local: str
    uploader: str
    org_code: str
    stream: str | None
    channel: str
    status: str
    stage: str
    status_zh: str
    message: str | None
    message_en: str | None
    record_count: int | None
    conforming_count: int | None
    has_errors: bool
    duplicate_of: str | None
    sha256: str
    size_bytes: int


class UploadPage(BaseModel):
    total: int
    page: int
    size: int
    items: list[UploadRecord]


class SubmitAnswer(BaseModel):
    status: str
    message: str
    message_en: str
    upload_id: str | None
    rule: str | None
    replayed: bool
    record: UploadRecord | None


class ErrorItem(BaseModel):
    file_name: str | None
    row: int | None
    column: str | None
    rule: str
    severity: str
    message_zh: str
    message_en: str
    value_masked: str | None
    check_id: str | None


class ErrorPage(BaseModel):
    upload_id: str
    total: int
    page: int
    size: int
    items: list[ErrorItem]


class Me(BaseModel):
    login: str
    role: str
    role_zh: str
    org_code: str | None
    region_code: str | None


class MaterialItem(BaseModel):
    slug: str
    title: str
    file_name: str
    url: str


def _caller(request: Request) -> Caller:
    who = caller(request)
    if who is None:
        raise HTTPException(status_code=401, detail="login or Bearer token required",
                            headers={"WWW-Authenticate": "Bearer"})
    if who.principal.must_change:  # a browser session before the forced password change
        raise HTTPException(status_code=403, detail="change the initial password first / 请先修改初始密码")
    return who


@router.get("/me", response_model=Me)
def me(request: Request) -> Me:
    p = _caller(request).principal
    return Me(login=p.login, role=p.role, role_zh=ROLE_ZH[p.role], org_code=p.org_code, region_code=p.region_code)


@router.post("/uploads", response_model=SubmitAnswer,
             responses={413: {"model": SubmitAnswer}, 422: {"model": SubmitAnswer}},
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"], "properties": {
                     "file": {"type": "string", "format": "binary", "description": "the .zip (≤ 20 MB)"},
                     "stream": {"type": "string", "enum": ["flu", "fever", "outpatient"]},
                     "channel": {"type": "string", "enum": ["web", "tran"]}}}}}}})
async def submit_upload(request: Request, idempotency_key: str | None = Header(default=None)) -> JSONResponse:
    """Submit a zip for the caller's hospital (multipart field ``file``); the answer is the
    intake outcome. ``Idempotency-Key`` = the zip's sha256 makes a repeat return the existing
    upload."""
    who = _caller(request)
    outcome = await take_upload(request, who, idempotency_key)
    record = scope.get_upload(accounts_of(request), who.principal, outcome.upload_id) if outcome.upload_id else None
    answer = SubmitAnswer(status=outcome.status, message=outcome.message_zh, message_en=outcome.message_en,
                          upload_id=outcome.upload_id, rule=outcome.rule, replayed=outcome.replayed,
                          record=UploadRecord(**upload_view(record)) if record else None)
    return JSONResponse(answer.model_dump(), status_code=outcome.http_status)


@router.get("/uploads", response_model=UploadPage)
def list_uploads(request: Request, page: int = 1, size: int = 10, sha256: str | None = None,
                 org: str | None = None) -> UploadPage:
    """Upload records in the caller's scope, newest first (``sha256``: the caller's uploads of
    exactly those bytes)."""
    who = _caller(request)
    found = scope.page_uploads(accounts_of(request), who.principal, page, size, org=org, sha256=sha256)
    return UploadPage(total=found.total, page=found.page, size=found.size,
                      items=[UploadRecord(**upload_view(r)) for r in found.rows])


def _scoped(request: Request, who: Caller, upload_id: str) -> dict:
    row = scope.get_upload(accounts_of(request), who.principal, upload_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such upload")
    return row


@router.get("/uploads/{upload_id}", response_model=UploadRecord)
def get_upload(request: Request, upload_id: str) -> UploadRecord:
    who = _caller(request)
    return UploadRecord(**upload_view(_scoped(request, who, upload_id)))


@router.get("/uploads/{upload_id}/errors", response_model=ErrorPage)
def upload_errors(request: Request, upload_id: str, page: int = 1, size: int = 100,
                  file: str | None = None, column: str | None = None, rule: str | None = None) -> ErrorPage:
    """One upload's errors in report order, paged; filter by file, column, rule."""
    who = _caller(request)
    _scoped(request, who, upload_id)
    found = scope.page_errors(accounts_of(request), upload_id, page, size, file=file, column=column, rule=rule)
    return ErrorPage(upload_id=upload_id, total=found.total, page=found.page, size=found.size,
                     items=[ErrorItem(**{k: e[k] for k in ERROR_FIELDS}) for e in found.rows])


@router.get("/uploads/{upload_id}/errors.csv", response_class=Response)
def upload_errors_csv(request: Request, upload_id: str) -> Response:
    """The error list as ``hqms errors ID --csv`` writes it (UTF-8 with BOM, formulas made text)."""
    who = _caller(request)
    _scoped(request, who, upload_id)
    return errors_csv_response(request, who, upload_id)


@router.get("/downloads", response_model=list[MaterialItem])
def list_materials(request: Request) -> list[MaterialItem]:
    """资料下载: the data pack and its parts."""
    _caller(request)
    return [MaterialItem(slug=m.slug, title=m.title, file_name=m.file_name, url=f"/api/v1/downloads/{m.slug}")
            for m in materials.catalogue()]


@router.get("/downloads/{slug}", response_class=Response)
def get_material(request: Request, slug: str) -> Response:
    return material_response(request, _caller(request), slug)
