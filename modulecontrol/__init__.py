"""modulecontrol: modular, plug-and-play control of process equipment.

The public API is deliberately small; everything else lives in private modules or in the
sub-packages named in ``docs/architecture.md``.

``__version__`` is read from the installed distribution on first use (PEP 562): reading
package metadata imports ``importlib.metadata`` (about 20 ms), which ``modulecontrol --help``
and every import of a sub-package would otherwise pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["__version__"]

if TYPE_CHECKING:
    __version__: str
else:

    def __getattr__(name: str) -> str:
        if name != "__version__":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("modulecontrol")
        except PackageNotFoundError:  # running from a source tree without an install
            value = "0.0.0+source"
        globals()["__version__"] = value  # once: later lookups are a plain attribute
        return value
