"""Server: the OpenAI-compatible RAG endpoint behind ``ragkit serve``.

``create_app`` builds it; ``ServerSettings`` holds its limits; ``PrincipalStore`` reads a server config
file of tokens and scopes; ``scope_for(request)`` is the filter any route's searches must use.
"""

from ragkit._moved import forward_attributes

_EXPORTS = {
    "PrincipalStore": "ragkit.server.principals",
    "ServerSettings": "ragkit.server.settings",
    "create_app": "ragkit.server.app",
    "scope_for": "ragkit.server.auth",
}
__all__ = sorted(_EXPORTS)
__getattr__ = forward_attributes(__name__, _EXPORTS, "ragkit.server.app")
