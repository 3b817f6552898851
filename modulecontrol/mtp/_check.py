"""Conformance checks of a manifest, one result per check and subject.

Static checks look only at the file. Live checks (:mod:`modulecontrol.mtp._live`) talk to a
running PEA over OPC UA; they are listed there (``LIVE_CHECKS``), skipped when no endpoint
is given, and run by :func:`check_manifest_async` (or
:func:`check_manifest` with ``live=``) after the static checks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modulecontrol.errors import ConfigError, Location
from modulecontrol.mtp._caex import (
    Manifest,
    _ClassIndex,
    class_path,
    read_manifest,
)
from modulecontrol.mtp._import import module_type_from_manifest
from modulecontrol.mtp._results import CheckResult
from modulecontrol.mtp._rules import check_structure
from modulecontrol.mtp._xml import Node, parse_file
from modulecontrol.mtpcore import MANDATORY_ATTRIBUTES

if TYPE_CHECKING:
    from modulecontrol.mtp._live import LiveOptions

@dataclass
class CheckContext:
    """What checks see: the manifest read from the file, and (later) a live endpoint."""

    manifest: Manifest
    endpoint: str | None = None


CheckFn = Callable[[CheckContext], Iterable[CheckResult]]


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    run: CheckFn


CHECKS: list[Check] = []


def register(name: str, description: str) -> Callable[[CheckFn], CheckFn]:
    def deco(fn: CheckFn) -> CheckFn:
        CHECKS.append(Check(name, description, fn))
        return fn

    return deco


def _loc(ctx: CheckContext, node: Node) -> Location:
    return ctx.manifest.locate(node)


@register("manifest-version", "CAEX schema and MTP manifest version are supported")
def _version(ctx: CheckContext) -> Iterable[CheckResult]:
    m = ctx.manifest
    ok = m.schema_version in ("3.0", "2.15") and m.manifest_version in ("1.0.0", "1.1.0")
    yield CheckResult(
        "manifest-version",
        "file",
        "pass" if ok else "fail",
        f"CAEX {m.schema_version or '?'}, manifest {m.manifest_version or '?'}",
        _loc(ctx, m.doc.root),
    )


@register("module-type-package", "one ModuleTypePackage with an OPC UA server endpoint")
def _package(ctx: CheckContext) -> Iterable[CheckResult]:
    m = ctx.manifest
    if m.package is None:
        yield CheckResult("module-type-package", "file", "fail", "no ModuleTypePackage")
        return
    yield CheckResult(
        "module-type-package", m.package.get("Name") or "", "pass", "", _loc(ctx, m.package)
    )
    if not m.servers:
        yield CheckResult(
            "opcua-server", "file", "fail", "no OPCUAServer in the SourceList", _loc(ctx, m.package)
        )
    for s in m.servers:
        yield CheckResult(
            "opcua-server",
            s.name,
            "pass" if s.endpoint else "fail",
            s.endpoint or "no Endpoint value",
            _loc(ctx, s.node),
        )


@register("unique-ids", "every CAEX ID is used once")
def _unique(ctx: CheckContext) -> Iterable[CheckResult]:
    dups = {k: v for k, v in ctx.manifest.all_ids.items() if len(v) > 1}
    if not dups:
        yield CheckResult("unique-ids", "file", "pass", f"{len(ctx.manifest.all_ids)} IDs")
    for ident, nodes in dups.items():
        yield CheckResult(
            "unique-ids", ident, "fail", f"used by {len(nodes)} elements", _loc(ctx, nodes[1])
        )


@register("mandatory-attributes", "each data assembly has the attributes its class requires")
def _mandatory(ctx: CheckContext) -> Iterable[CheckResult]:
    for da in ctx.manifest.assemblies:
        subject = f"{da.mtp_class} {da.name}"
        wanted = MANDATORY_ATTRIBUTES.get(da.mtp_class or "")
        if wanted is None:
            yield CheckResult(
                "mandatory-attributes",
                subject,
                "warn",
                "class not known to this checker",
                _loc(ctx, da.node),
            )
            continue
        missing = [a for a in wanted if a not in da.attrs]
        yield CheckResult(
            "mandatory-attributes",
            subject,
            "fail" if missing else "pass",
            f"missing {', '.join(missing)}" if missing else f"{len(wanted)} present",
            _loc(ctx, da.node),
        )


@register("attribute-links", "every IDLink of a data assembly resolves to an OPC UA item")
def _links(ctx: CheckContext) -> Iterable[CheckResult]:
    for da in ctx.manifest.assemblies:
        linked = [a for a in da.attrs.values() if a.item is not None]
        broken = [
            a
            for a in da.attrs.values()
            if a.item is None and a.ref_type.endswith("IDLinkAttributeType") and a.value
        ]
        yield CheckResult(
            "attribute-links",
            f"{da.mtp_class} {da.name}",
            "fail" if broken else "pass",
            f"unresolved: {', '.join(a.name for a in broken)}"
            if broken
            else f"{len(linked)} linked",
            _loc(ctx, broken[0].node if broken else da.node),
        )


@register("opcua-items", "every OPC UA item has a namespace, an identifier and an access code")
def _items(ctx: CheckContext) -> Iterable[CheckResult]:
    bad = 0
    for item in ctx.manifest.items.values():
        faults = []
        if not item.namespace and item.namespace_index is None:
            faults.append("no Namespace")
        if not item.identifier:
            faults.append("no Identifier")
        if item.access_code not in (1, 2, 3):
            faults.append(f"Access {item.access_code} (want 1-3)")
        if faults:
            bad += 1
            yield CheckResult(
                "opcua-items", item.name, "fail", "; ".join(faults), _loc(ctx, item.node)
            )
    if not bad:
        yield CheckResult("opcua-items", "file", "pass", f"{len(ctx.manifest.items)} items")


@register("namespace-uris", "OPC UA items name their namespace by URI, not by server index")
def _namespace_uris(ctx: CheckContext) -> Iterable[CheckResult]:
    by_index = [i for i in ctx.manifest.items.values() if i.namespace_index is not None]
    if not by_index:
        yield CheckResult("namespace-uris", "file", "pass", f"{len(ctx.manifest.items)} items")
        return
    indices = sorted({i.namespace_index for i in by_index if i.namespace_index is not None})
    yield CheckResult(
        "namespace-uris",
        "file",
        "warn",
        f"{len(by_index)} items give namespace index {', '.join(map(str, indices))}, not a "
        "URI: not portable (a server assigns indices and may change them); they are "
        "resolved against the server's namespace array at connect. Write the namespace "
        "URI in the items' Namespace attribute",
        _loc(ctx, by_index[0].node),
    )


@register("service-control", "each service's RefID links to its ServiceControl assembly")
def _service_control(ctx: CheckContext) -> Iterable[CheckResult]:
    for s in ctx.manifest.services:
        ok = s.control is not None and s.control.mtp_class == "ServiceControl"
        detail = (
            f"-> {s.control.name}"
            if ok and s.control
            else f"RefID '{s.ref_id}' does not resolve to a ServiceControl"
        )
        yield CheckResult(
            "service-control", s.name, "pass" if ok else "fail", detail, _loc(ctx, s.node)
        )


@register("procedure-ids", "each procedure has a whole-number ProcedureId, unique per service")
def _procedure_ids(ctx: CheckContext) -> Iterable[CheckResult]:
    for s in ctx.manifest.services:
        ids: list[str] = []
        faults = []
        for p in s.procedures:
            a = p.attr("ProcedureId", "ProcedureID")
            text = (a.value or a.default or "").strip() if a else ""
            if not text.isdigit() or int(text) < 1:
                faults.append(f"{p.name}: ProcedureId '{text}'")
            ids.append(text)
        faults += [f"id {i} used {n} times" for i, n in Counter(ids).items() if n > 1 and i]
        if not s.procedures:
            faults.append("no procedures")
        yield CheckResult(
            "procedure-ids",
            s.name,
            "fail" if faults else "pass",
            "; ".join(faults) if faults else ", ".join(ids),
            _loc(ctx, s.node),
        )


@register("parameter-links", "procedure parameters and report values link to data assemblies")
def _parameter_links(ctx: CheckContext) -> Iterable[CheckResult]:
    for s in ctx.manifest.services:
        for p in s.procedures:
            faults = []
            for link in p.parameters:
                if link.target is None:
                    faults.append(f"parameter {link.name} unresolved")
                elif not (link.target.mtp_class or "").endswith("ServParam"):
                    faults.append(f"parameter {link.name} is a {link.target.mtp_class}")
            faults += [
                f"report value {r.name} unresolved" for r in p.report_values if r.target is None
            ]
            if p.ref_id and p.health_view is None:
                faults.append(f"RefID '{p.ref_id}' unresolved")
            n = len(p.parameters) + len(p.report_values)
            yield CheckResult(
                "parameter-links",
                f"{s.name}.{p.name}",
                "fail" if faults else "pass",
                "; ".join(faults) if faults else f"{n} links",
                _loc(ctx, p.node),
            )
        for c in s.config_parameters:
            if c.target is None:
                yield CheckResult(
                    "parameter-links",
                    f"{s.name}.{c.name}",
                    "fail",
                    "configuration parameter unresolved",
                    _loc(ctx, c.node),
                )


@register("class-paths", "class paths resolve to classes defined in the file's libraries")
def _class_paths(ctx: CheckContext) -> Iterable[CheckResult]:
    root = ctx.manifest.doc.root
    index = _ClassIndex(root)
    known = set(index.bases)
    for lib_tag, cls_tag in (
        ("SystemUnitClassLib", "SystemUnitClass"),
        ("InterfaceClassLib", "InterfaceClass"),
    ):
        for lib in root.findall(lib_tag):
            stack = [(lib, lib.get("Name") or "")]
            while stack:
                node, prefix = stack.pop()
                for c in node.findall(cls_tag):
                    path = f"{prefix}/{c.get('Name') or ''}"
                    known.add(path)
                    stack.append((c, path))
    missing: dict[str, Node] = {}
    for ih in root.findall("InstanceHierarchy"):
        for n in ih.iter():
            if n.tag in ("InternalElement", "ExternalInterface"):
                p = class_path(n)
                if p and p not in known:
                    missing.setdefault(p, n)
    if not missing:
        yield CheckResult("class-paths", "file", "pass", f"{len(known)} classes in the file")
    for p, n in sorted(missing.items()):
        yield CheckResult("class-paths", p, "warn", "class not defined in this file", _loc(ctx, n))


@register("structure", "the strict structural rules of 2658 (2022), each named")
def _structure(ctx: CheckContext) -> Iterable[CheckResult]:
    for r in check_structure(ctx.manifest):
        yield CheckResult("structure", r.rule, r.status, r.detail, r.location)


@register("importable", "the manifest imports into a modulecontrol module type")
def _importable(ctx: CheckContext) -> Iterable[CheckResult]:
    try:
        report = module_type_from_manifest(ctx.manifest)
    except ConfigError as exc:
        first = exc.problems[0] if exc.problems else None
        more = f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        yield CheckResult(
            "importable",
            "file",
            "fail",
            (first.message if first else str(exc)) + more,
            first.location if first else None,
        )
        return
    mt = report.module_type
    yield CheckResult(
        "importable",
        mt.name,
        "pass",
        f"{len(mt.data_assemblies)} data assemblies, {len(mt.services)} services; "
        f"{len(report.warnings)} import warnings, {len(report.skipped)} skipped, "
        f"{len(report.unused)} elements not used (mtp import lists them)",
    )


def live_check_names() -> set[str]:
    """The live checks' names (``modulecontrol.mtp._live``), for selecting checks by name."""
    from modulecontrol.mtp._live import LIVE_CHECKS

    return {"live-connect", *(name for name, _, _ in LIVE_CHECKS)}


def run_checks(ctx: CheckContext, names: Sequence[str] | None = None) -> list[CheckResult]:
    """Run the registered static checks (all, or those named). Live checks are run by
    :func:`check_manifest_async`; here they are only reported as skipped when asked for by
    name without an endpoint."""
    out: list[CheckResult] = []
    skipped: list[str] = []
    for c in CHECKS:
        if names is not None and c.name not in names:
            continue
        out.extend(c.run(ctx))
    if names is not None and not ctx.endpoint:  # live checks asked for by name: say why not
        skipped = [n for n in names if n in live_check_names()]
    if skipped:
        out.append(CheckResult("live", "file", "skip",
                               f"{len(skipped)} live checks need --endpoint"))
    return out


def _static(path: str | Path, checks: Sequence[str] | None, endpoint: str | None
            ) -> tuple[list[CheckResult], Manifest | None]:
    try:
        doc = parse_file(path)
    except ConfigError as exc:
        p = exc.problems[0]
        return [CheckResult("well-formed", str(path), "fail", p.message, p.location)], None
    results = [CheckResult("well-formed", str(path), "pass", "")]
    manifest = read_manifest(doc)
    if manifest.doc.root.tag != "CAEXFile":
        return [*results, CheckResult("manifest-version", "file", "fail", "not a CAEX file")], None
    return results + run_checks(CheckContext(manifest, endpoint), checks), manifest


def check_manifest(
    path: str | Path, *, checks: Sequence[str] | None = None, live: LiveOptions | None = None
) -> list[CheckResult]:
    """Conformance checks of a manifest file; with ``live``, also against the running PEA at
    ``live.endpoint`` (this starts an event loop: from async code use
    :func:`check_manifest_async`). Never raises for a bad manifest or an unreachable PEA: an
    unreadable file is one failed ``well-formed`` result, a refused connection one failed
    ``live-connect``."""
    if live is not None:
        return asyncio.run(check_manifest_async(path, checks=checks, live=live))
    return _static(path, checks, None)[0]


async def check_manifest_async(
    path: str | Path, *, checks: Sequence[str] | None = None, live: LiveOptions | None = None
) -> list[CheckResult]:
    """:func:`check_manifest` for callers already inside an event loop."""
    from modulecontrol.mtp._live import run_live_checks

    results, manifest = _static(path, checks, live.endpoint if live else None)
    if live is None:
        return results
    if manifest is None:
        return [*results, CheckResult("live-connect", live.endpoint, "skip",
                                      "the manifest could not be read")]
    try:
        mt = module_type_from_manifest(manifest).module_type
    except ConfigError:
        return [*results, CheckResult("live-connect", live.endpoint, "fail",
                                      "the manifest does not import (see 'importable'); "
                                      "live checks need its bindings")]
    return results + await run_live_checks(mt, live, checks)


def format_results(results: Sequence[CheckResult]) -> str:
    """A plain-text pass/fail table, one line per result, and a closing count line."""
    rows = [
        (r.status.upper(), r.check, r.subject, r.detail, str(r.location or "")) for r in results
    ]
    header = ("STATUS", "CHECK", "SUBJECT", "DETAIL", "WHERE")
    widths = [min(48, max(len(x[i]) for x in [header, *rows])) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        cells = [row[i][: widths[i]].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    counts = Counter(r.status for r in results)
    lines.append(
        f"{counts['pass']} passed, {counts['warn']} warnings, {counts['skip']} skipped, "
        f"{counts['fail']} failed"
    )
    return "\n".join(lines)
