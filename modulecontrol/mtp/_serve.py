"""A virtual PEA: an OPC UA server built from an MTP manifest, services running.

Why: a POL (or our own orchestrator) can be engineered and tested against a manifest before
the module exists, and the live conformance check (``mtp check --endpoint``) needs a known
good server to be tested itself. The server is exactly what the manifest promises:

* the manifest is imported (:func:`~modulecontrol.mtp.import_manifest`), so every attribute
  has an explicit binding: namespace URI, node identifier and access code of its OPC UA item;
* :func:`~modulecontrol.simulators.opcua_pea.build_pea_server` registers the namespaces by
  URI and adds one variable per item at its node id, in one folder per data assembly and per
  service (adding thousands of siblings to one parent is quadratic in asyncua);
* access levels follow the items: Access 1 read-only, 2 write-only, 3 read/write;
* :class:`~modulecontrol.simulators.PeaRuntime` (the simulators' PEA behaviour, with the one
  :class:`~modulecontrol.statemachine.ServiceStateMachine`) runs the services: operation and
  source mode handshakes, ProcedureExt -> ProcedureReq, VExt + ApplyExt -> VFbk, CommandExt
  executed against CommandEn and cleared.

There is no process model: values of indicators (``V`` of an AnaView) keep their initial
values unless a test publishes others through :attr:`VirtualPea.pea`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds

from modulecontrol.descriptors import ModuleType, OpcUaBinding, PeaUser, load_module_type
from modulecontrol.mtp._import import import_manifest_report
from modulecontrol.mtpcore import ACTING_STATES
from modulecontrol.simulators import (
    Credentials,
    PeaRuntime,
    SecurityError,
    astart_on_free_port,
)
from modulecontrol.simulators.opcua_pea import (
    PeaServer,
    RefusalHandler,
    build_pea_server,
)
from modulecontrol.statemachine import State, WorkContext

__all__ = ["DEFAULT_PASSWORDS", "VirtualPea", "serve_manifest"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
TRANSIENT_DWELL = 0.2
"""Seconds a virtual PEA stays in each transient state: longer than the publishing
interval a POL usually asks for (100 ms), short enough not to slow a live check much."""
_URL = re.compile(r"^opc\.tcp://[^/:\s]+(?::\d+)?(/.*)?$")

DEFAULT_PASSWORDS = frozenset({
    "", "admin", "administrator", "password", "passwort", "pass", "user", "operator", "root",
    "guest", "1234", "12345", "123456", "12345678", "0000", "changeme", "default", "secret",
    "siemens", "wago", "opcua", "plc",
})
"""Passwords a served PEA refuses, as does one equal to the user name: factory defaults are
the first thing anyone tries on a plant network."""


@dataclass
class VirtualPea:
    """A running virtual PEA; ``url`` is the endpoint clients connect to."""

    url: str
    module_type: ModuleType
    pea: PeaServer
    runtime: PeaRuntime
    secure: bool
    certificate: Path | None = None
    """The server's certificate (DER) when secured: give it to clients to trust."""

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.runtime.close()
        await self.pea.stop()

    async def __aenter__(self) -> VirtualPea:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _load(source: str | Path | ModuleType) -> tuple[ModuleType, str]:
    """The module type to serve and the endpoint path its manifest names (``""`` if none)."""
    if isinstance(source, ModuleType):
        return source, ""
    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_module_type(path), ""
    report = import_manifest_report(path)
    path_part = ""
    for url in report.endpoints.values():
        m = _URL.match(url or "")
        if m and m.group(1):
            path_part = m.group(1)
            break
    return report.module_type, path_part


def _check_password(username: str, password: str | None, env: str) -> str:
    if not password:
        raise SecurityError(
            f"environment variable {env} is not set or empty; export the PEA's password there "
            "(there are no default credentials), or pass --insecure for a loopback-only PEA "
            "without security")
    if password.strip().lower() in DEFAULT_PASSWORDS or password == username:
        raise SecurityError(
            f"the password in {env} is a well-known default (or the user name); choose another")
    return password


async def _restrict_access(pea: PeaServer) -> None:
    """Write-only items (Access 2) must not be readable; build_pea_server gives read/write."""
    level = ua.DataValue(ua.Variant(ua.AccessLevel.CurrentWrite.mask, ua.VariantType.Byte))
    for tag, info in pea.tags.items():
        b = info.binding
        if isinstance(b, OpcUaBinding) and b.access == "write":
            for attr in (AttributeIds.AccessLevel, AttributeIds.UserAccessLevel):
                await pea.server.write_attribute_value(pea.node_ids[tag], level, attr)


async def serve_manifest(
    source: str | Path | ModuleType,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    path: str | None = None,
    insecure: bool = False,
    username: str | None = None,
    password_env: str | None = None,
    pki: str | Path | None = None,
    self_complete_after: float = 0.5,
    transient_dwell: float = TRANSIENT_DWELL,
    users: Sequence[PeaUser] = (),
    on_refused: RefusalHandler | None = None,
) -> VirtualPea:
    """Serve a manifest (``.aml``), a module-type YAML or a :class:`ModuleType` as a PEA.

    Security follows the simulators' rules: without ``insecure`` the server offers only
    Basic256Sha256 (Sign, SignAndEncrypt) with a certificate generated into ``pki`` (default
    ``runs/pki``) and admits only ``username`` with the password read from the environment
    variable ``password_env``; default passwords are refused. ``insecure=True`` offers only
    the None policy with anonymous sessions. The server listens on loopback only.

    ``path`` is the endpoint path (default: the path of the manifest's endpoint URL, if any).
    A self-completing procedure leaves Execute after ``self_complete_after`` seconds. Each
    transient state (Starting, Completing, Stopping, Resetting, ...) is kept for
    ``transient_dwell`` seconds, so a POL polling or subscribed at a publishing interval up
    to that long sees it published (2658-4 makes them observable states, and a strict POL
    waits for them); 0 passes through them at once.
    ``username`` is ``admin``; ``users`` adds users with roles (viewer, operator, engineer,
    admin; see :func:`~modulecontrol.simulators.opcua_pea.role_allows`), each with its own
    password variable; ``on_refused`` hears of refused logins, requests and writes.
    Raises :class:`~modulecontrol.errors.ConfigError` for a manifest that does not import,
    :class:`~modulecontrol.simulators.SecurityError` for missing or default credentials.
    """
    if host not in _LOOPBACK:
        raise ValueError(f"a virtual PEA listens on loopback only (127.0.0.1), not {host!r}")
    mt, manifest_path = _load(source)
    kwargs: dict[str, Any] = {}
    cert: Path | None = None
    if not insecure:
        if not username or not password_env:
            raise SecurityError(
                "a secured virtual PEA needs a user name and the name of the environment "
                "variable holding its password (--user U --password-env VAR); or --insecure "
                "for a loopback-only PEA without security")
        passwords = {username: _check_password(username, os.environ.get(password_env),
                                               password_env)}
        for u in users:
            if u.password_env is None:
                raise SecurityError(f"user {u.name}: a virtual PEA reads every password from "
                                    "an environment variable; give password_env")
            passwords[u.name] = _check_password(u.name, os.environ.get(u.password_env),
                                                u.password_env)
        roles = {username: "admin", **{u.name: u.role for u in users}}
        uri = f"urn:modulecontrol:virtual-pea:{mt.name}"
        cert, key = Credentials(pki).certificate(f"virtual-pea-{mt.name}", uri, server=True)
        kwargs.update(certificate=cert, private_key=key, users=passwords,
                      allow_insecure=False, roles=roles, on_refused=on_refused)
    elif users:
        raise SecurityError("users with roles need a secured PEA (drop --insecure)")
    chosen = manifest_path if path is None else path
    if chosen and not chosen.startswith("/"):
        chosen = "/" + chosen

    async def serve(port: int) -> PeaServer:
        pea = await build_pea_server(mt, host=host, port=port,
                                     name=f"modulecontrol virtual PEA {mt.name}", **kwargs)
        await _restrict_access(pea)
        url = f"opc.tcp://{'127.0.0.1' if host == 'localhost' else host}:{port}{chosen}"
        pea.server.set_endpoint(url)
        pea.url = url
        await pea.start()
        return pea

    # asyncua must be told its port before it binds: without one, a free port, and another
    # if that was taken before the bind
    pea = await (serve(port) if port else astart_on_free_port(serve, host))
    url = pea.url
    runtime = PeaRuntime(None, pea)
    try:
        await runtime.install()
        for machine in runtime.machines.values():
            if self_complete_after > 0:
                machine.set_work(State.EXECUTE, _execute_for(self_complete_after))
            if transient_dwell > 0:
                for state in ACTING_STATES:
                    machine.set_work(state, _execute_for(transient_dwell))
    except BaseException:
        await pea.stop()
        raise
    return VirtualPea(url, mt, pea, runtime, not insecure, cert)


def _execute_for(seconds: float) -> Any:
    """State work that lasts ``seconds``: an acting state then leaves by SC, a
    self-completing procedure completes (others ignore the return of Execute work, so they
    run until commanded)."""

    async def work(ctx: WorkContext) -> None:
        await asyncio.sleep(seconds)

    return work

