"""The commands of the control service: ``serve`` and ``user`` (the service side) and
``login``, ``status``, ``hold``, ``resume``, ``stop``, ``abort`` (the CLI as its client).

Kept out of the packages they drive, with their imports inside the commands, because the
service pulls in FastAPI and uvicorn and the client httpx and websockets: every other
command of ``modulecontrol`` starts without them. The client commands find the server in
``--server`` (or MODULECONTROL_SERVER) and the token in MODULECONTROL_TOKEN
(``modulecontrol login`` prints one).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modulecontrol.errors import ConfigError

if TYPE_CHECKING:
    from modulecontrol.client import Client
    from modulecontrol.fleet import Metric
    from modulecontrol.service import ControlService, Extension

_log = logging.getLogger(__name__)

user_app = typer.Typer(no_args_is_help=True, help="Users of the control service.")
alarms_app = typer.Typer(no_args_is_help=True, help="Alarms of the control service's line "
                         "(docs/alarms.md).")


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
    sparkplug: Annotated[str | None, typer.Option(
        "--sparkplug", help="Publish the line over Sparkplug B to this broker "
        "(mqtt://HOST:PORT or mqtts://; docs/fleet.md).")] = None,
    site: Annotated[str | None, typer.Option("--site", help="Sparkplug group (the site); "
                                             "with --sparkplug.")] = None,
    line: Annotated[str | None, typer.Option("--line", help="Sparkplug edge node (default: "
                                             "the plant's name).")] = None,
    sparkplug_ca: Annotated[Path | None, typer.Option("--sparkplug-ca",
                                                      help="CA file for mqtts://.")] = None,
    commands_as: Annotated[str | None, typer.Option(
        "--sparkplug-commands-as", help="Take NCMD/DCMD commands (off without it), as this "
        "service user: its role is checked and every command audited.")] = None,
    station_url: Annotated[str | None, typer.Option(
        "--station-url", help="The station URL the births announce to the fleet page "
        "(default: the address served).")] = None,
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
    extensions: list[Extension] = []
    if sparkplug is not None:
        from modulecontrol.fleet import Broker

        try:
            if not site:
                raise ValueError("--site: name the site (the Sparkplug group)")
            Broker.parse(sparkplug, ca_file=sparkplug_ca)
            if commands_as is not None:
                check_command_user(db, commands_as)
        except ValueError as exc:
            print(f"--sparkplug: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        extensions.append(sparkplug_extension(SparkplugOptions(
            sparkplug, site, line, commands_as=commands_as, station_url=station_url,
            ca=sparkplug_ca)))
    elif commands_as is not None:
        print("--sparkplug-commands-as: only with --sparkplug", file=sys.stderr)
        raise typer.Exit(2)
    options = ServiceOptions(plant=plant, simulate=simulate, speed=speed, db=db,
                             recipes=recipes, signatures=signatures)
    bind = BindOptions(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)

    def ready(url: str) -> None:
        from modulecontrol.service import ServiceStore

        print(f"modulecontrol serving {plant} at {url} (OpenAPI: {url}/docs)", flush=True)
        print(f"operator station: open {url}/ in a browser and log in", flush=True)
        store = ServiceStore(db)
        try:
            users = store.user_count()
        finally:
            store.close()
        if users == 0:  # there are no default users: say how to make the first one
            where = "" if db == Path("runs/modulecontrol.db") else f" --db {db}"
            print("no users yet: in another terminal, create the first one (it asks for a "
                  f"password):\n  modulecontrol user add NAME --role admin{where}\n"
                  "then log in with it; the service need not restart", flush=True)

    import asyncio

    try:
        asyncio.run(serve(options, bind, ready, mounts=[station], extensions=extensions))
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


REJECTED = frozenset({404, 422})
"""Statuses that say the request named something invalid (no such recipe, an invalid recipe
or parameter): ``run --server`` exits 2 for them, as ``run`` does for an invalid recipe."""


def _call(server: str, do: Callable[[Client], Awaitable[Any]], *,
          rejected_exit: int = 1) -> Any:
    """``do`` with a client of ``server``; an API error is printed (with its located
    problems) and exits ``rejected_exit`` for :data:`REJECTED`, 1 for any other refusal,
    5 for a server error or a service that cannot be reached."""
    import asyncio  # here, as every import of this module: `validate` never needs it

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
        code = (rejected_exit if exc.status in REJECTED else 1) if exc.status < 500 else 5
        raise typer.Exit(code) from None
    except OSError as exc:
        print(f"cannot reach the control service at {server}: {exc}", file=sys.stderr)
        raise typer.Exit(5) from None


def live_whatif(server: str, changes: Mapping[str, float], horizon: str,
                purity_spec: float) -> dict[str, Any]:
    """``twin whatif --live``: the service's what-if from its line's live inputs."""
    answer: dict[str, Any] = _call(server, lambda c: c.whatif(changes, horizon,
                                                               purity_spec=purity_spec))
    return answer


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


AlarmName = Annotated[str, typer.Argument(help="Alarm name (see 'alarms list').")]
RunId = Annotated[int, typer.Argument(help="Run id (see status).")]
SignUser = Annotated[str, typer.Option("--user", help="Your user name (the password is asked "
                                       "for, never taken from the command line).")]


def _signature_password(user: str, action: str) -> str:
    """The signer's password at the moment of signing: a hidden prompt only (no option, no
    environment variable: a signature is its owner's act; docs/signatures.md)."""
    return str(typer.prompt(f"password for {user} (signing: {action})", hide_input=True,
                            default="", show_default=False))


def bypass(run: RunId, interlock: Annotated[str, typer.Argument(help="Interlock name.")],
           duration: Annotated[str, typer.Option("--for", help="How long, e.g. '10 min' (line"
                                                 " clock), at most the site's max_bypass.")],
           reason: Annotated[str, typer.Option("--reason", help="Why (signed, recorded).")],
           user: SignUser, server: Server = DEFAULT_SERVER) -> None:
    """Bypass an interlock of a running run for a time: a signed action (engineer or
    admin). Its condition is still judged and recorded, its action is not taken."""
    password = _signature_password(user, "interlock bypass")
    got = _call(server, lambda c: c.bypass(run, interlock, duration, user, password, reason))
    print(f"run {run}: interlock {interlock} BYPASSED by {got['bypass']['user']} until "
          f"t={got['bypass']['until']:.0f} s")


def unbypass(run: RunId, interlock: Annotated[str, typer.Argument(help="Interlock name.")],
             server: Server = DEFAULT_SERVER) -> None:
    """End an interlock's bypass now: it acts again."""
    _call(server, lambda c: c.unbypass(run, interlock))
    print(f"run {run}: interlock {interlock} acts again")


def divert(run: RunId,
           position: Annotated[str, typer.Argument(help="product or waste to hold the valve "
                                                   "there; auto to release an override.")],
           duration: Annotated[str | None, typer.Option("--for", help="How long, e.g. "
                                                        "'10 min' (line clock).")] = None,
           reason: Annotated[str, typer.Option("--reason", help="Why (signed).")] = "",
           user: Annotated[str | None, typer.Option("--user", help="Your user name (the "
                                                    "password is asked for).")] = None,
           server: Server = DEFAULT_SERVER) -> None:
    """Hold the divert valve at product or waste for a time (a signed action), then
    automatic divert control again; ``auto`` ends an override now."""
    if position == "auto":
        _call(server, lambda c: c.divert_release(run))
        print(f"run {run}: divert control automatic again")
        return
    if position not in ("product", "waste") or duration is None or not reason or not user:
        print("divert RUN product|waste needs --for, --reason and --user (or: divert RUN "
              "auto)", file=sys.stderr)
        raise typer.Exit(2)
    password = _signature_password(user, "manual divert override")
    got = _call(server, lambda c: c.divert_override(run, position, duration, user, password,
                                                    reason))
    print(f"run {run}: {got['valve']} held at {position.upper()} (manual override) until "
          f"t={got['override']['until']:.0f} s")


@alarms_app.command("list")
def alarms_list(all_: Annotated[bool, typer.Option("--all", help="Also the alarms in normal "
                                                   "state.")] = False,
                server: Server = DEFAULT_SERVER) -> None:
    """The line's alarms with their life-cycle state (normal ones with --all)."""
    got = _call(server, lambda c: c.alarms())
    shown = [a for a in got["alarms"] if all_ or a["state"] != "normal" or a["active"]]
    for a in shown:
        marks = "".join(m for m, on in ((" FIRST-OUT", a["first_out"]),
                                        (" CHATTERING", a["chattering"])) if on)
        until = (f" until t={a['shelved_until']:.0f} s ({a['reason']})"
                 if a["state"] == "shelved" else "")
        print(f"{a['name']:<24} {a['priority']:<7} {a['state']:<24}"
              f"{' in alarm' if a['active'] else ''}{until}{marks}  {a['message']}")
    if not shown:
        print("no alarm in alarm or waiting for acknowledgement")


@alarms_app.command("ack")
def alarms_ack(name: AlarmName, server: Server = DEFAULT_SERVER) -> None:
    """Acknowledge an alarm."""
    got = _call(server, lambda c: c.alarm(name, "ack"))
    print(f"{name}: {got['state']}")


@alarms_app.command("shelve")
def alarms_shelve(name: AlarmName,
                  duration: Annotated[str, typer.Option("--for", help="How long, e.g. "
                                                        "'30 min' (line clock).")],
                  reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
                  server: Server = DEFAULT_SERVER) -> None:
    """Shelve an alarm for a time, with a reason; it comes back by itself."""
    got = _call(server, lambda c: c.alarm(name, "shelve", reason, duration))
    print(f"{name}: {got['state']} until t={got['shelved_until']:.0f} s")


@alarms_app.command("unshelve")
def alarms_unshelve(name: AlarmName, server: Server = DEFAULT_SERVER) -> None:
    """Return a shelved alarm before its time."""
    got = _call(server, lambda c: c.alarm(name, "unshelve"))
    print(f"{name}: {got['state']}")


@alarms_app.command("kpis")
def alarms_kpis(run: Annotated[int | None, typer.Option("--run", help="Run id.")] = None,
                day: Annotated[str | None, typer.Option("--day", help="UTC day YYYY-MM-DD.")]
                = None, server: Server = DEFAULT_SERVER) -> None:
    """Alarm KPIs of a run or a day (ISA-18.2): rate, floods, standing, top ten."""
    k = _call(server, lambda c: c.alarm_kpis(run, day))
    print(f"alarms: {k['annunciations']}  per 10 min per operator: "
          f"{k['per_10min_per_operator']:.2f}  busiest 10 min: {k['max_per_10min']}")
    print(f"floods: {len(k['floods'])} ({k['flood_time_percent']:.1f} % of the time)  "
          f"standing: {len(k['standing'])}  stale: {len(k['stale'])}  "
          f"shelved: {k['shelved']}  chattering: "
          f"{', '.join(c['name'] for c in k['chattering']) or 'none'}")
    for i, t in enumerate(k["top_ten"], 1):
        print(f"  {i:>2}. {t['name']:<24} {t['count']:>5}  {t['percent']:.1f} %")


RESULT_EXIT = {"completed": 0, "aborted": 3, "stopped": 4}
"""``run --server``: the exit code of a run's result, as ``run`` gives it for a local run;
any other end (failed, interrupted, cancelled) is 5. A recipe the service rejects (no such
recipe, invalid recipe or parameters) exits 2, as ``run`` does for an invalid recipe."""


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
        return int(_call(server, follow, rejected_exit=2))
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
    app.command("bypass")(bypass)
    app.command("unbypass")(unbypass)
    app.command("divert")(divert)
    app.add_typer(alarms_app, name="alarms", help="Alarms of the control service's line: "
                  "list, ack, shelve, unshelve, kpis.")


# ---------------------------------------------------------------- the line as a Sparkplug edge
FORWARDED = frozenset({"run_started", "run_ended", "alarm_raised", "alarm_cleared",
                       "alarm_acked", "alarm_state", "hold", "resume", "interlock",
                       "plant_reattached"})
"""Event kinds of the service's stream sent to the fleet as ``Run/Event`` (not the value
and service-state changes: those are metrics already; ``alarm_state`` carries the alarm
life cycle: shelved, out of service, returned)."""


def check_command_user(db: Path, user: str) -> None:
    """Refuse to start (ValueError) if Sparkplug commands would run as a user that does not
    exist or whose role may not command the line: a mistake found at start, not at the
    first command."""
    from modulecontrol.service import ROLE_SCOPES, Role, Scope, ServiceStore

    store = ServiceStore(db)
    try:
        found = store.user(user)
    finally:
        store.close()
    if found is None:
        raise ValueError(f"--sparkplug-commands-as: no user '{user}' in {db} (add one: "
                         f"modulecontrol user add {user} --role operator --db {db})")
    if Scope.CONTROL not in ROLE_SCOPES.get(Role(found.role), frozenset()):
        raise ValueError(f"--sparkplug-commands-as: user '{user}' is a {found.role}, who "
                         f"may not command the line (operator, engineer or admin may)")


async def sparkplug_command(service: ControlService, user: str, device: str | None,
                            metric: Metric) -> None:
    """One NCMD/DCMD metric through the same service methods the API's
    ``PUT /modules/{tag}/values/{assembly}`` and ``POST /modules/{tag}/services/{name}/
    {action}`` use: limits, operator mode (not while a run owns the line), CommandEn; the
    mapped user's role is checked on every command (it may have changed since the start).
    Accepted commands are operator actions with their audit entry, refused ones audit
    entries, all marked "over Sparkplug"."""
    from modulecontrol.service import ROLE_SCOPES, Role, Scope, ServiceError

    via = "Sparkplug"
    target = f"{device}.{metric.name}" if device else metric.name
    found = service.store.user(user) if service.store is not None else None
    scopes = ROLE_SCOPES.get(Role(found.role), frozenset()) if found else frozenset()
    why = None
    if Scope.CONTROL not in scopes:
        why = (f"user '{user}' may not command the line"
               + (f" (role {found.role})" if found else " (no such user any more)"))
    elif device is None:
        why = "no node command but Node Control/Rebirth is taken; address a module (DCMD)"
    if why is not None:
        await service.refused(user, f"{metric.name} over {via}", target, why)
        return
    assert device is not None
    try:
        if metric.name.endswith(".Command"):
            # "<Service>.Command" = "start" or "start Procedure": a service command
            words = str(metric.value).split()
            if not words or len(words) > 2:
                await service.refused(user, f"{metric.name} over {via}", target,
                                      f"'{metric.value}': expected an action word and "
                                      f"optionally a procedure, e.g. 'start' or 'start Dose'")
                return
            await service.module_command(device, metric.name.removesuffix(".Command"),
                                         words[0], words[1] if len(words) > 1 else None, {},
                                         user, via=via)
        else:  # "<assembly>" = value: a set point or parameter
            value = metric.value
            text = str(value).lower() if isinstance(value, bool) else str(value)
            await service.set_value(device, metric.name, text, user, via=via)
    except ServiceError as exc:  # refused and audited by the service itself
        _log.warning("sparkplug command %s = %r refused: %s", target, metric.value, exc.detail)
    except Exception as exc:  # a fault while carrying it out: audited as refused too
        _log.exception("sparkplug command %s failed", target)
        await service.refused(user, f"{metric.name} over {via}", target,
                              f"{type(exc).__name__}: {exc}")


def _log_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        _log.error("sparkplug command: %s", fut.exception())


@dataclass
class SparkplugOptions:
    url: str
    site: str
    line: str | None = None
    primary_host: str | None = "modulecontrol-fleet"
    commands_as: str | None = None
    """None: the command path is off (NCMD/DCMD other than Rebirth are logged, nothing
    done); else the service user Sparkplug commands run as."""
    station_url: str | None = None
    """The station URL the births announce; None: the API's own URL."""
    ca: Path | None = None


def sparkplug_extension(opts: SparkplugOptions) -> Extension:
    """The line service as a Sparkplug edge node: modules as devices (values from the
    proxies), the stream's run and alarm events, each finished run's summary, the station
    URL in the NBIRTH, and, when ``commands_as`` is set, the command path."""
    import asyncio
    import json

    from modulecontrol.fleet import NODE, Broker, EdgeNode, attach, publish_summary
    from modulecontrol.records import RecordsError, run_figures

    def start(service: ControlService, url: str) -> Callable[[], Awaitable[None]]:
        line = service.line
        assert line is not None
        name = opts.line or line.plant.plant.name
        db = service.options.db
        loop = asyncio.get_running_loop()
        commands = None
        if opts.commands_as is not None:
            user = opts.commands_as

            def commands(device: str | None, metric: Metric) -> None:  # paho's thread
                fut = asyncio.run_coroutine_threadsafe(
                    sparkplug_command(service, user, device, metric), loop)
                fut.add_done_callback(_log_failure)

        edge = EdgeNode(Broker.parse(opts.url, ca_file=opts.ca), opts.site, name,
                        db.parent / f"sparkplug-{opts.site}-{name}.db",
                        primary_host=opts.primary_host, commands=commands,
                        info={"Line/Station": (opts.station_url or url).rstrip("/") + "/"})
        detach = attach(edge, line.proxies)

        closing = False

        async def forward() -> None:
            seq = service.stream.head
            while not closing:
                await service.stream.wait(seq, 5.0)
                events = service.stream.since(seq)
                if events is None:  # fell out of the window: go on from the newest
                    seq = service.stream.head
                    continue
                for ev in events:
                    seq = ev.seq
                    if ev.kind not in FORWARDED:
                        continue
                    recipe = None
                    if ev.run is not None:
                        with contextlib.suppress(Exception):
                            recipe = service.run(ev.run).recipe
                    message = ev.message if ev.run is None else (
                        f"run {ev.run} ({recipe}): {ev.message}")
                    edge.update(NODE, "Run/Event", json.dumps(
                        {"seq": ev.seq, "kind": ev.kind, "source": ev.source,
                         "message": message, "run": ev.run}, default=str))
                    if ev.kind == "run_ended" and ev.run is not None:
                        await summary(ev.run)

        async def summary(run_id: int) -> None:
            queued = service.run(run_id)
            figures: dict[str, Any] = {}
            if queued.record_run is not None:
                try:
                    figures = await asyncio.to_thread(run_figures, db, queued.record_run)
                except RecordsError as exc:
                    figures = {"notes": [str(exc)]}
            publish_summary(edge, {"run_id": run_id, "recipe": queued.recipe,
                                   "result": queued.state, "figures": figures})

        edge.start()
        task = loop.create_task(forward(), name="sparkplug events")

        async def close() -> None:
            nonlocal closing
            closing = True  # ends the forwarder even if a cancellation were lost
            detach()
            task.cancel()
            await asyncio.wait({task}, timeout=10.0)
            if not task.done():
                print("sparkplug: the event forwarder did not end within 10 s; the edge "
                      "stops without it", file=sys.stderr)
            elif not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
            left = await asyncio.to_thread(edge.stop, drain=10.0)
            if left:
                print(f"sparkplug: {left} sample(s) not yet published wait in the buffer "
                      f"file and go with the next start", file=sys.stderr)

        return close

    return start
