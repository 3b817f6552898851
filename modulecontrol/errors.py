"""Located errors: every problem a user can fix names the file, line and column.

Why a list of problems rather than the first exception: an engineer validating a plant wants
all mistakes in one pass, as a compiler reports them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a source file; line and column are 1-based as editors show them."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input, at one place."""

    message: str
    location: Location | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(Exception):
    """Raised when an input file (descriptor, plant, recipe, manifest) is invalid.

    ``problems`` holds every problem found; ``str()`` gives one ``file:line:col: message``
    line per problem, ready for a terminal or an editor's problem matcher.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid input")

    @classmethod
    def single(cls, message: str, location: Location | None = None) -> ConfigError:
        return cls([Problem(message, location)])


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``(did you mean 'x'?)`` suffix, or the known choices when nothing is close."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    if close:
        return f" (did you mean '{close[0]}'?)"
    if not options:
        return ""
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f" (known: {shown})"
