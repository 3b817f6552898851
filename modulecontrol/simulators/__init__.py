"""Simulators: process models (``modulecontrol.simulators.models``) and, later, the protocol
servers that expose them."""
