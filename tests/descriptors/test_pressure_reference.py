"""``pressure_reference`` says what a pressure is measured against, for the report's labels."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modulecontrol.descriptors import DataAssembly, builtin_types


def test_only_pressures_carry_a_reference() -> None:
    da = DataAssembly.model_validate(
        {"name": "P", "class": "AnaMon", "unit": "bar", "pressure_reference": "gauge"})
    assert da.pressure_reference == "gauge"
    with pytest.raises(ValidationError, match=r"applies only to pressures.*'degC'"):
        DataAssembly.model_validate(
            {"name": "T", "class": "AnaMon", "unit": "degC", "pressure_reference": "gauge"})
    with pytest.raises(ValidationError):
        DataAssembly.model_validate(
            {"name": "P", "class": "AnaMon", "unit": "bar", "pressure_reference": "relative"})


def test_regulator_set_point_and_reading_say_which_they_are() -> None:
    """The BPR holds its set point above the outlet; its reading is the absolute inlet
    pressure of the simulated line: both were plain "bar" before."""
    bpr = builtin_types().get("BackPressureRegulator")
    refs = {da.name: da.pressure_reference for da in bpr.data_assemblies}
    assert refs == {"PressureSP": "differential", "Setpoint": "differential",
                    "Pressure": "absolute"}
