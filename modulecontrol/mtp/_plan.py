"""What of a module type an MTP manifest carries, computed once for export and for comparison.

Why a separate plan: the exporter writes it as CAEX, and :func:`mtp_projection` turns the same
plan back into a descriptor. A round trip (export, then import) must give the projection, so
the two can never disagree about which bindings are implied by the ``opcua`` defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from modulecontrol.descriptors import (
    DataAssembly,
    ModuleType,
    OpcUaBinding,
    OpcUaDefaults,
)
from modulecontrol.mtpcore import (
    DA_ATTRIBUTES,
    SERVICE_CONTROL_ATTRIBUTES,
    STATIC_ATTRIBUTES,
    writable,
)

_NS_INDEX = re.compile(r"^ns=\d+;")
_NS_URI = re.compile(r"^nsu=([^;]+);")

DA_EXTRA_FIELDS = ("description", "unit", "min", "max", "scale_min", "scale_max", "default")
BOOL_EXTRA_FIELDS = ("state0", "state1")


@dataclass(frozen=True)
class Item:
    """One OPC UA item: what the SourceList says about one attribute."""

    attribute: str
    namespace: str
    kind: str
    """``s``, ``i``, ``g`` or ``b``: the node-id identifier type."""
    identifier: str
    access: str

    @property
    def node_id(self) -> str:
        return f"{self.kind}={self.identifier}"


@dataclass
class DAPlan:
    name: str
    class_: str
    description: str
    extras: dict[str, Any]
    items: list[Item]


@dataclass
class ProcPlan:
    name: str
    id: int
    description: str
    self_completing: bool
    default: bool
    parameters: list[str]
    report_values: list[str]
    process_values_in: list[str]
    process_values_out: list[str]


@dataclass
class ServicePlan:
    name: str
    description: str
    items: list[Item]
    config_parameters: list[str]
    procedures: list[ProcPlan]


@dataclass
class Plan:
    name: str
    version: str
    description: str
    extras: dict[str, Any]
    assemblies: list[DAPlan] = field(default_factory=list)
    services: list[ServicePlan] = field(default_factory=list)


def default_namespace(mt: ModuleType) -> str:
    """Namespace for attributes without an OPC UA binding when the type has no ``opcua``."""
    return mt.opcua.namespace_uri if mt.opcua else f"urn:modulecontrol:pea:{mt.name.lower()}"


def split_node_id(binding: OpcUaBinding, fallback_namespace: str) -> tuple[str, str, str]:
    """(namespace URI, identifier type, identifier) of a binding, as an MTP item states them.

    A namespace *index* (``ns=2;``) is dropped: it is server-specific and MTP names namespaces
    by URI. An ``nsu=`` prefix supplies the URI when the binding has none.
    """
    ident = binding.identifier
    namespace = binding.namespace_uri or ""
    ident = _NS_INDEX.sub("", ident)
    m = _NS_URI.match(ident)
    if m:
        namespace = namespace or m.group(1)
        ident = ident[m.end() :]
    kind, _, rest = ident.partition("=")
    return namespace or fallback_namespace, kind, rest


def _item(
    attribute: str,
    explicit: OpcUaBinding | None,
    assembly: str,
    da_class: str,
    defaults: OpcUaDefaults,
) -> Item:
    if explicit is not None:
        ns, kind, ident = split_node_id(explicit, defaults.namespace_uri)
        return Item(attribute, ns, kind, ident, explicit.access)
    derived = defaults.binding(assembly, attribute, False)
    ns, kind, ident = split_node_id(derived, defaults.namespace_uri)
    access = "readwrite" if writable(da_class, attribute) else "read"
    return Item(attribute, ns, kind, ident, access)


def _items(
    owner: str,
    da_class: str,
    attributes: tuple[str, ...],
    bindings: dict[str, Any],
    defaults: OpcUaDefaults,
) -> list[Item]:
    out = []
    for attr in attributes:
        b = bindings.get(attr)
        explicit = b.get("opcua", OpcUaBinding) if b is not None else None
        if explicit is None and attr in STATIC_ATTRIBUTES:
            continue
        out.append(_item(attr, explicit, owner, da_class, defaults))
    return out


def _extras(da: DataAssembly) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = DA_EXTRA_FIELDS + (BOOL_EXTRA_FIELDS if da.kind == "bool" else ())
    for f in fields:
        v = getattr(da, f)
        default = DataAssembly.model_fields[f].default
        if v is not None and v != default:
            out[f] = v
    return out


def plan_for(mt: ModuleType) -> Plan:
    """The manifest content of ``mt``: every attribute with its OPC UA item, every link."""
    defaults = mt.opcua or OpcUaDefaults(namespace_uri=default_namespace(mt))
    extras = {k: v for k, v in (("vendor", mt.vendor), ("category", mt.category)) if v}
    plan = Plan(mt.name, mt.version, mt.description, extras)
    for da in mt.data_assemblies:
        plan.assemblies.append(
            DAPlan(
                da.name,
                da.class_,
                da.description,
                _extras(da),
                _items(da.name, da.class_, DA_ATTRIBUTES[da.class_], da.bindings, defaults),
            )
        )
    for svc in mt.services:
        plan.services.append(
            ServicePlan(
                svc.name,
                svc.description,
                _items(
                    svc.name, "ServiceControl", SERVICE_CONTROL_ATTRIBUTES, svc.bindings, defaults
                ),
                list(svc.config_parameters),
                [
                    ProcPlan(
                        p.name,
                        p.id,
                        p.description,
                        p.self_completing,
                        p.default,
                        list(p.parameters),
                        list(p.report_values),
                        list(p.process_values_in),
                        list(p.process_values_out),
                    )
                    for p in svc.procedures
                ],
            )
        )
    return plan


def _bindings(items: list[Item]) -> dict[str, Any]:
    return {
        i.attribute: {
            "opcua": {"namespace_uri": i.namespace, "identifier": i.node_id, "access": i.access}
        }
        for i in items
    }


def mtp_projection(mt: ModuleType) -> ModuleType:
    """The part of ``mt`` an MTP manifest carries, with every OPC UA binding explicit.

    Importing ``export_manifest(mt)`` gives exactly this. Dropped: ports, properties,
    simulator, safe state, service actions, ``complete_when``, ``safe_value``, ``idempotent``,
    and Modbus/serial bindings (MTP knows only OPC UA).
    """
    plan = plan_for(mt)
    doc: dict[str, Any] = {"kind": "ModuleType", "name": plan.name, "version": plan.version}
    if plan.description:
        doc["description"] = plan.description
    doc.update(plan.extras)
    doc["data_assemblies"] = [
        {"name": d.name, "class": d.class_, **d.extras, "bindings": _bindings(d.items)}
        for d in plan.assemblies
    ]
    doc["services"] = [
        {
            "name": s.name,
            "description": s.description,
            "bindings": _bindings(s.items),
            "config_parameters": s.config_parameters,
            "procedures": [
                {
                    "name": p.name,
                    "id": p.id,
                    "description": p.description,
                    "self_completing": p.self_completing,
                    "default": p.default,
                    "parameters": p.parameters,
                    "report_values": p.report_values,
                }
                for p in s.procedures
            ],
        }
        for s in plan.services
    ]
    return ModuleType.model_validate(doc)
