"""The ``ragkit`` command line: one module per group of commands, ``main`` in ``main.py``."""

from ragkit._moved import forward_attributes

_EXPORTS = {"main": "ragkit.cli.main"}
__all__ = sorted(_EXPORTS)
__getattr__ = forward_attributes(__name__, _EXPORTS, "ragkit.cli.main")
