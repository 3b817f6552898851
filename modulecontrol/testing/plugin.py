"""pytest plugin (entry point ``pytest11``): fixtures of the driver test kit.

Loaded automatically once modulecontrol is installed; it only registers fixtures and never
changes the behaviour of unrelated tests.
"""
