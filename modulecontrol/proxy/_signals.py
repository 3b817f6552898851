"""Which attribute carries "the value" of a data assembly, given what the descriptor binds.

The preference tables are the MTP core's (``READ_PREFERENCE``, ``WRITE_PREFERENCE``);
this module only applies them to a descriptor's assembly.
"""

from __future__ import annotations

from collections.abc import Container

from modulecontrol import mtpcore
from modulecontrol.descriptors import DataAssembly


def read_attribute(da: DataAssembly, bound: Container[str]) -> str | None:
    """The attribute to read for the assembly's value, among those the transport reaches."""
    return mtpcore.read_attribute(da.class_, da.name, bound)


def write_attribute(da: DataAssembly, bound: Container[str]) -> str | None:
    """The attribute written when a recipe or action sets the assembly."""
    return mtpcore.write_attribute(da.class_, da.name, bound)
