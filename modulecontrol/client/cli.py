"""The CLI as a client of a control service: ``status``, ``login``, ``hold``, ``resume``,
``stop``, ``abort``. The server is ``--server`` (or MODULECONTROL_SERVER), the token is
MODULECONTROL_TOKEN (``modulecontrol login`` prints one)."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from modulecontrol.client import ApiError, Client

DEFAULT_SERVER = "http://127.0.0.1:8470"

Server = Annotated[str, typer.Option("--server", envvar="MODULECONTROL_SERVER",
                                     help="URL of the control service.")]


def _call(server: str, do: Callable[[Client], Awaitable[Any]]) -> Any:
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


def mount(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("status")(status)
    for action in ("hold", "resume", "stop", "abort"):
        app.command(action)(_command(action))
