"""Public faces that load their names on first use (PEP 562), in one place.

Why: ``validate`` and ``--help`` must not pay for what a package's other names import (the
protocol servers behind ``modulecontrol.simulators``, the report builder behind
``modulecontrol.records``, the driver base behind ``modulecontrol.drivers``). A package
keeps its ``__all__`` and, under ``TYPE_CHECKING``, the imports the checker reads; at run
time its ``__getattr__`` and ``__dir__`` come from :func:`lazy_names`::

    _WHERE = {"check_plant": "_check", ...}   # public name -> defining private module

    if not TYPE_CHECKING:  # the checker sees the imports; a typo stays an error for it
        __getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, where: Mapping[str, str], public: Sequence[str],
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: a name of ``where`` is imported from its
    module (``package.<where[name]>``) on first use and then kept as a plain attribute."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # once: later lookups skip this
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__
