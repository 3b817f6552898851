"""A typed Python client of the control service, for test rigs, optimisers and the CLI.

::

    async with Client("http://127.0.0.1:8470") as c:
        await c.login("ada", "her password")
        run = await c.start_run("examples/dosing_demo", {"volume": "1 mL"})
        async for ev in c.events(since=0):
            ...

Errors of the service come back as :class:`ApiError` with the service's problem details
(``status``, ``title``, ``detail``, ``problems``). It knows only the wire format: nothing of
the service's code is imported.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx
import websockets

__all__ = ["ApiError", "Client", "Resync"]


class ApiError(Exception):
    """A request the service refused; ``detail`` says why and what to do."""

    def __init__(self, status: int, title: str, detail: str, problems: list[str]) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Resync:
    """The stream could not give every event after the number asked for: read the snapshot
    (plant, runs) again; the stream continues after ``seq``."""

    seq: int


class Client:
    """One connection to a service; use as ``async with``."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        """Seconds for a request, and for the event stream's opening handshake."""
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                    params: Mapping[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        r = await self._http.request(method, f"/api/v1{path}", json=body, params=params,
                                     headers=headers)
        if r.status_code >= 400:
            try:
                p = r.json()
            except ValueError:
                p = {}
            if not isinstance(p, dict):
                p = {}
            detail = p.get("detail", r.text)
            raise ApiError(r.status_code, str(p.get("title", r.reason_phrase)),
                           detail if isinstance(detail, str) else json.dumps(detail),
                           list(p.get("problems", [])))
        return r.json()

    # -- users
    async def login(self, user: str, password: str, scopes: list[str] | None = None,
                    ttl: float | None = None) -> dict[str, Any]:
        """Log in; later requests carry the token."""
        got = cast(dict[str, Any], await self._call(
            "POST", "/token", {"username": user, "password": password, "scopes": scopes,
                               "ttl": ttl}))
        self.token = str(got["access_token"])
        return got

    # -- reading
    async def plant(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("GET", "/plant"))

    async def runs(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._call("GET", "/runs"))

    async def run(self, run_id: int) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("GET", f"/runs/{run_id}"))

    async def history(self, tag: str, start: float, end: float, max_points: int = 1000
                      ) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call(
            "GET", "/history", params={"tag": tag, "start": start, "end": end,
                                       "max_points": max_points}))

    async def events_since(self, since: int = 0, limit: int = 1000) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("GET", "/events",
                                                     params={"since": since, "limit": limit}))

    async def topology(self) -> dict[str, Any]:
        """Modules with their descriptors' services and assemblies, and the connections."""
        return cast(dict[str, Any], await self._call("GET", "/plant/topology"))

    async def audit(self, user: str = "", action: str = "", obj: str = "",
                    limit: int = 1000) -> list[dict[str, Any]]:
        """Audit entries, newest first."""
        got = await self._call("GET", "/audit", params={"user": user, "action": action,
                                                        "object": obj, "limit": limit})
        return cast(list[dict[str, Any]], got["entries"])

    # -- commanding
    async def module_command(self, tag: str, service: str, command: str,
                             procedure: str | None = None,
                             parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A service command in operator mode (between runs; if CommandEn enables it)."""
        return cast(dict[str, Any], await self._call(
            "POST", f"/modules/{tag}/services/{service}/{command}",
            {"procedure": procedure, "parameters": dict(parameters or {})}))

    async def set_value(self, tag: str, assembly: str, value: str) -> dict[str, Any]:
        """A parameter or set point in operator mode (between runs; within limits)."""
        return cast(dict[str, Any], await self._call(
            "PUT", f"/modules/{tag}/values/{assembly}", {"value": value}))

    async def whatif(self, changes: Mapping[str, float], horizon: str = "2h",
                     run: int | None = None, purity_spec: float = 90.0,
                     start: str = "state") -> dict[str, Any]:
        """The twin's what-if of ``changes`` (``TAG.Assembly: value``) from a recorded
        ``run``'s end (``start``: its ``state`` or the ``steady`` state at its inputs) or,
        without one, from the line's state now (the run in progress replayed, its live
        inputs)."""
        body: dict[str, Any] = {"set": dict(changes), "horizon": horizon,
                                "purity_spec": purity_spec}
        if run is not None:
            body["start"] = start
        body.update({"run": run} if run is not None else {"live": True})
        return cast(dict[str, Any], await self._call("POST", "/twin/whatif", body))

    async def switch_mode(self, tag: str, obj: str, operation: str | None = None,
                          source: str | None = None) -> dict[str, Any]:
        """Operation mode (Offline, Operator, Automatic) and/or source (Internal, External)
        of a service or service parameter (between runs; as the module offers them)."""
        return cast(dict[str, Any], await self._call(
            "PUT", f"/modules/{tag}/modes/{obj}", {"operation": operation, "source": source}))

    async def start_run(self, recipe: str, parameters: Mapping[str, str] | None = None,
                        mode: str | None = None) -> dict[str, Any]:
        """Queue a run; ``mode`` as ``run --mode`` (None: the service's default)."""
        body: dict[str, Any] = {"recipe": recipe, "parameters": dict(parameters or {})}
        if mode is not None:
            body["mode"] = mode
        return cast(dict[str, Any], await self._call("POST", "/runs", body))

    async def command(self, run_id: int, action: str) -> dict[str, Any]:
        """``hold``, ``resume``, ``stop`` or ``abort``."""
        return cast(dict[str, Any], await self._call("POST", f"/runs/{run_id}/{action}"))

    async def acknowledge(self, run_id: int, alarm: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("POST", f"/runs/{run_id}/ack",
                                                     {"alarm": alarm}))

    # -- alarms (docs/alarms.md)
    async def alarms(self) -> dict[str, Any]:
        """Every alarm of the line with its life-cycle state."""
        return cast(dict[str, Any], await self._call("GET", "/alarms"))

    async def alarm(self, name: str, action: str, reason: str = "",
                    duration: str | None = None) -> dict[str, Any]:
        """ack, shelve, unshelve, out-of-service or return-to-service one alarm."""
        return cast(dict[str, Any], await self._call(
            "POST", f"/alarms/{name}/{action}", {"reason": reason, "duration": duration}))

    async def alarm_kpis(self, run: int | None = None, day: str | None = None
                         ) -> dict[str, Any]:
        params = {k: v for k, v in (("run", run), ("day", day)) if v is not None}
        return cast(dict[str, Any], await self._call("GET", "/alarms/kpis", params=params))

    async def answer(self, run_id: int, prompt: int, choice: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call(
            "POST", f"/runs/{run_id}/answer", {"prompt": prompt, "choice": choice}))

    # -- recipe versions and signatures (docs/signatures.md)
    async def recipes(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("GET", "/recipes"))

    async def register_recipe(self, recipe: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("POST", "/recipes", {"recipe": recipe}))

    async def recipe_step(self, version: int, action: str, username: str, password: str,
                          reason: str) -> dict[str, Any]:
        """A signed life-cycle step; the password is the signer's, entered now."""
        return cast(dict[str, Any], await self._call(
            "POST", f"/recipes/{version}/{action}",
            {"username": username, "password": password, "reason": reason}))

    async def approve_run(self, run_id: int, username: str, password: str, reason: str,
                          meaning: str = "approved") -> dict[str, Any]:
        return cast(dict[str, Any], await self._call(
            "POST", f"/runs/{run_id}/approve",
            {"username": username, "password": password, "reason": reason,
             "meaning": meaning}))

    async def bypass(self, run_id: int, interlock: str, duration: str, username: str,
                     password: str, reason: str) -> dict[str, Any]:
        """Bypass an interlock of the running run for ``duration`` (a signed action)."""
        return cast(dict[str, Any], await self._call(
            "POST", f"/runs/{run_id}/interlocks/{interlock}/bypass",
            {"duration": duration, "signature": {"username": username, "password": password,
                                                 "reason": reason}}))

    async def unbypass(self, run_id: int, interlock: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call(
            "POST", f"/runs/{run_id}/interlocks/{interlock}/unbypass"))

    async def divert_override(self, run_id: int, position: str, duration: str,
                              username: str, password: str, reason: str) -> dict[str, Any]:
        """Hold the divert valve at ``product`` or ``waste`` for ``duration`` (signed)."""
        return cast(dict[str, Any], await self._call(
            "POST", f"/runs/{run_id}/divert/override",
            {"position": position, "duration": duration,
             "signature": {"username": username, "password": password, "reason": reason}}))

    async def divert_release(self, run_id: int) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("POST", f"/runs/{run_id}/divert/release"))

    async def run_signatures(self, run_id: int) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._call("GET",
                                                           f"/runs/{run_id}/signatures"))

    # -- the event stream
    async def events(self, since: int = 0) -> AsyncIterator[dict[str, Any] | Resync]:
        """Every event after ``since`` as it happens (a dict with ``seq``), or a
        :class:`Resync`. Ends when the service closes the stream."""
        ws_url = "ws" + self.url[len("http"):] + f"/api/v1/stream?since={since}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with websockets.connect(ws_url, additional_headers=headers,
                                      open_timeout=self.timeout) as ws:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "resync":
                    yield Resync(int(msg["seq"]))
                else:
                    yield cast(dict[str, Any], msg)
