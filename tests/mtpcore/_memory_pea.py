"""A PEA that lives in a dictionary: the client's transport independence, without a socket.

The tags are plain ``Service.Attribute`` / ``Param.Attribute`` names; behind ``CommandExt``
runs the project's own :class:`~modulecontrol.statemachine.ServiceStateMachine`, behind the
mode requests the 2658-4 rules (``*Op`` edges reset by the PEA). Nothing here is OPC UA.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modulecontrol.mtpcore import Command, OperationMode, SourceMode
from modulecontrol.statemachine import (
    Channel,
    CommandRefused,
    Procedure,
    ServiceStateMachine,
)

SERVICE = "Dosing"
PARAMS = ("Rate",)
PROCEDURES = (Procedure(1, "Continuous", is_default=True), Procedure(2, "Volume"))


@dataclass(frozen=True)
class Value:
    value: Any


class FakeTime:
    """An injected clock: ``sleep`` only moves ``now`` on, so a wait costs no wall time."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps = 0
        self.on_sleep: Callable[[int], None] | None = None
        """Called with the count of sleeps so far: lets a test act "while the client waits"."""

    def now(self) -> float:
        return self.t

    async def sleep(self, dt: float) -> None:
        self.sleeps += 1
        self.t += dt
        if self.on_sleep is not None:
            self.on_sleep(self.sleeps)
        await asyncio.sleep(0)  # let the PEA's own tasks run, as a real pause would


class MemoryPea:
    """Satisfies :class:`modulecontrol.mtpcore.TagIO` (``tags``, ``read``, ``write``)."""

    def __init__(self) -> None:
        self.machine = ServiceStateMachine(SERVICE, procedures=PROCEDURES,
                                           operation_mode=OperationMode.OPERATOR)
        self.machine.subscribe(lambda change: self._publish())
        self.values: dict[str, Any] = {}
        self.writes: list[tuple[str, Any]] = []
        self.locked: set[str] = set()
        """Objects that ignore mode requests."""
        self.abort_on_start = False
        """The PEA's own logic aborts the service right after a Start (a fault reaction)."""
        for obj in (SERVICE, *PARAMS):
            for attr, v in (("StateOffAct", False), ("StateOpAct", True), ("StateAutAct", False),
                            ("StateOffOp", False), ("StateOpOp", False), ("StateAutOp", False),
                            ("StateChannel", False), ("SrcChannel", False),
                            ("SrcIntAct", True), ("SrcExtAct", False),
                            ("SrcIntOp", False), ("SrcExtOp", False)):
                self.values[f"{obj}.{attr}"] = v
        for name in PARAMS:
            for attr in ("VExt", "VReq", "VOut", "VFbk"):
                self.values[f"{name}.{attr}"] = 0.0
            self.values[f"{name}.ApplyExt"] = False
        for attr in ("CommandExt", "ProcedureExt"):
            self.values[f"{SERVICE}.{attr}"] = 0
        self._publish()

    @property
    def tags(self) -> Mapping[str, Any]:
        return self.values

    async def read(self, tags: Sequence[str]) -> dict[str, Value]:
        return {t: Value(self.values[t]) for t in tags}

    async def write(self, tag: str, value: Any) -> None:
        self.writes.append((tag, value))
        self.values[tag] = value
        obj, attr = tag.split(".", 1)
        if obj in self.locked:
            return
        if attr.startswith(("State", "Src")) and attr.endswith(("Op", "Aut")) and value:
            self._mode(obj, attr)
        elif attr == "ApplyExt" and value:
            if self.values[f"{obj}.SrcExtAct"]:
                for a in ("VReq", "VOut", "VFbk"):
                    self.values[f"{obj}.{a}"] = self.values[f"{obj}.VExt"]
            self.values[tag] = False
        elif attr == "ProcedureExt":
            with contextlib.suppress(CommandRefused):
                self.machine.request_procedure(int(value), Channel.EXTERNAL)
        elif attr == "CommandExt" and value:
            with contextlib.suppress(CommandRefused):
                self.machine.command(int(value), Channel.EXTERNAL)
                if self.abort_on_start and int(value) == int(Command.START):
                    self.machine.command(Command.ABORT, Channel.PEA)
            self.values[tag] = 0
        self._publish()

    def _mode(self, obj: str, attr: str) -> None:
        kind = "State" if attr.startswith("State") else "Src"
        level = bool(self.values[f"{obj}.{kind}Channel"])
        if attr.endswith("Op"):
            self.values[f"{obj}.{attr}"] = False  # an edge: the PEA resets the request
            if level:
                return
        elif not level:
            return
        which = attr[len(kind):-2] if attr.endswith("Op") else attr[len(kind):-3]
        modes = OperationMode if kind == "State" else SourceMode
        for m in modes:
            self.values[f"{obj}.{kind}{m.abbrev}Act"] = m.abbrev == which
        if obj == SERVICE:
            if kind == "State":
                self.machine.set_operation_mode(next(m for m in OperationMode
                                                     if m.abbrev == which))
            else:
                self.machine.set_source_mode(next(m for m in SourceMode if m.abbrev == which))

    def command(self, command: Command, channel: Channel = Channel.PEA) -> None:
        """The PEA's own logic commands its service (a fault reaction, a local operator)."""
        self.machine.command(command, channel)
        self._publish()

    def _publish(self) -> None:
        m = self.machine
        self.values[f"{SERVICE}.StateCur"] = m.state_cur
        self.values[f"{SERVICE}.CommandEn"] = m.command_en
        self.values[f"{SERVICE}.ProcedureReq"] = m.procedure_req
        self.values[f"{SERVICE}.ProcedureCur"] = m.procedure_cur
