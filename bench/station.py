"""Operator station in Chromium: first paint of the plant view, main-thread load and display
lag with 50 modules updating at 1 Hz.

Targets (issue #18): first paint of the plant view under 1 s on loopback; 50 modules at 1 Hz
keep the browser's main thread busy under 30 % and the displayed value never more than 1 s
behind the event stream. Measured and printed, not asserted.

What runs, and why this way:

* **The line** is a 50-module plant made by ``bench/load.py``'s generator, served by a real
  control service (simulated, in its process) with the station mounted, on loopback; the
  browser is Debian's Chromium driven by Playwright, logged in as a viewer.
* **First paint**: from the start of the navigation (a token already in the tab, so no typing
  is timed) to the diagram with all 50 modules and their first values in the DOM, read from
  the page's own ``performance.now()``; the browser's first contentful paint is reported too.
* **Updates**: an idle simulated plant changes few values, so one value of every module is
  published into the service's event stream once a second (``value_changed``, the kind and
  path real changes take: stream, WebSocket, the station's per-frame update). The lag of each
  is the wall time from its publication to the frame that put it in the DOM (the same clock:
  one machine).
* **Main thread**: Chromium's own task time (DevTools ``Performance.getMetrics``,
  ``TaskDuration``) over wall time while the updates run.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import Mix, plant_yaml

CHROMIUM = Path("/usr/bin/chromium")
UPDATE_SECONDS = 20.0
MODBUS_50 = Mix(fed_lines=0, tcp_lines=15, thermostats=5)
"""50 Modbus TCP modules (pump, regulator, valve lines and thermostats): the display is
measured, not the transports, and OPC UA sessions would only slow the start."""


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def measure(workdir: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from modulecontrol.service import ControlService, ServiceOptions
    from modulecontrol.station import mount
    from modulecontrol.testing.service import ServiceThread

    plant = workdir / "plant.yaml"
    plant.write_text(plant_yaml(MODBUS_50), encoding="utf-8")
    options = ServiceOptions(plant=plant, simulate=True, db=workdir / "line.db",
                             recipes=workdir, report_dir=None)
    thread = ServiceThread(options, mounts=[mount])
    served = await asyncio.to_thread(thread.start)
    user, password = served.users["viewer"]
    published: dict[int, float] = {}
    try:
        import httpx

        async with httpx.AsyncClient(base_url=served.url) as api:
            tok = (await api.post("/api/v1/token", json={"username": user,
                                                         "password": password})).json()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1600, "height": 900})
            who = (f'{{"user": "{user}", "role": "viewer", "scopes": ["read:status"]}}')
            await page.add_init_script(
                f"sessionStorage.setItem('mc.token', {tok['access_token']!r});"
                f"sessionStorage.setItem('mc.who', {who!r});")
            await page.goto(served.url + "/station/")
            await page.wait_for_function(
                "() => document.querySelectorAll('svg.diagram g.module').length === 50 && "
                "document.querySelector('svg.diagram text.value') && "
                "document.querySelector('svg.diagram text.value').textContent !== ''",
                timeout=60_000)
            first_paint_ms = await page.evaluate("() => performance.now()")
            fcp = await page.evaluate(
                "() => (performance.getEntriesByName('first-contentful-paint')[0] || {})"
                ".startTime || null")

            # one value per module, published once a second, as the plant's changes are
            def numbers(service: ControlService) -> list[tuple[str, str, str]]:
                assert service.line is not None
                out = []
                for tag, proxy in service.line.proxies.items():
                    da = next(d for d in proxy.type.data_assemblies if d.kind == "number")
                    out.append((tag, da.name, da.unit))
                return out

            targets: list[tuple[str, str, str]] = await asyncio.to_thread(thread.call, numbers)

            def publish(k: int) -> dict[int, float]:
                def go(service: ControlService) -> dict[int, float]:
                    # in the service's loop, as the plant's own changes are published
                    assert service.line is not None
                    out = {}
                    for i, (tag, name, unit) in enumerate(targets):
                        ev = service.stream.publish(
                            service.line.clock.now(), "value_changed", f"{tag}.{name}", "",
                            {"module": tag, "assembly": name, "value": float((k + i) % 97),
                             "unit": unit, "quality": "good"})
                        out[ev.seq] = time.time()
                    return out
                return dict(thread.call(go))

            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Performance.enable")

            async def task_time() -> float:
                got = await cdp.send("Performance.getMetrics")
                return float(next(m["value"] for m in got["metrics"]
                                  if m["name"] == "TaskDuration"))

            busy0, wall0 = await task_time(), time.monotonic()
            k = 0
            while time.monotonic() - wall0 < UPDATE_SECONDS:
                tick = time.monotonic()
                k += 1
                published.update(await asyncio.to_thread(publish, k))
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            busy = (await task_time() - busy0) / (time.monotonic() - wall0)
            await asyncio.sleep(1.0)
            shown = await page.evaluate(
                "() => (window.__station.lagDone || []).map(l => "
                "[l.seq, (performance.timeOrigin + l.shown) / 1000])")
            await browser.close()
    finally:
        await asyncio.to_thread(thread.stop)
    lags = [t - published[seq] for seq, t in shown if seq in published]
    return {
        "modules": len(targets),
        "first_paint_ms": round(first_paint_ms, 1),
        "first_contentful_paint_ms": round(fcp, 1) if fcp else None,
        "updates_published": len(published),
        "updates_shown": len(lags),
        "main_thread_busy_pct": round(100.0 * busy, 1),
        "display_lag_ms_p50": round(1000 * _pct(lags, 0.5), 1),
        "display_lag_ms_p95": round(1000 * _pct(lags, 0.95), 1),
        "display_lag_ms_max": round(1000 * max(lags), 1) if lags else math.nan,
        "targets": {"first_paint_ms": 1000, "main_thread_busy_pct": 30,
                    "display_lag_ms_max": 1000},
    }


def run() -> dict[str, Any]:
    if not CHROMIUM.exists():
        return {"skipped": "no /usr/bin/chromium (.ci/install-servers installs it)"}
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(measure(Path(tmp)))


if __name__ == "__main__":
    import json

    from modulecontrol.bootstrap import configure

    configure()
    print(json.dumps(run(), indent=2))
