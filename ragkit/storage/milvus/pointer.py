"""Which collections hold a Milvus index now: the pointer a rebuild switches (``--rebuild``).

An index is named in its URI (``NAME``, ``ragkit`` for Milvus Lite), but its collections may carry a
generation prefix: ``NAME`` itself until the first rebuild, then ``NAME__g1``, ``NAME__g2``, ... (so
``NAME__g2``, ``NAME__g2_docs``, ...). The prefix in use is one row of the collection ``NAME__active``,
upserted as the last step of a rebuild: one row is all or nothing, so readers see the old
generation or the new one, never a mix. No row (or no such collection): the prefix is ``NAME``.

Why not a Milvus alias: an alias names one collection and an index is six, so one alias switch could
not move them together; and the row is what every Milvus, Lite or server, stores the same way.
"""

from __future__ import annotations

import re
from typing import Any

from ragkit.storage.milvus import lite

DUMMY = [1.0, 0.0]
_ROW = 0  # the pointer's primary key


def pointer_collection(name: str) -> str:
    return f"{name}__active"


def generation_prefix(name: str, number: int) -> str:
    return f"{name}__g{number}"


def generation_number(name: str, prefix: str) -> int:
    """The number in ``NAME__gN`` (0 for ``NAME`` itself, the generation before any rebuild)."""
    match = re.fullmatch(re.escape(name) + r"__g(\d+)", prefix)
    return int(match.group(1)) if match else 0


def read_active(client: Any, name: str) -> str | None:
    """The prefix the pointer names, or None when no rebuild ever wrote one (the caller checked the
    collection exists: querying a missing one makes pymilvus log an error)."""
    rows = client.query(pointer_collection(name), filter=f"pk == {_ROW}", output_fields=["prefix"])
    return rows[0]["prefix"] if rows else None


def active_prefix(client: Any, name: str) -> str:
    """The prefix of the index's collections now (loading the pointer: Milvus Lite opens every collection
    released)."""
    if not load_pointer(client, name):
        return name
    return read_active(client, name) or name


def load_pointer(client: Any, name: str) -> bool:
    """Load the pointer collection for queries; False where no rebuild made one yet."""
    if pointer_collection(name) not in client.list_collections():
        return False
    client.load_collection(pointer_collection(name))
    return True


def point_to(client: Any, types: Any, name: str, prefix: str) -> None:
    """Switch the index to the collections ``prefix...`` (the rebuild's commit point)."""
    collection = pointer_collection(name)
    if collection not in client.list_collections():
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", types.INT64, is_primary=True)
        schema.add_field("prefix", types.VARCHAR, max_length=255)
        schema.add_field("_v", types.FLOAT_VECTOR, dim=2)
        params = client.prepare_index_params()
        params.add_index("_v", index_type="FLAT", metric_type="IP")
        client.create_collection(collection, schema=schema, consistency_level="Strong")
        client.create_index(collection, params, sync=False)
        client.load_collection(collection)
    client.upsert(collection, [{"pk": _ROW, "prefix": prefix, "_v": DUMMY}])
    client.flush(collection)


def generation_collections(names: list[str], name: str) -> dict[str, list[str]]:
    """The collections of each generation of index ``name`` among ``names``, by prefix."""
    prefixes = re.compile(re.escape(name) + r"(__g\d+)?")
    found: dict[str, list[str]] = {}
    for collection in sorted(names):
        for suffix in lite.SUFFIXES:
            prefix = collection[: -len(suffix) - 1] if suffix and collection.endswith("_" + suffix) else collection
            if (not suffix or prefix != collection) and prefixes.fullmatch(prefix):
                found.setdefault(prefix, []).append(collection)
                break
    return found
