"""Issue 20, speed: what the server does per /search request, and where (event loop or worker)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

pytest.importorskip("fastapi")

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ragkit.server.responses import json_bytes
from ragkit.types import Hit


def test_json_bytes_renders_as_json_response_over_jsonable_encoder() -> None:
    hit = Hit("c1", "d1", "Swarms in May, «not» June", 0.5, metadata={"date": dt.date(2024, 5, 1), "tags": ("a", "b"),
              "source": "notes/bees.md"}, bm25_score=1.25, dense_rank=None)
    content = {"query": "when do bees swarm?", "hits": [hit.to_dict()]}
    assert json_bytes(content) == JSONResponse(jsonable_encoder(content)).body


def test_json_bytes_refuses_nan_as_json_response_does() -> None:
    with pytest.raises(ValueError):
        json_bytes({"score": math.nan})
