"""MTP manifest speed: import and check of the real HC30 manifest, export of built-in types."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from modulecontrol.descriptors import builtin_types
from modulecontrol.mtp import check_manifest, export_manifest, import_manifest

HC30 = Path(__file__).resolve().parent.parent / "tests" / "mtp" / "data" / "HC30_Stirring_V8.aml"


def _best(fn: Any, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run() -> dict[str, float]:
    lib = builtin_types()
    msmpr = lib.get("MSMPRCrystallizer")
    data = export_manifest(msmpr)
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "msmpr.aml"
        exported.write_bytes(data)
        return {
            "hc30_import_s": _best(lambda: import_manifest(HC30)),
            "hc30_check_s": _best(lambda: check_manifest(HC30)),
            "hc30_bytes": float(HC30.stat().st_size),
            "msmpr_export_s": _best(lambda: export_manifest(msmpr)),
            "msmpr_manifest_bytes": float(len(data)),
            "msmpr_import_s": _best(lambda: import_manifest(exported)),
        }


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    for k, v in run().items():
        print(f"{k}: {v:.4g}")
