"""Example devices for modulecontrol (docs/writing-a-driver.md walks through them)."""
