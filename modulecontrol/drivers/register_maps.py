"""Write ``docs/register-maps.md`` from the built-in module types (``make docs``).

``python -m modulecontrol.drivers.register_maps docs/register-maps.md`` writes the page;
without a path it prints it. The page is made by
:func:`modulecontrol.drivers.register_maps_markdown`; a test fails when the committed page
differs from what this writes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from modulecontrol.descriptors import builtin_types
from modulecontrol.drivers import register_maps_markdown


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page to the path given (print it without one)."""
    args = list(sys.argv[1:] if argv is None else argv)
    lib = builtin_types()
    text = register_maps_markdown(lib.get(name) for name in lib)
    if not args:
        sys.stdout.write(text)
    else:
        Path(args[0]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
