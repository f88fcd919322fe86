"""The ``ragkit`` command line: ``main`` and the core commands in ``commands.py``, one module per other group."""

from ragkit._moved import forward_attributes

_EXPORTS = {"main": "ragkit.cli.commands"}
__all__ = sorted(_EXPORTS)
__getattr__ = forward_attributes(__name__, _EXPORTS, "ragkit.cli.commands")
