"""Generated documentation pages (``make docs``): ``python -m modulecontrol.docgen``.

``python -m modulecontrol.docgen register-maps docs/register-maps.md`` writes the Modbus,
OPC UA and serial maps of the built-in module types; without a path it prints the page. The
page is made by :func:`modulecontrol.drivers.register_maps_markdown`; a test fails when the
committed page differs from what this writes.

``python -m modulecontrol.docgen report-images docs/img`` runs a shortened lomustine campaign
(recipes/lomustine/campaign.yaml, one 30 min check, simulated at 600x: about 15 s) into a
temporary database and writes its batch report's charts as ``report-<chart>.png``: the
pictures in the docs are what the report of ``make run`` draws; with Debian's Chromium, also
``report-page.png``, the HTML report's trend section as a browser shows it. Run it from the
repository.

``python -m modulecontrol.docgen twin-images docs/img`` makes the pictures of the worked
example of docs/digital-twin.md: two simulated runs with known truth fitted (residuals,
correlations), the transient fit of R1's thermostat (residuals) and the campaign with R2
deactivated (the twin beside PAT1, the mismatch).

``python -m modulecontrol.docgen station-images docs/img`` serves the simulated lomustine line
with the operator station (600x), runs the campaign into production, injects a pump stall
and photographs each view in Debian's Chromium (Playwright) as ``station-<view>.png``, then
runs ``examples/lomustine_optimize`` and photographs its campaign (``station-campaign.png``).

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

PAGES = ("register-maps", "report-images", "station-images", "twin-images")

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
        page = Path(tmp) / "run-1.html"
        chromium = Path("/usr/bin/chromium")
        if page.is_file() and chromium.exists():
            import asyncio

            asyncio.run(_screenshot_report(page.resolve().as_uri(), out_dir / "report-page.png",
                                           chromium))
    return 0


async def _screenshot_report(url: str, out: Path, chromium: Path) -> None:
    """The HTML report as a reader sees it in a browser, from its trend section: the
    figures' tables above it are text, the trends are what must be readable."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 1500})
            await page.goto(url)
            await page.locator("h2", has_text="Trends and states").evaluate(
                "h => h.scrollIntoView()")
            await page.screenshot(path=str(out))
        finally:
            await browser.close()


def _twin_images(out_dir: Path) -> int:
    """The pictures of docs/digital-twin.md's worked example: the fit's residuals and
    correlations (its step 1) and the campaign run with R2 deactivated (its step 2)."""
    import shutil

    from modulecontrol._runcli import run_command
    from modulecontrol.descriptors import load_plant
    from modulecontrol.records import report_images
    from modulecontrol.twin import (
        ParamRef,
        fit,
        record_simulated_run,
        with_parameters,
        write_fit_report,
    )

    if not CAMPAIGN.is_file():
        sys.stderr.write(f"{CAMPAIGN}: not found: run this from the repository root\n")
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_plant(CAMPAIGN.parent / "plant.yaml")
        names = ["R2.reactions.nitrosation_equilibrium.k_ref",
                 "R2.reactions.nitrosation_equilibrium.Ea"]
        truth = with_parameters(config, {ParamRef.resolve(config, n): v
                                         for n, v in zip(names, (2.2, 55.0), strict=True)})
        db = Path(tmp) / "runs.db"
        measured = ["PAT1.Intermediate", "PAT1.Product"]
        for seed, temp in ((1, 15.0), (2, 35.0)):  # as the page's `twin record` commands
            record_simulated_run(truth, db, settings={"R2.TempSP": temp}, outputs=measured,
                                 duration=1800, interval=30, noise=0.01, seed=seed, dt=10)
        result = fit(config, db, [1, 2], names, measured, dt=10)
        write_fit_report(result, Path(tmp) / "fit")
        for name in ("residuals", "correlation"):
            shutil.copy(Path(tmp) / "fit" / f"{name}.png", out_dir / f"twin-{name}.png")
        # the transient fit of R1's thermostat (the page's "Fits of the transient")
        tau = ParamRef.resolve(config, "R1.thermostat.tau")
        jacket = Path(tmp) / "jacket.db"
        temps = ["R1.JacketT", "R1.T"]
        record_simulated_run(with_parameters(config, {tau: 90.0}), jacket,
                             settings={"R1.TempSP": 40.0}, outputs=temps, duration=1200,
                             interval=10, noise=0.005, seed=3)
        result = fit(config, jacket, [1], [tau.name], temps, transient=True)
        write_fit_report(result, Path(tmp) / "transient")
        shutil.copy(Path(tmp) / "transient" / "residuals.png",
                    out_dir / "twin-transient-residuals.png")
        line = Path(tmp) / "line.db"
        code = run_command(CAMPAIGN, None, simulate=True, speed=300.0, db=line,
                           sets=["checks=1", "check_interval=2 h"],
                           faults=CAMPAIGN.parent / "faults" / "catalyst_deactivation.yaml",
                           dry_run=False, yes=True, live=False, report_dir=Path(tmp))
        if code != 0:
            sys.stderr.write(f"the campaign run failed (exit {code}): no run images written\n")
            return code
        wanted = {"analyzer signals": "twin-analyzer.png",
                  "twin mismatch (reading - prediction)": "twin-mismatch.png"}
        for title, png in report_images(line, 1):
            if title in wanted:
                (out_dir / wanted[title]).write_bytes(png)
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
            # a self-optimising campaign (docs/optimisation.md), three experiments in, with
            # the stall of the first run acknowledged (its alarms stand until they are)
            for run in (await api.get("/api/v1/runs", headers=headers)).json():
                if not run["final"]:
                    await api.post(f"/api/v1/runs/{run['id']}/stop", headers=headers)
            for alarm in (await api.get("/api/v1/alarms", headers=headers)).json()["alarms"]:
                await api.post(f"/api/v1/alarms/{alarm['name']}/ack", headers=headers)
            await api.post("/api/v1/runs", headers=headers,
                           json={"recipe": "examples/lomustine_optimize"})
            await page.click("nav a[data-view=run]")
            await page.wait_for_selector(
                "table.experiments tr[data-experiment='2']:not(.current)", timeout=300_000)
            await shot("campaign")
            await browser.close()
            for run in (await api.get("/api/v1/runs", headers=headers)).json():
                if not run["final"]:
                    await api.post(f"/api/v1/runs/{run['id']}/stop", headers=headers)
    finally:
        await asyncio.to_thread(thread.stop)


def main(argv: Sequence[str] | None = None) -> int:
    """``register-maps [PATH]``: write the page to PATH (print it without one);
    ``report-images [DIR]``: write the report charts to DIR (default docs/img);
    ``station-images [DIR]``: photograph the operator station's views into DIR;
    ``twin-images [DIR]``: the digital twin page's pictures into DIR."""
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
    if args[0] == "twin-images":
        try:
            return _twin_images(Path(args[1] if len(args) > 1 else "docs/img"))
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
