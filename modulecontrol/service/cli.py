"""``modulecontrol serve`` and ``modulecontrol user``: the service and its users."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from modulecontrol.errors import ConfigError

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
) -> None:
    """Operate a line: connect every module, keep them supervised and recorded, run the
    queued recipes, serve the HTTP API (docs/api.md). Stops on Ctrl-C or SIGTERM."""
    from modulecontrol.drivers import DriverError
    from modulecontrol.records import RecordsError
    from modulecontrol.service import BindOptions, ServiceError, ServiceOptions, serve

    if speed != 1.0 and not simulate:
        print("--speed: only a simulated plant (--simulate) runs on a scaled clock",
              file=sys.stderr)
        raise typer.Exit(2)
    options = ServiceOptions(plant=plant, simulate=simulate, speed=speed, db=db,
                             recipes=recipes)
    bind = BindOptions(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)

    def ready(url: str) -> None:
        print(f"modulecontrol serving {plant} at {url} (OpenAPI: {url}/docs)", flush=True)

    try:
        asyncio.run(serve(options, bind, ready))
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
    role: Annotated[str, typer.Option("--role", help="viewer, operator, engineer or admin.")],
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
        store.add_user(name, r.value, pw_hash)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(2) from None
    finally:
        store.close()
    with AuditTrail(db) as trail:
        trail.append(f"os:{getpass.getuser()}", "user add", f"user {name}", new_value=r.value,
                     reason="modulecontrol user add")
    print(f"user {name} ({r.value}) added to {db}")
