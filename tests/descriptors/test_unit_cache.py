"""The unit registry's definitions cache (modulecontrol.units, MODULECONTROL_UNIT_CACHE): a
cached registry converts as an uncached one, and a directory others may write to is never
loaded from (pint's cache is a pickle, which runs code when loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CONVERSIONS = """
import json
from modulecontrol.units import convert, to_si, unit_cache_folder
folder = unit_cache_folder()
print(json.dumps({"folder": str(folder) if folder else None,
                  "values": [convert("0.375 mL/min", "L/h"), to_si("60 degC"),
                             convert("3000 L**2/(mol**2*s)", "m**6/(mol**2*s)"),
                             convert("4 bar", "kPa"), convert("12 %", "ppm")]}))
"""


def _run(cache: str) -> dict[str, object]:
    env = {**os.environ, "MODULECONTROL_UNIT_CACHE": cache, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", _CONVERSIONS], capture_output=True, text=True,
                         check=True, env=env, timeout=120).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_cached_registry_converts_as_the_uncached_one(tmp_path: Path) -> None:
    cache = tmp_path / "units"
    uncached = _run("off")
    assert uncached["folder"] is None
    first = _run(str(cache))   # builds the registry and writes the cache
    assert first["folder"] == str(cache) and list(cache.glob("*.pickle"))
    second = _run(str(cache))  # loads it
    assert first["values"] == second["values"] == uncached["values"]
    assert (cache.stat().st_mode & 0o777) == 0o700


def test_a_directory_others_may_write_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    got = _run(str(shared))
    assert got["folder"] is None
    assert list(shared.iterdir()) == []
    assert got["values"] == _run("off")["values"]


def test_a_broken_cache_is_dropped_and_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "units"
    expected = _run(str(cache))["values"]
    for pickle_file in cache.glob("*.pickle"):
        pickle_file.write_bytes(pickle_file.read_bytes()[:20])  # a write cut short
    assert _run(str(cache))["values"] == expected  # uncached this time...
    assert list(cache.glob("*.pickle")) == []      # ...and the broken files gone
    assert _run(str(cache))["values"] == expected  # rebuilt
    assert all(p.stat().st_size > 20 for p in cache.glob("*.pickle"))
