"""An MTP PEA over OPC UA for a simulated module: nodes, modes, services, model coupling.

The address space comes from :func:`build_pea_server` (the driver's own tag table). This
module adds the PEA's behaviour as 2658-4 describes it and the OPC UA driver expects:

* operation and source modes per service and per parameter: ``*Op`` edge requests (the PEA
  resets them), ``*Aut`` level requests when the channel bit is set, ``*Act`` confirmations;
* ``ProcedureExt`` -> ``ProcedureReq``; ``VExt`` (in Automatic/External) or ``VOp`` (in
  Operator) -> ``VReq`` at once, ``ApplyExt``/``ApplyOp`` -> ``VOut``/``VFbk`` from ``VReq``
  while ``ApplyEn`` (true unless Offline); writes outside the limits are refused with
  ``BadOutOfRange`` by the server (:mod:`~modulecontrol.simulators.opcua_pea`);
* ``CommandExt`` executed by a :class:`ServiceStateMachine` and cleared;
  ``StateCur``/``CommandEn``/``ProcedureCur`` published on every change;
* entering a state applies the type's ``simulator.services`` settings to the model, so
  Tempering/Execute really drives the jacket toward ``TempSP``;
* monitored values published from the model after every plant step (or a ``bad_status``
  fault's status code instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modulecontrol.descriptors import OpcUaEndpoint
from modulecontrol.mtpcore import PA, PARAM_CLASSES, SCA, carries_value, writable
from modulecontrol.simulators._pki import Credentials
from modulecontrol.simulators._view import ModuleView
from modulecontrol.simulators.opcua_pea import (
    PeaServer,
    RefusalHandler,
    build_pea_server,
)
from modulecontrol.statemachine import (
    Channel,
    CommandRefused,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    SourceMode,
    State,
    StateChange,
)

__all__ = ["CONTROLLER", "PeaLogin", "PeaRuntime", "SecurityError", "pea_logins", "serve_pea"]

_log = logging.getLogger(__name__)

_OUTPUT_CLASSES = frozenset({"AnaView", "AnaMon", "BinView", "BinMon", "DIntView", "DIntMon",
                             "StringView"})
_MODES = {"Off": OperationMode.OFFLINE, "Op": OperationMode.OPERATOR,
          "Aut": OperationMode.AUTOMATIC}


class SecurityError(RuntimeError):
    """A secured endpoint without the credentials to serve it."""


class PeaRuntime:
    """The behaviour of one served PEA, bound to a module view.

    ``view=None`` gives a PEA without a process model (a virtual PEA served from an MTP
    manifest, ``modulecontrol mtp serve``): modes, procedures, parameters and the service
    state machines behave the same, but no value is coupled to physics.
    """

    def __init__(self, view: ModuleView | None, pea: PeaServer) -> None:
        self.view = view
        self.pea = pea
        self.mt = view.module_type if view is not None else pea.module_type
        self.tag = view.tag if view is not None else pea.module_type.name
        self.machines: dict[str, ServiceStateMachine] = {}
        self.params: dict[str, Any] = {}
        """Applied (VOut) values of the service parameters."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._publishing = False
        self._assembly_names = {d.name for d in self.mt.data_assemblies}
        self._objects = [s.name for s in self.mt.services] + [
            d.name for d in self.mt.data_assemblies if d.writable]

    # -- setup ------------------------------------------------------------------------------
    async def install(self) -> None:
        for obj in self._objects:
            for attr, v in (("StateOpAct", True), ("StateAutAct", False), ("StateOffAct", False),
                            ("SrcIntAct", True), ("SrcExtAct", False), (PA.APPLY_EN, True)):
                await self._set(obj, attr, v)
        for da in self.mt.data_assemblies:
            if da.default is not None and da.writable:
                self.params[da.name] = da.default
                for a in (PA.V_REQ, PA.V_OUT, PA.V_FBK, PA.V_EXT):
                    await self._set(da.name, a, da.default)
        for svc in self.mt.services:
            procs = [Procedure(p.id, p.name, p.self_completing, p is svc.default_procedure)
                     for p in svc.procedures]
            m = ServiceStateMachine(svc.name, procedures=procs,
                                    operation_mode=OperationMode.OPERATOR)
            m.subscribe(self._on_change)
            self.machines[svc.name] = m
            await self._publish_service(svc.name)
        self.pea.on_write(self._on_write)
        await self.publish_values()

    async def close(self) -> None:
        for m in self.machines.values():
            await m.aclose()
        for t in list(self._tasks):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- helpers ----------------------------------------------------------------------------
    async def _set(self, obj: str, attr: str, value: Any) -> None:
        tag = f"{obj}.{attr}"
        if tag in self.pea.node_ids:
            await self.pea.set(tag, value)

    def _get(self, obj: str, attr: str) -> Any:
        tag = f"{obj}.{attr}"
        return self.pea.get(tag) if tag in self.pea.node_ids else None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_service(self, svc: str, state: State | None = None) -> None:
        """Publish the service's status; ``state`` is the state of the change that asked for
        it, published even if the machine has left it since (an acting state without work
        is left at once): every state is published, in order, so a subscribed POL sees the
        transient states 2658-4 defines (the live check's ``live-transients``)."""
        m = self.machines[svc]
        await self._set(svc, SCA.STATE_CUR, int(state) if state is not None else m.state_cur)
        await self._set(svc, SCA.COMMAND_EN, m.command_en)
        await self._set(svc, SCA.PROCEDURE_REQ, m.procedure_req)
        await self._set(svc, SCA.PROCEDURE_CUR, m.procedure_cur)

    # -- model coupling ---------------------------------------------------------------------
    def _apply_state(self, svc: str, state: State) -> None:
        """Apply the simulator's settings for ``svc`` entering ``state`` to the model."""
        if self.view is None:
            return
        spec = self.view.spec.services.get(svc, {})
        settings = spec.get(state.label)
        if not settings:
            return
        self.view.apply_settings(settings, self.params)

    def _on_change(self, change: StateChange) -> None:
        svc = change.service
        try:
            self._apply_state(svc, change.new)
        except Exception:  # a bad setting must not break the state machine
            _log.exception("%s.%s: applying %s settings failed", self.tag, svc,
                           change.new.label)
        self._spawn(self._publish_service(svc, change.new))

    async def publish_values(self) -> None:
        """Publish every monitored value from the model (or the bad-status fault)."""
        if self._publishing or self.view is None:
            return
        self._publishing = True
        try:
            bad = self.view.transport.bad_status
            for tag, info in self.pea.tags.items():
                if info.service is not None or info.assembly.class_ not in _OUTPUT_CLASSES:
                    continue
                if info.attribute != "V":
                    continue
                if bad is not None:
                    await self.pea.set_status(tag, bad)
                    continue
                value = self.view.read(info.assembly.name, info.attribute)
                if value is not None:
                    await self.pea.set(tag, value)
        finally:
            self._publishing = False

    # -- client writes ----------------------------------------------------------------------
    async def _on_write(self, tag: str, value: Any) -> None:
        obj, _, attr = tag.partition(".")
        if self.view is not None and self.view.transport.silent:
            return
        m = self.machines.get(obj)
        if attr.startswith("State") and attr.endswith(("Op", "Aut")) and value:
            await self._operation_mode(obj, attr, m)
        elif attr.startswith("Src") and attr.endswith(("Op", "Aut")) and value:
            await self._source_mode(obj, attr, m)
        elif attr in (SCA.PROCEDURE_EXT, SCA.PROCEDURE_OP) and m is not None:
            channel = Channel.EXTERNAL if attr == SCA.PROCEDURE_EXT else Channel.OPERATOR
            with contextlib.suppress(CommandRefused):
                m.request_procedure(int(value), channel)
            await self._publish_service(obj)
        elif attr in (SCA.COMMAND_EXT, SCA.COMMAND_OP) and m is not None:
            channel = Channel.EXTERNAL if attr == SCA.COMMAND_EXT else Channel.OPERATOR
            if value:
                try:
                    m.command(int(value), channel)
                except CommandRefused as exc:
                    _log.info("%s.%s: %s", self.tag, obj, exc.reason)
            await self._set(obj, attr, 0)
            await self._publish_service(obj)
        elif attr in (PA.V_EXT, PA.V_OP) and self._is_param(obj):
            if self._channel_active(obj, attr == PA.V_EXT):
                await self._set(obj, PA.V_REQ, value)
        elif attr in (PA.APPLY_EXT, PA.APPLY_OP) and value:
            if self._channel_active(obj, attr == PA.APPLY_EXT) and self._get(
                    obj, PA.APPLY_EN) is not False:
                v = self._requested(obj, PA.V_EXT if attr == PA.APPLY_EXT else PA.V_OP)
                for a in (PA.V_REQ, PA.V_OUT, PA.V_FBK):
                    await self._set(obj, a, v)
                self.params[obj] = v
                self._reapply(obj)
            await self._set(obj, attr, False)
        elif self.view is not None and self._drives_model(obj, attr):
            self.view.write(obj, attr, value)

    def _is_param(self, obj: str) -> bool:
        return obj in self._assembly_names and self.mt.assembly(obj).class_ in PARAM_CLASSES

    def _channel_active(self, obj: str, external: bool) -> bool:
        """Whether writes of the external (``VExt``/``ApplyExt``: Automatic and External) or
        the operator channel (``VOp``/``ApplyOp``: Operator) are taken now (2658-4)."""
        if external:
            return bool(self._get(obj, "SrcExtAct")) and self._get(obj, "StateAutAct") is not False
        return bool(self._get(obj, "StateOpAct"))

    def _requested(self, obj: str, channel_value: str) -> Any:
        """The value an Apply carries out: ``VReq``, which followed the channel's last
        accepted write; the channel's value itself where the type binds no ``VReq``."""
        tag = f"{obj}.{PA.V_REQ}"
        return self._get(obj, PA.V_REQ if tag in self.pea.node_ids else channel_value)

    def _drives_model(self, obj: str, attr: str) -> bool:
        """A POL write of an assembly's value (``VMan``, ``OpenAut``, ``RpmMan``, ...) goes to
        the model at once; a parameter's takes effect only through its Apply handshake."""
        cls = self.mt.assembly(obj).class_ if obj in self._assembly_names else None
        return (cls is not None and cls not in PARAM_CLASSES and writable(cls, attr)
                and carries_value(cls, attr))

    def _reapply(self, param: str) -> None:
        """A parameter changed while its service executes: the new value takes effect."""
        for svc in self.mt.services:
            uses = {*svc.config_parameters, *(p for pr in svc.procedures for p in pr.parameters)}
            m = self.machines.get(svc.name)
            if param in uses and m is not None and m.state is State.EXECUTE:
                self._apply_state(svc.name, State.EXECUTE)

    async def _operation_mode(self, obj: str, attr: str, m: ServiceStateMachine | None) -> None:
        via_aut = attr.endswith("Aut")
        mode_key = attr[len("State"):-(3 if via_aut else 2)]
        channel = bool(self._get(obj, SCA.STATE_CHANNEL))
        if via_aut != channel or mode_key not in _MODES:
            if not via_aut:
                await self._set(obj, attr, False)
            return
        ok = True
        if m is not None:
            try:
                m.set_operation_mode(_MODES[mode_key])
            except CommandRefused:
                ok = False
        if ok:
            for key in _MODES:
                await self._set(obj, f"State{key}Act", key == mode_key)
            await self._set(obj, PA.APPLY_EN, mode_key != "Off")
        if not via_aut:
            await self._set(obj, attr, False)
        if m is not None:
            await self._publish_service(obj)

    async def _source_mode(self, obj: str, attr: str, m: ServiceStateMachine | None) -> None:
        via_aut = attr.endswith("Aut")
        src = attr[len("Src"):-(3 if via_aut else 2)]
        channel = bool(self._get(obj, SCA.SRC_CHANNEL))
        if via_aut == channel and src in ("Ext", "Int") and self._get(obj, "StateAutAct"):
            if m is not None:
                m.set_source_mode(SourceMode.EXTERNAL if src == "Ext" else SourceMode.INTERNAL)
            await self._set(obj, "SrcExtAct", src == "Ext")
            await self._set(obj, "SrcIntAct", src == "Int")
        if not via_aut:
            await self._set(obj, attr, False)


CONTROLLER = "modulecontrol"
"""The controller's user name on a served PEA whose endpoint names no ``username``."""


@dataclass(frozen=True)
class PeaLogin:
    """One user of a served PEA: its role and where its password is (never the password)."""

    role: str
    password_env: str | None = None
    """The environment variable holding it (the endpoint's ``password_env``), or ..."""
    password_file: Path | None = None
    """... the owner-only file it was generated into (:class:`Credentials`)."""

    def password(self) -> str:
        if self.password_env is not None:
            return os.environ[self.password_env]
        assert self.password_file is not None
        return self.password_file.read_text(encoding="utf-8").strip("\r\n")


def pea_logins(tag: str, endpoint: OpcUaEndpoint, credentials: Credentials
               ) -> dict[str, PeaLogin]:
    """User -> login of a served PEA: the controller first, then the endpoint's ``users``.

    A user with ``password_env`` uses that variable (:class:`SecurityError` if it is not
    set); any other gets a password generated at first use into ``credentials``.
    """
    controller = endpoint.username or CONTROLLER
    roles = {controller: "admin", **{u.name: u.role for u in endpoint.users}}
    out: dict[str, PeaLogin] = {}
    for name, env in [(controller, endpoint.password_env),
                      *((u.name, u.password_env) for u in endpoint.users)]:
        if env is None:
            out[name] = PeaLogin(roles[name], password_file=credentials.password_file(tag, name))
        elif os.environ.get(env):
            out[name] = PeaLogin(roles[name], password_env=env)
        else:
            raise SecurityError(
                f"{tag}: environment variable {env} (password of user {name}) is not "
                "set; export it before serving, or drop password_env to have a password "
                "generated into the pki folder (there are no default credentials)")
    return out


async def serve_pea(view: ModuleView, endpoint: OpcUaEndpoint, host: str, port: int,
                    path: str, pki: Path | None = None,
                    on_refused: RefusalHandler | None = None, *,
                    insecure: bool = False) -> tuple[PeaServer, PeaRuntime]:
    """Build, start and animate the PEA of one module (secure by default).

    Served with Basic256Sha256 in the endpoint's ``security_mode`` (SignAndEncrypt by
    default, and nothing else: no None endpoint) with a certificate kept in ``pki`` (default
    ``runs/pki``, see :class:`Credentials`). Users: the controller (the endpoint's
    ``username``, default ``modulecontrol``; ``admin`` unless ``users`` give it another role)
    and each of ``users`` with its role; a password comes from the user's ``password_env``,
    else it is generated at first use into ``pki``. Anonymous sessions are refused.

    ``insecure=True`` (``--insecure``) serves without security instead, whatever the
    endpoint says: the same users log in (their passwords travel unencrypted: loopback only)
    and anonymous sessions may read but every write they try is refused. An endpoint that
    itself says ``security_policy: "None"`` is served only with ``insecure``.
    ``on_refused`` hears of refused logins, requests and writes.
    """
    if endpoint.security_policy == "None" and not insecure:
        raise SecurityError(
            f"{view.tag}: the endpoint says security_policy \"None\"; a simulated PEA is "
            "served without security only on request (--insecure, insecure=True). Drop "
            "security_policy and security_mode to serve Basic256Sha256 SignAndEncrypt")
    credentials = Credentials(pki)
    logins = pea_logins(view.tag, endpoint, credentials)
    kwargs: dict[str, Any] = {
        "users": {name: login.password() for name, login in logins.items()},
        "roles": {name: login.role for name, login in logins.items()},
        "on_refused": on_refused, "subject": view.tag,
    }
    if insecure:
        _log.warning("%s: serving OPC UA WITHOUT SECURITY (--insecure): passwords and values "
                     "travel in clear text; anonymous sessions may read", view.tag)
        kwargs.update(anonymous_viewers=True)
    else:
        cert, key = credentials.server_certificate(view.tag)
        kwargs.update(certificate=cert, private_key=key, allow_insecure=False,
                      security_modes=(endpoint.security_mode,))
    pea = await build_pea_server(view.module_type, host=host, port=port,
                                 namespace_uri=endpoint.namespace_uri,
                                 name=f"modulecontrol simulated {view.tag}", **kwargs)
    url = f"opc.tcp://{host}:{port}{path}"
    pea.server.set_endpoint(url)
    pea.url = url
    runtime = PeaRuntime(view, pea)
    await pea.start()
    await runtime.install()
    return pea, runtime
