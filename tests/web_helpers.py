"""Helpers for the hospital-service tests: a real ``hqms serve`` (uvicorn) process on a free
loopback port, and a logged-in HTTP client as a browser would be (cookies, CSRF tokens)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import httpx

from hqms import validators

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "Initial-pass-1"
NEW_PASSWORD = "Changed-pass-2"


def org_in_region(seed: int, region6: str) -> str:
    """A check-valid synthetic 医疗机构代码 in the given GB/T 2260 county."""
    return validators.make_medical_org_code(validators.make_org_code(f"{9100_0000 + seed:08d}"),
                                            region6, "11", "A100", "1")


@contextmanager
def serve(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """``hqms serve --port 0`` in a child process; yields (process, base URL); killed at exit."""
    log = log_dir / f"serve-{time.monotonic_ns()}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "hqms.cli", "serve", "--port", "0"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env or dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"running on (http://\S+)", log.read_text(errors="replace"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hqms serve did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield proc, m.group(1)
    finally:
        proc.kill()
        proc.wait()


def csrf_of(html: str) -> str:
    return CSRF.search(html).group(1)


def login(base: str, name: str, password: str = PASSWORD, change_to: str | None = NEW_PASSWORD) -> httpx.Client:
    """A client logged in as ``name`` (the forced change of the initial password done)."""
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=60)
    page = client.get("/login")
    page = client.post("/login", data={"login": name, "password": password, "csrf_token": csrf_of(page.text)})
    assert page.status_code == 200, page.text
    if page.url.path == "/password" and change_to:
        page = client.post("/password", data={"old_password": password, "new_password": change_to,
                                              "new_password2": change_to, "csrf_token": csrf_of(page.text)})
        assert page.url.path in ("/upload", "/admin"), page.text
    client.headers["x-page-csrf"] = csrf_of(page.text)  # kept for the tests' own form posts
    return client


def upload(client: httpx.Client, path: Path, name: str | None = None, **fields: str) -> httpx.Response:
    """Post a zip through the upload form, as the page does."""
    with path.open("rb") as fh:
        return client.post("/upload", data={"csrf_token": client.headers["x-page-csrf"], **fields},
                           files={"file": (name or path.name, fh, "application/zip")})


def rss_kb(pid: int) -> int:
    """VmRSS: the process's resident set now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@contextmanager
def rss_sampler(pid: int, every: float = 0.01) -> Iterator[list[int]]:
    """Samples of ``pid``'s RSS (kB) taken in the background while the block runs. (The peak
    VmHWM is useless here: argon2id's 64 MiB hashing already set it.)"""
    import threading

    samples = [rss_kb(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_kb(pid))
            time.sleep(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
