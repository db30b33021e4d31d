"""What the web page and the API share: taking an upload, and the views of records and errors.

One code path for both, so the browser and the front-end machine get the same rules and the
same answers (《发热门诊医疗服务监测系统数据对接 用户操作说明》 §3.1: one account for both). Intake itself is
:func:`hqms.intake.submit.submit`, unchanged: the zip rules, the ``unknown_org`` check, landing
and the registry record all happen there.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from hqms.config import CHINA_TZ
from hqms.intake.cli import STATUS_ZH
from hqms.intake.submit import Answer, LandingFailed, submit
from hqms.objectstore import ObjectStoreUnavailable
from hqms.web.auth import Caller, accounts_of, check_csrf
from hqms.web.receive import BadForm, BodyTooLarge, drain, receive_upload

TOO_LARGE_ZH = "上传文件不能超过 20M：请拆分为多个 zip 压缩包后分别上传"
TOO_LARGE_EN = "the upload is larger than 20 MB: split it into several zips"


@dataclass(frozen=True, kw_only=True)
class Outcome(Answer):
    """An upload's answer over HTTP. ``upload_id`` is None only for refusals before intake (size, form)."""

    http_status: int
    replayed: bool = False  # the idempotency key matched an upload already accepted


async def take_upload(request: Request, who: Caller, idempotency_key: str | None = None) -> Outcome:
    """Receive the posted zip and hand it to intake for the caller's own org."""
    cfg = request.app.state.cfg
    accounts = accounts_of(request)
    principal = who.principal
    if not principal.is_hospital:
        await drain(request, cfg)
        raise HTTPException(status_code=403, detail="only hospital accounts upload")
    try:
        received = await receive_upload(request, cfg)
    except BodyTooLarge as exc:
        if not exc.declared:
            await drain(request, cfg)
        accounts.audit(principal.login, "upload", None, "zip_too_large")
        return Outcome("rejected", TOO_LARGE_ZH, TOO_LARGE_EN, rule="zip_too_large", http_status=413)
    except BadForm as exc:
        return Outcome("rejected", f"请选择要上传的 zip 文件（{exc}）", f"choose a zip file ({exc})",
                       rule="bad_form", http_status=400)
    try:
        check_csrf(request, who, received.fields.get("csrf_token"))
        if idempotency_key:
            if idempotency_key.lower() != received.sha256:
                raise HTTPException(status_code=422, detail="Idempotency-Key is not the sha256 of the bytes received")
            known = accounts.registry.find_by_sha(principal.org_code, received.sha256)
            if known is not None:
                accounts.audit(principal.login, "upload", known["upload_id"], "replayed")
                return Outcome(known["status"], known["message_zh"] or "", known["message_en"] or "",
                               known["upload_id"], http_status=200, replayed=True)
        channel = received.fields.get("channel") or "web"
        if channel not in ("web", "tran"):
            raise HTTPException(status_code=422, detail="channel must be web or tran")
        try:
            result = await run_in_threadpool(
                submit, received.path, principal.org_code, principal.login,
                stream=received.fields.get("stream") or None, channel=channel,
                upload_name=received.file_name, cfg=cfg, registry=accounts.registry)
        except (ObjectStoreUnavailable, LandingFailed):
            accounts.audit(principal.login, "upload", None, "store_unavailable")
            return Outcome("unavailable", "存储服务暂不可用，请稍后重试（文件未接收）",
                           "storage is unavailable; try again later (nothing was received)", http_status=503)
    finally:
        received.discard()
    accounts.audit(principal.login, "upload", result.upload_id, result.status)
    code = 422 if result.status == "rejected" else 200
    return Outcome(result.status, result.message_zh, result.message_en, result.upload_id, result.rule,
                   http_status=code)


def local_time(iso_utc: str | None) -> str:
    return datetime.fromisoformat(iso_utc).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") if iso_utc else ""


def has_error_list(row: dict) -> bool:
    """《发热门诊医疗服务监测系统数据对接 用户操作说明》: the link shows when 接口标准达标数 differs from 数据包记录数 — and for refusals
    (their reason is in the list)."""
    if row["status"] == "rejected":
        return True
    return (row["record_count"] is not None and row["conforming_count"] is not None
            and row["record_count"] != row["conforming_count"])


def status_label(row: dict) -> str:
    """处理状态 as the upload page shows it. 《发热门诊医疗服务监测系统数据对接 用户操作说明》 shows 处理完成 for every processed upload and
    lets the 错误信息 link tell the partial ones; we keep the seed's word and add which it is."""
    if row["status"] == "partially_accepted":
        return "处理完成（部分达标）"
    if row["status"] == "rejected" and row["stage"] == "ingest":
        return "处理完成（全部未达标）"
    return STATUS_ZH.get(row["status"], row["status"])


def upload_view(row: dict) -> dict:
    """One upload record as pages and the API show it (the columns of 《发热门诊医疗服务监测系统数据对接 用户操作说明》)."""
    return {
        "upload_id": row["upload_id"], "file_name": row["file_name"],
        "received_at": row["received_at"], "received_local": local_time(row["received_at"]),
        "uploader": row["uploader"], "org_code": row["org_code"], "stream": row["stream"],
        "channel": row["channel"], "status": row["status"], "stage": row["stage"],
        "status_zh": status_label(row),
        "message": row["message_zh"], "message_en": row["message_en"],
        "record_count": row["record_count"], "conforming_count": row["conforming_count"],
        "has_errors": has_error_list(row), "duplicate_of": row["duplicate_of"],
        "sha256": row["sha256"], "size_bytes": row["size_bytes"],
    }
