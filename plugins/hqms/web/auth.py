"""Who is asking: session cookies for the browser, Bearer tokens for machines, CSRF for forms.

* Session: a random 256-bit value in the ``hqms_session`` cookie (HttpOnly, SameSite=Lax,
  Secure — see :func:`cookie_secure`), stored server-side as its SHA-256 with the account and
  the session's CSRF token (:mod:`hqms.accounts`); idle 30 min, at most 12 h. Disabling an
  account or resetting its password ends its sessions.
* Bearer: ``Authorization: Bearer hqms_<id>_<secret>`` (``hqms accounts token create``).
* CSRF: every form carries ``csrf_token``; a logged-in form must echo the session's token. The
  login form (no session yet) is bound to a random ``hqms_pre`` cookie by an HMAC under the web
  secret key. Browser JSON calls with a session send it as ``X-CSRF-Token``; Bearer calls need
  none (no ambient credential to ride on).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.responses import Response

from hqms.accounts import Accounts, Principal, web_secret_key

SESSION_COOKIE = "hqms_session"
PRE_COOKIE = "hqms_pre"


@dataclass(frozen=True)
class Caller:
    principal: Principal
    csrf: str | None  # None for Bearer callers
    via_token: bool


def accounts_of(request: Request) -> Accounts:
    return request.app.state.accounts


def caller(request: Request) -> Caller | None:
    """The principal behind the request, from its Bearer token or its session cookie."""
    accounts = accounts_of(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        who = accounts.token_principal(header[7:].strip())
        return Caller(who, None, True) if who else None
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    found = accounts.session(token)
    return Caller(found[0], found[1], False) if found else None


def check_csrf(request: Request, who: Caller, submitted: str | None) -> None:
    """Refuse a state-changing request of a session caller without its CSRF token (403)."""
    if who.via_token:
        return
    submitted = submitted or request.headers.get("x-csrf-token")
    if not submitted or not who.csrf or not hmac.compare_digest(submitted, who.csrf):
        raise HTTPException(status_code=403, detail="csrf")


def pre_session(request: Request) -> tuple[str, str, bool]:
    """(pre-login cookie value, its CSRF token, whether the cookie must be set)."""
    value = request.cookies.get(PRE_COOKIE)
    fresh = not value or len(value) > 64
    if fresh:
        value = secrets.token_urlsafe(24)
    return value, login_csrf(request, value), fresh


def login_csrf(request: Request, pre: str) -> str:
    key = web_secret_key(request.app.state.cfg)
    return hmac.new(key, f"login:{pre}".encode(), hashlib.sha256).hexdigest()


def check_login_csrf(request: Request, submitted: str | None) -> None:
    pre = request.cookies.get(PRE_COOKIE)
    if not pre or not submitted or not hmac.compare_digest(submitted, login_csrf(request, pre)):
        raise HTTPException(status_code=403, detail="csrf")


def cookie_secure(request: Request) -> bool:
    """``HQMS_WEB_COOKIE_SECURE``: ``auto`` (default) marks cookies Secure except on plain http
    to a loopback host — the embedded default, where there is no TLS to require. Behind a TLS
    proxy the scheme is https (X-Forwarded-Proto) or the host is not loopback: Secure."""
    setting = request.app.state.cfg.web_cookie_secure
    if setting in ("true", "1", "yes", "on"):
        return True
    if setting in ("false", "0", "no", "off"):
        return False
    if request.url.scheme == "https":
        return True
    host = (request.url.hostname or "").strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=cookie_secure(request))


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=cookie_secure(request))
