"""An import-linter contract type: a package's private modules are used only inside it.

Why our own type: import-linter's ``forbidden`` contract takes wildcards that replace whole
module names only (``pkg.*``), so "any ``_module`` of any package" cannot be written with it,
and listing every private module by hand would miss the next one added. The rule here is the
project's naming convention itself: a module whose dotted name has a segment starting with
``_`` (``modulecontrol.drivers._base``) belongs to the package named by the segments before it
(``modulecontrol.drivers``), and only modules inside that package may import it. Everyone
else imports the package's public face (its ``__init__``) or a public submodule.

Registered in ``pyproject.toml`` (``[tool.importlinter] contract_types``); ``lint-imports``
puts the working directory on ``sys.path``, so this module is found from the repository root.
"""

from __future__ import annotations

from typing import Any

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def owner_of(module: str) -> str | None:
    """The package a private module belongs to, or None for a public module."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return ".".join(parts[:i])
    return None


def inside(module: str, package: str) -> bool:
    """True when ``module`` is ``package`` itself or lies below it."""
    return module == package or module.startswith(package + ".")


class PrivateModulesContract(Contract):
    """Private modules (``_name``) of a package are imported only from inside that package.

    Options: ``containers``, the packages whose modules are checked (as importers and as
    imported); ``ignore_imports``, ``importer -> imported`` pairs that are allowed (each must
    exist, so a stale exception is noticed).
    """

    containers = fields.ListField(subfield=fields.StringField())
    ignore_imports = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        # import-linter fills the fields in on the instance; their class-level type is the field
        options: Any = self
        containers: list[str] = list(options.containers)
        ignored = {
            tuple(part.strip() for part in pair.split("->"))
            for pair in (options.ignore_imports or [])
        }
        violations: list[dict[str, Any]] = []
        seen_ignored: set[tuple[str, ...]] = set()
        for importer in sorted(graph.modules):
            if not any(inside(importer, c) for c in containers):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                owner = owner_of(imported)
                if owner is None or inside(importer, owner):
                    continue
                if not any(inside(imported, c) for c in containers):
                    continue
                if (importer, imported) in ignored:
                    seen_ignored.add((importer, imported))
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                violations.append({
                    "importer": importer,
                    "imported": imported,
                    "owner": owner,
                    "lines": [d["line_number"] for d in details],
                })
        stale = sorted(" -> ".join(pair) for pair in ignored - seen_ignored)
        return ContractCheck(
            kept=not violations and not stale,
            metadata={"violations": violations, "stale": stale},
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        for v in check.metadata["violations"]:
            lines = ", ".join(f"l.{n}" for n in v["lines"]) or "?"
            output.print_error(
                f"{v['importer']} imports {v['imported']} ({lines}), a private module of "
                f"{v['owner']}: import it from {v['owner']} (its public face) instead, or "
                f"export what you need there.",
                bold=False,
            )
            output.new_line()
        for pair in check.metadata["stale"]:
            output.print_error(f"ignore_imports names an import that no longer exists: {pair}")
            output.new_line()
