"""Manifest -> module-type descriptor, with every OPC UA binding made explicit.

The result needs no naming convention on the PEA's server: each attribute carries the
namespace URI, node identifier and access the manifest gives, and each service carries the
bindings of its ServiceControl object, which is what the OPC UA driver needs for the MTP
handshake (CommandExt, StateCur, ProcedureExt, ...).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modulecontrol.descriptors import DataAssembly, ModuleType
from modulecontrol.errors import ConfigError, Problem
from modulecontrol.mtp._caex import (
    EXTRAS_PREFIX,
    AttrValue,
    DAElement,
    LinkElement,
    Manifest,
    ServiceElement,
    read_manifest,
    unused_elements,
)
from modulecontrol.mtp._plan import BOOL_EXTRA_FIELDS, DA_EXTRA_FIELDS
from modulecontrol.mtp._units import no_unit_meaning, unit_for_code
from modulecontrol.mtp._xml import Node, parse_file
from modulecontrol.mtpcore import (
    DA_ATTRIBUTES,
    MANDATORY_ATTRIBUTES,
    PA,
    PARAM_CLASSES,
    SERVICE_CONTROL_ATTRIBUTES,
    value_kind,
    writable,
)

_POL_INPUTS = ("Ext", "Op")
"""Suffixes of the inputs a POL writes (``CommandExt``, ``VExt``, ``StateAutOp``, ...); the
``*Aut``/``*Int``/``*Man`` inputs belong to the PEA's own logic and may well be read-only."""

_IDENT_BAD = re.compile(r"[^A-Za-z0-9_]")


def to_ident(name: str) -> str:
    """A descriptor name for a manifest name: other characters become ``_``."""
    ident = _IDENT_BAD.sub("_", name.strip()) or "_"
    return f"_{ident}" if ident[0].isdigit() else ident


@dataclass
class ImportReport:
    """What an import found: the descriptor plus everything a user should know about it."""

    module_type: ModuleType
    file: str
    schema_version: str
    manifest_version: str
    endpoints: dict[str, str]
    """OPC UA server name -> endpoint URL as written in the manifest."""
    assembly_classes: dict[str, str]
    """Descriptor name -> MTP class as written in the manifest (before any fallback)."""
    renamed: dict[str, str] = field(default_factory=dict)
    """Manifest name -> descriptor name, where the manifest name was not a valid identifier."""
    skipped: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    process_values: dict[str, list[str]] = field(default_factory=dict)
    """``service.procedure`` -> the data assemblies its ProcessValueIn/Out elements link."""
    unused: list[Problem] = field(default_factory=list)
    """Every element of the manifest nothing was read from, located (HMI, texts, ...)."""

    def summary(self) -> str:
        mt = self.module_type
        lines = [
            f"{self.file}: MTP manifest {self.manifest_version} (CAEX {self.schema_version})",
            f"module type {mt.name} version {mt.version}",
            *(f"OPC UA server {n}: {url or '(no endpoint)'}" for n, url in self.endpoints.items()),
            f"{len(mt.data_assemblies)} data assemblies:",
            *(
                f"  {d.name} ({self.assembly_classes.get(d.name, d.class_)}, "
                f"{len(d.bindings)} bound attributes)"
                for d in mt.data_assemblies
            ),
            f"{len(mt.services)} services:",
        ]
        for s in mt.services:
            lines.append(f"  {s.name} ({len(s.bindings)} ServiceControl attributes bound)")
            for p in s.procedures:
                flags = [f"id {p.id}"]
                if p.self_completing:
                    flags.append("self-completing")
                if p.default:
                    flags.append("default")
                lines.append(f"    procedure {p.name} ({', '.join(flags)})")
                lines.extend(f"      parameter {x}" for x in p.parameters)
                lines.extend(f"      report value {x}" for x in p.report_values)
                lines.extend(
                    f"      process value {x}"
                    for x in self.process_values.get(f"{s.name}.{p.name}", [])
                )
            lines.extend(f"    configuration parameter {x}" for x in s.config_parameters)
        lines.extend(f"skipped: {s}" for s in self.skipped)
        lines.extend(f"renamed: {a} -> {b}" for a, b in self.renamed.items())
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.extend(f"not used: {u}" for u in self.unused)
        lines.append(
            f"{len(self.warnings)} warnings, {len(self.skipped)} skipped, "
            f"{len(self.unused)} elements not used"
        )
        return "\n".join(lines)


def _bool(attr: AttrValue | None) -> bool:
    if attr is None:
        return False
    return (attr.value or attr.default or "").strip().lower() in ("true", "1")


def _unquote(text: str | None) -> str:
    """Siemens tools write an empty string default as ``''``."""
    t = (text or "").strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        t = t[1:-1].strip()
    return t


def _number(text: str | None) -> float | None:
    try:
        return float((text or "").strip())
    except ValueError:
        return None


class _Importer:
    def __init__(self, m: Manifest) -> None:
        self.m = m
        self.names: dict[int, str] = {}  # id(DAElement) -> descriptor name
        self.classes: dict[int, str] = {}  # id(DAElement) -> descriptor class
        self.used: set[str] = set()
        self.used_services: set[str] = set()
        self.renamed: dict[str, str] = {}
        self.skipped: list[str] = []
        self.process_values: dict[str, list[str]] = {}
        self.all_read = bool(m.items) and all(i.access_code == 1 for i in m.items.values())
        """Every item says Access 1: a generator that never states write access (MTPPy)."""

    def unique(self, name: str, used: set[str]) -> str:
        ident = to_ident(name)
        base, n = ident, 2
        while ident in used:
            ident, n = f"{base}_{n}", n + 1
        used.add(ident)
        if ident != name:
            self.renamed[name] = ident
        return ident

    def descriptor_class(self, da: DAElement) -> str | None:
        """The class we bind: the manifest's, or the nearest supported base class."""
        segments = da.lineage[-1].split("/") if da.lineage else []
        for seg in reversed(segments):
            if seg in DA_ATTRIBUTES:
                if seg != da.mtp_class:
                    self.m.warn(
                        da.node,
                        f"data assembly '{da.name}': class {da.mtp_class} is imported as its "
                        f"base class {seg}",
                    )
                return seg
        return None

    def check_mandatory(self, da: DAElement, cls: str) -> None:
        wanted = MANDATORY_ATTRIBUTES.get(da.mtp_class or "") or MANDATORY_ATTRIBUTES.get(cls, ())
        missing = [a for a in wanted if a not in da.attrs]
        if missing:
            self.m.error(
                da.node,
                f"data assembly '{da.name}' ({da.mtp_class}) lacks mandatory "
                f"attribute{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            )

    def bindings(self, da: DAElement, allowed: tuple[str, ...], cls: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        widened: list[str] = []
        for role, a in da.attrs.items():
            item = a.item
            if item is None:
                continue
            if role not in allowed:
                self.m.warn(
                    a.node,
                    f"attribute {a.name} of {cls} '{da.name}' is not one modulecontrol binds; "
                    "ignored",
                )
                continue
            if not item.identifier:
                self.m.error(item.node, f"OPC UA item '{item.name}' has no Identifier")
                continue
            if not item.namespace and item.namespace_index is None:
                self.m.error(item.node, f"OPC UA item '{item.name}' has no Namespace")
                continue
            if item.access_code == 0:
                self.m.warn(item.node, f"OPC UA item '{item.name}' has Access 0 (no access)")
            item_access = item.access
            if (self.all_read and writable(cls, role) and role.endswith(_POL_INPUTS)):
                # the POL must write it to drive the PEA; the live check verifies the node
                item_access = "readwrite"
                widened.append(role)
            out[role] = {
                "opcua": {
                    "namespace_uri": item.namespace_uri,
                    "identifier": item.node_id,
                    "access": item_access,
                }
            }
        if widened:
            self.m.warn(
                da.node,
                f"'{da.name}' ({cls}): Access 1 (read) on {', '.join(widened)}, the "
                "external and operator inputs a POL writes; imported as readwrite, since "
                "every item of this manifest says Access 1 (its generator states no write "
                "access; 'mtp check --endpoint' verifies the nodes' access levels)")
        return out

    def statics(self, da: DAElement, cls: str) -> dict[str, Any]:
        """Descriptor facts: from our own extras if present, else from DefaultValues."""
        if da.extras is not None:
            try:
                extras = json.loads(da.extras)
            except json.JSONDecodeError:
                self.m.warn(da.node, f"data assembly '{da.name}': unreadable modulecontrol data")
            else:
                if isinstance(extras, dict):
                    allowed = (*DA_EXTRA_FIELDS, *BOOL_EXTRA_FIELDS)
                    return {k: v for k, v in extras.items() if k in allowed}
        out: dict[str, Any] = {}
        kind = value_kind(cls)

        def default(attr: str) -> str | None:
            a = da.attrs.get(attr)
            return None if a is None else (a.default if a.item is not None else a.value)

        if kind == "number":
            code = default("VUnit")
            if code is not None:
                unit = unit_for_code(code)
                if unit is not None:
                    out["unit"] = unit
                elif code.strip() not in ("", "0"):
                    meaning = no_unit_meaning(code)
                    self.m.warn(
                        da.node,
                        f"data assembly '{da.name}': unit code {code.strip()} is "
                        + (
                            f"'{meaning}', no engineering unit"
                            if meaning
                            else "not in our table (docs/mtp.md lists it)"
                        )
                        + "; unit left empty",
                    )
            for attr, key in (
                ("VSclMin", "scale_min"),
                ("VSclMax", "scale_max"),
                ("VMin", "min"),
                ("VMax", "max"),
            ):
                v = _number(default(attr))
                if v is not None:
                    out[key] = v
            if cls in PARAM_CLASSES:
                v = _number(default(PA.V_EXT))
                if v is not None:
                    out["default"] = v
        elif kind == "bool":
            for attr, key in (("VState0", "state0"), ("VState1", "state1")):
                text = _unquote(default(attr))
                if text:
                    out[key] = text
        return out

    def assembly(self, da: DAElement) -> dict[str, Any] | None:
        cls = self.descriptor_class(da)
        if cls is None:
            self.skipped.append(f"data assembly {da.name} (class {da.mtp_class} not supported)")
            self.m.warn(
                da.node,
                f"data assembly '{da.name}': class {da.mtp_class} is not supported; skipped",
            )
            return None
        self.check_mandatory(da, cls)
        name = self.unique(da.name, self.used)
        self.names[id(da)] = name
        self.classes[id(da)] = cls
        data: dict[str, Any] = {"name": name, "class": cls}
        if da.description and da.description != da.name:
            data["description"] = da.description
        data["bindings"] = self.bindings(da, DA_ATTRIBUTES[cls], cls)
        statics = self.statics(da, cls)
        # Facts that do not fit together are warned about and shed one group at a time, the
        # least telling first: a default outside the limits loses only the default.
        sheds: tuple[tuple[str, tuple[str, ...]], ...] = (
            ("default", tuple(k for k in statics if k != "default")),
            ("limits and scale", ("unit", "description")),
            ("unit", ("description",)),
        )
        problem = None
        for what, keep in (*sheds, ("the description", ())):
            try:
                DataAssembly.model_validate({**data, **statics})
            except ValidationError as exc:
                problem = problem or exc.errors(include_url=False)[0]["msg"]
                statics = {k: v for k, v in statics.items() if k in keep}
                shed = what
                continue
            if problem is not None:
                msg = problem.removeprefix("Value error, ")
                self.m.warn(da.node, f"data assembly '{da.name}': {msg}; {shed} not imported")
            break
        data.update(statics)
        return data

    def ref_name(self, target: DAElement | None) -> str | None:
        return None if target is None else self.names.get(id(target))

    def build(self) -> dict[str, Any]:
        m = self.m
        doc: dict[str, Any] = {"kind": "ModuleType"}
        pkg = m.package
        extras: dict[str, Any] = {}
        if pkg is not None:
            for info in pkg.findall("AdditionalInformation"):
                if info.text.startswith(EXTRAS_PREFIX):
                    try:
                        loaded = json.loads(info.text[len(EXTRAS_PREFIX) :])
                    except json.JSONDecodeError:
                        loaded = None
                    if isinstance(loaded, dict):
                        extras = loaded
        raw_name = pkg.get("Name") if pkg is not None else None
        if not raw_name or raw_name.strip().lower() in ("no information", ""):
            raw_name = Path(m.doc.file).stem
        doc["name"] = to_ident(raw_name)
        if doc["name"] != raw_name:
            self.renamed[raw_name] = doc["name"]
        version = m.package_attrs.get("Version")
        if version is not None and (version.value or "").strip():
            doc["version"] = (version.value or "").strip()
        if pkg is not None and pkg.findtext("Description"):
            doc["description"] = pkg.findtext("Description")
        for key in ("vendor", "category", "description"):
            if isinstance(extras.get(key), str):
                doc[key] = extras[key]

        controls = {id(s.control) for s in m.services if s.control is not None}
        das: list[dict[str, Any]] = []
        for da in m.assemblies:
            if da.mtp_class == "ServiceControl":
                if id(da) not in controls:
                    m.warn(da.node, f"ServiceControl '{da.name}' belongs to no service; skipped")
                    self.skipped.append(f"ServiceControl {da.name} (no service)")
                continue
            built = self.assembly(da)
            if built is not None:
                das.append(built)
        doc["data_assemblies"] = das
        doc["services"] = [s for s in (self.service(s) for s in m.services) if s is not None]
        return doc

    def service(self, svc: ServiceElement) -> dict[str, Any] | None:
        m = self.m
        if not svc.procedures:
            m.warn(svc.node, f"service '{svc.name}' has no procedures; skipped")
            self.skipped.append(f"service {svc.name} (no procedures)")
            return None
        out: dict[str, Any] = {"name": self.unique(svc.name, self.used_services)}
        if svc.description and svc.description != svc.name:
            out["description"] = svc.description
        if svc.control is not None and svc.control.mtp_class == "ServiceControl":
            self.check_mandatory(svc.control, "ServiceControl")
            out["bindings"] = self.bindings(
                svc.control, SERVICE_CONTROL_ATTRIBUTES, "ServiceControl"
            )
        out["config_parameters"] = self.params(svc.config_parameters, f"service {svc.name}")
        procs: list[dict[str, Any]] = []
        used_procs: set[str] = set()
        for p in svc.procedures:
            owner = f"procedure {svc.name}.{p.name}"
            pid_attr = p.attr("ProcedureId", "ProcedureID")
            pid_text = None if pid_attr is None else (pid_attr.value or pid_attr.default)
            try:
                pid = int((pid_text or "").strip())
            except ValueError:
                m.error(
                    p.node,
                    f"{owner}: ProcedureId '{pid_text or ''}' is not a whole number"
                    if pid_attr is not None
                    else f"{owner} has no ProcedureId attribute",
                )
                continue
            proc: dict[str, Any] = {
                "name": self.unique(p.name, used_procs),
                "id": pid,
                "self_completing": _bool(p.attr("IsSelfCompleting")),
                "default": _bool(p.attr("IsDefault")),
                "parameters": self.params(p.parameters, owner),
                "report_values": [
                    n for n in (self.ref_name(r.target) for r in p.report_values) if n
                ],
            }
            if p.description and p.description != p.name:
                proc["description"] = p.description
            for key, links in (("process_values_in", p.process_values_in),
                               ("process_values_out", p.process_values_out)):
                pvs = [self.ref_name(x.target) for x in links]
                for x, n in zip(links, pvs, strict=True):
                    if n is None and x.target is not None:
                        m.warn(x.node, f"{owner}: process value '{x.name}' refers to a "
                               "skipped data assembly; dropped")
                if any(pvs):
                    proc[key] = [n for n in pvs if n]
            if p.process_values:
                self.process_values[f"{out['name']}.{proc['name']}"] = [
                    *proc.get("process_values_in", []), *proc.get("process_values_out", [])]
            hv = p.health_view
            if hv is not None and self.names.get(id(hv)) not in (None, proc["name"]):
                m.warn(
                    p.node,
                    f"{owner}: its health view '{hv.name}' is kept as a data "
                    "assembly but is linked to the procedure only when the names match",
                )
            procs.append(proc)
        out["procedures"] = procs
        return out

    def params(self, links: list[LinkElement], owner: str) -> list[str]:
        out: list[str] = []
        for link in links:
            name = self.ref_name(link.target)
            if link.target is None:
                continue  # already reported
            if name is None:
                self.m.warn(
                    link.node,
                    f"{owner}: parameter '{link.name}' refers to a skipped data assembly; dropped",
                )
                continue
            if self.classes[id(link.target)] not in PARAM_CLASSES:
                self.m.error(
                    link.node,
                    f"{owner}: parameter '{link.name}' refers to "
                    f"'{link.target.name}', a {link.target.mtp_class}, not a ServParam",
                )
                continue
            out.append(name)
        return out


def _problems_from_validation(exc: ValidationError, where: Node, m: Manifest) -> list[Problem]:
    out = []
    for e in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        out.append(Problem(f"{loc}: {msg}" if loc else msg, m.locate(where)))
    return out


def module_type_from_manifest(m: Manifest) -> ImportReport:
    """Build the descriptor from a manifest already read; raises ConfigError on any problem."""
    if m.problems:
        raise ConfigError(m.problems)
    imp = _Importer(m)
    doc = imp.build()
    if m.problems:
        raise ConfigError(m.problems)
    where = m.package or m.doc.root
    try:
        mt = ModuleType.model_validate(doc, context={"defer_references": True})
    except ValidationError as exc:
        raise ConfigError(_problems_from_validation(exc, where, m)) from None
    refs = mt.reference_problems()
    if refs:
        raise ConfigError([Problem(msg, m.locate(where)) for _, msg in refs])
    classes = {imp.names[id(d)]: d.mtp_class or "" for d in m.assemblies if id(d) in imp.names}
    unused = [
        Problem(
            f"{u.class_path} '{u.name}'" + (f" (with {u.inside} elements inside)" if u.inside
                                            else ""),
            m.locate(u.node),
        )
        for u in unused_elements(m)
    ]
    unused.sort(key=lambda p: (p.location.line, p.location.col) if p.location else (0, 0))
    return ImportReport(
        mt,
        m.doc.file,
        m.schema_version,
        m.manifest_version,
        {s.name: s.endpoint for s in m.servers},
        classes,
        imp.renamed,
        imp.skipped,
        list(m.warnings),
        imp.process_values,
        unused,
    )


def import_manifest_report(path: str | Path) -> ImportReport:
    """Read an MTP manifest (1.0.0 or 1.1.0) and report what was found and imported."""
    return module_type_from_manifest(read_manifest(parse_file(path)))


def import_manifest(path: str | Path) -> ModuleType:
    """Read an MTP manifest into a module-type descriptor with explicit OPC UA bindings.

    Raises :class:`~modulecontrol.errors.ConfigError` listing every problem, each with the
    element path and line, if the manifest is malformed, incomplete or inconsistent.
    """
    return import_manifest_report(path).module_type
