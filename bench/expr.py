"""Benchmark of the condition language: parse+check+compile, and per-cycle update cost."""

from __future__ import annotations

import time

from modulecontrol.expr import SignalInfo, compile_condition, parse

SIGNALS = {
    "R1.T": SignalInfo("degC"),
    "P1.Pressure": SignalInfo("bar"),
    "PAT.Purity": SignalInfo("%"),
    "V1.Waste": SignalInfo(kind="bool"),
}
TEXT = (
    "abs(R1.T - 60 degC) < 1 K for 30 s and P1.Pressure < 8 bar and not V1.Waste"
    " and mean(PAT.Purity, 30 s) >= 98 % and stable(PAT.Purity, 0.5 %, 2 min)"
)


def run() -> dict[str, float]:
    """Figures: parses/s, compiles/s, and updates/s at 1 Hz sampling with a 2 min window."""
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        parse(TEXT)
    parse_rate = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n):
        compile_condition(TEXT, SIGNALS)
    compile_rate = n / (time.perf_counter() - t0)
    cond = compile_condition(TEXT, SIGNALS)
    m = 20_000
    t0 = time.perf_counter()
    for i in range(m):
        cond.update(
            float(i),
            {"R1.T": 333.2, "P1.Pressure": 5e5, "PAT.Purity": 0.985, "V1.Waste": False},
        )
    update_rate = m / (time.perf_counter() - t0)
    return {
        "parse_per_s": round(parse_rate, 1),
        "compile_per_s": round(compile_rate, 1),
        "update_per_s": round(update_rate, 1),
    }


if __name__ == "__main__":
    print(run())
