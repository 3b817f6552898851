"""What every fuzz case asserts: the loader returns or raises a located ``ConfigError``, within
a time limit and a memory bound. Shared by the fuzz tests of every loader."""

from __future__ import annotations

import signal
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, settings

from modulecontrol.errors import ConfigError
from tests._profiles import FUZZ

CASE_SECONDS = 5.0
"""A case that takes longer is a hang (the loaders take milliseconds on these inputs)."""
CASE_PEAK_BYTES = 64_000_000
"""Peak Python allocation of one case (inputs are at most a few hundred kB)."""

settings.register_profile(
    "fuzz-ci", max_examples=25, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "fuzz", max_examples=2_000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PROFILE = settings.get_profile("fuzz" if FUZZ else "fuzz-ci")
"""``make test`` runs the short profile; ``make fuzz`` (HYPOTHESIS_PROFILE=fuzz) the long one."""


class Hang(AssertionError):
    """A case ran past :data:`CASE_SECONDS`."""


@contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    def fire(*_: object) -> None:
        raise Hang(f"a loader ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_loader(load: Callable[[], Any]) -> None:
    """Run ``load`` under the watchdog and tracemalloc; only located ConfigErrors may escape."""
    tracemalloc.start()
    try:
        with _watchdog(CASE_SECONDS):
            try:
                load()
            except ConfigError as exc:
                assert exc.problems, "a ConfigError without problems"
                for p in exc.problems:
                    assert p.location is not None and p.location.file, f"not located: {p}"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < CASE_PEAK_BYTES, f"peak allocation {peak} bytes"
