"""Strict structural rules of VDI/VDE/NAMUR 2658 (2022) that strict POL parsers enforce.

Why our own: the other static checks ask "can modulecontrol operate this PEA?"; these ask
"will a strict process orchestration layer accept this file?". Each rule is named by the
place in the standard that states it, and the message says what to change. They are the
2022 manifest's (1.1.0) rules: a manifest 1.0.0 is reported as skipped, not failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from modulecontrol.errors import Location
from modulecontrol.mtp._caex import Manifest, class_path
from modulecontrol.mtp._classes import (
    AT_MULTILANGUAGE,
    PATH_COMMUNICATION_SET,
    PATH_HMI_SET,
    PATH_LINKED_OBJECT,
    PATH_MTP_SET,
    PATH_PROCEDURE,
    PATH_SERVICE_SET,
)
from modulecontrol.mtp._xml import Node
from modulecontrol.mtpcore import STATIC_ATTRIBUTES

RuleStatus = Literal["pass", "fail", "warn", "skip"]


@dataclass(frozen=True)
class RuleResult:
    rule: str
    """Where the standard states the rule, e.g. ``2658-1 table 36 #7a``."""
    status: RuleStatus
    detail: str
    location: Location | None = None


Rule = Callable[[Manifest], Iterable[RuleResult]]
RULES: list[tuple[str, str, Rule]] = []


def _rule(name: str, what: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        RULES.append((name, what, fn))
        return fn

    return deco


PACKAGE_ATTRIBUTES = ("Version", "DeviceRevision", "ManufacturerUri", "ProductCode")


@_rule("2658-1 table 36 #7a", "the ModuleTypePackage states Version, DeviceRevision, "
       "ManufacturerUri and ProductCode")
def _package_attributes(m: Manifest) -> Iterable[RuleResult]:
    if m.package is None:
        return
    missing = [
        a for a in PACKAGE_ATTRIBUTES
        if a not in m.package_attrs
        or not ((m.package_attrs[a].value or m.package_attrs[a].default or "").strip())
    ]
    yield RuleResult(
        "2658-1 table 36 #7a",
        "fail" if missing else "pass",
        f"ModuleTypePackage lacks {', '.join(missing)}: add them as attributes of the "
        "package" if missing else ", ".join(PACKAGE_ATTRIBUTES),
        m.locate(m.package),
    )


def _defined_classes(m: Manifest) -> dict[str, Node]:
    """SystemUnitClass path -> its definition in the file's own libraries."""
    out: dict[str, Node] = {}
    todo = [(lib, lib.get("Name") or "") for lib in m.doc.root.findall("SystemUnitClassLib")]
    while todo:
        node, prefix = todo.pop()
        for c in node.findall("SystemUnitClass"):
            path = f"{prefix}/{c.get('Name') or ''}"
            out[path] = c
            todo.append((c, path))
    return out


_BASES = (
    (PATH_COMMUNICATION_SET, PATH_MTP_SET, "2658-1 table 36 #9"),
    (PATH_SERVICE_SET, PATH_MTP_SET, "2658-1 table 36 #9"),
    (PATH_HMI_SET, PATH_MTP_SET, "2658-1 table 36 #9"),
    (PATH_PROCEDURE, PATH_LINKED_OBJECT, "2658-4 table 30"),
)


@_rule("2658-1 table 36 #9", "CommunicationSet, ServiceSet and HMISet derive from MTPSet; "
       "Procedure from LinkedObject (2658-4 table 30), not from Service")
def _bases(m: Manifest) -> Iterable[RuleResult]:
    defined = _defined_classes(m)
    used = {class_path(n) for n in m.doc.root.iter("InternalElement")}
    for path, base, rule in _BASES:
        if path not in used:
            continue
        el = defined.get(path)
        if el is None:
            yield RuleResult(rule, "fail", f"class {path} is used but not defined in the file: "
                             "include the MTP class libraries", m.locate(m.doc.root))
            continue
        got = el.get("RefBaseClassPath") or ""
        yield RuleResult(
            rule,
            "pass" if got == base else "fail",
            f"{path} derives from {base}" if got == base
            else f"{path} derives from '{got or 'nothing'}', the standard says {base}",
            m.locate(el),
        )
    if PATH_MTP_SET not in defined and any(p in used for p, b, _ in _BASES if b == PATH_MTP_SET):
        yield RuleResult("2658-1 table 36 #9", "fail",
                         f"class {PATH_MTP_SET} is not defined in the file", m.locate(m.doc.root))


@_rule("2658-1 tables 26/29", "TagName and TagDescription are multi-language texts")
def _multilanguage(m: Manifest) -> Iterable[RuleResult]:
    bad: list[Node] = []
    count = 0
    for da in m.assemblies:
        for name in STATIC_ATTRIBUTES:
            a = da.attrs.get(name)
            if a is None or a.item is not None:
                continue
            count += 1
            if a.ref_type != AT_MULTILANGUAGE:
                bad.append(a.node)
    if bad:
        yield RuleResult(
            "2658-1 tables 26/29", "fail",
            f"{len(bad)} TagName/TagDescription attributes lack RefAttributeType="
            f"\"{AT_MULTILANGUAGE}\" (with one aml-lang=<language> attribute per language)",
            m.locate(bad[0]),
        )
    else:
        yield RuleResult("2658-1 tables 26/29", "pass", f"{count} multi-language texts")


@_rule("2658-4 table 30", "procedures state ProcedureID (so spelt) and IsSelfCompleting")
def _procedure_attributes(m: Manifest) -> Iterable[RuleResult]:
    for s in m.services:
        for p in s.procedures:
            missing = [a for a in ("ProcedureID", "IsSelfCompleting") if a not in p.attrs]
            yield RuleResult(
                "2658-4 table 30",
                "fail" if missing else "pass",
                f"procedure {s.name}.{p.name} lacks {', '.join(missing)}"
                + (" (ProcedureId is not the standard's spelling)"
                   if "ProcedureID" in missing and "ProcedureId" in p.attrs else "")
                if missing else f"procedure {s.name}.{p.name}",
                m.locate(p.node),
            )


@_rule("2658-1 table 36 #4e/#4f", "each procedure links by RefID to its ProcedureHealthView")
def _health_views(m: Manifest) -> Iterable[RuleResult]:
    for s in m.services:
        for p in s.procedures:
            hv = p.health_view
            where = m.locate(p.node)
            if hv is None:
                yield RuleResult(
                    "2658-1 table 36 #4e/#4f", "warn",
                    f"procedure {s.name}.{p.name} has no RefID to a ProcedureHealthView: strict "
                    "POLs refuse it; give the module type a ProcedureHealthView data assembly "
                    "named as the procedure", where)
            elif hv.mtp_class != "ProcedureHealthView":
                yield RuleResult(
                    "2658-1 table 36 #4e/#4f", "fail",
                    f"procedure {s.name}.{p.name} links to '{hv.name}', a {hv.mtp_class}, not "
                    "a ProcedureHealthView", where)
            else:
                yield RuleResult("2658-1 table 36 #4e/#4f", "pass",
                                 f"procedure {s.name}.{p.name} -> {hv.name}", where)


def check_structure(m: Manifest) -> list[RuleResult]:
    """Every rule on ``m``; a manifest 1.0.0 gets one skip (its libraries predate them)."""
    if m.manifest_version != "1.1.0":
        return [RuleResult("2658 (2022)", "skip",
                           f"manifest {m.manifest_version}: the 2022 structural rules apply to "
                           "manifest 1.1.0", m.locate(m.doc.root))]
    out: list[RuleResult] = []
    for _, _, fn in RULES:
        out.extend(fn(m))
    return out
