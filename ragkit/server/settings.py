"""The knobs of the served app (``create_app(..., settings=ServerSettings(...))``), each with its flag."""

from __future__ import annotations

from dataclasses import dataclass

from ragkit.errors import ConfigError

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """Limits and switches of one server.

    ``allow_hosts``: Host header names accepted (``None``: loopback names when no token is set, no
    check with one; ``("*",)``: any). ``batch_queries``: embed concurrent ``/search`` queries in
    micro-batches of up to ``max_batch`` gathered for ``batch_window`` seconds, ``batch_parallel``
    batches encoding at once (:class:`~ragkit.server.batching.QueryBatcher`).
    """

    max_body_bytes: int = 4 * 2**20          # --max-body-mb
    body_timeout: float = 30.0                # --body-timeout: seconds for a body to arrive
    max_message_chars: int = 32_000           # --max-message-chars
    max_request_chars: int = 256_000          # all the texts of one request together
    allow_hosts: tuple[str, ...] | None = None  # --allow-host
    requests_per_minute: int | None = None    # --requests-per-minute (per principal)
    max_streams: int | None = None            # --max-streams (per principal)
    batch_queries: bool = True                # --no-batching turns it off
    max_batch: int = 32
    batch_window: float = 0.003
    batch_parallel: int = 2
    log_content: bool = False                 # --log-content
    health_ttl: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_message_chars", "max_request_chars", "max_batch", "batch_parallel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("requests_per_minute", "max_streams"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be an int >= 1 or None, got {value!r}")
        if not self.batch_window >= 0 or not self.health_ttl > 0 or not self.body_timeout > 0:
            raise ConfigError("batch_window must be >= 0, health_ttl and body_timeout > 0 seconds")
