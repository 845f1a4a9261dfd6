"""bindimg: bind container application images to a bootc OS image."""

__version__ = "0.1.0"
