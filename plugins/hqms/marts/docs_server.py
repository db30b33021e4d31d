"""Serve dbt's generated documentation (``hqms marts docs --serve``).

Why not ``dbt docs serve``: it binds every interface on a fixed port (8080) and opens a browser.
The docs describe the marts' columns, tests and lineage — internal, so they are served on
loopback only, on a port of the user's choosing (0 = any free one), read-only from the folder
``dbt docs generate`` wrote under HQMS_HOME.
"""
from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: what dbt's static site needs; nothing else in the target folder is served
FILES = frozenset({"/", "/index.html", "/manifest.json", "/catalog.json"})


class _DocsHandler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's naming
        if self.path.split("?", 1)[0] not in FILES:
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 — quiet: no access log on the console
        pass


def make_server(folder: Path, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for ``folder`` on loopback (call ``serve_forever`` / ``shutdown``)."""
    handler = functools.partial(_DocsHandler, directory=str(folder))
    return ThreadingHTTPServer((host, port), handler)
