"""A peer PEA from an independent open-source implementation: MTPPy (PyPI ``mtppy``).

Why MTPPy: it is the open-source Python PEA toolkit of the MTP community (TU Dresden),
written without any knowledge of modulecontrol; it serves its PEA over python-opcua (not our
asyncua stack) and generates its own MTP 1.0 manifest (CAEX 2.15, namespace index 3,
``ns=3;s=...`` identifiers). It also bends the handshake the way issue 15 found: CommandEn
0 in Idle until the first transition, parameters taken over only at Start (no ApplyExt),
Resetting reported as 32678. Pinned in the ``test`` extra (``mtppy==1.1.1`` with its
undeclared dependencies ``opcua`` and ``simple-pid``).

The PEA here has one service (``Dosing``) with one procedure (``Dose``, id 1, not
self-completing), one procedure parameter (``FlowSP``, 0-10) and one report value
(``Flow``), which follows the parameter while the service executes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from mtppy.indicator_elements import AnaView
from mtppy.mtp_generator import MTPGenerator
from mtppy.opcua_server_pea import Marshalling, OPCUAServerPEA
from mtppy.operation_elements import AnaServParam
from mtppy.procedure import Procedure
from mtppy.service import Service

# MTPPy's generator fills a template of the writer header; the toolkit does not ship one,
# so this is the smallest CAEX 2.15 file with the header it edits.
TEMPLATE = """<?xml version="1.0" encoding="utf-8"?>
<CAEXFile FileName="manifest.aml" SchemaVersion="2.15"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <AdditionalInformation AutomationMLVersion="2.0" />
  <AdditionalInformation>
    <WriterHeader>
      <WriterName /><WriterID /><WriterVendor /><WriterVendorURL /><WriterVersion />
      <WriterRelease /><LastWritingDateTime /><WriterProjectTitle /><WriterProjectID />
    </WriterHeader>
  </AdditionalInformation>
</CAEXFile>
"""
WRITER = {
    "WriterName": "tests", "WriterID": "tests", "WriterVendor": "modulecontrol tests",
    "WriterVendorURL": "urn:modulecontrol:tests", "WriterVersion": "1.0",
    "WriterRelease": "1", "LastWritingDateTime": "2026-01-01T00:00:00",
    "WriterProjectTitle": "peer PEA", "WriterProjectID": "peer",
}


class Dosing(Service):  # type: ignore[misc]  # MTPPy is untyped
    """MTPPy's service pattern: one thread per state; transient states end by state_change."""

    def __init__(self) -> None:
        super().__init__("Dosing", "doses at a set flow")
        self.flow_sp = AnaServParam("FlowSP", "flow set point", v_min=0, v_max=10,
                                    v_scl_min=0, v_scl_max=10, v_unit=1352)
        self.flow = AnaView("Flow", "dosed flow", v_scl_min=0, v_scl_max=10, v_unit=1352)
        proc = Procedure(1, "Dose", is_self_completing=False, is_default=True)
        proc.add_procedure_parameter(self.flow_sp)
        proc.add_report_value(self.flow)
        self.add_procedure(proc)

    def _transient(self, name: str) -> None:
        time.sleep(0.05)
        if self.is_state(name):
            self.state_change()

    def idle(self) -> None:
        self.flow.set_v(0.0)

    def starting(self) -> None:
        self._transient("starting")

    def execute(self) -> None:
        while self.is_state("execute"):
            self.flow.set_v(float(self.flow_sp.get_v_out()))
            time.sleep(0.05)

    def completing(self) -> None:
        self._transient("completing")

    def completed(self) -> None:
        pass

    def pausing(self) -> None:
        self._transient("pausing")

    def paused(self) -> None:
        pass

    def resuming(self) -> None:
        self._transient("resuming")

    def holding(self) -> None:
        self._transient("holding")

    def held(self) -> None:
        pass

    def unholding(self) -> None:
        self._transient("unholding")

    def stopping(self) -> None:
        self._transient("stopping")

    def stopped(self) -> None:
        self.flow.set_v(0.0)

    def aborting(self) -> None:
        self._transient("aborting")

    def aborted(self) -> None:
        self.flow.set_v(0.0)

    def resetting(self) -> None:
        self._transient("resetting")


class _PeerServer(OPCUAServerPEA):  # type: ignore[misc]  # MTPPy is untyped
    """MTPPy's server, its writes seen every ``WRITES_SEEN`` ms instead of every 500 ms.

    MTPPy learns of a client's write (CommandExt, VExt, mode requests) through a subscription
    of its own server on its writable nodes, published every 500 ms: every command waited
    up to half a second before the PEA acted on it, and the live check (some 70 commands)
    spent most of its minute there. Only that interval is changed; how MTPPy handles a
    write (its handshake deviations) is its own code."""

    WRITES_SEEN = 50

    def _start_subscription(self) -> None:
        handler = Marshalling()
        handler.import_subscription_list(self.subscription_list)
        sub = self.opcua_server.create_subscription(self.WRITES_SEEN, handler)
        sub.subscribe_data_change(self.subscription_list.get_nodeid_list())


class PeerPea:
    """A fresh MTPPy PEA on 127.0.0.1:``port`` whose manifest is written to ``folder``."""

    def __init__(self, folder: Path, port: int) -> None:
        template = folder / "template.aml"
        template.write_text(TEMPLATE, encoding="utf-8")
        self.manifest = folder / "peer_manifest.aml"
        self.url = f"opc.tcp://127.0.0.1:{port}/"
        generator = MTPGenerator(WRITER, str(self.manifest), str(template))
        self.pea = _PeerServer(generator, self.url)
        self.service = Dosing()
        self.pea.add_service(self.service)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Serve and write the manifest (MTPPy writes it while building its nodes)."""
        self.pea.run_opcua_server()
        self.pea.set_services_in_idle()

    def stop(self) -> None:
        # leave every service thread's loop (execute polls its state) before the server
        self.service.state_machine.act_state = 4  # Stopped: the execute loop ends
        self.pea.get_opcua_server().stop()

    def state(self) -> Any:
        return self.service.state_machine.act_state
