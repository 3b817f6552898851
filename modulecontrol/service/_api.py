"""The HTTP API and the WebSocket event stream of the control service (FastAPI).

Every route below ``/api/v1`` needs a bearer token (``POST /api/v1/token`` gives one) with
the route's scope; a request without it is refused with 401 or 403 and the refusal goes
into the audit trail. Errors are RFC 9457 problem details (``application/problem+json``)
whose ``detail`` is the CLI's wording; located input problems are listed in ``problems``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations,
# which name dependencies local to create_app, so they must be evaluated where defined.
import asyncio
import contextlib
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from modulecontrol import __version__
from modulecontrol.service._auth import Scope
from modulecontrol.service._service import ControlService, ServiceError
from modulecontrol.service._store import TokenInfo

PROBLEM = "application/problem+json"


class TokenRequest(BaseModel):
    username: str
    password: str
    scopes: list[str] | None = None
    ttl: float | None = Field(None, gt=0, description="Lifetime in s (capped by the service)")


class RunRequest(BaseModel):
    recipe: str = Field(description="Path of the recipe under the recipes folder")
    parameters: dict[str, str] = Field(default_factory=dict,
                                       description="name: value with unit, as --set")
    mode: Literal["production", "development", "simulation"] | None = Field(
        None, description="Run mode; production runs only an effective recipe version "
        "(default: simulation on a simulated line, else development)")


class SignRequest(BaseModel):
    """Both components of the signer's identity, entered at the moment of signing."""

    username: str
    password: str
    reason: str = Field(min_length=1, description="What is signed and why")
    meaning: str = Field("approved", description="For a batch record: approved, reviewed, "
                         "responsible for")


class RecipeRegisterRequest(BaseModel):
    recipe: str = Field(description="Path of the recipe under the recipes folder")


class AckRequest(BaseModel):
    alarm: str


class AlarmCommandRequest(BaseModel):
    reason: str = Field(default="", description="Why (needed to shelve and for out of service)")
    duration: str | float | None = Field(default=None, description="Shelve for, e.g. '10 min' (line"
                                         " clock), at most the philosophy's max_shelve")


class BypassRequest(BaseModel):
    duration: str | float = Field(description="For how long, e.g. '10 min' (line clock), at "
                                  "most the site's max_bypass")
    signature: SignRequest | None = Field(
        None, description="Needed when the site declares the action signed (the default)")


class DivertOverrideRequest(BypassRequest):
    position: Literal["product", "waste"]


class AnswerRequest(BaseModel):
    prompt: int
    choice: str


class ModuleCommandRequest(BaseModel):
    procedure: str | None = Field(None, description="Procedure name (the default if none)")
    parameters: dict[str, str] = Field(default_factory=dict,
                                       description="name: value with unit, within limits")


class SetValueRequest(BaseModel):
    value: str = Field(description="Value with unit (e.g. '0.5 mL/min'), within limits")
    signature: SignRequest | None = Field(
        None, description="Needed for a value outside its normal range (a signed action)")


class ModeRequest(BaseModel):
    # plain strings, checked by the service: a wrong word is a refusal in the audit trail
    operation: str | None = Field(None, description="Offline, Operator or Automatic (MTP "
                                  "StateOffAct/StateOpAct/StateAutAct)")
    source: str | None = Field(None, description="Internal or External, in Automatic (MTP "
                               "SrcIntAct/SrcExtAct); switched after the operation mode")


class WhatIfRequest(BaseModel):
    run: int | None = Field(None, description="Recorded run whose end state is the start; "
                            "omitted (or live: true): the line's live inputs")
    live: bool = Field(False, description="Start from the line's live inputs")
    set: dict[str, float] = Field(description="TAG.Assembly: value, the proposed change")
    horizon: str = Field("2h", description="How far ahead, e.g. 2h, 90 min")
    start: Literal["state", "steady"] = Field(
        "state", description="Where a recorded run's what-if starts: its state at its end "
        "(the twin's replay of its inputs) or the steady state at the inputs it held there; "
        "a live what-if replays the run in progress")
    purity_spec: float = Field(90.0, description="Purity below which the stream is "
                               "off-spec, %")


def _signature(sig: SignRequest | None) -> tuple[str, str, str] | None:
    return None if sig is None else (sig.username, sig.password, sig.reason)


def _problem(exc: ServiceError, instance: str) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": exc.title, "status": exc.status,
                            "detail": exc.detail, "instance": instance}
    if exc.problems:
        body["problems"] = exc.problems
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM, headers=headers)


def create_app(service: ControlService) -> FastAPI:
    """The API of one service; the service is started and closed by its owner."""
    app = FastAPI(title="modulecontrol control service", version=__version__,
                  description="Operate a line: plant, run queue, events, historian.")

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _problem(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}"
                    for e in exc.errors()]
        return _problem(ServiceError(422, "invalid request", "; ".join(problems), problems),
                        request.url.path)

    def need(scope: Scope) -> Any:
        async def check(request: Request) -> TokenInfo:
            header = request.headers.get("authorization", "")
            action = f"{request.method} {request.url.path}"
            who = await _identify(service, header)
            if who is None:
                await service.refused("", action, request.url.path, "no valid token")
                raise ServiceError(401, "not logged in", "no valid token: log in with POST "
                                   "/api/v1/token and send 'Authorization: Bearer TOKEN'")
            if str(scope) not in who.scopes:
                why = f"role {who.role} with scopes {' '.join(sorted(who.scopes))} lacks {scope}"
                await service.refused(who.user, action, request.url.path, why)
                raise ServiceError(403, "not allowed", f"{who.user} may not do this: {why}")
            return who
        return Depends(check)

    read, control, queue = need(Scope.READ), need(Scope.CONTROL), need(Scope.QUEUE)
    author, approver = need(Scope.RECIPE), need(Scope.APPROVE)

    @app.post("/api/v1/token", tags=["users"])
    async def token(req: TokenRequest) -> dict[str, Any]:
        """Log in: a bearer token with the scopes asked for (all of the role's if none)."""
        tok, info = await service.login(req.username, req.password,
                                        frozenset(req.scopes) if req.scopes else None,
                                        req.ttl)
        return {"access_token": tok, "token_type": "bearer", "user": info.user,
                "role": info.role, "scopes": sorted(info.scopes), "expires": info.expires}

    @app.get("/api/v1/plant", tags=["plant"])
    async def plant(who: Annotated[TokenInfo, read]) -> dict[str, Any]:
        """Modules, their services' states, their values with unit and quality."""
        return service.plant()

    @app.get("/api/v1/plant/topology", tags=["plant"])
    async def topology(who: Annotated[TokenInfo, read]) -> dict[str, Any]:
        """Modules with category, ports, services, procedures, parameters and data
        assemblies (unit, limits, settable), and the flow connections."""
        return service.topology()

    @app.post("/api/v1/modules/{tag}/services/{name}/{action}", tags=["plant"])
    async def module_command(tag: str, name: str, action: str, req: ModuleCommandRequest,
                             who: Annotated[TokenInfo, control]) -> dict[str, Any]:
        """A service command in operator mode (between runs; only if CommandEn enables it)."""
        return await service.module_command(tag, name, action, req.procedure, req.parameters,
                                            who.user)

    @app.put("/api/v1/modules/{tag}/values/{assembly}", tags=["plant"])
    async def set_value(tag: str, assembly: str, req: SetValueRequest,
                        who: Annotated[TokenInfo, control]) -> dict[str, Any]:
        """A parameter or set point in operator mode (between runs; within its limits)."""
        sig = req.signature
        return await service.set_value(
            tag, assembly, req.value, who.user,
            None if sig is None else (sig.username, sig.password, sig.reason))

    @app.put("/api/v1/modules/{tag}/modes/{obj}", tags=["plant"])
    async def switch_mode(tag: str, obj: str, req: ModeRequest,
                          who: Annotated[TokenInfo, control]) -> dict[str, Any]:
        """Operation mode and source of a service or service parameter (between runs; only
        the modes the module offers; confirmed by the module before the answer)."""
        return await service.switch_mode(tag, obj, req.operation, req.source, who.user)

    @app.get("/api/v1/runs", tags=["runs"])
    async def runs(who: Annotated[TokenInfo, read]) -> list[dict[str, Any]]:
        """The queue and the history of runs, newest first."""
        return [service.run_view(r) for r in service.runs()]

    @app.post("/api/v1/runs", status_code=201, tags=["runs"])
    async def start_run(req: RunRequest, who: Annotated[TokenInfo, queue]) -> dict[str, Any]:
        """Validate a recipe with its parameters against the plant and queue it."""
        return service.run_view(service.submit(req.recipe, req.parameters, who.user,
                                               req.mode or ""))

    @app.get("/api/v1/recipes", tags=["recipes"])
    async def recipes(who: Annotated[TokenInfo, read]) -> dict[str, Any]:
        """Recipe versions (state, author, signatures) and the recipe files with the
        life-cycle state of their content: ``runs_in_production`` is true only for the
        content of an effective version."""
        return await asyncio.to_thread(service.recipes_view)

    @app.post("/api/v1/recipes", status_code=201, tags=["recipes"])
    async def register_recipe(req: RecipeRegisterRequest, who: Annotated[TokenInfo, author]
                              ) -> dict[str, Any]:
        """Store a recipe file as a new draft version (validated against the plant)."""
        return await asyncio.to_thread(service.register_recipe, req.recipe, who.user)

    @app.post("/api/v1/recipes/{version}/submit", tags=["recipes"])
    async def submit_recipe(version: int, req: SignRequest, who: Annotated[TokenInfo, author]
                            ) -> dict[str, Any]:
        """Submit a draft for review: signed by its author (meaning ``authored``)."""
        return await asyncio.to_thread(service.recipe_step, version, "submit", who.user,
                                       req.username, req.password, req.reason)

    @app.post("/api/v1/recipes/{version}/{action}", tags=["recipes"])
    async def recipe_step(version: int, action: Literal["review", "reject", "approve",
                                                        "release", "obsolete"],
                          req: SignRequest, who: Annotated[TokenInfo, approver]
                          ) -> dict[str, Any]:
        """A signed life-cycle step: review, reject (back to draft), approve, release
        (effective), obsolete. User name and password are checked now, not the token."""
        return await asyncio.to_thread(service.recipe_step, version, action, who.user,
                                       req.username, req.password, req.reason)

    @app.get("/api/v1/runs/{run_id}", tags=["runs"])
    async def get_run(run_id: int, who: Annotated[TokenInfo, read]) -> dict[str, Any]:
        return service.run_view(service.run(run_id))

    @app.post("/api/v1/runs/{run_id}/ack", tags=["runs"])
    async def ack(run_id: int, req: AckRequest, who: Annotated[TokenInfo, control]
                  ) -> dict[str, Any]:
        """Acknowledge an alarm of the running run."""
        service.acknowledge(run_id, req.alarm, who.user)
        return service.run_view(service.run(run_id))

    @app.get("/api/v1/alarms", tags=["alarms"])
    async def alarms(who: Annotated[TokenInfo, read]) -> dict[str, Any]:
        """Every alarm of the line: life-cycle state, priority, times, message, first out,
        chattering, what may be done with it; ``banner``: unacknowledged high priority."""
        return service.alarms()

    @app.get("/api/v1/alarms/kpis", tags=["alarms"])
    async def alarm_kpis(who: Annotated[TokenInfo, read], run: int | None = None,
                         day: str | None = None) -> dict[str, Any]:
        """Alarm KPIs of a run (``run=N``) or a UTC day (``day=YYYY-MM-DD``): alarms per 10
        minutes per operator, floods, standing and stale, top ten, chattering."""
        return await asyncio.to_thread(service.alarm_kpis, run, day)

    @app.post("/api/v1/alarms/{name}/{action}", tags=["alarms"])
    async def alarm_command(name: str, action: str, who: Annotated[TokenInfo, control],
                            req: AlarmCommandRequest | None = None) -> dict[str, Any]:
        """ack, shelve (reason, duration), unshelve, out-of-service (reason; engineer or
        admin), return-to-service; each recorded with its audit entry."""
        body = req or AlarmCommandRequest()
        return await service.alarm_command(name, action, who.user, who.role, body.reason,
                                           body.duration)

    @app.post("/api/v1/runs/{run_id}/answer", tags=["runs"])
    async def answer(run_id: int, req: AnswerRequest, who: Annotated[TokenInfo, control]
                     ) -> dict[str, Any]:
        """Answer an open operator prompt of the running run."""
        service.answer(run_id, req.prompt, req.choice, who.user)
        return service.run_view(service.run(run_id))

    @app.post("/api/v1/runs/{run_id}/interlocks/{name}/bypass", tags=["runs"])
    async def bypass(run_id: int, name: str, req: BypassRequest,
                     who: Annotated[TokenInfo, control]) -> dict[str, Any]:
        """Bypass an interlock of the running run for a time (engineer or admin; signed):
        its condition is still judged, its action is not taken."""
        return await service.bypass_interlock(run_id, name, req.duration, who.user, who.role,
                                              _signature(req.signature))

    @app.post("/api/v1/runs/{run_id}/interlocks/{name}/unbypass", tags=["runs"])
    async def unbypass(run_id: int, name: str, who: Annotated[TokenInfo, control]
                       ) -> dict[str, Any]:
        """End an interlock's bypass now: it acts again."""
        return await service.unbypass_interlock(run_id, name, who.user)

    @app.post("/api/v1/runs/{run_id}/divert/override", tags=["runs"])
    async def divert_override(run_id: int, req: DivertOverrideRequest,
                              who: Annotated[TokenInfo, control]) -> dict[str, Any]:
        """Hold the divert valve at product or waste for a time (signed), then automatic."""
        return await service.override_divert(run_id, req.position, req.duration, who.user,
                                             _signature(req.signature))

    @app.post("/api/v1/runs/{run_id}/divert/release", tags=["runs"])
    async def divert_release(run_id: int, who: Annotated[TokenInfo, control]
                             ) -> dict[str, Any]:
        """End a manual divert override now: automatic divert control again."""
        return await service.release_divert(run_id, who.user)

    @app.post("/api/v1/runs/{run_id}/approve", tags=["runs"])
    async def approve_run(run_id: int, req: SignRequest, who: Annotated[TokenInfo, approver]
                          ) -> dict[str, Any]:
        """Sign the batch record of a finished run (re-authentication, a meaning)."""
        return await asyncio.to_thread(service.approve_run, run_id, who.user, req.username,
                                       req.password, req.reason, req.meaning)

    @app.get("/api/v1/runs/{run_id}/signatures", tags=["runs"])
    async def run_signatures(run_id: int, who: Annotated[TokenInfo, read]
                             ) -> list[dict[str, Any]]:
        """The signatures on a run's batch record: printed name, time, meaning."""
        return await asyncio.to_thread(service.run_signatures, run_id)

    @app.post("/api/v1/runs/{run_id}/{action}", tags=["runs"])
    async def command(run_id: int, action: str, who: Annotated[TokenInfo, control]
                      ) -> dict[str, Any]:
        """hold, resume, stop or abort the running run; stop or abort cancels a queued one."""
        return service.run_view(service.command(run_id, action, who.user))

    @app.get("/api/v1/runs/{run_id}/report", tags=["runs"])
    async def run_report(run_id: int, who: Annotated[TokenInfo, read]) -> FileResponse:
        """The batch report (HTML) of a finished run."""
        path = await asyncio.to_thread(service.report_file, service.run(run_id))
        return FileResponse(path, media_type="text/html")

    @app.get("/api/v1/audit", tags=["records"], response_model=None)
    async def audit(who: Annotated[TokenInfo, read], user: str = "", action: str = "",
                    object: str = "", limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
                    format: str = "json") -> dict[str, Any] | PlainTextResponse:
        """Audit entries, newest first, filtered by user, action (contains) and object;
        ``format=csv`` exports them."""
        entries = await asyncio.to_thread(service.audit, user or None, action or None,
                                          object or None, limit)
        if format == "csv":
            return PlainTextResponse(_csv(entries), media_type="text/csv")
        return {"entries": entries}

    @app.get("/api/v1/events", tags=["events"])
    async def events(who: Annotated[TokenInfo, read], since: int = 0,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
        """Events after ``since``; ``resync: true`` if ``since`` is outside the window."""
        got = service.stream.since(since, limit)
        if got is None:
            return {"resync": True, "head": service.stream.head, "events": [],
                    "stream": service.stream.epoch}
        return {"resync": False, "head": service.stream.head,
                "events": [e.to_json() for e in got], "stream": service.stream.epoch}

    @app.get("/api/v1/history", tags=["historian"])
    async def history(who: Annotated[TokenInfo, read], tag: str, start: float, end: float,
                      max_points: Annotated[int, Query(ge=2, le=100_000)] = 1000
                      ) -> dict[str, Any]:
        """A tag's samples between start and end (s since the epoch), downsampled to
        ``max_points`` keeping each interval's minimum and maximum."""
        h = await asyncio.to_thread(service.history, tag, start, end, max_points)
        return {"tag": h.tag, "unit": h.unit, "downsampled": h.downsampled,
                "points": [{"t": t, "value": v, "quality": q} for t, v, q in h.points]}

    @app.post("/api/v1/twin/whatif", tags=["twin"])
    async def twin_whatif(req: WhatIfRequest, who: Annotated[TokenInfo, read]
                          ) -> dict[str, Any]:
        """Simulate a proposed change ahead from a recorded run's end state, or from the
        line's state now (the run in progress replayed, then its live inputs; the twin's
        ``whatif``): time to the new steady state, purity, yield, throughput, off-spec
        volume."""
        if req.live == (req.run is not None):
            raise ServiceError(422, "invalid what-if", "give either 'run' (a recorded run's "
                               "end state) or 'live': true (the line's inputs now)")
        live = service.live_inputs() if req.live else None  # read on the loop, now
        running = service.running_record() if req.live else None
        return await asyncio.to_thread(service.whatif, req.run, req.set, req.horizon,
                                       req.purity_spec, live, req.start, running)

    @app.websocket("/api/v1/stream")
    async def stream(ws: WebSocket, since: int = 0, token: str = "") -> None:
        """Every event with its sequence number; reconnect with ``?since=N`` (the last seen)
        to get everything after N, or a ``resync`` message if N is outside the window."""
        header = ws.headers.get("authorization", "") or (f"Bearer {token}" if token else "")
        who = await _identify(service, header)
        if who is None or str(Scope.READ) not in who.scopes:
            await service.refused(who.user if who else "", "stream", "/api/v1/stream",
                                  "no valid token with read:status")
            await ws.close(code=1008, reason="no valid token with read:status")
            return
        await ws.accept()
        await _pump(service, ws, since)

    return app


def _csv(entries: list[dict[str, Any]]) -> str:
    import csv
    import io
    import json

    buf = io.StringIO()
    w = csv.writer(buf)
    cols = ["seq", "t_utc", "user", "action", "object", "old_value", "new_value", "reason"]
    w.writerow(cols)
    for e in entries:
        w.writerow([json.dumps(e[c]) if c.endswith("_value") and e[c] is not None else e[c]
                    for c in cols])
    return buf.getvalue()


async def _identify(service: ControlService, header: str) -> TokenInfo | None:
    scheme, _, tok = header.partition(" ")
    if scheme.lower() != "bearer" or not tok.strip():
        return None
    return service.identify(tok.strip())


async def _pump(service: ControlService, ws: WebSocket, since: int) -> None:
    """Send the stream from ``since`` until the client goes; a client that falls behind
    the window is told to resync and continues from the head. The client's side is read
    meanwhile, so a client that leaves is noticed at once, not at the next event."""
    stream = service.stream
    last = since
    closed = asyncio.get_running_loop().create_task(_until_closed(ws))
    try:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while not closed.done():
                got = stream.since(last)
                if got is None:
                    last = stream.head
                    await ws.send_json({"type": "resync", "seq": last, "stream": stream.epoch})
                    continue
                for ev in got:
                    await ws.send_json(ev.to_json())
                    last = ev.seq
                waiter = asyncio.get_running_loop().create_task(stream.wait(last, 15.0))
                await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
    finally:
        closed.cancel()


async def _until_closed(ws: WebSocket) -> None:
    """Return when the client closes its side (what it sends is ignored)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
