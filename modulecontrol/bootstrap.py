"""The composition root: the one place that wires registries, plug-ins and logging.

Why one place: importing a module must not change what the program accepts or prints. Before
this, importing ``modulecontrol.recipe`` taught the YAML loader the ``Recipe`` kind, importing
``modulecontrol.simulators`` the ``Scenario`` kind, and two commands silenced asyncua's logger
for the whole process (which leaked into tests). Now ``main()`` of the CLI calls
:func:`configure` once, the test suite calls it from a fixture, and a program that embeds
modulecontrol calls it before loading plants::

    from modulecontrol.bootstrap import configure

    wiring = configure()          # document kinds, installed drivers and their transports
    ...
    wiring.undo()                 # optional: back to the state before

What it wires:

* the document kinds ``Recipe`` and ``Scenario`` of :func:`modulecontrol.descriptors.validate_file`;
* every installed driver (entry-point group ``modulecontrol.drivers``, built-ins included):
  its binding and endpoint models are registered with the descriptors, so a plant may name
  its protocol (a driver that fails to load is reported in :attr:`Wiring.problems`);
* the module types plug-in packages ship (entry-point group ``modulecontrol.module_types``,
  each naming a package whose ``*.yaml`` files are module types), so a plant may name them;
* with ``cli_logging=True``: a stderr handler on the root logger that shows warnings, but
  from asyncua only errors (it warns about every unsecured loopback session, twice per
  module, burying the output of ``run`` and ``sim serve``). A handler with a filter, removed
  by :meth:`Wiring.undo`; no logger's level is changed.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from modulecontrol.descriptors import (
    document_kinds,
    register_kind,
    register_module_types,
    transports,
    unregister_kind,
    unregister_module_types,
    unregister_transport,
)
from modulecontrol.drivers import register_transports
from modulecontrol.errors import ConfigError
from modulecontrol.recipe import validate_recipe_doc

if TYPE_CHECKING:
    from modulecontrol.simulators import Scenario
    from modulecontrol.yamlio import YamlDoc

__all__ = ["TYPES_GROUP", "QuietAsyncua", "Wiring", "configure"]

TYPES_GROUP = "modulecontrol.module_types"
"""Entry-point group of plug-in module types: ``name = "package.with.yaml.files"``."""


def _scenario_from_doc(doc: YamlDoc) -> Scenario:
    """The ``Scenario`` kind's validator, importing the simulators on first use: a command
    that validates a plant or a recipe never reads a scenario, and the simulators' import
    costs it time (``modulecontrol validate`` is meant to answer within a second)."""
    from modulecontrol.simulators import scenario_from_doc

    return scenario_from_doc(doc)


class QuietAsyncua(logging.Filter):
    """Pass asyncua's records only from ERROR up; everything else unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        quiet = record.name == "asyncua" or record.name.startswith("asyncua.")
        return not quiet or record.levelno >= logging.ERROR


@dataclass
class Wiring:
    """What :func:`configure` did, so that it can be undone (tests, embedding programs)."""

    kinds: list[str] = field(default_factory=list)
    transports: list[str] = field(default_factory=list)
    module_types: list[str] = field(default_factory=list)
    """Plug-in module types registered by this call."""
    problems: dict[str, str] = field(default_factory=dict)
    """Installed drivers or type packages that could not be loaded: entry point -> reason.
    The CLI prints them as warnings; a plant that needs one gets an error saying why."""
    handler: logging.Handler | None = None
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def undo(self) -> None:
        """Remove what :func:`configure` added, newest first."""
        while self._undo:
            self._undo.pop()()


def configure(*, cli_logging: bool = False) -> Wiring:
    """Wire document kinds, driver transports and (for a CLI) logging; see the module text.

    Idempotent for the registries: what is already registered the same way stays, and only
    what this call added is removed by :meth:`Wiring.undo`.
    """
    wiring = Wiring()
    before_kinds = document_kinds()
    for kind, validator in (("Recipe", validate_recipe_doc), ("Scenario", _scenario_from_doc)):
        if kind not in before_kinds:
            register_kind(kind, validator)
            wiring.kinds.append(kind)
            wiring._undo.append(functools.partial(unregister_kind, kind))
    before = set(transports())
    wiring.problems.update(register_transports())
    for name in sorted(set(transports()) - before):
        wiring.transports.append(name)
        wiring._undo.append(functools.partial(unregister_transport, name))
    for ep in entry_points(group=TYPES_GROUP):
        origin = f"{ep.dist.name if ep.dist else ep.name}:{ep.value}"
        try:
            added = register_module_types(origin, resources.files(ep.value))
        except (ConfigError, ImportError, OSError) as exc:
            wiring.problems[f"{TYPES_GROUP}:{ep.name}"] = f"{origin}: {exc}"
            continue
        if added:
            wiring.module_types += added
            wiring._undo.append(functools.partial(unregister_module_types, origin))
    if cli_logging:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.addFilter(QuietAsyncua())
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        wiring.handler = handler
        wiring._undo.append(functools.partial(root.removeHandler, handler))
        for name, reason in wiring.problems.items():
            logging.getLogger("modulecontrol").warning("plug-in %s not loaded: %s", name, reason)
    return wiring
