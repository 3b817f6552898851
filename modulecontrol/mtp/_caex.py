"""Reading a CAEX manifest into plain MTP objects, with every link resolved and located.

Both the importer and the conformance check start from :func:`read_manifest`, so what the
check calls "resolves" is exactly what the importer relies on. Objects are recognised by their
class path (``RefBaseSystemUnitPath`` / ``RefBaseClassPath``), never by element names: vendor
tools name elements freely. A class from a vendor library is followed through the file's own
``SystemUnitClassLib`` to the standard MTP class it derives from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from modulecontrol.errors import Location, Problem
from modulecontrol.mtp._classes import (
    ACCESS_CODES,
    DA_LIB,
    LEGACY_PATHS,
    PATH_COMMUNICATION_SET,
    PATH_CONFIG_PARAMETER,
    PATH_INSTANCE_LIST,
    PATH_MODULE_TYPE_PACKAGE,
    PATH_OPCUA_ITEM,
    PATH_OPCUA_SERVER,
    PATH_PROCEDURE,
    PATH_PROCEDURE_PARAMETER,
    PATH_PROCESS_VALUE_IN,
    PATH_PROCESS_VALUE_OUT,
    PATH_REPORT_VALUE,
    PATH_SERVICE,
    PATH_SERVICE_SET,
    PATH_SOURCE_LIST,
    STANDARD_LIBRARIES,
)
from modulecontrol.mtp._xml import Node, XmlDoc
from modulecontrol.mtpcore import attribute_role

CAEX_NAMESPACE = "http://www.dke.de/CAEX"
MANIFEST_DOCUMENT = "VDI/VDE/NAMUR 2658-1:Manifest"
SUPPORTED_VERSIONS = ("1.0.0", "1.1.0")
EXTRAS_PREFIX = "modulecontrol:"
"""Marks an ``AdditionalInformation`` whose text (after the prefix) is a JSON object with
descriptor facts that MTP has no attribute for (engineering unit as text, limits, defaults)."""

_FULL_NODE_ID = re.compile(r"^(?:ns=\d+;|nsu=[^;]+;)([sigb]=.+)$")
_NS_INDEX = re.compile(r"^ns=(\d+);")
_Std = Callable[["Node"], str]


def norm_id(value: str | None) -> str:
    """IDs compare without braces and case (CAEX 2.15 tools write ``{GUID}``)."""
    return (value or "").strip().strip("{}").lower()


def class_path(node: Node) -> str:
    return node.get("RefBaseSystemUnitPath") or node.get("RefBaseClassPath") or ""


@dataclass
class OpcUaItem:
    """An ``OPCUAItem`` of the SourceList: one node on the PEA's OPC UA server."""

    id: str
    name: str
    namespace: str
    identifier: str
    identifier_type: str
    """The Identifier's AttributeDataType: ``xs:string``, ``xs:int``, ``xs:ID`` or
    ``xs:base64Binary``; decides the node-id prefix (``s=``, ``i=``, ``g=``, ``b=``)."""
    access_code: int | None
    server: str
    node: Node

    @property
    def access(self) -> str:
        return ACCESS_CODES.get(self.access_code or 0, "read")

    @property
    def namespace_index(self) -> int | None:
        """The namespace as a server index where the manifest gives one instead of a URI:
        ``Namespace`` written as a number (MTP 1.0 generators), or empty with an
        ``ns=N;`` identifier. Not portable (indices are the server's to assign), so kept as
        written, resolved against the server's namespace array at connect, and flagged by
        the static check."""
        ns = self.namespace.strip()
        if ns.isdigit():
            return int(ns)
        index = _NS_INDEX.match(self.identifier)
        if not ns and index:
            return int(index.group(1))
        return None

    @property
    def namespace_uri(self) -> str | None:
        """The namespace URI, or ``None`` where the manifest gives an index."""
        return None if self.namespace_index is not None else self.namespace

    @property
    def node_id(self) -> str:
        """The identifier as a node id: without namespace where the namespace goes by URI,
        with ``ns=N;`` where the manifest gives an index.

        Some generators write a whole node id (``ns=3;s=Tank.V``) into Identifier; with a
        URI beside it, its server-specific index is dropped and its own type prefix kept.
        """
        full = _FULL_NODE_ID.match(self.identifier)
        if full:
            ident = full.group(1)
        else:
            prefix = {"xs:int": "i", "xs:unsignedint": "i", "xs:id": "g", "xs:base64binary": "b"}
            ident = f"{prefix.get(self.identifier_type.lower(), 's')}={self.identifier}"
        index = self.namespace_index
        return ident if index is None else f"ns={index};{ident}"


@dataclass
class AttrValue:
    """One ``Attribute`` of an object: its literal value, default, and resolved link if any."""

    name: str
    value: str | None
    default: str | None
    ref_type: str
    node: Node
    item: OpcUaItem | None = None


@dataclass
class DAElement:
    """A data-assembly instance of the InstanceList."""

    name: str
    id: str
    ref_id: str
    path: str
    mtp_class: str | None
    """The standard class (last path segment of the first standard ancestor), e.g. ``AnaView``."""
    lineage: list[str]
    attrs: dict[str, AttrValue]
    description: str
    extras: str | None
    node: Node


@dataclass
class LinkElement:
    """A ProcedureParameter, ConfigurationParameter or ReportValue: a RefID to a DA."""

    name: str
    ref_id: str
    node: Node
    target: DAElement | None = None


@dataclass
class ProcElement:
    name: str
    id: str
    ref_id: str
    attrs: dict[str, AttrValue]
    description: str
    parameters: list[LinkElement]
    report_values: list[LinkElement]
    node: Node
    health_view: DAElement | None = None
    process_values_in: list[LinkElement] = field(default_factory=list)
    """ProcessValueIn links under the procedure: values it reads from outside."""
    process_values_out: list[LinkElement] = field(default_factory=list)
    """ProcessValueOut links: values it provides to others."""

    @property
    def process_values(self) -> list[LinkElement]:
        return [*self.process_values_in, *self.process_values_out]

    def attr(self, *names: str) -> AttrValue | None:
        """First attribute by any of ``names``, ignoring case (``ProcedureId``/``ProcedureID``)."""
        lowered = {k.lower(): v for k, v in self.attrs.items()}
        for n in names:
            if n.lower() in lowered:
                return lowered[n.lower()]
        return None


@dataclass
class ServiceElement:
    name: str
    id: str
    ref_id: str
    description: str
    procedures: list[ProcElement]
    config_parameters: list[LinkElement]
    node: Node
    control: DAElement | None = None


@dataclass
class ServerElement:
    name: str
    endpoint: str
    node: Node


@dataclass
class Manifest:
    """A manifest read into MTP objects; ``problems`` are errors, ``warnings`` are notes."""

    doc: XmlDoc
    schema_version: str
    manifest_version: str
    package: Node | None
    package_attrs: dict[str, AttrValue]
    servers: list[ServerElement] = field(default_factory=list)
    items: dict[str, OpcUaItem] = field(default_factory=dict)
    assemblies: list[DAElement] = field(default_factory=list)
    services: list[ServiceElement] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    all_ids: dict[str, list[Node]] = field(default_factory=dict)
    used: set[int] = field(default_factory=set)
    """``id()`` of every InternalElement the reader understood, for :func:`unused_elements`."""

    def locate(self, node: Node) -> Location:
        return self.doc.locate(node)

    def error(self, node: Node, message: str) -> None:
        self.problems.append(Problem(f"{message} [at {node.path}]", self.locate(node)))

    def warn(self, node: Node, message: str) -> None:
        self.warnings.append(Problem(f"{message} [at {node.path}]", self.locate(node)))


def _attrs(node: Node) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for a in node.findall("Attribute"):
        name = a.get("Name")
        if not name:
            continue
        out[name] = AttrValue(
            name,
            a.findtext("Value"),
            a.findtext("DefaultValue"),
            a.get("RefAttributeType") or "",
            a,
        )
    return out


class _ClassIndex:
    """SystemUnitClass / InterfaceClass paths defined in the file, for vendor-derived classes."""

    def __init__(self, root: Node) -> None:
        self.bases: dict[str, str] = {}
        for lib_tag, cls_tag in (
            ("SystemUnitClassLib", "SystemUnitClass"),
            ("InterfaceClassLib", "InterfaceClass"),
        ):
            for lib in root.findall(lib_tag):
                self._walk(lib, lib.get("Name") or "", cls_tag)

    def _walk(self, node: Node, prefix: str, cls_tag: str) -> None:
        for c in node.findall(cls_tag):
            path = f"{prefix}/{c.get('Name') or ''}"
            base = c.get("RefBaseClassPath")
            if base:
                self.bases[path] = base
            self._walk(c, path, cls_tag)

    def lineage(self, path: str) -> list[str]:
        """``path`` and its ancestors, up to the first path in a standard MTP library."""
        out: list[str] = []
        seen: set[str] = set()
        while path and path not in seen and len(out) < 32:
            out.append(path)
            seen.add(path)
            if path.split("/", 1)[0] in STANDARD_LIBRARIES:
                break
            path = self.bases.get(path, "")
        return out


def _standard(lineage: list[str]) -> str:
    """The standard class path a lineage ends in, MTP 1.0 paths given as their 2022 path."""
    last = lineage[-1] if lineage else ""
    if last.split("/", 1)[0] not in STANDARD_LIBRARIES:
        return ""
    return LEGACY_PATHS.get(last, last)


def _instance_nodes(root: Node) -> list[Node]:
    out: list[Node] = []
    for ih in root.findall("InstanceHierarchy"):
        out.extend(n for n in ih.iter("InternalElement"))
    return out


def _version(root: Node, schema: str) -> str:
    for info in root.findall("AdditionalInformation"):
        for d in info.findall("Document"):
            if d.get("DocumentIdentifier") == MANIFEST_DOCUMENT and d.get("Version"):
                return d.get("Version") or ""
    return "1.1.0" if schema.startswith("3") else "1.0.0"


def read_manifest(doc: XmlDoc) -> Manifest:
    """Collect the MTP objects of a parsed CAEX file and resolve their links."""
    root = doc.root
    schema = root.get("SchemaVersion") or ""
    m = Manifest(doc, schema, "", None, {})
    if root.tag != "CAEXFile":
        m.error(root, f"the root element is <{root.tag}>, not <CAEXFile>: not a CAEX manifest")
        return m
    m.manifest_version = _version(root, schema)
    if schema not in ("3.0", "2.15"):
        m.error(root, f"CAEX SchemaVersion '{schema}' is not supported (use 3.0 or 2.15)")
    elif schema == "3.0" and doc.namespace != CAEX_NAMESPACE:
        m.warn(root, f"CAEX 3.0 file without the namespace {CAEX_NAMESPACE}")
    if m.manifest_version not in SUPPORTED_VERSIONS:
        m.warn(
            root,
            f"manifest version {m.manifest_version} is not one we test "
            f"({', '.join(SUPPORTED_VERSIONS)}); reading it as {SUPPORTED_VERSIONS[-1]}",
        )
    for n in root.iter():
        if n.tag in ("InternalElement", "ExternalInterface", "InstanceHierarchy") and n.get("ID"):
            m.all_ids.setdefault(norm_id(n.get("ID")), []).append(n)

    classes = _ClassIndex(root)
    nodes = _instance_nodes(root)
    lineages = {id(n): classes.lineage(class_path(n)) for n in nodes}

    def std(n: Node) -> str:
        return _standard(lineages.get(id(n)) or classes.lineage(class_path(n)))

    m.used.update(id(n) for n in nodes if std(n) in _STRUCTURE)
    packages = [n for n in nodes if std(n) == PATH_MODULE_TYPE_PACKAGE]
    if not packages:
        m.error(root, f"no InternalElement of class {PATH_MODULE_TYPE_PACKAGE}: not an MTP")
    else:
        m.package = packages[0]
        m.package_attrs = _attrs(packages[0])
        if len(packages) > 1:
            m.warn(packages[1], "more than one ModuleTypePackage; only the first is read")

    _read_sources(m, nodes, std, classes)
    _read_assemblies(m, nodes, lineages)
    _read_services(m, nodes, std)
    return m


def _read_sources(m: Manifest, nodes: list[Node], std: _Std, classes: _ClassIndex) -> None:
    for n in nodes:
        if std(n) != PATH_OPCUA_SERVER:
            continue
        attrs = _attrs(n)
        endpoint = attrs.get("Endpoint")
        server = ServerElement(n.get("Name") or "", (endpoint.value or "") if endpoint else "", n)
        if not server.endpoint:
            m.warn(n, f"OPC UA server '{server.name}' has no Endpoint value")
        m.servers.append(server)
        m.used.add(id(n))
        for ei in n.findall("ExternalInterface"):
            if _standard(classes.lineage(class_path(ei))) != PATH_OPCUA_ITEM:
                continue
            ia = _attrs(ei)
            ident = ia.get("Identifier")
            ns = ia.get("Namespace")
            acc = ia.get("Access")
            code: int | None = None
            if acc is not None and acc.value not in (None, ""):
                try:
                    code = int(acc.value or "")
                except ValueError:
                    m.error(
                        acc.node, f"OPC UA item '{ei.get('Name')}': Access '{acc.value}' is not 0-3"
                    )
            item = OpcUaItem(
                norm_id(ei.get("ID")),
                ei.get("Name") or "",
                (ns.value or "") if ns else "",
                (ident.value or "") if ident else "",
                (ident.node.get("AttributeDataType") or "xs:string") if ident else "xs:string",
                code,
                server.name,
                ei,
            )
            if item.id:
                m.items[item.id] = item


def _read_assemblies(m: Manifest, nodes: list[Node], lineages: dict[int, list[str]]) -> None:
    for n in nodes:
        lineage = lineages[id(n)]
        standard = _standard(lineage)
        if not standard.startswith(f"{DA_LIB}/DataAssembly/"):
            continue
        attrs = _by_role(_attrs(n), standard)
        ref = attrs.get("RefID")
        extras = None
        for info in n.findall("AdditionalInformation"):
            if info.text.startswith(EXTRAS_PREFIX):
                extras = info.text[len(EXTRAS_PREFIX) :]
        da = DAElement(
            n.get("Name") or "",
            norm_id(n.get("ID")),
            norm_id(ref.value) if ref else "",
            class_path(n),
            standard.rsplit("/", 1)[-1],
            lineage,
            attrs,
            n.findtext("Description") or "",
            extras,
            n,
        )
        for a in attrs.values():
            if a.name == "RefID":
                continue
            if a.ref_type.endswith("IDLinkAttributeType") or norm_id(a.value) in m.items:
                item = m.items.get(norm_id(a.value))
                if item is not None:
                    a.item = item
                elif a.value:
                    m.error(
                        a.node,
                        f"attribute {a.name} of data assembly '{da.name}' links to "
                        f"'{a.value}', which is no OPCUAItem of the SourceList",
                    )
        m.assemblies.append(da)
        m.used.add(id(n))


def _by_role(attrs: dict[str, AttrValue], standard: str) -> dict[str, AttrValue]:
    """Attributes keyed by their role: a class library's variant spelling (StringView
    ``Text``) under our name (``V``), unless the manifest also gives our name. The
    :class:`AttrValue` keeps the manifest's own name for messages."""
    out = dict(attrs)
    for name in attrs:
        role = attribute_role(standard, name)
        if role != name and role not in attrs:
            out[role] = out.pop(name)
    return out


def _find_da(m: Manifest, ref: str) -> DAElement | None:
    if not ref:
        return None
    for da in m.assemblies:
        if da.ref_id == ref:
            return da
    for da in m.assemblies:
        if da.id == ref:
            return da
    return None


def _link(m: Manifest, n: Node, what: str, owner: str) -> LinkElement:
    ref = _attrs(n).get("RefID")
    link = LinkElement(n.get("Name") or "", norm_id(ref.value) if ref else "", n)
    m.used.add(id(n))
    if not link.ref_id:
        m.error(n, f"{what} '{link.name}' of {owner} has no RefID")
    else:
        link.target = _find_da(m, link.ref_id)
        if link.target is None:
            m.error(
                n,
                f"{what} '{link.name}' of {owner}: RefID '{link.ref_id}' matches no data "
                "assembly of the InstanceList",
            )
    return link


def _read_services(m: Manifest, nodes: list[Node], std: _Std) -> None:
    for n in nodes:
        if std(n) != PATH_SERVICE:
            continue
        attrs = _attrs(n)
        ref = attrs.get("RefID")
        svc = ServiceElement(
            n.get("Name") or "",
            norm_id(n.get("ID")),
            norm_id(ref.value) if ref else "",
            n.findtext("Description") or "",
            [],
            [],
            n,
        )
        svc.control = _find_da(m, svc.ref_id)
        if svc.control is None:
            m.error(
                n,
                f"service '{svc.name}': RefID '{svc.ref_id}' matches no ServiceControl data "
                "assembly"
                if svc.ref_id
                else f"service '{svc.name}' has no RefID",
            )
        elif svc.control.mtp_class != "ServiceControl":
            m.error(
                n,
                f"service '{svc.name}' links to '{svc.control.name}', a "
                f"{svc.control.mtp_class}, not a ServiceControl",
            )
        for c in n.findall("InternalElement"):
            kind = std(c)
            if kind == PATH_PROCEDURE:
                svc.procedures.append(_procedure(m, c, svc.name, std))
            elif kind == PATH_CONFIG_PARAMETER:
                svc.config_parameters.append(
                    _link(m, c, "configuration parameter", f"service {svc.name}")
                )
        m.services.append(svc)
        m.used.add(id(n))


def _procedure(m: Manifest, n: Node, service: str, std: _Std) -> ProcElement:
    attrs = _attrs(n)
    ref = attrs.get("RefID")
    proc = ProcElement(
        n.get("Name") or "",
        norm_id(n.get("ID")),
        norm_id(ref.value) if ref else "",
        attrs,
        n.findtext("Description") or "",
        [],
        [],
        n,
    )
    owner = f"procedure {service}.{proc.name}"
    if proc.ref_id:
        proc.health_view = _find_da(m, proc.ref_id)
        if proc.health_view is None:
            m.error(n, f"{owner}: RefID '{proc.ref_id}' matches no data assembly")
    for c in n.findall("InternalElement"):
        kind = std(c)
        if kind == PATH_PROCEDURE_PARAMETER:
            proc.parameters.append(_link(m, c, "procedure parameter", owner))
        elif kind == PATH_REPORT_VALUE:
            proc.report_values.append(_link(m, c, "report value", owner))
        elif kind == PATH_PROCESS_VALUE_IN:
            proc.process_values_in.append(_link(m, c, "process value", owner))
        elif kind == PATH_PROCESS_VALUE_OUT:
            proc.process_values_out.append(_link(m, c, "process value", owner))
    m.used.add(id(n))
    return proc


_STRUCTURE = frozenset(
    {
        PATH_MODULE_TYPE_PACKAGE,
        PATH_COMMUNICATION_SET,
        PATH_INSTANCE_LIST,
        PATH_SOURCE_LIST,
        PATH_SERVICE_SET,
    }
)
"""Containers whose content the reader uses: used themselves, looked into."""


@dataclass(frozen=True)
class Unused:
    """An InternalElement the reader does not use (with everything inside it)."""

    class_path: str
    name: str
    inside: int
    node: Node


def unused_elements(m: Manifest) -> list[Unused]:
    """Every InternalElement of the instance hierarchies that nothing was read from, the
    outermost of each unused subtree, so that an import can say what it left out and where
    (HMI pictures, texts, process value sets, classes we do not support)."""
    out: list[Unused] = []
    stack = list(reversed(m.doc.root.findall("InstanceHierarchy")))
    while stack:  # iteratively, in document order: no recursion limit
        node = stack.pop()
        for c in reversed(node.findall("InternalElement")):
            if id(c) in m.used:
                stack.append(c)
        for c in node.findall("InternalElement"):
            if id(c) not in m.used:
                inside = sum(1 for _ in c.iter("InternalElement")) - 1
                out.append(Unused(class_path(c) or "(no class)", c.get("Name") or "", inside, c))
    return out
