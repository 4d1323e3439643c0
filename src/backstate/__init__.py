"""backstate: statecharts as a persistent, API-accessible, real-time backend."""

__version__ = "0.1.0"

__all__ = ["__version__"]
