"""Module-type descriptor -> MTP manifest 1.1.0 (AutomationML, CAEX 3.0).

Layout follows what current MTP tools write: a ModuleTypePackage whose CommunicationSet holds
the data assemblies (InstanceList) and the OPC UA server with one OPCUAItem per attribute
(SourceList); its ServiceSet and HMISet point (AspectSetReference) to their own instance
hierarchies. Services, procedures, parameters and report values find their data assemblies
through ``RefID`` values, attributes find their OPC UA items through IDLinks.

IDs are UUIDv5 derived from the module name and the object's place, so exporting the same
descriptor twice gives byte-identical files apart from the timestamp.
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from modulecontrol import __version__
from modulecontrol.descriptors import ModuleType
from modulecontrol.mtp._caex import CAEX_NAMESPACE, EXTRAS_PREFIX, MANIFEST_DOCUMENT
from modulecontrol.mtp._classes import (
    ACCESS_OF,
    AT_ASPECT_ID,
    AT_IDLINK,
    AT_MULTILANGUAGE,
    AT_REFID,
    CLASS_PATHS,
    PATH_ASPECT_REFERENCE,
    PATH_COMMUNICATION_SET,
    PATH_CONFIG_PARAMETER,
    PATH_HMI_SET,
    PATH_INSTANCE_LIST,
    PATH_MODULE_TYPE_PACKAGE,
    PATH_OPCUA_ITEM,
    PATH_OPCUA_SERVER,
    PATH_PICTURE,
    PATH_PROCEDURE,
    PATH_PROCEDURE_PARAMETER,
    PATH_PROCESS_VALUE_IN,
    PATH_PROCESS_VALUE_OUT,
    PATH_REPORT_VALUE,
    PATH_SERVICE,
    PATH_SERVICE_SET,
    PATH_SOURCE_LIST,
    TEXT_LANGUAGE,
    base_class,
)
from modulecontrol.mtp._plan import Item, plan_for
from modulecontrol.mtp._units import code_for_unit
from modulecontrol.mtpcore import PA

DEFAULT_ENDPOINT = "opc.tcp://127.0.0.1:4840"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_BAD_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ID_TYPES = {"s": "xs:string", "i": "xs:int", "g": "xs:ID", "b": "xs:base64Binary"}


class _Writer:
    def __init__(self, module: str) -> None:
        self.ns = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:modulecontrol:mtp:{module}")
        self.classes: set[str] = set()
        self.interfaces: set[str] = set()

    def id(self, *parts: str) -> str:
        return str(uuid.uuid5(self.ns, "/".join(parts)))

    def element(self, parent: ET.Element, tag: str, name: str, path: str, *key: str) -> ET.Element:
        attrib = {"Name": name, "ID": self.id(tag, *key)}
        if tag == "ExternalInterface":
            attrib["RefBaseClassPath"] = path
            self.interfaces.add(path)
        else:
            attrib["RefBaseSystemUnitPath"] = path
            self.classes.add(path)
        return ET.SubElement(parent, tag, attrib)


def _text(value: str, what: str) -> str:
    if _BAD_XML_CHARS.search(value):
        raise ValueError(f"{what} contains control characters that XML 1.0 cannot carry")
    return value


def _attribute(
    parent: ET.Element,
    name: str,
    value: str | None,
    *,
    data_type: str | None = "xs:string",
    ref_type: str | None = None,
    default: str | None = None,
    description: str | None = None,
) -> ET.Element:
    attrib = {"Name": name}
    if data_type:
        attrib["AttributeDataType"] = data_type
    if ref_type:
        attrib["RefAttributeType"] = ref_type
    a = ET.SubElement(parent, "Attribute", attrib)
    if description:
        ET.SubElement(a, "Description").text = description
    if default is not None:
        ET.SubElement(a, "DefaultValue").text = _text(default, f"attribute {name}")
    if value is not None:
        ET.SubElement(a, "Value").text = _text(value, f"attribute {name}")
    return a


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _static_defaults(cls: str, extras: dict[str, Any]) -> dict[str, str]:
    """DefaultValues other tools read (scale, limits, unit code, states, parameter default)."""
    out: dict[str, str] = {}
    for key, attr in (
        ("scale_min", "VSclMin"),
        ("scale_max", "VSclMax"),
        ("min", "VMin"),
        ("max", "VMax"),
        ("state0", "VState0"),
        ("state1", "VState1"),
    ):
        if key in extras:
            out[attr] = _fmt(extras[key])
    code = code_for_unit(str(extras.get("unit", "")))
    if code is not None:
        out["VUnit"] = str(code)
    if "default" in extras and cls.endswith("ServParam"):
        out[PA.V_EXT] = _fmt(extras["default"])
    return out


def _description(el: ET.Element, text: str, what: str) -> None:
    if text:
        ET.SubElement(el, "Description").text = _text(text, what)


def _extras(el: ET.Element, extras: dict[str, Any], what: str) -> None:
    if extras:
        text = EXTRAS_PREFIX + json.dumps(extras, sort_keys=True, ensure_ascii=False)
        ET.SubElement(el, "AdditionalInformation").text = _text(text, what)


def _manufacturer_uri(vendor: str) -> str:
    """The vendor as a URI: itself if it is one, else a URN made from its name."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", vendor):
        return vendor
    slug = re.sub(r"[^a-z0-9]+", "-", vendor.lower()).strip("-")
    return f"urn:modulecontrol:vendor:{slug or 'unknown'}"


def _aspect_reference(w: _Writer, parent: ET.Element, owner: str, target_id: str) -> None:
    ref = w.element(parent, "ExternalInterface", "AspectReference", PATH_ASPECT_REFERENCE, owner)
    _attribute(ref, "AspectRef", target_id, ref_type=AT_ASPECT_ID)


def export_manifest(
    module_type: ModuleType,
    *,
    endpoint_url: str | None = None,
    written: datetime | None = None,
) -> bytes:
    """An MTP manifest 1.1.0 (UTF-8 XML bytes) for ``module_type``.

    ``endpoint_url`` is the OPC UA endpoint the PEA will serve (default
    ``opc.tcp://127.0.0.1:4840``); ``written`` the LastWritingDateTime (default now, UTC).
    Raises ``ValueError`` if a text field holds characters XML 1.0 cannot carry.
    """
    plan = plan_for(module_type)
    w = _Writer(plan.name)
    # Unqualified tags plus a literal default namespace: ElementTree would otherwise invent
    # ns0: prefixes, which CAEX readers tolerate but people reading the file do not.
    root = ET.Element(
        "CAEXFile",
        {
            "SchemaVersion": "3.0",
            "FileName": f"{plan.name}.aml",
            "xmlns": CAEX_NAMESPACE,
            "xmlns:xsi": _XSI,
            "xsi:schemaLocation": f"{CAEX_NAMESPACE} CAEX_ClassModel_V.3.0.xsd",
        },
    )
    for doc_id, version in (
        (MANIFEST_DOCUMENT, "1.1.0"),
        ("VDI/VDE/NAMUR 2658-4:ServiceSet", "1.0.0"),
        ("VDI/VDE/NAMUR 2658-2:HmiSet", "1.0.0"),
    ):
        info = ET.SubElement(root, "AdditionalInformation", {"DocumentVersions": "Recommendations"})
        ET.SubElement(info, "Document", {"DocumentIdentifier": doc_id, "Version": version})
    ET.SubElement(root, "SuperiorStandardVersion").text = "AutomationML 2.10"
    stamp = (written or datetime.now(UTC)).isoformat(timespec="seconds")
    ET.SubElement(
        root,
        "SourceDocumentInformation",
        {
            "OriginName": "modulecontrol",
            "OriginID": "modulecontrol",
            "OriginVersion": __version__,
            "LastWritingDateTime": stamp,
            "OriginVendor": "modulecontrol",
            "OriginProjectTitle": plan.name,
        },
    )

    ih = ET.SubElement(
        root, "InstanceHierarchy", {"Name": "ModuleTypePackage", "ID": w.id("IH", "MTP")}
    )
    pkg = w.element(ih, "InternalElement", plan.name, PATH_MODULE_TYPE_PACKAGE, "package")
    _description(pkg, plan.description, "description")
    _extras(pkg, plan.extras, "vendor/category")
    _attribute(pkg, "Version", plan.version)
    # 2658-1 table 36 #7a: what identifies the PEA's device beside the package version
    _attribute(pkg, "DeviceRevision", plan.version)
    vendor = str(plan.extras.get("vendor", ""))
    _attribute(pkg, "ManufacturerUri", _manufacturer_uri(vendor))
    _attribute(pkg, "ProductCode", w.id("product", plan.name, plan.version))
    comm = w.element(pkg, "InternalElement", "Communication", PATH_COMMUNICATION_SET, "comm")
    instances = w.element(comm, "InternalElement", "Instances", PATH_INSTANCE_LIST, "instances")
    sources = w.element(comm, "InternalElement", "Sources", PATH_SOURCE_LIST, "sources")
    server = w.element(
        sources, "InternalElement", f"{plan.name}_OPCUAServer", PATH_OPCUA_SERVER, "server"
    )
    _attribute(server, "Endpoint", endpoint_url or DEFAULT_ENDPOINT)

    def add_items(
        owner_key: str, owner_name: str, da: ET.Element, items: list[Item], defaults: dict[str, str]
    ) -> None:
        for it in items:
            item = w.element(
                server,
                "ExternalInterface",
                f"{owner_name}.{it.attribute}",
                PATH_OPCUA_ITEM,
                owner_key,
                it.attribute,
            )
            _attribute(item, "Access", str(ACCESS_OF[it.access]), data_type="xs:unsignedByte")
            _attribute(item, "Identifier", it.identifier, data_type=_ID_TYPES.get(it.kind))
            _attribute(item, "Namespace", it.namespace)
            _attribute(
                da,
                it.attribute,
                item.get("ID"),
                ref_type=AT_IDLINK,
                default=defaults.get(it.attribute),
            )

    def tag_attributes(da: ET.Element, name: str, description: str, items: list[Item]) -> None:
        """TagName and TagDescription as multi-language text (2658-1 tables 26/29): the
        value, and the same value for English, as vendors write it."""
        bound = {i.attribute for i in items}
        for attr, text in (("TagName", name), ("TagDescription", description)):
            if attr not in bound:
                a = _attribute(da, attr, text, ref_type=AT_MULTILANGUAGE)
                _attribute(a, f"aml-lang={TEXT_LANGUAGE}", text)

    refids: dict[str, str] = {}
    for d in plan.assemblies:
        el = w.element(instances, "InternalElement", d.name, CLASS_PATHS[d.class_], "da", d.name)
        _description(el, d.description, f"description of {d.name}")
        _extras(el, d.extras, f"data assembly {d.name}")
        refids[d.name] = w.id("refid", "da", d.name)
        _attribute(el, "RefID", refids[d.name], ref_type=AT_REFID)
        tag_attributes(el, d.name, d.description, d.items)
        add_items(f"da/{d.name}", d.name, el, d.items, _static_defaults(d.class_, d.extras))
    control_refids: dict[str, str] = {}
    for s in plan.services:
        el = w.element(
            instances, "InternalElement", s.name, CLASS_PATHS["ServiceControl"], "sc", s.name
        )
        _description(el, s.description, f"description of service {s.name}")
        control_refids[s.name] = w.id("refid", "sc", s.name)
        _attribute(el, "RefID", control_refids[s.name], ref_type=AT_REFID)
        tag_attributes(el, s.name, s.description, s.items)
        add_items(f"sc/{s.name}", s.name, el, s.items, {})

    services_ih_id = w.id("IH", "Services")
    hmi_ih_id = w.id("IH", "HMI")
    service_set = w.element(pkg, "InternalElement", "Services", PATH_SERVICE_SET, "serviceset")
    _aspect_reference(w, service_set, "serviceset", services_ih_id)
    hmi_set = w.element(pkg, "InternalElement", "HMI", PATH_HMI_SET, "hmiset")
    _aspect_reference(w, hmi_set, "hmiset", hmi_ih_id)

    sih = ET.SubElement(root, "InstanceHierarchy", {"Name": "Services", "ID": services_ih_id})
    names = {d.name: d.class_ for d in plan.assemblies}
    for s in plan.services:
        sel = w.element(sih, "InternalElement", s.name, PATH_SERVICE, "service", s.name)
        _description(sel, s.description, f"description of service {s.name}")
        _attribute(sel, "RefID", control_refids[s.name], ref_type=AT_REFID)
        for k, pname in enumerate(s.config_parameters):
            cp = w.element(
                sel, "InternalElement", pname, PATH_CONFIG_PARAMETER, "cp", s.name, str(k)
            )
            _attribute(cp, "RefID", refids[pname], ref_type=AT_REFID)
        for p in s.procedures:
            key = f"{s.name}/{p.name}"
            pel = w.element(sel, "InternalElement", p.name, PATH_PROCEDURE, "proc", key)
            _description(pel, p.description, f"description of procedure {key}")
            if names.get(p.name) == "ProcedureHealthView":
                _attribute(pel, "RefID", refids[p.name], ref_type=AT_REFID)
            _attribute(pel, "ProcedureID", str(p.id), data_type="xs:unsignedInt")
            _attribute(pel, "IsSelfCompleting", _fmt(p.self_completing), data_type="xs:boolean")
            _attribute(pel, "IsDefault", _fmt(p.default), data_type="xs:boolean")
            for k, pname in enumerate(p.parameters):
                pp = w.element(
                    pel, "InternalElement", pname, PATH_PROCEDURE_PARAMETER, "pp", key, str(k)
                )
                _attribute(pp, "RefID", refids[pname], ref_type=AT_REFID)
            for k, rname in enumerate(p.report_values):
                rv = w.element(pel, "InternalElement", rname, PATH_REPORT_VALUE, "rv", key, str(k))
                _attribute(rv, "RefID", refids[rname], ref_type=AT_REFID)
            for tag, path, linked in (("pvi", PATH_PROCESS_VALUE_IN, p.process_values_in),
                                      ("pvo", PATH_PROCESS_VALUE_OUT, p.process_values_out)):
                for k, vname in enumerate(linked):
                    pv = w.element(pel, "InternalElement", vname, path, tag, key, str(k))
                    _attribute(pv, "RefID", refids[vname], ref_type=AT_REFID)

    hih = ET.SubElement(root, "InstanceHierarchy", {"Name": "HMI", "ID": hmi_ih_id})
    pic = w.element(hih, "InternalElement", plan.name, PATH_PICTURE, "picture")
    _attribute(pic, "Width", "1280", data_type="xs:int")
    _attribute(pic, "Height", "800", data_type="xs:int")

    _libraries(root, w)
    ET.indent(root, space="  ")
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def _tree(paths: set[str]) -> dict[str, dict[str, Any]]:
    """Library name -> nested class names, from full class paths."""
    libs: dict[str, dict[str, Any]] = {}
    for p in sorted(paths):
        lib, *rest = p.split("/")
        node = libs.setdefault(lib, {})
        for part in rest:
            node = node.setdefault(part, {})
    return libs


def _classes(
    parent: ET.Element, tag: str, prefix: str, children: dict[str, Any], w: _Writer
) -> None:
    for name, sub in children.items():
        path = f"{prefix}/{name}"
        attrib = {"Name": name, "ID": w.id("class", path)}
        base = base_class(path)
        if base is not None:
            attrib["RefBaseClassPath"] = base
        el = ET.SubElement(parent, tag, attrib)
        _classes(el, tag, path, sub, w)


def _libraries(root: ET.Element, w: _Writer) -> None:
    """Skeletons of the standard libraries the file refers to, so every class path resolves
    inside the file. (The full libraries with their attribute definitions are the standard's;
    tools that know MTP ship them.)"""
    for lib, children in _tree(w.interfaces).items():
        el = ET.SubElement(root, "InterfaceClassLib", {"Name": lib})
        ET.SubElement(el, "Version").text = "1.1.0"
        _classes(el, "InterfaceClass", lib, children, w)
    classes = set(w.classes)
    for path in list(_closure(classes)):
        classes.add(path)
    for lib, children in _tree(classes).items():
        el = ET.SubElement(root, "SystemUnitClassLib", {"Name": lib})
        ET.SubElement(el, "Version").text = "1.1.0"
        _classes(el, "SystemUnitClass", lib, children, w)
    at = ET.SubElement(root, "AttributeTypeLib", {"Name": "MTPATLib"})
    ET.SubElement(at, "Version").text = "1.1.0"
    ref = ET.SubElement(at, "AttributeType", {"Name": "IDReferenceType"})
    for name in (AT_REFID, AT_IDLINK, AT_ASPECT_ID):
        ET.SubElement(ref, "AttributeType", {"Name": name.rsplit("/", 1)[-1]})
    ET.SubElement(at, "AttributeType", {"Name": AT_MULTILANGUAGE.rsplit("/", 1)[-1]})


def _closure(paths: set[str]) -> set[str]:
    """The base classes the classes in ``paths`` derive from, transitively, so that every
    RefBaseClassPath of the skeleton resolves inside the file."""
    out: set[str] = set()
    todo = list(paths)
    while todo:
        path = todo.pop()
        for p in (path, *(path[: i] for i in range(len(path)) if path[i] == "/")):
            base = base_class(p)
            if base is not None and base not in out and base not in paths:
                out.add(base)
                todo.append(base)
    return out
