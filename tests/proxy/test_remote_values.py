"""An OPC UA module behind a proxy: a subscription delivers only what changed, so the proxy
must tell a sensor's Bad status from a lost link by all the values it holds, not by one
notification."""

from __future__ import annotations

from asyncua.ua.status_codes import StatusCodes

from modulecontrol.proxy import ModuleProxy, ProxyOptions
from modulecontrol.simulators.opcua_pea import build_pea_server
from tests._poll import until
from tests.drivers._opcua_pea import coil_reactor, instance


async def test_bad_status_of_a_sensor_is_a_bad_value_not_a_lost_link() -> None:
    server = await build_pea_server(coil_reactor())
    async with server:
        await server.set("T.V", 25.0)
        proxy = ModuleProxy(coil_reactor(), instance(server.url, timeout=1.0),
                            options=ProxyOptions(poll_interval=0.05))
        faults: list[str | None] = []
        proxy.on_fault(lambda tag, f: faults.append(f))
        await proxy.start()
        try:
            assert faults == []
            # only T.V changes: the notification holds nothing but one Bad value
            await server.set_status("T.V", StatusCodes.BadSensorFailure)
            assert await until(lambda: proxy.fault is not None, 3) is not None
            # a later notification holding only good values must not clear it
            await server.set("PressureDrop.V", 0.25)
            assert await until(lambda: proxy.value("PressureDrop") == 0.25, 3) is not None
            assert proxy.fault == "bad value: R1.T = bad quality (BadSensorFailure)"
            assert proxy.value("T") is None
            await server.set("T.V", 26.0)
            assert await until(lambda: proxy.fault is None, 3) is not None
            assert proxy.value("T") == 26.0
            assert faults == ["bad value: R1.T = bad quality (BadSensorFailure)", None]
        finally:
            await proxy.close()
