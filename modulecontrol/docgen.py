"""Generated documentation pages (``make docs``): ``python -m modulecontrol.docgen``.

``python -m modulecontrol.docgen register-maps docs/register-maps.md`` writes the Modbus,
OPC UA and serial maps of the built-in module types; without a path it prints the page. The
page is made by :func:`modulecontrol.drivers.register_maps_markdown`; a test fails when the
committed page differs from what this writes.

A program entry point, so it is a composition root: it wires the installed transports
(:func:`modulecontrol.bootstrap.configure`) before it loads a module type.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from modulecontrol.bootstrap import configure
from modulecontrol.descriptors import builtin_types
from modulecontrol.drivers import register_maps_markdown

PAGES = ("register-maps",)


def main(argv: Sequence[str] | None = None) -> int:
    """``register-maps [PATH]``: write the page to PATH (print it without one)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in PAGES:
        sys.stderr.write(f"usage: python -m modulecontrol.docgen {{{','.join(PAGES)}}} [PATH]\n")
        return 2
    wiring = configure()
    try:
        lib = builtin_types()
        text = register_maps_markdown(lib.get(name) for name in lib)
    finally:
        wiring.undo()
    if len(args) == 1:
        sys.stdout.write(text)
    else:
        Path(args[1]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
