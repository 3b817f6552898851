"""The fleet page: every site's lines side by side, served by ``modulecontrol fleet serve``.

Why there and not in a line's station: the fleet historian is the one process that sees
every site (it owns the PostgreSQL connection); a line's station knows its own line only.
The page links to each line's own station (the URL its NBIRTH carries, ``Line/Station``),
where an operator logs in to that line. The page is read-only, shows no values that are not
in the fleet database already, and offers no command; it binds 127.0.0.1 unless told
otherwise, and any other address needs TLS (:func:`check_bind`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse

from modulecontrol import __version__
from modulecontrol.fleet._store import fleet_lines

ASSETS = Path(__file__).with_name("static")

_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modulecontrol fleet</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/fleet.css?v={__version__}">
</head><body>
<header><span class="brand">modulecontrol</span><span>fleet</span>
<span id="summary" class="muted"></span></header>
<div id="banner" role="alert" hidden></div>
<main><table id="fleet" aria-label="Lines of every site">
<thead><tr><th>site</th><th>line</th><th>state</th><th>modules</th><th>active run</th>
<th>last run</th><th class="n">throughput g/h</th><th class="n">yield %</th>
<th class="n">uptime %</th><th class="n">alarms/h</th><th>seen (UTC)</th></tr></thead>
<tbody></tbody></table>
<p class="muted">KPIs: throughput and yield of each line's latest finished run; uptime and
alarms per hour over the last <span id="window"></span> h (docs/fleet.md).</p></main>
<script src="/fleet.js?v={__version__}"></script>
</body></html>
"""


def safe_url(url: str | None) -> str | None:
    """Only an http(s) URL is a link (a line announces its station; a ``javascript:`` URL
    from a misconfigured or hostile edge node must not become one)."""
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def create_fleet_app(dsn: str, window_h: float = 24.0) -> FastAPI:
    app = FastAPI(title="modulecontrol fleet", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def headers(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.update(_SECURITY)
        return response

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    @app.get("/fleet.js")
    def script() -> FileResponse:
        return FileResponse(ASSETS / "fleet.js", media_type="text/javascript")

    @app.get("/fleet.css")
    def style() -> FileResponse:
        return FileResponse(ASSETS / "fleet.css", media_type="text/css")

    @app.get("/api/v1/fleet")
    def fleet() -> dict[str, Any]:
        """Every line with its module states, active run and KPIs (read-only)."""
        lines = []
        for view in fleet_lines(dsn, window_h):
            d = view.as_dict()
            d["station_url"] = safe_url(view.station_url)
            lines.append(d)
        return {"window_h": window_h, "lines": lines,
                "t_utc": _dt.datetime.now(_dt.UTC).isoformat()}

    return app


def check_bind(host: str, tls: bool) -> None:
    """Any address but loopback needs TLS (ValueError saying so)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not tls:
        raise ValueError(f"{host} is not a loopback address: give --tls-cert and --tls-key "
                         f"to serve the fleet page over TLS, or keep 127.0.0.1")


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the historian's own handlers stop both."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class FleetPage:
    """The fleet page on a thread of its own; :meth:`start` returns once it listens."""

    def __init__(self, dsn: str, host: str = "127.0.0.1", port: int = 8480, *,
                 window_h: float = 24.0, tls_cert: Path | None = None,
                 tls_key: Path | None = None) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        check_bind(host, tls_cert is not None)
        self.host = host
        self.tls = tls_cert is not None
        self._server = _Server(uvicorn.Config(
            create_fleet_app(dsn, window_h), host=host, port=port, log_level="warning",
            lifespan="off", ssl_certfile=tls_cert, ssl_keyfile=tls_key))
        self._thread = threading.Thread(target=self._server.run, name="fleet page",
                                        daemon=True)

    @property
    def url(self) -> str:
        port = next((s.getsockname()[1] for srv in self._server.servers
                     for s in srv.sockets), 0)
        return f"{'https' if self.tls else 'http'}://{self.host}:{port}"

    def start(self, timeout: float = 20.0) -> str:
        self._thread.start()
        end = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                raise OSError(f"the fleet page did not start on {self.host}")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
