"""The commands of the control service: ``serve`` and ``user`` (the service side) and
``login``, ``status``, ``hold``, ``resume``, ``stop``, ``abort`` (the CLI as its client).

Kept out of the packages they drive, with their imports inside the commands, because the
service pulls in FastAPI and uvicorn and the client httpx and websockets: every other
command of ``modulecontrol`` starts without them. The client commands find the server in
``--server`` (or MODULECONTROL_SERVER) and the token in MODULECONTROL_TOKEN
(``modulecontrol login`` prints one).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modulecontrol.errors import ConfigError

if TYPE_CHECKING:
    from modulecontrol.client import Client

user_app = typer.Typer(no_args_is_help=True, help="Users of the control service.")


def serve_cmd(
    plant: Annotated[Path, typer.Argument(help="Plant file.")],
    simulate: Annotated[bool, typer.Option("--simulate", help="Serve the plant's simulators "
                                           "on 127.0.0.1 and control them.")] = False,
    db: Annotated[Path, typer.Option("--db", help="Records database (also holds the run "
                                     "queue and the users).")] = Path("runs/modulecontrol.db"),
    host: Annotated[str, typer.Option("--host", help="Address to bind; not loopback "
                                      "needs --tls-cert and --tls-key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: a free one).")] = 8470,
    speed: Annotated[float, typer.Option("--speed", help="Clock speed factor (simulated "
                                         "plants only).")] = 1.0,
    recipes: Annotated[Path, typer.Option("--recipes", help="Folder of the recipes that "
                                          "may be run.")] = Path("recipes"),
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key")] = None,
    signatures: Annotated[Path | None, typer.Option(
        "--signatures", help="The site's signature policy (YAML: signed actions, two-person "
        "rule, normal ranges; docs/signatures.md). Default: every signed action.")] = None,
) -> None:
    """Operate a line: connect every module, keep them supervised and recorded, run the
    queued recipes, serve the HTTP API (docs/api.md). Stops on Ctrl-C or SIGTERM."""
    from modulecontrol.drivers import DriverError
    from modulecontrol.records import RecordsError
    from modulecontrol.service import BindOptions, ServiceError, ServiceOptions, serve
    from modulecontrol.station import mount as station

    if speed != 1.0 and not simulate:
        print("--speed: only a simulated plant (--simulate) runs on a scaled clock",
              file=sys.stderr)
        raise typer.Exit(2)
    options = ServiceOptions(plant=plant, simulate=simulate, speed=speed, db=db,
                             recipes=recipes, signatures=signatures)
    bind = BindOptions(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)

    def ready(url: str) -> None:
        print(f"modulecontrol serving {plant} at {url} (OpenAPI: {url}/docs)", flush=True)
        print(f"operator station: open {url}/ in a browser and log in", flush=True)

    try:
        asyncio.run(serve(options, bind, ready, mounts=[station]))
    except ConfigError as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2) from None
    except ServiceError as exc:
        print(exc.detail, file=sys.stderr)
        raise typer.Exit(2) from None
    except RecordsError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(2) from None
    except DriverError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(5) from None


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator, engineer, qa or "
                                      "admin.")],
    full_name: Annotated[str, typer.Option("--name", help="Full name, printed with each of "
                                           "the user's signatures.")] = "",
    db: Annotated[Path, typer.Option("--db", help="Records database of the service.")
                  ] = Path("runs/modulecontrol.db"),
) -> None:
    """Add a user. The password is asked for (or read from MODULECONTROL_PASSWORD); there
    are no default users, so the first admin is made this way."""
    from modulecontrol.records import AuditTrail
    from modulecontrol.service import Role, ServiceStore, hash_password

    try:
        r = Role(role)
    except ValueError:
        print(f"--role: '{role}' is not one of {', '.join(x.value for x in Role)}",
              file=sys.stderr)
        raise typer.Exit(2) from None
    password = os.environ.get("MODULECONTROL_PASSWORD") or getpass.getpass(
        f"password for {name}: ")
    try:
        pw_hash = hash_password(password)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(2) from None
    store = ServiceStore(db)
    try:
        store.add_user(name, r.value, pw_hash, full_name)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(2) from None
    finally:
        store.close()
    with AuditTrail(db) as trail:
        trail.append(f"os:{getpass.getuser()}", "user add", f"user {name}", new_value=r.value,
                     reason="modulecontrol user add")
    print(f"user {name} ({r.value}) added to {db}")


# ---------------------------------------------------------------- the CLI as a client

DEFAULT_SERVER = "http://127.0.0.1:8470"

Server = Annotated[str, typer.Option("--server", envvar="MODULECONTROL_SERVER",
                                     help="URL of the control service.")]


def _call(server: str, do: Callable[[Client], Awaitable[Any]]) -> Any:
    from modulecontrol.client import ApiError, Client

    async def go() -> Any:
        async with Client(server, os.environ.get("MODULECONTROL_TOKEN")) as c:
            return await do(c)

    try:
        return asyncio.run(go())
    except ApiError as exc:
        print(exc.detail, file=sys.stderr)
        for p in exc.problems:
            print(p, file=sys.stderr)
        raise typer.Exit(1 if exc.status < 500 else 5) from None
    except OSError as exc:
        print(f"cannot reach the control service at {server}: {exc}", file=sys.stderr)
        raise typer.Exit(5) from None


def login(user: Annotated[str, typer.Argument(help="User name.")],
          server: Server = DEFAULT_SERVER) -> None:
    """Log in and print a token: export it as MODULECONTROL_TOKEN. The password is asked
    for (or read from MODULECONTROL_PASSWORD)."""
    password = os.environ.get("MODULECONTROL_PASSWORD") or getpass.getpass("password: ")
    got = _call(server, lambda c: c.login(user, password))
    print(got["access_token"])


def status(server: Server = DEFAULT_SERVER) -> None:
    """The plant's modules and the runs of a control service."""
    async def get(c: Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return await c.plant(), await c.runs()

    plant, runs = _call(server, get)
    print(f"plant {plant['plant']}; active run: {plant['active_run'] or 'none'}")
    for m in plant["modules"]:
        states = ", ".join(f"{n} {s}" for n, s in m["services"].items())
        print(f"  {m['tag']:<8} {'FAULT ' + str(m['fault']) if m['faulted'] else 'ok'}"
              f"  {states}")
    for r in runs[:10]:
        extra = f" {r['recipe_state']} at {r.get('step') or '-'}" if "recipe_state" in r else ""
        print(f"  run {r['id']:<4} {r['state']:<10} {r['recipe']}{extra}")


def _command(action: str) -> Callable[..., None]:
    def command(run: Annotated[int, typer.Argument(help="Run id (see status).")],
                server: Server = DEFAULT_SERVER) -> None:
        got = _call(server, lambda c: c.command(run, action))
        print(f"run {got['id']}: {got.get('recipe_state', got['state'])}")

    command.__doc__ = f"{action.capitalize()} a run of the control service."
    return command


def ack(run: Annotated[int, typer.Argument(help="Run id (see status).")],
        alarm: Annotated[str, typer.Argument(help="Alarm name, as its events name it.")],
        server: Server = DEFAULT_SERVER) -> None:
    """Acknowledge an alarm of a run of the control service."""
    _call(server, lambda c: c.acknowledge(run, alarm))
    print(f"run {run}: alarm {alarm} acknowledged")


RESULT_EXIT = {"completed": 0, "aborted": 3, "stopped": 4}
"""``run --server``: the exit code of a run's result, as ``run`` gives it for a local run;
any other end (failed, interrupted, cancelled) is 5."""


def run_on_server(server: str, recipe: str, sets: list[str], mode: str | None = None) -> int:
    """``run --server URL``: queue the recipe on the control service, print its events as
    they happen and exit with its result (as a local run would). Ctrl-C stops following,
    not the run: it goes on on the service (``modulecontrol stop N`` stops it)."""
    from modulecontrol.client import Resync
    from modulecontrol.recipe import parse_set_options

    try:
        parameters = dict(parse_set_options(sets))
    except (ConfigError, ValueError) as exc:
        print(f"--set: {exc}", file=sys.stderr)
        return 2

    async def follow(c: Client) -> int:
        head = int((await c.events_since(0, limit=1))["head"])
        queued = await c.start_run(recipe, parameters, mode)
        rid = int(queued["id"])
        print(f"run {rid} queued on {server}: {queued['recipe']}", flush=True)
        async for ev in c.events(since=head):
            if isinstance(ev, Resync):  # fell behind the window: the run's state is read
                print(f"(events missed; run {rid} is {(await c.run(rid))['state']})")
                continue
            if ev.get("run") != rid:
                continue
            print(f"{ev['kind']:<18} {ev['source']}: {ev['message']}", flush=True)
            if ev["kind"] == "run_ended":
                break
        final = await c.run(rid)
        print(f"run {rid} {final['state']}" + (f": {final['message']}"
                                                if final.get("message") else ""))
        return RESULT_EXIT.get(str(final["state"]), 5)

    try:
        return int(_call(server, follow))
    except KeyboardInterrupt:
        print("stopped following; the run goes on on the service (modulecontrol stop N)",
              file=sys.stderr)
        return 130


def mount(app: typer.Typer) -> None:
    """Add the service's and the client's commands to ``app``."""
    app.command("serve")(serve_cmd)
    app.add_typer(user_app, name="user", help="Users of the control service.")
    app.command("login")(login)
    app.command("status")(status)
    for action in ("hold", "resume", "stop", "abort"):
        app.command(action)(_command(action))
    app.command("ack")(ack)
