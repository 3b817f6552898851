"""Run every benchmark module in this folder and write ``bench/results.json``.

Why a tiny runner instead of pytest-benchmark: the figures asked for are throughputs and
ratios of whole scenarios (tags/s, speed factors), written to one JSON file the docs quote.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("-o", "--output", default=str(HERE / "results.json"))
    args = parser.parse_args(argv)
    names = args.names or sorted(
        p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_")
    )
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "benchmarks": {},
    }
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            figures = module.run()
        except Exception:  # a broken benchmark is reported, the others still run
            traceback.print_exc()
            figures = {"error": traceback.format_exc(limit=3)}
            failed += 1
        figures["wall_seconds"] = round(time.perf_counter() - t0, 2)
        results["benchmarks"][name] = figures
        print(json.dumps(figures, indent=2), flush=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    sys.exit(main())
