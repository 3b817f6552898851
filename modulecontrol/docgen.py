"""Generated documentation pages (``make docs``): ``python -m modulecontrol.docgen``.

``python -m modulecontrol.docgen register-maps docs/register-maps.md`` writes the Modbus,
OPC UA and serial maps of the built-in module types; without a path it prints the page. The
page is made by :func:`modulecontrol.drivers.register_maps_markdown`; a test fails when the
committed page differs from what this writes.

``python -m modulecontrol.docgen report-images docs/img`` runs a shortened lomustine campaign
(recipes/lomustine/campaign.yaml, one 30 min check, simulated at 600x: about 15 s) into a
temporary database and writes its batch report's charts as ``report-<chart>.png``: the
pictures in the docs are what the report of ``make run`` draws. Run it from the repository.

``python -m modulecontrol.docgen station-images docs/img`` serves the simulated lomustine line
with the operator station (600x), runs the campaign into production, injects a pump stall
and photographs each view in Debian's Chromium (Playwright) as ``station-<view>.png``.

A program entry point, so it is a composition root: it wires the installed transports
(:func:`modulecontrol.bootstrap.configure`) before it loads a module type.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modulecontrol.bootstrap import configure
from modulecontrol.descriptors import builtin_types
from modulecontrol.drivers import register_maps_markdown

PAGES = ("register-maps", "report-images", "station-images")

CAMPAIGN = Path("recipes/lomustine/campaign.yaml")
SHORT_RUN = ["checks=1", "check_interval=30 min"]


def _report_images(out_dir: Path) -> int:
    """Run the shortened campaign on simulators and write its report's charts to out_dir."""
    from modulecontrol._runcli import run_command
    from modulecontrol.records import report_images

    if not CAMPAIGN.is_file():
        sys.stderr.write(f"{CAMPAIGN}: not found: run this from the repository root\n")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "docs.db"
        code = run_command(CAMPAIGN, None, simulate=True, speed=600.0, db=db, sets=SHORT_RUN,
                           faults=None, dry_run=False, yes=True, live=False,
                           report_dir=Path(tmp))
        if code != 0:
            sys.stderr.write(f"the campaign run failed (exit {code}): no images written\n")
            return code
        out_dir.mkdir(parents=True, exist_ok=True)
        for title, png in report_images(db, 1):
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            (out_dir / f"report-{slug}.png").write_bytes(png)
    return 0


def _station_images(out_dir: Path) -> int:
    """Photograph each view of the operator station on the simulated lomustine line."""
    import asyncio

    if not CAMPAIGN.is_file():
        sys.stderr.write(f"{CAMPAIGN}: not found: run this from the repository root\n")
        return 2
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        sys.stderr.write("no /usr/bin/chromium: install it (.ci/install-servers)\n")
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_photograph(Path(tmp), out_dir, chromium))
    return 0


async def _photograph(tmp: Path, out_dir: Path, chromium: Path) -> None:
    import asyncio

    import httpx
    from playwright.async_api import async_playwright

    from modulecontrol.service import ServiceOptions
    from modulecontrol.station import mount
    from modulecontrol.testing.service import ServiceThread

    options = ServiceOptions(plant=CAMPAIGN.parent / "plant.yaml", simulate=True, speed=600.0,
                             db=tmp / "docs.db", recipes=CAMPAIGN.parents[1], report_dir=tmp)
    thread = ServiceThread(options, mounts=[mount])
    line = await asyncio.to_thread(thread.start)
    user, password = line.users["engineer"]

    def faults(action: str) -> None:  # through the plant's fault injection, in its process
        def go(service: Any) -> None:
            getattr(service.line.simulation.faults, action)("P1", "stall")
        thread.call(go)

    try:
        async with async_playwright() as p, httpx.AsyncClient(base_url=line.url) as api:
            browser = await p.chromium.launch(executable_path=str(chromium),
                                              args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1400, "height": 820})

            async def shot(name: str) -> None:
                await page.wait_for_timeout(1200)  # live values and a redraw
                await page.screenshot(path=str(out_dir / f"station-{name}.png"))

            await page.goto(line.url + "/")
            await page.fill("input[name=username]", user)
            await shot("login")
            await page.fill("input[name=password]", password)
            await page.click("#login button[type=submit]")
            await page.wait_for_selector("svg.diagram g.module")
            tok = (await api.post("/api/v1/token", json={"username": user,
                                                         "password": password})).json()
            headers = {"Authorization": f"Bearer {tok['access_token']}"}
            await api.post("/api/v1/runs", headers=headers, json={
                "recipe": "lomustine/campaign",
                "parameters": {"checks": "8", "check_interval": "60 min"}})
            await page.click("nav a[data-view=run]")
            await page.wait_for_selector("ol.steps li.current[data-step=production]",
                                         timeout=180_000)
            await shot("run")
            await asyncio.to_thread(faults, "inject")
            await page.click("nav a[data-view=alarms]")
            await page.wait_for_selector("tr[data-alarm=feed_pump_stall]", timeout=60_000)
            await shot("alarms")
            await page.click("nav a[data-view=plant]")
            await shot("plant")
            await page.click("g.module[data-tag=P1]")
            await shot("faceplate")
            await asyncio.to_thread(faults, "clear")
            await page.click("nav a[data-view=trends]")
            for tag in ("R1.T", "R2.T", "P1.Flow"):
                await page.select_option("#view-trends select", tag)
                await page.click("#view-trends button[data-trend=add]")
            await shot("trends")
            await page.click("nav a[data-view=records]")
            await page.wait_for_selector("table.audit tbody tr")
            await shot("records")
            await browser.close()
            for run in (await api.get("/api/v1/runs", headers=headers)).json():
                if not run["final"]:
                    await api.post(f"/api/v1/runs/{run['id']}/stop", headers=headers)
    finally:
        await asyncio.to_thread(thread.stop)


def main(argv: Sequence[str] | None = None) -> int:
    """``register-maps [PATH]``: write the page to PATH (print it without one);
    ``report-images [DIR]``: write the report charts to DIR (default docs/img);
    ``station-images [DIR]``: photograph the operator station's views into DIR."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in PAGES:
        sys.stderr.write(f"usage: python -m modulecontrol.docgen {{{','.join(PAGES)}}} [PATH]\n")
        return 2
    wiring = configure()
    if args[0] == "report-images":
        try:
            return _report_images(Path(args[1] if len(args) > 1 else "docs/img"))
        finally:
            wiring.undo()
    if args[0] == "station-images":
        try:
            return _station_images(Path(args[1] if len(args) > 1 else "docs/img"))
        finally:
            wiring.undo()
    try:
        lib = builtin_types()
        text = register_maps_markdown(lib.get(name) for name in lib)
    finally:
        wiring.undo()
    if len(args) == 1:
        sys.stdout.write(text)
    else:
        Path(args[1]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
