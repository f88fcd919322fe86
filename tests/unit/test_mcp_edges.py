"""Issue 20, `ragkit mcp --http` has the edges of `ragkit serve`: each principal's requests per minute
(the flag, or the principal's own from the config), a body limit answered before the body is read,
and, with no token, a Host allow-list against DNS rebinding. The app `ragkit mcp` builds is served by
uvicorn on loopback and driven with raw HTTP (fake embedder, the two-team index of the server tests)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason='needs pip install "ragkit[mcp]"')
uvicorn = pytest.importorskip("uvicorn")

import httpx
from fakes import FakeEmbedder
from servekit import TOKENS, serving, two_team_index, write_config

from ragkit.cli.commands import main

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "edge-test", "version": "0"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def mcp_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str) -> Any:
    """The ASGI app `ragkit mcp --http FLAGS` would serve (uvicorn.run stubbed to hand it over)."""
    if not (tmp_path / "kb.ragkit").exists():
        with two_team_index(tmp_path / "kb.ragkit"):
            pass
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, options=options))
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert main(["mcp", "--index", str(tmp_path / "kb.ragkit"), "--http", *flags]) == 0
    finally:
        signal.signal(signal.SIGHUP, previous)
    return seen


def post(root: str, token: str | None = None, **options: Any) -> httpx.Response:
    headers = {**HEADERS, **({"Authorization": f"Bearer {token}"} if token else {}), **options.pop("headers", {})}
    return httpx.post(root + "/mcp", headers=headers, timeout=10, **({"json": INITIALIZE} | options))


def test_each_principal_has_its_own_rate_and_the_configs_own_limit_wins(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "server.json", {"bob": {"requests_per_minute": 1}})
    seen = mcp_app(tmp_path, monkeypatch, "--config", str(config), "--requests-per-minute", "2")
    with serving(seen["app"], lifespan="auto") as root:
        alice = [post(root, TOKENS["alice"]).status_code for _ in range(3)]
        bob = [post(root, TOKENS["bob"]).status_code for _ in range(2)]
        refused = post(root, TOKENS["alice"])
    assert alice == [200, 200, 429]  # the flag's 2 per minute
    assert bob == [200, 429]  # bob's own 1 per minute, counted apart from alice's
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "alice" in refused.json()["error"]["message"]
    # the uvicorn bounds of `ragkit serve` apply too
    assert seen["options"]["limit_concurrency"] == 512 and seen["options"]["timeout_keep_alive"] == 5.0


def test_a_body_over_the_limit_is_413_before_it_is_read(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen = mcp_app(tmp_path, monkeypatch, "--token", "s3cret", "--max-body-mb", "0.01")
    big = {**INITIALIZE, "params": {**INITIALIZE["params"], "pad": "x" * 20_000}}
    with serving(seen["app"], lifespan="auto") as root:
        assert post(root, "s3cret").status_code == 200
        refused = post(root, "s3cret", json=big)
    assert refused.status_code == 413 and "--max-body-mb" in refused.json()["error"]["message"]


def test_without_a_token_only_loopback_host_names_are_served(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen = mcp_app(tmp_path, monkeypatch)
    with serving(seen["app"], lifespan="auto") as root:
        rebound = post(root, headers={"Host": "attacker.example"})
        assert rebound.status_code == 421  # a web page whose name now points at 127.0.0.1
        port = root.rpartition(":")[2]
        assert post(root, headers={"Host": f"localhost:{port}"}).status_code == 200
    seen = mcp_app(tmp_path, monkeypatch, "--allow-host", "kb.internal")
    with serving(seen["app"], lifespan="auto") as root:
        port = root.rpartition(":")[2]
        assert post(root, headers={"Host": f"kb.internal:{port}", "Origin": "http://kb.internal"}).status_code == 200
        assert post(root, headers={"Host": f"localhost:{port}"}).status_code == 421  # the names given, only


@pytest.mark.parametrize("flag", ["--requests-per-minute", "--max-body-mb", "--header-timeout"])
def test_a_bound_that_is_not_positive_names_its_flag(tmp_path: Path, capsys, flag: str) -> None:  # type: ignore[no-untyped-def]
    with two_team_index(tmp_path / "kb.ragkit"):
        pass
    assert main(["mcp", "--index", str(tmp_path / "kb.ragkit"), "--http", flag, "0"]) == 2
    assert flag in capsys.readouterr().err
