"""The station's page and assets on a FastAPI app.

One server-rendered page holds the frame of every view (navigation, the login form, empty
panels); the shipped script fills the panels from the API and keeps them live from the
event stream. The page carries no data and needs no token: what it shows is read with the
user's token, so a page without one shows the login form and nothing of the plant.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from modulecontrol import __version__

ASSETS = Path(__file__).with_name("static")
"""The script and the style sheet, shipped as package data."""

_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

VIEWS = (("plant", "Plant"), ("run", "Run"), ("trends", "Trends"), ("alarms", "Alarms"),
         ("records", "Runs and records"))
"""The views, in the order of the navigation bar: (id, title)."""

_SECURITY = {
    # the page runs only its own script and talks only to its own origin
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; connect-src 'self' ws: wss:;"
                               " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page() -> str:
    """The station's HTML: the frame of every view, filled by ``station.js``."""
    nav = "".join(f'<a href="#{v}" data-view="{v}">{html.escape(t)}</a>' for v, t in VIEWS)
    panels = "".join(f'<section id="view-{v}" class="view" hidden aria-label="{html.escape(t)}">'
                     f"</section>" for v, t in VIEWS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modulecontrol station</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/station/station.css?v={__version__}">
</head><body>
<header><span class="brand">modulecontrol</span><span id="plant-name"></span>
<nav hidden>{nav}</nav><span id="who"></span><button id="logout" hidden>Log out</button></header>
<div id="banner" role="alert" hidden></div>
<main>
<form id="login" class="login" autocomplete="on">
<h1>Log in</h1>
<label>User <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
 required></label>
<button type="submit">Log in</button><p class="error" id="login-error" role="alert"></p>
<p class="hint">No user yet? <code>modulecontrol user add NAME --role admin --db DB</code></p>
</form>
{panels}
<aside id="faceplate" hidden></aside>
</main>
<footer><span id="link">not connected</span><span id="clock"></span></footer>
<script src="/station/station.js?v={__version__}"></script>
</body></html>
"""


def mount(app: FastAPI) -> None:
    """Serve the station at ``/`` and its assets under ``/station/``."""
    text = page()

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/station/")

    @app.get("/station/", include_in_schema=False)
    async def station() -> HTMLResponse:
        return HTMLResponse(text, headers=_SECURITY)

    @app.get("/station/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        path = ASSETS / name
        kind = _TYPES.get(path.suffix)
        # only the shipped files: a name is one path segment of a known kind
        if kind is None or "/" in name or not path.is_file():
            raise HTTPException(404, f"no station asset '{name}'")
        return FileResponse(path, media_type=kind, headers=_SECURITY)
