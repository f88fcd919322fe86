"""Issue 14, bug 11: ``ragkit serve`` binds its port before it says where it serves (a port in use is
an error, and no URL is printed), and loads the embedding model before it serves (so ``/health``
answers only once the first request need not wait for the model). uvicorn itself is stubbed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fakes import FakeEmbedder, open_fake_index
from ragkit.cli.commands import main

pytest.importorskip("uvicorn")


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[FakeEmbedder]]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bees.md").write_text("# Bees\n\nBees swarm in May.\n", encoding="utf-8")
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.sync(docs)
    made: list[FakeEmbedder] = []
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: made.append(FakeEmbedder(name)) or made[-1])
    return tmp_path / "kb.ragkit", made


def serve_args(index: Path, port: int) -> list[str]:
    return ["serve", "--index", str(index), "--upstream", "http://127.0.0.1:9/v1", "--model", "m", "--port", str(port)]


def test_a_port_in_use_is_an_error_before_any_url(kb, capsys) -> None:  # type: ignore[no-untyped-def]
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        assert main(serve_args(kb[0], port)) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert "http://" not in err


def test_the_model_loads_and_the_port_is_bound_before_the_url_is_printed(kb, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    seen: dict[str, object] = {}

    def run(self, sockets=None):  # type: ignore[no-untyped-def]
        seen["port"] = sockets[0].getsockname()[1]
        seen["embedded"] = list(kb[1][-1].encoded)
        seen["printed"] = capsys.readouterr().err

    monkeypatch.setattr(uvicorn.Server, "run", run)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    assert main(serve_args(kb[0], port)) == 0
    assert seen["port"] == port and seen["embedded"] == ["ragkit"]  # the model had run once
    assert f"http://127.0.0.1:{port}/v1" in str(seen["printed"])
