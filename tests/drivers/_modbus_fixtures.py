"""A module type exercising every Modbus data type and order, and helpers to build drivers."""

from __future__ import annotations

import struct
from typing import Any

from modulecontrol.descriptors import ModuleInstance, ModuleType, module_type_from_text
from modulecontrol.drivers.modbus import ModbusDriver

TYPES = ["int16", "uint16", "int32", "uint32", "float32", "float64"]
ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
FMT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


def expected_registers(kind: str, word_order: str, byte_order: str, raw: Any) -> list[int]:
    """Registers as a device with that layout holds them (independent of the driver's codec)."""
    data = struct.pack(">" + FMT[kind], raw)
    words = [data[i:i + 2] for i in range(0, len(data), 2)]
    if byte_order == "little":
        words = [w[::-1] for w in words]
    if word_order == "little":
        words.reverse()
    return [int.from_bytes(w, "big") for w in words]


def _type_yaml() -> str:
    lines = ["kind: ModuleType", "name: AllTypes", "data_assemblies:"]
    addr = 0
    for kind in TYPES:
        for wo, bo in ORDERS:
            name = f"{kind}_{wo}_{bo}".replace("int", "I").replace("float", "F")
            lines += [f"  - name: {name}", "    class: AnaMan", "    bindings:",
                      f"      VMan: {{modbus: {{table: holding, address: {addr}, type: {kind}, "
                      f"word_order: {wo}, byte_order: {bo}}}}}"]
            addr += 4
    lines += [
        "  - name: Scaled", "    class: AnaMan", "    unit: degC", "    min: -50",
        "    max: 200", "    bindings:",
        "      VMan: {modbus: {table: holding, address: 200, type: int16, scale: 0.1, "
        "offset: -50}}",
        "      VRbk: {modbus: {table: holding, address: 200, type: int16, scale: 0.1, "
        "offset: -50}}",
        "  - name: Wide", "    class: AnaMan", "    bindings:",
        "      VMan: {modbus: {table: holding, address: 201, type: int16, scale: 0.01}}",
        "  - name: Packed", "    class: BinMan", "    bindings:",
        "      VMan: {modbus: {table: holding, address: 210, bit: 3}}",
        "  - name: Other", "    class: BinMan", "    bindings:",
        "      VMan: {modbus: {table: holding, address: 210, bit: 9}}",
        "  - name: Pump", "    class: BinMan", "    safe_value: false", "    idempotent: true",
        "    bindings:",
        "      VMan: {modbus: {table: coil, address: 5}}",
        "      VRbk: {modbus: {table: coil, address: 5}}",
        "  - name: Reset", "    class: BinMan", "    bindings:",
        "      VMan: {modbus: {table: coil, address: 6}}",
        "  - name: Level", "    class: AnaView", "    unit: mL", "    bindings:",
        "      V: {modbus: {table: input, address: 10, type: float32}}",
        "  - name: Alarm", "    class: BinView", "    bindings:",
        "      V: {modbus: {table: discrete_input, address: 3}}",
        "  - name: Far", "    class: AnaView", "    bindings:",
        "      V: {modbus: {table: input, address: 990, type: float64}}",
        "safe_state:",
        "  - {write: Pump, value: false}",
    ]
    return "\n".join(lines) + "\n"


ALL_TYPES: ModuleType = module_type_from_text(_type_yaml(), "all_types.yaml")


def tcp_driver(port: int, mt: ModuleType = ALL_TYPES, **endpoint: Any) -> ModbusDriver:
    ep = {"protocol": "modbus-tcp", "host": "127.0.0.1", "port": port, "timeout": 0.3,
          "reconnect_max_delay": 0.4, **endpoint}
    inst = ModuleInstance.model_validate({"tag": "M1", "type": mt.name, "endpoint": ep})
    return ModbusDriver(mt, inst)


def rtu_driver(port: str, unit: int, tag: str, mt: ModuleType = ALL_TYPES,
               **endpoint: Any) -> ModbusDriver:
    ep = {"protocol": "modbus-rtu", "port": port, "unit_id": unit, "timeout": 0.2,
          "baudrate": 115200, "parity": "N", **endpoint}
    inst = ModuleInstance.model_validate({"tag": tag, "type": mt.name, "endpoint": ep})
    return ModbusDriver(mt, inst)
