"""Drivers: one per transport (Modbus, OPC UA, serial) plus plug-ins found by entry point.

Why the names load on first use (PEP 562), as in :mod:`modulecontrol.simulators`: wiring
the transports (``register_transports``) is all ``validate`` needs, and the driver base
(asyncio with ssl, the scan loop) cost it tens of milliseconds before it read a line.
``from modulecontrol.drivers import BaseDriver`` works as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modulecontrol.lazy import lazy_names

if TYPE_CHECKING:
    from modulecontrol.drivers._base import (
        BadReply,
        BadRequest,
        BaseDriver,
        Callback,
        DeviceRejected,
        Disconnected,
        Driver,
        DriverError,
        DriverTimeout,
        Health,
        NotWritable,
        OutOfRange,
        Quality,
        Subscription,
        TagInfo,
        TagValue,
        UnknownTag,
        ValueRefused,
        check_value,
        refusal,
        tag_table,
    )
    from modulecontrol.drivers._maps import BindingTable, binding_tables, register_maps_markdown
    from modulecontrol.drivers._registry import (
        GROUP,
        UnknownDriver,
        available_drivers,
        load_driver,
        register_transports,
    )
    from modulecontrol.drivers._scan import ScanStats

_WHERE: dict[str, str] = {
    "BadReply": "_base",
    "BadRequest": "_base",
    "BaseDriver": "_base",
    "BindingTable": "_maps",
    "Callback": "_base",
    "DeviceRejected": "_base",
    "Disconnected": "_base",
    "Driver": "_base",
    "DriverError": "_base",
    "DriverTimeout": "_base",
    "GROUP": "_registry",
    "Health": "_base",
    "NotWritable": "_base",
    "OutOfRange": "_base",
    "Quality": "_base",
    "ScanStats": "_scan",
    "Subscription": "_base",
    "TagInfo": "_base",
    "TagValue": "_base",
    "UnknownDriver": "_registry",
    "UnknownTag": "_base",
    "ValueRefused": "_base",
    "available_drivers": "_registry",
    "binding_tables": "_maps",
    "check_value": "_base",
    "load_driver": "_registry",
    "refusal": "_base",
    "register_maps_markdown": "_maps",
    "register_transports": "_registry",
    "tag_table": "_base",
}
"""Each public name -> the private module that defines it."""

__all__ = [
    "GROUP",
    "BadReply",
    "BadRequest",
    "BaseDriver",
    "BindingTable",
    "Callback",
    "DeviceRejected",
    "Disconnected",
    "Driver",
    "DriverError",
    "DriverTimeout",
    "Health",
    "NotWritable",
    "OutOfRange",
    "Quality",
    "ScanStats",
    "Subscription",
    "TagInfo",
    "TagValue",
    "UnknownDriver",
    "UnknownTag",
    "ValueRefused",
    "available_drivers",
    "binding_tables",
    "check_value",
    "load_driver",
    "refusal",
    "register_maps_markdown",
    "register_transports",
    "tag_table",
]


if not TYPE_CHECKING:  # the checker sees the imports above; a typo stays an error for it
    __getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
