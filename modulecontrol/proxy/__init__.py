"""Module proxies: one per module instance, joining descriptor, driver and state machines."""

from modulecontrol.proxy._module import (
    LocalService,
    Modes,
    ModuleProxy,
    ProxyOptions,
    RemoteService,
    ServiceProxy,
    proxies_for,
)
from modulecontrol.proxy._signals import read_attribute, write_attribute

__all__ = [
    "LocalService",
    "Modes",
    "ModuleProxy",
    "ProxyOptions",
    "RemoteService",
    "ServiceProxy",
    "proxies_for",
    "read_attribute",
    "write_attribute",
]
