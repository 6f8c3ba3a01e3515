"""The library version (one place: the package, the saved files and the command line read it)."""

__version__ = "0.1.0"
