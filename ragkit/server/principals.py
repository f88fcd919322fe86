"""Who is asking, and which documents they may see: principals, their scopes, the server config file.

A server config file (TOML or JSON) maps bearer tokens, stored as SHA-256 hex digests, to
principals. Each principal has a *scope*: a metadata filter (``filters``), a list of ``groups``
matched against each chunk's ``acl`` metadata field, or both. The scope is ANDed with whatever a
request asks for, so a request can narrow it and never widen it::

    [[principals]]
    name = "alice"
    token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    filters = { team = { in = ["a", "b"] } }
    requests_per_minute = 120
    max_streams = 4

    [[principals]]
    name = "bob"
    token_sha256 = "..."
    groups = ["support"]         # sees chunks whose acl list holds "support"

A principal must say ``filters`` or ``groups``; ``filters = {}`` is an explicit "everything".
:class:`PrincipalStore` reloads the file when its modification time changes (checked at most once a
second) or on :meth:`PrincipalStore.reload` (``ragkit serve`` calls it on SIGHUP); a file that no
longer parses keeps the previous table and logs why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.errors import ConfigError, FilterError
from ragkit.storage.filters import OPERATORS, compile_filters

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

__all__ = ["ACL_FIELD", "Principal", "PrincipalStore", "hash_token", "narrow"]

logger = logging.getLogger(__name__)

ACL_FIELD = "acl"
_KEYS = {"name", "token_sha256", "filters", "groups", "requests_per_minute", "max_streams"}
_CHECK_EVERY = 1.0  # seconds between looks at the file's mtime


def hash_token(token: str) -> str:
    """The SHA-256 hex digest a config file stores for ``token``."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """A caller: a name for logs and limits, a scope, and its own limits (``None``: the server's)."""

    name: str
    filters: Mapping[str, Any] | None = None  # None: unrestricted
    groups: tuple[str, ...] | None = None
    requests_per_minute: int | None = None
    max_streams: int | None = None
    restricted: bool = field(default=False)

    def scope(self) -> dict[str, Any] | None:
        """The mandatory filter for this principal's searches (None: it may see everything)."""
        acl = {ACL_FIELD: {"in": list(self.groups)}} if self.groups is not None else None
        return narrow(self.filters, acl)


ANONYMOUS = Principal("anonymous")


def narrow(scope: Mapping[str, Any] | None, asked: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """One filter that holds where both ``scope`` and ``asked`` hold.

    A filter dict is an AND over its keys, so two conditions on the same field have to become one:
    ``in`` lists intersect, ``nin`` lists join, ``eq`` becomes a one-value ``in``, ranges keep
    the tighter bound. A pair that cannot be merged (two different globs, ``ne`` and ``ne``) is a
    :class:`FilterError` rather than something weaker than the scope.
    """
    out: dict[str, Any] = {f: _ops(f, c) for f, c in (scope or {}).items()}
    for field_name, condition in (asked or {}).items():
        ops = _ops(field_name, condition)
        out[field_name] = _merge(field_name, out[field_name], ops) if field_name in out else ops
    if out:
        compile_filters(out)  # every operator and value checked once more
    return out or None


def _ops(field_name: str, condition: Any) -> dict[str, Any]:
    if not isinstance(field_name, str):
        raise FilterError(f"filter field names must be strings, got {field_name!r}")
    ops = dict(condition) if isinstance(condition, Mapping) else {"eq": condition}
    for op in ops:
        if op not in OPERATORS:
            raise FilterError(f"unknown filter operator {op!r} on {field_name!r}; valid: {', '.join(OPERATORS)}")
    if "eq" in ops:  # as a one-value list it merges with "in"
        eq = ops.pop("eq")
        ops["in"] = _intersect(ops["in"], [eq]) if "in" in ops else [eq]
    return ops


def _intersect(a: Any, b: Any) -> list[Any]:
    if not isinstance(a, list) or not isinstance(b, list):
        raise FilterError(f"'in' needs a list of values, got {a!r} and {b!r}")
    return [v for v in a if v in b]


def _merge(field_name: str, mine: dict[str, Any], asked: dict[str, Any]) -> dict[str, Any]:
    merged = dict(mine)
    for op, value in asked.items():
        if op not in merged or merged[op] == value:
            merged[op] = value
        elif op == "in":
            merged[op] = _intersect(merged[op], value)
        elif op == "nin":
            merged[op] = list(merged[op]) + [v for v in value if v not in merged[op]]
        elif op in ("gt", "gte", "lt", "lte"):
            try:
                merged[op] = (max if op in ("gt", "gte") else min)(merged[op], value)
            except TypeError:
                raise FilterError(f"filter on {field_name!r}: {op!r} {value!r} is not comparable with this "
                                  f"token's scope ({op!r} {merged[op]!r})") from None
        else:
            raise FilterError(f"filter on {field_name!r}: {op!r} {value!r} cannot be combined with this token's "
                              f"scope ({op!r} {merged[op]!r}); filter on another field")
    return merged


class PrincipalStore:
    """The principals of a server config file, by token; reloads the file when it changes.

    >>> store = PrincipalStore("server.toml")     # doctest: +SKIP
    >>> store.authenticate("alice's token").name  # doctest: +SKIP
    'alice'
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._by_hash: dict[str, Principal] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._by_hash, self._mtime = self._load()  # a broken file at start is an error, not a warning

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding ``token``, or None. Compares digests: no token is ever stored."""
        self._maybe_reload()
        return self._by_hash.get(hash_token(token))

    def reload(self) -> bool:
        """Read the file again; on a bad file keep the current principals and log why. True if loaded."""
        try:
            table, mtime = self._load()
        except (ConfigError, OSError) as exc:
            logger.error("server config %s not reloaded, keeping %d principals: %s", self.path, len(self), exc)
            return False
        with self._lock:
            self._by_hash, self._mtime = table, mtime
        logger.info("server config %s reloaded: %d principals", self.path, len(table))
        return True

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < _CHECK_EVERY:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return
        if mtime != self._mtime and not self.reload():
            self._mtime = mtime  # do not retry a broken file every second; the next edit retries

    def _load(self) -> tuple[dict[str, Principal], float]:
        mtime = self.path.stat().st_mtime
        data = read_config(self.path)
        entries = data.get("principals")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{self.path}: needs a non-empty 'principals' list ([[principals]] in TOML)")
        table: dict[str, Principal] = {}
        for i, entry in enumerate(entries):
            digest, principal = _principal(self.path, i, entry)
            if digest in table:
                raise ConfigError(f"{self.path}: principals[{i}] ({principal.name}) has the same token as "
                                  f"{table[digest].name}")
            table[digest] = principal
        return table, mtime


def read_config(path: Path) -> dict[str, Any]:
    """A server config file as a dict: TOML unless it ends in ``.json``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read server config {path}: {exc.strerror or exc}") from exc
    if path.suffix != ".json" and tomllib is None:
        raise ConfigError(f"server config {path}: TOML needs Python 3.11+; write it as JSON (a .json file)")
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"server config {path} does not parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"server config {path}: the top level must be a table/object")
    return data


def _principal(path: Path, i: int, entry: Any) -> tuple[str, Principal]:
    where = f"{path}: principals[{i}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table/object")
    unknown = set(entry) - _KEYS
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}; valid: {', '.join(sorted(_KEYS))}")
    name, digest = entry.get("name"), str(entry.get("token_sha256", "")).lower()
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} needs a 'name'")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(f"{where} ({name}): 'token_sha256' must be 64 hex digits "
                          "(python -c \"import hashlib; print(hashlib.sha256(b'TOKEN').hexdigest())\")")
    if "filters" not in entry and "groups" not in entry:
        raise ConfigError(f"{where} ({name}) needs 'filters' or 'groups' (filters = {{}} to see everything)")
    filters, groups = entry.get("filters"), entry.get("groups")
    if filters is not None and not isinstance(filters, dict):
        raise ConfigError(f"{where} ({name}): 'filters' must be a table/object")
    if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)):
        raise ConfigError(f"{where} ({name}): 'groups' must be a list of strings")
    limits = {k: entry.get(k) for k in ("requests_per_minute", "max_streams")}
    for key, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{where} ({name}): {key!r} must be an int >= 1, got {value!r}")
    try:
        principal = Principal(name, filters, tuple(groups) if groups is not None else None, restricted=True,
                              **limits)
        principal.scope()
    except FilterError as exc:
        raise ConfigError(f"{where} ({name}): bad 'filters': {exc}") from exc
    return digest, principal
