"""A tiny MTP PEA behaviour for OPC UA driver tests (the real simulator comes elsewhere).

It reacts to client writes on a :class:`PeaServer` the way 2658-4 describes: operation and
source mode switches (``*Op`` edge requests reset by the PEA, ``*Aut`` when the channel bit
is set), procedure requests, parameter apply (VExt -> VReq/VOut/VFbk), and a service state
machine with short transient states so a poller sees them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from modulecontrol.descriptors import ModuleInstance, ModuleType, builtin_types
from modulecontrol.mtpcore import Command, State
from modulecontrol.simulators.opcua_pea import PeaServer

STATE_CODES: dict[str, int] = {s.label: int(s) for s in State}
COMMAND_CODES = {c.label: int(c) for c in Command}
# A deliberately independent, simplified PEA (Stop/Abort enabled in Idle): tables of its own,
# so the client is tested against behaviour that does not come from the core it uses.
ENABLED: dict[str, tuple[str, ...]] = {
    "Idle": ("Start", "Stop", "Abort"),
    "Starting": ("Stop", "Abort"),
    "Execute": ("Stop", "Hold", "Pause", "Abort", "Complete", "Restart"),
    "Stopping": ("Abort",),
    "Stopped": ("Reset", "Abort"),
    "Aborting": (),
    "Aborted": ("Reset",),
    "Completing": ("Stop", "Abort"),
    "Completed": ("Reset", "Stop", "Abort"),
    "Holding": ("Stop", "Abort"),
    "Held": ("Unhold", "Stop", "Abort"),
    "Unholding": ("Stop", "Abort"),
    "Pausing": ("Stop", "Abort"),
    "Paused": ("Resume", "Stop", "Abort"),
    "Resuming": ("Stop", "Abort"),
    "Resetting": ("Abort",),
}
# command -> (allowed from, transient state, final state)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "Start": (("Idle",), "Starting", "Execute"),
    "Restart": (("Execute",), "Starting", "Execute"),
    "Stop": (("Idle", "Starting", "Execute", "Completing", "Completed", "Held", "Paused",
              "Holding", "Unholding", "Pausing", "Resuming"), "Stopping", "Stopped"),
    "Abort": (tuple(s for s in STATE_CODES if s not in ("Aborting", "Aborted")),
              "Aborting", "Aborted"),
    "Reset": (("Stopped", "Aborted", "Completed"), "Resetting", "Idle"),
    "Hold": (("Execute",), "Holding", "Held"),
    "Unhold": (("Held",), "Unholding", "Execute"),
    "Pause": (("Execute",), "Pausing", "Paused"),
    "Resume": (("Paused",), "Resuming", "Execute"),
    "Complete": (("Execute",), "Completing", "Completed"),
}
COMMAND_NAMES = {v: k for k, v in COMMAND_CODES.items()}


def coil_reactor() -> ModuleType:
    return builtin_types().get("CoilReactor")


def instance(url: str, **endpoint: Any) -> ModuleInstance:
    ep = {"protocol": "opcua", "url": url, "security_policy": "None", "security_mode": "None",
          "timeout": 2.0, "sampling_interval": 0.02, **endpoint}
    return ModuleInstance.model_validate({"tag": "R1", "type": "CoilReactor", "endpoint": ep})


QUIRKS = frozenset({"command_en_late", "apply_at_start", "resetting_32678", "command_edge"})
"""Ways real PEAs bend 2658-4 (issue 15, seen on an open-source Python PEA):
``command_en_late`` reports CommandEn 0 until its first transition (and still executes);
``apply_at_start`` ignores ApplyExt and takes VReq over at Start; ``resetting_32678``
reports Resetting as 32678; ``command_edge`` never clears CommandExt and executes a command
only when CommandExt changes (so the same command twice in a row is lost)."""


class MiniPea:
    """Behaviour attached to a served module type; ``transient`` is each transient state's
    duration in seconds (None: it stays until :meth:`finish_transient`); ``quirks`` are
    deviations from the standard taken from :data:`QUIRKS`."""

    def __init__(self, pea: PeaServer, transient: float | None = 0.05,
                 quirks: frozenset[str] = frozenset()) -> None:
        assert quirks <= QUIRKS, quirks - QUIRKS
        self.pea = pea
        self.transient = transient
        self.quirks = quirks
        self.transitions = 0
        self.commands: list[tuple[str, str]] = []
        self._last_command: dict[str, int] = {}
        self.locked: set[str] = set()
        """Objects that refuse mode switches (to test refusals)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.services = [s.name for s in pea.module_type.services]
        self.objects = self.services + [
            d.name for d in pea.module_type.data_assemblies if d.writable]

    async def install(self) -> None:
        for obj in self.objects:
            await self._set(obj, "StateOpAct", True)
            await self._set(obj, "SrcIntAct", True)
        for svc in self.services:
            await self.set_state(svc, "Idle")
        self.pea.on_write(self._on_write)

    async def _set(self, obj: str, attr: str, value: Any) -> None:
        tag = f"{obj}.{attr}"
        if tag in self.pea.node_ids:
            await self.pea.set(tag, value)

    def _get(self, obj: str, attr: str) -> Any:
        return self.pea.get(f"{obj}.{attr}")

    def state(self, svc: str) -> str:
        code = self._get(svc, "StateCur")
        if code == 32678 and "resetting_32678" in self.quirks:
            return "Resetting"
        return next(k for k, v in STATE_CODES.items() if v == code)

    async def set_state(self, svc: str, state: str) -> None:
        en = 0
        for c in ENABLED[state]:
            en |= COMMAND_CODES[c]
        if "command_en_late" in self.quirks and not self.transitions:
            en = 0
        code = STATE_CODES[state]
        if state == "Resetting" and "resetting_32678" in self.quirks:
            code = 32678
        await self._set(svc, "StateCur", code)
        await self._set(svc, "CommandEn", en)

    async def finish_transient(self, svc: str) -> None:
        """Leave a transient state held by ``transient=None``."""
        for _, transient, final in TRANSITIONS.values():
            if self.state(svc) == transient:
                await self.set_state(svc, final)
                return

    async def _on_write(self, tag: str, value: Any) -> None:
        obj, attr = tag.split(".", 1)
        if obj in self.locked:
            return
        if attr in ("StateAutOp", "StateAutAut") and value:
            channel = bool(self._get(obj, "StateChannel"))
            if channel == (attr == "StateAutAut"):
                await self._set(obj, "StateAutAct", True)
                await self._set(obj, "StateOpAct", False)
                await self._set(obj, "StateOffAct", False)
            if attr == "StateAutOp":
                await self._set(obj, attr, False)
        elif attr in ("SrcExtOp", "SrcExtAut") and value:
            channel = bool(self._get(obj, "SrcChannel"))
            if self._get(obj, "StateAutAct") and channel == (attr == "SrcExtAut"):
                await self._set(obj, "SrcExtAct", True)
                await self._set(obj, "SrcIntAct", False)
            if attr == "SrcExtOp":
                await self._set(obj, attr, False)
        elif attr == "ProcedureExt":
            ids = {p.id for p in self.pea.module_type.service(obj).procedures}
            if self._get(obj, "SrcExtAct") and self.state(obj) == "Idle" and value in ids:
                await self._set(obj, "ProcedureReq", value)
        elif attr == "VExt" and "apply_at_start" in self.quirks:
            if self._get(obj, "SrcExtAct"):
                await self._set(obj, "VReq", value)
        elif attr == "ApplyExt" and value and "apply_at_start" in self.quirks:
            await self._set(obj, "ApplyExt", False)  # ignored: taken over at Start
        elif attr == "ApplyExt" and value:
            if self._get(obj, "SrcExtAct"):
                v = self._get(obj, "VExt")
                for a in ("VReq", "VOut", "VFbk"):
                    await self._set(obj, a, v)
            await self._set(obj, "ApplyExt", False)
        elif attr == "CommandExt" and "command_edge" in self.quirks:
            changed = int(value) != self._last_command.get(obj, 0)
            self._last_command[obj] = int(value)
            if value and changed:
                await self._command(obj, COMMAND_NAMES.get(int(value), "?"), clear=False)
        elif attr == "CommandExt" and value:
            await self._command(obj, COMMAND_NAMES.get(int(value), "?"))

    async def _command(self, svc: str, command: str, *, clear: bool = True) -> None:
        state = self.state(svc)
        self.commands.append((svc, command))
        if clear:
            await self._set(svc, "CommandExt", 0)
        if not (self._get(svc, "StateAutAct") and self._get(svc, "SrcExtAct")):
            return
        if command not in ENABLED[state] or command not in TRANSITIONS:
            return
        allowed, transient, final = TRANSITIONS[command]
        if state not in allowed:
            return
        if command in ("Start", "Restart"):
            await self._set(svc, "ProcedureCur", self._get(svc, "ProcedureReq"))
            if "apply_at_start" in self.quirks:
                for da in self.pea.module_type.data_assemblies:
                    if da.class_ == "AnaServParam":
                        for a in ("VOut", "VFbk"):
                            await self._set(da.name, a, self._get(da.name, "VReq"))
        self.transitions += 1
        await self.set_state(svc, transient)
        if self.transient is None:
            return
        wait = self.transient

        async def finish() -> None:
            await asyncio.sleep(wait)
            if self.state(svc) == transient:
                await self.set_state(svc, final)

        task = asyncio.get_running_loop().create_task(finish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reset_modes(self) -> None:
        """Back to Operator/Internal and Idle (between tests sharing one server)."""
        for obj in self.objects:
            for attr, v in (("StateAutAct", False), ("StateOpAct", True), ("SrcExtAct", False),
                            ("SrcIntAct", True), ("StateChannel", False), ("SrcChannel", False)):
                await self._set(obj, attr, v)
        for svc in self.services:
            await self.set_state(svc, "Idle")
            await self._set(svc, "ProcedureReq", 0)
