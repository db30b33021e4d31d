"""The hospital service: FastAPI app (pages + JSON API) and ``hqms serve``.

Runs on the embedded default like everything else (registry, S3 and marts of ``HQMS_HOME``),
bound to loopback unless ``HQMS_WEB_HOST`` says otherwise; in production a reverse proxy terminates
TLS in front of it (docs/operations.md). ``/healthz`` answers when the registry is reachable
(``hqms up`` polls it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from hqms import config
from hqms.accounts import Accounts

HERE = Path(__file__).resolve().parent
#: Sent with every response: no framing, no sniffing, scripts and styles from us only.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "Cache-Control": "no-store",
}
ERROR_TITLES = {401: "请先登录", 403: "请求被拒绝", 404: "页面不存在", 405: "请求方式不正确",
                413: "上传文件过大", 422: "请求内容有误"}


def create_app(cfg: config.Config | None = None) -> FastAPI:
    from hqms.web import api, pages

    cfg = cfg or config.load()
    cfg.ensure_dirs()
    (cfg.work_dir / "web").mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="HQMS 医院质量监测系统 数据上报服务 API",
                  description="Upload, upload records, error lists and the data pack for hospital accounts "
                              "(see docs/api.md).",
                  version="1", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.cfg = cfg
    app.state.accounts = Accounts(cfg)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:.1f}%"
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(pages.LoginRequired)
    async def to_login(request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(pages.PasswordChangeRequired)
    async def to_password(request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """JSON for the API; for pages a Chinese page. 404 says nothing about whether the thing
        exists for someone else."""
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            detail = "not found" if exc.status_code == 404 else exc.detail
            return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
        title = ERROR_TITLES.get(exc.status_code, "出错了")
        hint = {403: "表单已过期或缺少校验码，请返回后刷新页面再提交。"}.get(exc.status_code, "")
        return templates.TemplateResponse(request, "error.html", {
            "who": None, "nav": [], "title": title, "hint": hint, "code": exc.status_code},
            status_code=exc.status_code)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            with app.state.accounts.engine.connect() as con:
                con.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return JSONResponse({"status": "registry unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the hospital service: upload page, records, errors, API (uvicorn)")
    p.add_argument("--host", help="bind address (default HQMS_WEB_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default HQMS_WEB_PORT, 8800; 0 = any free port)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    cfg = config.load()
    from hqms.accounts import web_secret_key

    cfg.require_s3()  # a service that would take uploads it cannot land does not start
    web_secret_key(cfg)  # generate the embedded default's key before workers race for it
    uvicorn.run("hqms.web.app:create_app", factory=True, host=args.host or cfg.web_host,
                port=cfg.web_port if args.port is None else args.port, workers=args.workers,
                proxy_headers=True, forwarded_allow_ips="127.0.0.1", log_level="info",
                server_header=False)
    return 0
