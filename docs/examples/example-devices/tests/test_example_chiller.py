"""The descriptor-only chiller against the kit: two fixtures, everything else derived from
its module type (served by the thermostat model its ``simulator:`` section names)."""

from __future__ import annotations

from typing import Any

import pytest

from modulecontrol.testing import ModuleTypeConformance


class TestExampleChiller(ModuleTypeConformance):
    @pytest.fixture
    def module_type(self) -> str:
        return "ExampleChiller"  # installed by this package's entry point

    @pytest.fixture
    def endpoint(self) -> dict[str, Any]:
        return {"protocol": "modbus-tcp", "port": 502, "unit_id": 7, "timeout": 0.5}
