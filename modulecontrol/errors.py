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


def signal_suggestions(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Signals (``MODULE.ATTRIBUTE``) close to ``name``, the named module's own first.

    Why not plain string similarity over all signals: for ``R1.Temp`` it ranks
    ``R1.TempSP``, ``CR1.TempSP`` and ``R2.TempSP`` and never ``R1.T``. The module tag of a
    signal is usually right, the attribute half-remembered; so when the module exists only
    its signals are offered: an attribute that abbreviates the typed one (``T`` for
    ``Temp``) first, then one that extends it (``TempSP``), then similar ones. When the
    module does not exist the tag is what is wrong, and close tags with the same attribute
    are offered.
    """
    options = sorted(set(known))
    module, _, attr = name.partition(".")
    attrs: dict[str, list[str]] = {}
    for o in options:
        m, _, a = o.partition(".")
        attrs.setdefault(m, []).append(a)
    tag = module if module in attrs else {m.lower(): m for m in attrs}.get(module.lower())
    if tag is not None and attr:
        typed = attr.lower()

        def rank(a: str) -> tuple[int, float, str]:
            low = a.lower()
            ratio = difflib.SequenceMatcher(None, typed, low).ratio()
            order = 0 if typed.startswith(low) else 1 if low.startswith(typed) else 2
            return order, -ratio, a

        # MTP attributes (R1.T.V) only when an attribute was typed (R1.T.Vx)
        same_depth = [a for a in attrs[tag] if a.count(".") == attr.count(".")]
        close = [a for a in same_depth if rank(a)[0] < 2 or -rank(a)[1] >= 0.6]
        return [f"{tag}.{a}" for a in sorted(close, key=rank)[:n]]
    score = {m: difflib.SequenceMatcher(None, module.lower(), m.lower()).ratio() for m in attrs}
    tags = sorted((m for m in attrs if score[m] >= 0.5), key=lambda m: (-score[m], m))[:n]
    same = [f"{m}.{attr}" for m in tags if attr in attrs[m]]
    return same or difflib.get_close_matches(name, options, n=n, cutoff=0.6)


def did_you_mean_signal(name: str, known: Iterable[str]) -> str:
    """A ``(did you mean 'R1.T' or 'R1.TempSP'?)`` suffix from :func:`signal_suggestions`."""
    close = signal_suggestions(name, known)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
