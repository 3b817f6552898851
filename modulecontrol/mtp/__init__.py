"""MTP manifests (VDI/VDE/NAMUR 2658, AutomationML/CAEX): import, export, static and live
checks, and virtual PEAs served from a manifest.

See ``docs/mtp.md``.
"""

from modulecontrol.mtp._check import (
    check_manifest,
    check_manifest_async,
    format_results,
)
from modulecontrol.mtp._export import DEFAULT_ENDPOINT, export_manifest
from modulecontrol.mtp._import import ImportReport, import_manifest, import_manifest_report
from modulecontrol.mtp._live import LiveOptions, run_live_checks
from modulecontrol.mtp._plan import mtp_projection
from modulecontrol.mtp._results import CheckResult
from modulecontrol.mtp._serve import DEFAULT_PASSWORDS, VirtualPea, serve_manifest
from modulecontrol.mtp._xml import MAX_MANIFEST_BYTES

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_PASSWORDS",
    "MAX_MANIFEST_BYTES",
    "CheckResult",
    "ImportReport",
    "LiveOptions",
    "VirtualPea",
    "check_manifest",
    "check_manifest_async",
    "export_manifest",
    "format_results",
    "import_manifest",
    "import_manifest_report",
    "mtp_projection",
    "run_live_checks",
    "serve_manifest",
]
