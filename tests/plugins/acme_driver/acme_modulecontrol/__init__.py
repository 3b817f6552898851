"""A toy third-party modulecontrol plug-in: the 'acme' line protocol over TCP.

Everything a real driver package ships, in miniature: a binding model and an endpoint model
(:mod:`.driver`), a driver, a device that speaks the protocol (:mod:`.device`), and a module
type as package data (``types/acme_heater.yaml``), all registered by entry point.
"""
