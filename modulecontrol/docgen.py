"""Generated documentation pages (``make docs``): ``python -m modulecontrol.docgen``.

``python -m modulecontrol.docgen register-maps docs/register-maps.md`` writes the Modbus,
OPC UA and serial maps of the built-in module types; without a path it prints the page. The
page is made by :func:`modulecontrol.drivers.register_maps_markdown`; a test fails when the
committed page differs from what this writes.

``python -m modulecontrol.docgen report-images docs/img`` runs a shortened lomustine campaign
(recipes/lomustine/campaign.yaml, one 30 min check, simulated at 600x: about 15 s) into a
temporary database and writes its batch report's charts as ``report-<chart>.png``: the
pictures in the docs are what the report of ``make run`` draws. Run it from the repository.

A program entry point, so it is a composition root: it wires the installed transports
(:func:`modulecontrol.bootstrap.configure`) before it loads a module type.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from modulecontrol.bootstrap import configure
from modulecontrol.descriptors import builtin_types
from modulecontrol.drivers import register_maps_markdown

PAGES = ("register-maps", "report-images")

CAMPAIGN = Path("recipes/lomustine/campaign.yaml")
SHORT_RUN = ["checks=1", "check_interval=30 min"]


def _report_images(out_dir: Path) -> int:
    """Run the shortened campaign on simulators and write its report's charts to out_dir."""
    from modulecontrol._runcli import run_command
    from modulecontrol.records import report_images

    if not CAMPAIGN.is_file():
        sys.stderr.write(f"{CAMPAIGN}: not found: run this from the repository root\n")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "docs.db"
        code = run_command(CAMPAIGN, None, simulate=True, speed=600.0, db=db, sets=SHORT_RUN,
                           faults=None, dry_run=False, yes=True, live=False,
                           report_dir=Path(tmp))
        if code != 0:
            sys.stderr.write(f"the campaign run failed (exit {code}): no images written\n")
            return code
        out_dir.mkdir(parents=True, exist_ok=True)
        for title, png in report_images(db, 1):
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            (out_dir / f"report-{slug}.png").write_bytes(png)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``register-maps [PATH]``: write the page to PATH (print it without one);
    ``report-images [DIR]``: write the report charts to DIR (default docs/img)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in PAGES:
        sys.stderr.write(f"usage: python -m modulecontrol.docgen {{{','.join(PAGES)}}} [PATH]\n")
        return 2
    wiring = configure()
    if args[0] == "report-images":
        try:
            return _report_images(Path(args[1] if len(args) > 1 else "docs/img"))
        finally:
            wiring.undo()
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
