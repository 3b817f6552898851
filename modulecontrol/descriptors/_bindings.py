"""Communication bindings: where each attribute of a data assembly lives on the wire.

A binding is pure data (register map, node id, command template); the drivers interpret it.
One attribute may carry bindings for several transports, so a module type can be served over
Modbus in one plant and OPC UA in another; the instance's endpoint picks which one is used.

The keys an attribute may carry are the registered transports (:mod:`._transports`): the
three built-in models below are registered by their drivers like any plug-in's.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import (
    Field,
    SerializationInfo,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails

from modulecontrol.descriptors._base import Model, Seconds
from modulecontrol.descriptors._transports import (
    Binding,
    UnknownTransport,
    binding_model,
    located_error,
    relocated,
)

ModbusTable = Literal["coil", "discrete_input", "holding", "input"]
ModbusType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]
ByteOrder = Literal["big", "little"]

REGISTER_COUNT: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}


class ModbusBinding(Binding):
    """A value in a Modbus table. Engineering value = raw * scale + offset."""

    table: ModbusTable
    address: int = Field(ge=0, le=65535)
    type: ModbusType | None = None
    word_order: ByteOrder = "big"
    byte_order: ByteOrder = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit_id: int | None = Field(default=None, ge=0, le=247)
    bit: int | None = Field(default=None, ge=0, le=15)
    """For a boolean packed in a holding or input register: the bit number."""

    @model_validator(mode="after")
    def _check(self) -> ModbusBinding:
        bit_table = self.table in ("coil", "discrete_input")
        if self.type is None:
            object.__setattr__(
                self, "type", "bool" if bit_table or self.bit is not None else "uint16"
            )
        if bit_table and self.type != "bool":
            raise ValueError(f"a {self.table} holds one bit: type must be 'bool', not {self.type}")
        if not bit_table and self.type == "bool" and self.bit is None:
            raise ValueError("a boolean in a register needs 'bit' (0-15)")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + self.count > 65536:
            raise ValueError("the value runs past the end of the address space (65535)")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) occupied."""
        return REGISTER_COUNT[self.type or "uint16"] if self.table in ("holding", "input") else 1

    @property
    def writable(self) -> bool:
        return self.table in ("coil", "holding")


_NODE_ID = re.compile(r"^(?:(?:ns=\d+;)?(?:nsu=[^;]+;)?)?(?:[sigb]=.+)$")


class OpcUaBinding(Binding):
    """An OPC UA variable. The namespace is named by URI and resolved when connecting."""

    namespace_uri: str | None = None
    identifier: str
    """``s=Name``, ``i=1234``, ``g=<guid>`` or ``b=<base64>``; a bare string means ``s=``."""
    access: Literal["read", "write", "readwrite"] = "read"

    @field_validator("identifier")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not v:
            raise ValueError("identifier must not be empty")
        if not _NODE_ID.match(v):
            return f"s={v}"
        return v

    @property
    def writable(self) -> bool:
        return self.access in ("write", "readwrite")

    @property
    def readable(self) -> bool:
        return self.access in ("read", "readwrite")


_FORMATTER = string.Formatter()


def check_template(template: str) -> str:
    """Allow only ``{value}`` / ``{value:.3f}`` style fields: no attribute or item access.

    Why: ``str.format`` with ``{value.__class__}`` reaches Python internals; a descriptor is
    data from a file, so its templates get the smallest language that works.
    """
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(f"bad command template '{template}': {exc}") from None
    for _, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if field_name != "value":
            raise ValueError(
                f"command template '{template}' may only use the field {{value}}, "
                f"not {{{field_name}}}"
            )
        if conversion:
            raise ValueError(f"command template '{template}': conversions like !r are not allowed")
        if spec and not re.fullmatch(r"[<>^=]?[+\- ]?0?\d*(\.\d+)?[dfegx%s]?", spec):
            raise ValueError(f"command template '{template}': unsupported format '{spec}'")
    return template


class SerialCommand(Model):
    """One request/response exchange of a line-based ASCII protocol (pymeasure style)."""

    command: str | None = None
    true_command: str | None = None
    """For booleans: the command sent to write ``true`` (e.g. ``RUN``)."""
    false_command: str | None = None
    """For booleans: the command sent to write ``false`` (e.g. ``STP``)."""
    response: str | None = None
    """A regular expression the reply must match; group 1 (or the named group ``value``)
    carries the value. Without one, any reply that is not an error is accepted."""
    conversion: Literal["float", "int", "bool", "str"] = "float"
    timeout: Seconds | None = None

    @field_validator("command", "true_command", "false_command")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        return v if v is None else check_template(v)

    @model_validator(mode="after")
    def _which(self) -> SerialCommand:
        if self.command is None and (self.true_command is None or self.false_command is None):
            raise ValueError("give 'command', or both 'true_command' and 'false_command'")
        return self

    @field_validator("response")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(
                f"response pattern '{v}' is not a valid regular expression: {exc}"
            ) from None
        return v


class SerialBinding(Binding):
    """How an attribute is read and/or written over a serial ASCII protocol."""

    read: SerialCommand | None = None
    write: SerialCommand | None = None

    @model_validator(mode="after")
    def _some(self) -> SerialBinding:
        if self.read is None and self.write is None:
            raise ValueError("a serial binding needs 'read', 'write' or both")
        return self

    @property
    def writable(self) -> bool:
        return self.write is not None

    @property
    def readable(self) -> bool:
        return self.read is not None


B = TypeVar("B", bound=Binding)


class AttributeBinding(Model):
    """Bindings of one attribute, one per transport that can reach it, keyed by transport.

    In YAML it is a mapping ``{modbus: {...}, opcua: {...}, acme: {...}}``; each value is
    validated by the binding model its transport registered, so a plug-in's keys are checked
    as strictly as the built-ins'. An unknown key names the installed transports.
    """

    by_transport: dict[str, SerializeAsAny[Binding]]

    @model_validator(mode="before")
    @classmethod
    def _validate_each(cls, data: Any) -> Any:
        if isinstance(data, AttributeBinding):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(
                "a binding maps transports to their bindings, e.g. {modbus: {table: holding, "
                "address: 0}}"
            )
        if set(data) == {"by_transport"}:  # already in model form (model_copy, round trips)
            data = data["by_transport"]
        out: dict[str, Binding] = {}
        errors: list[InitErrorDetails] = []
        for key, raw in data.items():
            try:
                model = binding_model(str(key))
            except UnknownTransport as exc:
                errors += relocated(located_error(cls.__name__, (), raw, str(exc)).errors(), (key,))
                continue
            if isinstance(raw, model):
                out[key] = raw
                continue
            try:
                out[key] = model.model_validate(raw)
            except ValidationError as exc:
                errors += relocated(exc.errors(), (key,))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        if not out:
            raise ValueError("a binding needs at least one transport (e.g. 'modbus', 'opcua')")
        return {"by_transport": out}

    @model_serializer(mode="plain")
    def _as_mapping(self, info: SerializationInfo) -> dict[str, Any]:
        return {
            name: b.model_dump(
                mode=info.mode,
                by_alias=bool(info.by_alias),
                exclude_defaults=info.exclude_defaults,
                exclude_none=info.exclude_none,
            )
            for name, b in self.by_transport.items()
        }

    def for_transport(self, transport: str) -> Binding | None:
        """This attribute's binding on ``transport``, if it has one."""
        return self.by_transport.get(transport)

    def get(self, transport: str, kind: type[B]) -> B | None:
        """The binding on ``transport`` as ``kind`` (``get("opcua", OpcUaBinding)``).

        Why typed: code that reads a transport's fields (an exporter writing node ids) wants
        the model class, and a binding of another class under that key is a bug, not None.
        """
        found = self.by_transport.get(transport)
        if found is not None and not isinstance(found, kind):
            raise TypeError(
                f"the '{transport}' binding is a {type(found).__name__}, not a {kind.__name__}"
            )
        return found
