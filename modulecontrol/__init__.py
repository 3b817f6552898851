"""modulecontrol: modular, plug-and-play control of process equipment.

The public API is deliberately small; everything else lives in private modules or in the
sub-packages named in ``docs/architecture.md``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modulecontrol")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
