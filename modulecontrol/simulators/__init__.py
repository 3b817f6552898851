"""Simulators: process models (``modulecontrol.simulators.models``) and the protocol servers
that expose them as the real devices would."""
