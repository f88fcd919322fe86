"""When to retry an HTTP call: the server's Retry-After, else exponential backoff with jitter.

One formula for every HTTP client in ragkit (the generators, the embedding services), kept below
both layers so neither imports the other.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Any

MAX_WAIT = 60.0  # no single wait longer than this, whatever the server asks


def retry_after(response: Any) -> float | None:
    """Seconds the server asked us to wait (Retry-After as seconds or HTTP date, or retry-after-ms)."""
    if response is None:
        return None
    if (ms := response.headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_wait(attempt: int, backoff: float, response: Any = None, cap: float = MAX_WAIT) -> float:
    """Seconds before retry ``attempt + 1``: ``backoff * 2**attempt`` plus jitter, at least what the
    server asked for, at most ``cap``."""
    wait = backoff * 2**attempt + random.uniform(0, backoff)
    asked = retry_after(response)
    return min(max(wait, asked or 0.0), cap)
