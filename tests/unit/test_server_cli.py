"""Issue 20, `ragkit serve`'s flags for many users: --config, --allow-host, limits, and the uvicorn settings
that bound connections (header timeout, keep-alive, concurrency). uvicorn itself is stubbed."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")

from fakes import FakeEmbedder, open_fake_index
from servekit import write_config

from ragkit.cli.commands import main


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bees.md").write_text("---\nteam: a\n---\n# Bees\n\nBees swarm in May.\n", encoding="utf-8")
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.sync(docs)
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    return tmp_path / "kb.ragkit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_wires_the_config_file_limits_and_bounded_connections(kb, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    seen: dict[str, object] = {}

    def run(self, sockets=None):  # type: ignore[no-untyped-def]
        seen["config"], seen["app"] = self.config, self.config.app
        seen["sighup"] = signal.getsignal(signal.SIGHUP)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    previous = signal.getsignal(signal.SIGHUP)
    config = write_config(tmp_path / "server.json")
    args = ["serve", "--index", str(kb), "--upstream", "http://127.0.0.1:9/v1", "--model", "m",
            "--port", str(free_port()), "--config", str(config), "--max-body-mb", "1", "--requests-per-minute", "30",
            "--max-streams", "2", "--header-timeout", "3", "--keep-alive", "2", "--max-connections", "64",
            "--allow-host", "kb.example"]
    try:
        assert main(args) == 0
        handler = seen["sighup"]
    finally:
        signal.signal(signal.SIGHUP, previous)
    cfg, app = seen["config"], seen["app"]
    assert cfg.timeout_keep_alive == 2 and cfg.limit_concurrency == 64  # type: ignore[attr-defined]
    assert cfg.http.header_timeout == 3.0  # type: ignore[attr-defined]
    settings = app.state.settings  # type: ignore[attr-defined]
    assert settings.max_body_bytes == 2**20 and settings.requests_per_minute == 30 and settings.max_streams == 2
    assert settings.allow_hosts == ("kb.example",) and len(app.state.principals) == 3  # type: ignore[attr-defined]
    assert app.state.health.state == "ok"  # type: ignore[attr-defined]  # probed before it listens
    assert callable(handler) and handler is not previous
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--max-body-mb", "0"), ("--requests-per-minute", "0"),
                                         ("--header-timeout", "-1")])
def test_bad_serving_flags_are_errors_naming_the_flag(kb, flag, value, capsys) -> None:  # type: ignore[no-untyped-def]
    args = ["serve", "--index", str(kb), "--upstream", "http://127.0.0.1:9/v1", "--model", "m", flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert flag.lstrip("-").replace("-", "_") in err.replace("-", "_")


def test_a_bad_config_file_stops_serve_before_it_listens(kb, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "server.json"
    bad.write_text('{"principals": [{"name": "x", "token_sha256": "abc"}]}')
    args = ["serve", "--index", str(kb), "--upstream", "http://127.0.0.1:9/v1", "--model", "m", "--config", str(bad)]
    assert main(args) == 2
    assert "64 hex digits" in capsys.readouterr().err
