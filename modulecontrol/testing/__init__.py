"""Test helpers shipped with modulecontrol, for integrators testing their own drivers."""
