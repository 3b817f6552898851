"""The package's module types: every ``*.yaml`` here (entry point
``modulecontrol.module_types``)."""
