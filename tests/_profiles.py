"""How many examples a property test runs: few in ``make test``, many in ``make fuzz``.

``make test`` must stay short on two cores, while a property over a wide space wants many
examples; a long property test takes its count from :func:`fuzz_examples`, and ``make fuzz``
(``HYPOTHESIS_PROFILE=fuzz``) runs it with the large one (the Makefile's ``FUZZ_TESTS``).
"""

from __future__ import annotations

import os

FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
"""Whether this is the long run (``make fuzz``)."""


def fuzz_examples(test: int, fuzz: int) -> int:
    """``test`` examples in ``make test``, ``fuzz`` in ``make fuzz``."""
    return fuzz if FUZZ else test
