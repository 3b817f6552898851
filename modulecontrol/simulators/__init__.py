"""Simulators: process models and the protocol servers that expose them."""
