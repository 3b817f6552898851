"""The built-in Modbus types against the kit's ModuleTypeConformance: each served by the
model its descriptor names, as `sim serve` serves it, through the installed Modbus driver.
The kit derives every case from the descriptor (what an integrator's descriptor-only device
gets too)."""

from __future__ import annotations

from typing import Any

import pytest

from modulecontrol.testing import ModuleTypeConformance


class TestThermostatType(ModuleTypeConformance):
    @pytest.fixture
    def module_type(self) -> str:
        return "Thermostat"

    @pytest.fixture
    def endpoint(self) -> dict[str, Any]:
        return {"protocol": "modbus-tcp", "port": 502, "unit_id": 3, "timeout": 0.3}


class TestHplcPumpType(ModuleTypeConformance):
    @pytest.fixture
    def module_type(self) -> str:
        return "HPLCPump"

    @pytest.fixture
    def endpoint(self) -> dict[str, Any]:
        return {"protocol": "modbus-tcp", "port": 502, "timeout": 0.3}
