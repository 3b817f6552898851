"""MTP manifests (VDI/VDE/NAMUR 2658, AutomationML/CAEX): import, export, static checks.

See ``docs/mtp.md``.
"""

from modulecontrol.mtp._check import CheckResult, check_manifest, format_results
from modulecontrol.mtp._export import DEFAULT_ENDPOINT, export_manifest
from modulecontrol.mtp._import import ImportReport, import_manifest, import_manifest_report
from modulecontrol.mtp._plan import mtp_projection
from modulecontrol.mtp._xml import MAX_MANIFEST_BYTES

__all__ = [
    "DEFAULT_ENDPOINT",
    "MAX_MANIFEST_BYTES",
    "CheckResult",
    "ImportReport",
    "check_manifest",
    "export_manifest",
    "format_results",
    "import_manifest",
    "import_manifest_report",
    "mtp_projection",
]
