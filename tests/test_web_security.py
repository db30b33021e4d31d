"""The hospital service's security, against a real ``hqms serve`` process (uvicorn) with the
real registry and S3 server of its own home: scope (404 for someone else's upload, exactly like
an unknown one), CSRF on every form, lock-out, token revocation, the 20 MB limit enforced on the
stream without buffering, hostile names rendered inert, cookie flags."""
from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import csv_bytes, make_zip
from conftest import use_home
from web_helpers import PASSWORD, csrf_of, login, org_in_region, rss_sampler, serve, upload

from hqms import config, embedded_s3
from hqms.accounts import Accounts
from hqms.registry import Registry

ORG_A = org_in_region(1, "110101")  # Beijing, 东城区
ORG_B = org_in_region(2, "120101")  # Tianjin, 和平区
HOSTILE_LOGIN = '"><script>alert(1)</script>'


@dataclass
class Site:
    base: str
    proc: subprocess.Popen
    home: Path
    cfg: config.Config
    a: httpx.Client
    b: httpx.Client
    a_upload: str  # A's refused upload (it has an error list)
    b_upload: str
    token_a: str


def _hqms(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hqms.cli", *argv], capture_output=True, text=True,
                          env=dict(os.environ))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("web_home")
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, home)
        cfg = config.load()
        accounts = Accounts(cfg)
        for login_name, role, org, region in (
                ("hosp_a", "hospital", ORG_A, None), ("hosp_b", "hospital", ORG_B, None),
                (HOSTILE_LOGIN, "hospital", ORG_A, None), ("city_bj", "city_admin", None, "110100"),
                ("prov_tj", "province_admin", None, "120000"), ("nation", "national_admin", None, None)):
            accounts.add(login_name, role, org_code=org, region_code=region, password=PASSWORD)
        token_a = accounts.create_token("hosp_a", "前置机")
        try:
            with serve(home) as (proc, base):
                a, b = login(base, "hosp_a"), login(base, "hosp_b")
                bad = make_zip(home / "bad.zip", {"flu_1.txt": csv_bytes("flu_", ORG_A)})
                upload(a, bad)
                good_b = make_zip(home / "good_b.zip", {"flu_20260101.csv": csv_bytes("flu_", ORG_B)})
                upload(b, good_b)
                registry = Registry.from_config(cfg)
                a_upload = registry.list_uploads(org=ORG_A)[0]["upload_id"]
                b_upload = registry.list_uploads(org=ORG_B)[0]["upload_id"]
                yield Site(base, proc, home, cfg, a, b, a_upload, b_upload, token_a)
        finally:
            embedded_s3.stop(cfg)


# --- scope ----------------------------------------------------------------------------------------

def test_a_hospital_cannot_read_another_hospitals_upload(site: Site) -> None:
    for path in ("/uploads/{}/errors", "/uploads/{}/errors.csv", "/api/v1/uploads/{}",
                 "/api/v1/uploads/{}/errors", "/api/v1/uploads/{}/errors.csv"):
        own = site.a.get(path.format(site.a_upload))
        foreign = site.b.get(path.format(site.a_upload))
        unknown = site.b.get(path.format("u20260101000000deadbeef"))
        assert own.status_code == 200, path
        assert foreign.status_code == unknown.status_code == 404, path
        assert foreign.text == unknown.text  # nothing tells "exists for someone else" from "unknown"
    listing = site.b.get("/upload").text
    assert site.b_upload in listing and site.a_upload not in listing
    api = site.b.get("/api/v1/uploads", params={"size": 100}).json()
    assert {u["upload_id"] for u in api["items"]} == {site.b_upload}
    assert site.b.get("/api/v1/uploads", params={"org": ORG_A}).json()["total"] == 0


def test_administrators_see_only_their_region(site: Site) -> None:
    city, prov, nation = login(site.base, "city_bj"), login(site.base, "prov_tj"), login(site.base, "nation")
    assert city.get(f"/uploads/{site.a_upload}/errors").status_code == 200
    assert city.get(f"/uploads/{site.b_upload}/errors").status_code == 404
    assert prov.get(f"/api/v1/uploads/{site.b_upload}").status_code == 200
    assert prov.get(f"/api/v1/uploads/{site.a_upload}").status_code == 404
    assert city.get(f"/admin/hospitals/{ORG_B}").status_code == 404
    assert city.get(f"/admin/hospitals/{ORG_A}").status_code == 200
    assert {u["org_code"] for u in city.get("/api/v1/uploads").json()["items"]} == {ORG_A}
    assert {u["org_code"] for u in nation.get("/api/v1/uploads").json()["items"]} == {ORG_A, ORG_B}
    hospitals = city.get("/admin/hospitals").text
    assert ORG_A in hospitals and ORG_B not in hospitals
    # a hospital account has no administrators' pages, and administrators cannot upload
    assert site.a.get("/admin").status_code == 404
    assert city.post("/upload", data={"csrf_token": city.headers["x-page-csrf"]},
                     files={"file": ("x.zip", b"PK", "application/zip")}).status_code == 403


def test_bulletins_are_listed_for_administrators_and_the_full_variant_only_nationally(site: Site) -> None:
    week = site.cfg.marts_dir / "bulletin" / "2025-W03"
    week.mkdir(parents=True, exist_ok=True)
    for name in ("bulletin.html", "bulletin-admin.html"):
        (week / name).write_text(f"<html><body>{name}</body></html>", encoding="utf-8")
    (site.cfg.marts_dir / "bulletin" / "notes").mkdir(exist_ok=True)  # not a week: never listed
    accounts = Accounts(site.cfg)
    accounts.add("bulletin_city", "city_admin", region_code="110100", password=PASSWORD)
    accounts.add("bulletin_nation", "national_admin", password=PASSWORD)
    city, nation = login(site.base, "bulletin_city"), login(site.base, "bulletin_nation")
    listing = city.get("/admin/bulletins").text
    assert "2025-W03/bulletin.html" in listing and "bulletin-admin" not in listing and "notes" not in listing
    assert "bulletin-admin.html" in nation.get("/admin/bulletins").text
    assert city.get("/admin/bulletins/2025-W03/bulletin.html").text.endswith("bulletin.html</body></html>")
    unknown = city.get("/admin/bulletins/2025-W04/bulletin.html")
    assert unknown.status_code == 404
    for path in ("/admin/bulletins/2025-W03/bulletin-admin.html",  # the hospital-level variant
                 "/admin/bulletins/..%2F..%2Fkeys/bulletin.html", "/admin/bulletins/2025-W03/..%2Fx"):
        assert city.get(path).status_code == 404, path
    assert nation.get("/admin/bulletins/2025-W03/bulletin-admin.html").status_code == 200
    assert site.a.get("/admin/bulletins").status_code == 404  # hospitals: no administrators' pages


# --- CSRF, sessions, lock-out, tokens -------------------------------------------------------------

def test_forms_without_csrf_token_are_refused(site: Site) -> None:
    before = len(Registry.from_config(site.cfg).list_uploads())
    zipped = make_zip(site.home / "csrf.zip", {"flu_20260102.csv": csv_bytes("flu_", ORG_A)})
    with zipped.open("rb") as fh:
        refused = site.a.post("/upload", files={"file": ("csrf.zip", fh, "application/zip")})
    assert refused.status_code == 403 and "校验码" in refused.text
    with zipped.open("rb") as fh:
        forged = site.a.post("/upload", data={"csrf_token": "x" * 43}, files={"file": ("csrf.zip", fh)})
    assert forged.status_code == 403
    assert len(Registry.from_config(site.cfg).list_uploads()) == before
    assert site.a.post("/password", data={"old_password": "x", "new_password": "y" * 12,
                                          "new_password2": "y" * 12}).status_code == 403
    assert site.a.post("/logout").status_code == 403
    fresh = httpx.Client(base_url=site.base)
    fresh.get("/login")
    assert fresh.post("/login", data={"login": "hosp_b", "password": PASSWORD}).status_code == 403
    # a browser session calling the API must send the token too; a Bearer caller needs none
    with zipped.open("rb") as fh:
        assert site.a.post("/api/v1/uploads", files={"file": ("csrf.zip", fh)}).status_code == 403
    assert site.a.get("/upload").status_code == 200  # the session itself still works


def test_lock_out_after_repeated_failures(site: Site) -> None:
    Accounts(site.cfg).add("lock_me", "hospital", org_code=ORG_B, password=PASSWORD)
    client = httpx.Client(base_url=site.base, follow_redirects=True)

    def attempt(password: str) -> httpx.Response:
        page = client.get("/login")
        return client.post("/login", data={"login": "lock_me", "password": password,
                                           "csrf_token": csrf_of(page.text)})

    def wait_out(page: httpx.Response) -> None:
        time.sleep(int(re.search(r"请 (\d+) 秒后再试", page.text).group(1)) + 0.2)

    answers = [attempt("wrong-password").status_code for _ in range(3)]
    assert answers == [401, 401, 401]
    too_soon = attempt("wrong-password")  # back-off: refused unchecked, not counted
    assert too_soon.status_code == 429 and "秒后再试" in too_soon.text
    wait_out(too_soon)
    assert attempt("wrong-password").status_code == 401  # 4th counted failure
    wait_out(attempt("wrong-password"))
    locked = attempt("wrong-password")  # 5th: locked
    assert locked.status_code == 429 and "锁定" in locked.text
    still = attempt(PASSWORD)  # the right password does not open a locked account
    assert still.status_code == 429 and "锁定" in still.text
    reset = _hqms("accounts", "reset-password", "lock_me")
    assert reset.returncode == 0
    assert attempt(reset.stdout.strip()).url.path == "/password"  # unlocked, and must change it
    outcomes = [e["outcome"] for e in Accounts(site.cfg).audit_entries(50) if e["actor"] == "lock_me"]
    assert "locked" in outcomes and "ok" in outcomes


def test_revoked_token_stops_working(site: Site) -> None:
    token = Accounts(site.cfg).create_token("hosp_b", "temp")
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{site.base}/api/v1/me", headers=auth).json()["org_code"] == ORG_B
    assert _hqms("accounts", "token", "revoke", token.split("_")[1]).returncode == 0
    assert httpx.get(f"{site.base}/api/v1/me", headers=auth).status_code == 401
    assert httpx.get(f"{site.base}/api/v1/uploads", headers=auth).status_code == 401


def test_disabled_account_loses_its_session_and_its_org_is_refused(site: Site, tmp_path: Path) -> None:
    org = org_in_region(9, "110102")
    Accounts(site.cfg).add("soon_gone", "hospital", org_code=org, password=PASSWORD)
    client = login(site.base, "soon_gone")
    assert _hqms("accounts", "disable", "soon_gone").returncode == 0
    assert client.get("/upload").url.path == "/login"
    zipped = make_zip(tmp_path / "flu.zip", {"flu_20260101.csv": csv_bytes("flu_", org)})
    refused = _hqms("submit", str(zipped), "--org", org, "--user", "operator")
    assert refused.returncode == 1 and "[unknown_org]" in refused.stderr and "账号" in refused.stderr


def test_session_cookie_flags(site: Site) -> None:
    Accounts(site.cfg).add("cookie_check", "national_admin", password=PASSWORD)
    client = httpx.Client(base_url=site.base)
    page = client.get("/login")
    answer = client.post("/login", data={"login": "cookie_check", "password": PASSWORD,
                                         "csrf_token": csrf_of(page.text)})
    cookie = next(v for k, v in answer.headers.multi_items()
                  if k == "set-cookie" and v.startswith("hqms_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http on loopback: the embedded default (auto)
    # behind a TLS proxy (X-Forwarded-Proto from loopback) the same server marks it Secure
    proxied = {"X-Forwarded-Proto": "https"}
    page = httpx.get(f"{site.base}/login", headers=proxied)
    pre = page.headers["set-cookie"]
    assert "Secure" in pre
    answer = httpx.post(f"{site.base}/login", headers={**proxied, "Cookie": pre.split(";")[0]},
                        data={"login": "cookie_check", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
    cookie = next(v for k, v in answer.headers.multi_items()
                  if k == "set-cookie" and v.startswith("hqms_session="))
    assert "Secure" in cookie


# --- the 20 MB limit ------------------------------------------------------------------------------

def _raw_request(base: str, head: str, body_chunks=()) -> str:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        for chunk in body_chunks:
            sock.sendall(chunk)
        data = b""
        while True:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                length = re.search(rb"content-length: (\d+)", data[:head_end], re.I)
                if length and len(data) >= head_end + 4 + int(length.group(1)):
                    break
            part = sock.recv(65536)
            if not part:
                break
            data += part
    return data.decode("utf-8", "replace")


def test_21_mb_upload_refused_by_its_declared_length_without_reading_it(site: Site) -> None:
    """Content-Length 21 MB and ``Expect: 100-continue``: the answer comes before any body byte
    is sent (uvicorn sends 100 Continue only when the app reads the body — it never does)."""
    head = (f"POST /api/v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {site.token_a}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {21 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n")
    answer = _raw_request(site.base, head)
    assert answer.startswith("HTTP/1.1 413") and "100 Continue" not in answer
    assert "zip_too_large" in answer


def test_21_mb_streamed_upload_refused_without_buffering(site: Site) -> None:
    """No length declared (chunked): the server counts while it reads, refuses past 20 MB, and its
    peak RSS grows far less than the 21 MB it was sent."""
    boundary = "hqmsboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.zip\"\r\n"
               "Content-Type: application/zip\r\n\r\n").encode()
        block = os.urandom(1024 * 1024)
        for _ in range(21):
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    with rss_sampler(site.proc.pid) as samples:
        answer = httpx.post(f"{site.base}/api/v1/uploads", content=body(), timeout=120,
                            headers={"Authorization": f"Bearer {site.token_a}",
                                     "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 413 and answer.json()["rule"] == "zip_too_large"
    assert len(samples) > 10
    grown_mb = (max(samples) - samples[0]) / 1024
    print(f"server peak RSS grew {grown_mb:.1f} MB while refusing a 21 MB stream")
    assert grown_mb < 10
    assert not list((site.cfg.work_dir / "web").iterdir())  # nothing left on disk either
    uploads = Registry.from_config(site.cfg).list_uploads(org=ORG_A)
    assert all(u["file_name"] != "big.zip" for u in uploads)


# --- hostile names --------------------------------------------------------------------------------

def test_html_and_path_tricks_in_names_render_inert(site: Site, tmp_path: Path) -> None:
    hostile = login(site.base, HOSTILE_LOGIN)
    data = csv_bytes("flu_", ORG_A)
    inner = '<img src=x onerror="alert(2)">flu_1.txt'
    zipped = make_zip(tmp_path / "x.zip", {inner: data})
    trick = '..\\..\\..\\tmp\\<svg onload=alert(3)>.zip'
    page = upload(hostile, zipped, name=trick)
    assert page.status_code == 200
    listing = hostile.get("/upload").text
    for raw in ("<script>alert(1)</script>", "<svg onload", "<img src=x"):
        assert raw not in listing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing  # the login name, shown as text
    assert "&lt;svg onload=alert(3)&gt;.zip" in listing  # the last path part only, as text
    upload_id = Registry.from_config(site.cfg).list_uploads(org=ORG_A)[0]["upload_id"]
    errors = hostile.get(f"/uploads/{upload_id}/errors").text
    assert "<img src=x" not in errors and "&lt;img src=x onerror=" in errors
    assert not Path("/tmp/<svg onload=alert(3)>.zip").exists()
    assert "Content-Security-Policy" in hostile.get("/upload").headers


def test_login_page_and_health(site: Site) -> None:
    assert httpx.get(f"{site.base}/healthz").json() == {"status": "ok"}
    key = site.cfg.web_secret_key_file  # the embedded default's generated key: owner-only
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    page = httpx.get(f"{site.base}/upload", follow_redirects=True)
    assert page.url.path == "/login" and "登录名/手机号码" in page.text
    schema = httpx.get(f"{site.base}/openapi.json").json()
    assert {"/api/v1/uploads", "/api/v1/uploads/{upload_id}/errors", "/api/v1/downloads/{slug}"} <= set(schema["paths"])
    assert not any(p.startswith("/upload") or p == "/login" for p in schema["paths"])


def test_downloads_are_generated_from_the_spec(site: Site, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from hqms import spec

    xlsx = site.a.get("/downloads/interface-standard")
    assert xlsx.status_code == 200 and "filename*=UTF-8''" in xlsx.headers["content-disposition"]
    (tmp_path / "std.xlsx").write_bytes(xlsx.content)
    book = load_workbook(tmp_path / "std.xlsx")
    fever = spec.dataset("fever")
    sheet = book[fever.prefix.rstrip("_")]
    assert [r[1] for r in sheet.iter_rows(min_row=3, values_only=True)] == list(fever.codes)
    template = site.a.get(f"/downloads/template-{fever.id}")
    assert template.content.decode("gbk").strip() == ",".join(fever.codes)
    pack = site.a.get("/api/v1/downloads/data-pack", headers={})
    (tmp_path / "pack.zip").write_bytes(pack.content)
    assert {"工作说明.html", "上传文件模板.zip"} <= set(zipfile.ZipFile(tmp_path / "pack.zip").namelist())
    actions = {(e["actor"], e["action"], e["target"]) for e in Accounts(site.cfg).audit_entries(200)}
    assert ("hosp_a", "download", "interface-standard") in actions
