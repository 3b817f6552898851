"""Module types of the acme plug-in (``*.yaml``), found through ``modulecontrol.module_types``."""
